"""The local AWS stack: the real template, ASL and Lambda handlers running in moto without Docker.

    from crmsync_local.stack import LocalStack

    with LocalStack(time_scale=0) as stack:
        result = stack.run_execution("ImportStateMachine", {"syncId": "contacts"})

See `stack.LocalStack` for the API, `template` and `sam` for the loader, `provision` for what is created
in moto, `runtime` for the in-process Lambda runtime, `timing` for the Retry/Wait time scale and
`speedups` for the moto performance fixes.
"""

from crmsync_local.stack.errors import StackError, TemplateError
from crmsync_local.stack.provision import FunctionSpec, ResourceInfo
from crmsync_local.stack.runtime import LambdaContext, LambdaLogLine
from crmsync_local.stack.stack import (
    DEFAULT_TEMPLATE,
    MOTO_CONFIG,
    DrainResult,
    ExecutionResult,
    InvokeResult,
    LocalStack,
)
from crmsync_local.stack.template import StackPlan, Template

__all__ = [
    "DEFAULT_TEMPLATE",
    "MOTO_CONFIG",
    "DrainResult",
    "ExecutionResult",
    "FunctionSpec",
    "InvokeResult",
    "LambdaContext",
    "LambdaLogLine",
    "LocalStack",
    "ResourceInfo",
    "StackError",
    "StackPlan",
    "Template",
    "TemplateError",
]
