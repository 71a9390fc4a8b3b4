"""The subset of the SAM transform (AWS::Serverless-2016-10-31) that the local stack needs.

`expand` applies `Globals` and adds the resources SAM generates implicitly, under the logical ids SAM
gives them, so `!GetAtt ImportPageFunctionRole.Arn` resolves as it does after `sam deploy`:

- `<Function>Role` / `<StateMachine>Role` when no `Role` is given (document-form `Policies` become inline
  policies; SAM policy templates and AWS managed policies are not materialised: moto enforces no IAM);
- per function or state machine event: `<Id><EventId>` as an `AWS::Lambda::EventSourceMapping` (SQS),
  an `AWS::Events::Rule` (Schedule, EventBridgeRule) or an `AWS::Scheduler::Schedule` (ScheduleV2),
  plus `<Id><EventId>Role` where SAM creates a role for the event.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from crmsync_local.stack.errors import TemplateError

FUNCTION = "AWS::Serverless::Function"
STATE_MACHINE = "AWS::Serverless::StateMachine"
LAYER = "AWS::Serverless::LayerVersion"

_GLOBAL_SECTIONS = {"Function": FUNCTION, "StateMachine": STATE_MACHINE, "LayerVersion": LAYER}

_MANAGED_POLICY_PREFIX = "arn:${AWS::Partition}:iam::aws:policy/"

_EVENT_PROPERTIES: dict[str, frozenset[str]] = {
    "SQS": frozenset(
        {
            "Queue",
            "BatchSize",
            "Enabled",
            "FilterCriteria",
            "FunctionResponseTypes",
            "MaximumBatchingWindowInSeconds",
            "ScalingConfig",
            "KmsKeyArn",
            "MetricsConfig",
        }
    ),
    "Schedule": frozenset({"Schedule", "Name", "Description", "Enabled", "State", "Input", "RoleArn"}),
    "ScheduleV2": frozenset(
        {
            "ScheduleExpression",
            "ScheduleExpressionTimezone",
            "Name",
            "GroupName",
            "Description",
            "State",
            "Input",
            "RoleArn",
            "FlexibleTimeWindow",
            "StartDate",
            "EndDate",
            "RetryPolicy",
            "DeadLetterConfig",
            "KmsKeyArn",
            "OmitName",
            "PermissionsBoundary",
        }
    ),
    "EventBridgeRule": frozenset(
        {"Pattern", "EventBusName", "Input", "InputPath", "RuleName", "State", "RetryPolicy", "DeadLetterConfig"}
    ),
}


_TRANSFORMS = frozenset({"AWS::Serverless-2016-10-31", "AWS::LanguageExtensions"})


def expand(body: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Return the template's resources with Globals applied and SAM's implicit resources added."""
    transforms = body.get("Transform") or []
    unknown_transforms = sorted(set([transforms] if isinstance(transforms, str) else transforms) - _TRANSFORMS)
    if unknown_transforms:
        raise TemplateError(
            f"Transform {', '.join(map(str, unknown_transforms))} is not supported by the local stack"
        )
    global_sections: Mapping[str, Any] = body.get("Globals") or {}
    unknown = sorted(set(global_sections) - set(_GLOBAL_SECTIONS))
    if unknown:
        raise TemplateError(
            f"Globals: section(s) {', '.join(unknown)} not supported by the local stack "
            f"(supported: {', '.join(sorted(_GLOBAL_SECTIONS))})"
        )
    declared: Mapping[str, Any] = body["Resources"]
    resources: dict[str, dict[str, Any]] = {}

    def add(logical_id: str, resource: dict[str, Any]) -> None:
        if logical_id in declared or logical_id in resources:
            raise TemplateError(f"{logical_id}: SAM generates a resource with this logical id; rename yours")
        resources[logical_id] = resource

    for logical_id, declared_resource in declared.items():
        if logical_id.startswith("Fn::ForEach"):
            raise TemplateError(f"{logical_id}: Fn::ForEach is not supported by the local stack")
        if not isinstance(declared_resource, dict) or "Type" not in declared_resource:
            raise TemplateError(f"Resource {logical_id} needs a Type")
        resource = copy.deepcopy(declared_resource)
        for section, resource_type in _GLOBAL_SECTIONS.items():
            if resource["Type"] == resource_type and section in global_sections:
                resource["Properties"] = merge_globals(global_sections[section], resource.get("Properties") or {})
        resources[logical_id] = resource
        if resource["Type"] == FUNCTION:
            for implicit_id, implicit in _expand_function(logical_id, resource).items():
                add(implicit_id, implicit)
        elif resource["Type"] == STATE_MACHINE:
            for implicit_id, implicit in _expand_state_machine(logical_id, resource).items():
                add(implicit_id, implicit)
    return resources


def merge_globals(global_value: Any, local_value: Any) -> Any:
    """SAM's rule: maps merge (local wins), lists add up (globals first), scalars and intrinsics: local wins."""
    if _is_intrinsic(global_value) or _is_intrinsic(local_value):
        return copy.deepcopy(local_value)
    if isinstance(global_value, dict) and isinstance(local_value, dict):
        merged = copy.deepcopy(global_value)
        for key, value in local_value.items():
            merged[key] = merge_globals(merged[key], value) if key in merged else copy.deepcopy(value)
        return merged
    if isinstance(global_value, list) and isinstance(local_value, list):
        return copy.deepcopy(global_value) + copy.deepcopy(local_value)
    return copy.deepcopy(local_value)


def _is_intrinsic(value: Any) -> bool:
    if not isinstance(value, dict) or len(value) != 1:
        return False
    key = str(next(iter(value)))
    return key in {"Ref", "Condition"} or key.startswith("Fn::")


# ------------------------------------------------------------------------------------------------ functions


def _expand_function(logical_id: str, resource: dict[str, Any]) -> dict[str, dict[str, Any]]:
    properties = resource.setdefault("Properties", {})
    for unsupported in ("InlineCode", "ImageUri", "AutoPublishAlias", "DeploymentPreference"):
        if unsupported in properties:
            raise TemplateError(
                f"{logical_id} ({FUNCTION}): {unsupported} is not supported by the local stack; "
                "use CodeUri + Handler"
            )
    if properties.get("PackageType", "Zip") != "Zip":
        raise TemplateError(f"{logical_id} ({FUNCTION}): only PackageType Zip runs in the local stack")
    implicit: dict[str, dict[str, Any]] = {}
    condition = {"Condition": resource["Condition"]} if "Condition" in resource else {}
    if "Role" not in properties:
        managed = [{"Fn::Sub": _MANAGED_POLICY_PREFIX + "service-role/AWSLambdaBasicExecutionRole"}]
        if properties.get("Tracing") == "Active":
            managed.append({"Fn::Sub": _MANAGED_POLICY_PREFIX + "AWSXrayWriteOnlyAccess"})
        implicit[f"{logical_id}Role"] = _role(
            logical_id, "lambda.amazonaws.com", properties.get("Policies"), managed, condition
        )
        properties["Role"] = {"Fn::GetAtt": [f"{logical_id}Role", "Arn"]}
    target = {"Fn::GetAtt": [logical_id, "Arn"]}
    for event_id, event in (properties.get("Events") or {}).items():
        implicit.update(_expand_event(logical_id, event_id, event, target, "lambda:InvokeFunction", condition))
    return implicit


def _expand_state_machine(logical_id: str, resource: dict[str, Any]) -> dict[str, dict[str, Any]]:
    properties = resource.setdefault("Properties", {})
    implicit: dict[str, dict[str, Any]] = {}
    condition = {"Condition": resource["Condition"]} if "Condition" in resource else {}
    if "Role" not in properties:
        implicit[f"{logical_id}Role"] = _role(
            logical_id, "states.amazonaws.com", properties.get("Policies"), [], condition
        )
        properties["Role"] = {"Fn::GetAtt": [f"{logical_id}Role", "Arn"]}
    target = {"Ref": logical_id}
    for event_id, event in (properties.get("Events") or {}).items():
        if event.get("Type") == "SQS":
            raise TemplateError(f"{logical_id}.Events.{event_id}: a state machine cannot have an SQS event")
        implicit.update(_expand_event(logical_id, event_id, event, target, "states:StartExecution", condition))
    return implicit


def _role(
    owner: str,
    service: str,
    policies: Any,
    managed: list[Any],
    condition: dict[str, Any],
) -> dict[str, Any]:
    """The execution role SAM creates; document-form policies become inline policies."""
    inline: list[dict[str, Any]] = []
    for index, policy in enumerate(_as_list(policies)):
        if isinstance(policy, str):
            arn = policy if policy.startswith("arn:") else {"Fn::Sub": _MANAGED_POLICY_PREFIX + policy}
            managed.append(arn)
        elif isinstance(policy, dict) and "Statement" in policy:
            document = {"Version": "2012-10-17", **policy}
            inline.append({"PolicyName": f"{owner}RolePolicy{index}", "PolicyDocument": document})
        elif _is_intrinsic(policy):
            managed.append(policy)
        # Any other entry is a SAM policy template (e.g. LambdaInvokePolicy): nothing to enforce locally.
    properties: dict[str, Any] = {
        "AssumeRolePolicyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"Service": [service]}, "Action": ["sts:AssumeRole"]}],
        },
        "ManagedPolicyArns": managed,
    }
    if inline:
        properties["Policies"] = inline
    return {"Type": "AWS::IAM::Role", "Properties": properties, **condition}


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


# ------------------------------------------------------------------------------------------------ events


def _expand_event(
    owner: str,
    event_id: str,
    event: Mapping[str, Any],
    target_arn: dict[str, Any],
    invoke_action: str,
    condition: dict[str, Any],
) -> dict[str, dict[str, Any]]:
    where = f"{owner}.Events.{event_id}"
    event_type = event.get("Type")
    if event_type not in _EVENT_PROPERTIES:
        raise TemplateError(
            f"{where}: event type {event_type} is not supported by the local stack "
            f"(supported: {', '.join(sorted(_EVENT_PROPERTIES))})"
        )
    properties: Mapping[str, Any] = event.get("Properties") or {}
    unknown = sorted(set(properties) - _EVENT_PROPERTIES[event_type])
    if unknown:
        raise TemplateError(f"{where} ({event_type}): unsupported propert(y/ies) {', '.join(unknown)}")
    logical_id = f"{owner}{event_id}"
    is_lambda = invoke_action == "lambda:InvokeFunction"
    if event_type == "SQS":
        mapping = {"EventSourceArn": properties["Queue"], "FunctionName": {"Ref": owner}}
        for key in (
            "BatchSize",
            "Enabled",
            "FilterCriteria",
            "FunctionResponseTypes",
            "MaximumBatchingWindowInSeconds",
            "ScalingConfig",
        ):
            if key in properties:
                mapping[key] = properties[key]
        return {logical_id: {"Type": "AWS::Lambda::EventSourceMapping", "Properties": mapping, **condition}}

    result: dict[str, dict[str, Any]] = {}
    role_arn = properties.get("RoleArn")
    if role_arn is None and (event_type == "ScheduleV2" or not is_lambda):
        role_id = f"{logical_id}Role"
        principal = "scheduler.amazonaws.com" if event_type == "ScheduleV2" else "events.amazonaws.com"
        statement = {"Effect": "Allow", "Action": invoke_action, "Resource": target_arn}
        result[role_id] = _role(logical_id, principal, [{"Statement": [statement]}], [], condition)
        role_arn = {"Fn::GetAtt": [role_id, "Arn"]}

    if event_type == "ScheduleV2":
        schedule_target: dict[str, Any] = {"Arn": target_arn, "RoleArn": role_arn}
        for key in ("Input", "RetryPolicy", "DeadLetterConfig"):
            if key in properties:
                schedule_target[key] = properties[key]
        schedule: dict[str, Any] = {
            "ScheduleExpression": properties["ScheduleExpression"],
            "FlexibleTimeWindow": properties.get("FlexibleTimeWindow", {"Mode": "OFF"}),
            "Target": schedule_target,
        }
        for key in (
            "Name",
            "GroupName",
            "Description",
            "State",
            "ScheduleExpressionTimezone",
            "StartDate",
            "EndDate",
        ):
            if key in properties:
                schedule[key] = properties[key]
        result[logical_id] = {"Type": "AWS::Scheduler::Schedule", "Properties": schedule, **condition}
        return result

    rule_target: dict[str, Any] = {
        "Arn": target_arn,
        "Id": f"{logical_id}{'LambdaTarget' if is_lambda else 'StepFunctionsTarget'}",
    }
    if not is_lambda:
        rule_target["RoleArn"] = role_arn
    for key in ("Input", "InputPath"):
        if key in properties:
            rule_target[key] = properties[key]
    rule: dict[str, Any] = {"Targets": [rule_target]}
    if event_type == "Schedule":
        rule["ScheduleExpression"] = properties["Schedule"]
        enabled = properties.get("Enabled", True)
        rule["State"] = properties.get("State", "ENABLED" if enabled else "DISABLED")
        for key in ("Name", "Description"):
            if key in properties:
                rule[key] = properties[key]
    else:
        rule["EventPattern"] = properties["Pattern"]
        rule["State"] = properties.get("State", "ENABLED")
        if "EventBusName" in properties:
            rule["EventBusName"] = properties["EventBusName"]
        if "RuleName" in properties:
            rule["Name"] = properties["RuleName"]
    result[logical_id] = {"Type": "AWS::Events::Rule", "Properties": rule, **condition}
    return result
