"""Canary handler: returns its event and what the runtime gave it (context, environment)."""

import json
import logging
import os

from aws_lambda_powertools import Logger

_INVOCATIONS = {"count": 0}  # module state lives as long as the "container" (one LocalStack)
_ENVIRONMENT = (
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_ENDPOINT_URL",
    "POWERTOOLS_TRACE_DISABLED",
    "COUNTER_TABLE",
    "GLOBAL_ONLY",
    "OVERRIDDEN",
    "FUNCTION_ONLY",
)

logger = logging.getLogger("echo.handler")
powertools_logger = Logger(service="canary")  # binds sys.stdout when created, as in a real container


def handler(event, context):
    _INVOCATIONS["count"] += 1
    print(f"echo received {json.dumps(event, sort_keys=True)}")
    logger.warning("echo invocation %d", _INVOCATIONS["count"])
    powertools_logger.info("echo via powertools")
    return {
        "event": event,
        "invocations": _INVOCATIONS["count"],
        "environment": {name: os.environ.get(name) for name in _ENVIRONMENT},
        "context": {
            "function_name": context.function_name,
            "function_version": context.function_version,
            "invoked_function_arn": context.invoked_function_arn,
            "memory_limit_in_mb": context.memory_limit_in_mb,
            "aws_request_id": context.aws_request_id,
            "log_group_name": context.log_group_name,
            "log_stream_name": context.log_stream_name,
            "remaining_time_in_millis": context.get_remaining_time_in_millis(),
        },
    }
