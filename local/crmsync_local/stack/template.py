"""Read a SAM/CloudFormation template and evaluate it the way CloudFormation would, without AWS.

`Template.load` parses the YAML (short-form tags included) once per file version and applies the SAM
transform subset the local stack needs (`sam.expand`). `StackPlan` binds a template to a stack name,
region, account and parameter values: it evaluates Conditions, orders resources by their dependencies,
computes every physical name, Ref and GetAtt value exactly as CloudFormation would, and resolves each
resource's properties on demand. Values moto picks itself (a secret's ARN suffix, a layer version, a table
stream label) are bound once the resource exists (`StackPlan.bind`).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import re
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from crmsync_local.stack import sam
from crmsync_local.stack.errors import TemplateError

DEFAULT_STACK_NAME = "crmsync"
DEFAULT_REGION = "us-east-1"
DEFAULT_ACCOUNT_ID = "123456789012"  # moto's default account

# ------------------------------------------------------------------------------------------------ YAML

_SHORT_TAGS = {
    "Ref": "Ref",
    "Condition": "Condition",
    "GetAtt": "Fn::GetAtt",
    **{
        name: f"Fn::{name}"
        for name in (
            "And",
            "Base64",
            "Cidr",
            "Equals",
            "FindInMap",
            "GetAZs",
            "If",
            "ImportValue",
            "Join",
            "Length",
            "Not",
            "Or",
            "Select",
            "Split",
            "Sub",
            "ToJsonString",
            "Transform",
        )
    },
}


class _TemplateLoader(yaml.SafeLoader):
    """SafeLoader that knows the CloudFormation short-form tags and keeps dates as strings."""


# CloudFormation reads `2010-09-09` as a string; YAML 1.1 would make it a date.
_TemplateLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _short_form(function: str) -> Callable[[yaml.SafeLoader, yaml.Node], dict[str, Any]]:
    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
        value: Any
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
            if function == "Fn::GetAtt":
                resource, _, attribute = str(value).partition(".")
                value = [resource, attribute]
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            assert isinstance(node, yaml.MappingNode)
            value = loader.construct_mapping(node, deep=True)
        return {function: value}

    return construct


for _tag, _function in _SHORT_TAGS.items():
    _TemplateLoader.add_constructor(f"!{_tag}", _short_form(_function))


def parse_template_text(text: str, source: str = "<template>") -> dict[str, Any]:
    """Parse template YAML (or JSON, a YAML subset) into plain dicts with long-form intrinsics."""
    try:
        body = yaml.load(text, Loader=_TemplateLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as exc:
        raise TemplateError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(body, dict) or not isinstance(body.get("Resources"), dict):
        raise TemplateError(f"{source}: a template needs a Resources mapping")
    return body


# ------------------------------------------------------------------------------------------------ template


@dataclass(frozen=True)
class Template:
    """A parsed template with the SAM subset expanded; immutable, so one parse serves every stack."""

    path: Path
    body: Mapping[str, Any]
    resources: Mapping[str, Mapping[str, Any]]

    @property
    def root(self) -> Path:
        """Directory that CodeUri, ContentUri and DefinitionUri are relative to (as for `sam build`)."""
        return self.path.parent

    @classmethod
    def load(cls, path: str | Path) -> Template:
        """Parse `path`, reusing the previous parse while the file is unchanged (stacks per test stay cheap)."""
        resolved = Path(path).resolve()
        try:
            stat = resolved.stat()
        except FileNotFoundError as exc:
            raise TemplateError(f"template not found: {resolved}") from exc
        return _load_cached(resolved, stat.st_mtime_ns, stat.st_size)

    @classmethod
    def from_text(cls, text: str, path: str | Path) -> Template:
        """Build a template from text; `path` only anchors the relative code and definition paths."""
        body = parse_template_text(text, str(path))
        return cls(path=Path(path).resolve(), body=body, resources=sam.expand(body))


@functools.lru_cache(maxsize=16)
def _load_cached(path: Path, _mtime_ns: int, _size: int) -> Template:
    return Template.from_text(path.read_text(encoding="utf-8"), path)


# ------------------------------------------------------------------------------------------------ types


@dataclass(frozen=True)
class Names:
    """What a resource's Ref and GetAtt values are computed from."""

    name: str
    region: str
    account_id: str
    partition: str
    url_suffix: str
    properties: Callable[[str], Any]


@dataclass(frozen=True)
class TypeSpec:
    """How CloudFormation names one resource type and what its Ref and GetAtt return."""

    name_property: str | None
    max_name_length: int
    ref: Callable[[Names], str]
    attributes: Mapping[str, Callable[[Names], str]] = field(default_factory=dict)
    lowercase_name: bool = False
    name_suffix: Callable[[Names], str] = lambda _names: ""
    # Ref or attributes that only exist once moto created the resource (moto picks part of them).
    late_ref: bool = False
    late_attributes: frozenset[str] = frozenset()
    # Types without a name of their own: CloudFormation's physical id is generated, never user-set.
    default_name: Callable[[str], str] | None = None


def _arn(service: str, resource: str, *, regional: bool = True) -> Callable[[Names], str]:
    def build(n: Names) -> str:
        region = n.region if regional else ""
        account = n.account_id if service not in {"s3"} else ""
        return f"arn:{n.partition}:{service}:{region}:{account}:{resource.format(name=n.name)}"

    return build


def _fifo_suffix(n: Names) -> str:
    return ".fifo" if str(n.properties("FifoQueue")).lower() == "true" else ""


def _role_arn(n: Names) -> str:
    path = n.properties("Path") or "/"
    return f"arn:{n.partition}:iam::{n.account_id}:role{path}{n.name}"


def _queue_url(n: Names) -> str:
    return f"https://sqs.{n.region}.{n.url_suffix}/{n.account_id}/{n.name}"


def _rule_arn(n: Names) -> str:
    bus = n.properties("EventBusName")
    if bus and bus != "default":
        bus_name = str(bus).rsplit("/", 1)[-1]
        return f"arn:{n.partition}:events:{n.region}:{n.account_id}:rule/{bus_name}/{n.name}"
    return f"arn:{n.partition}:events:{n.region}:{n.account_id}:rule/{n.name}"


def _schedule_arn(n: Names) -> str:
    group = n.properties("GroupName") or "default"
    return f"arn:{n.partition}:scheduler:{n.region}:{n.account_id}:schedule/{group}/{n.name}"


def _state_machine(name_property: str) -> TypeSpec:
    arn = _arn("states", "stateMachine:{name}")
    return TypeSpec(
        name_property=name_property,
        max_name_length=80,
        ref=arn,
        attributes={"Arn": arn, "Name": lambda n: n.name},
    )


TYPE_SPECS: dict[str, TypeSpec] = {
    "AWS::DynamoDB::Table": TypeSpec(
        name_property="TableName",
        max_name_length=255,
        ref=lambda n: n.name,
        attributes={"Arn": _arn("dynamodb", "table/{name}"), "StreamArn": lambda n: ""},
        late_attributes=frozenset({"StreamArn"}),
    ),
    "AWS::SQS::Queue": TypeSpec(
        name_property="QueueName",
        max_name_length=80,
        ref=_queue_url,
        attributes={
            "Arn": _arn("sqs", "{name}"),
            "QueueName": lambda n: n.name,
            "QueueUrl": _queue_url,
        },
        name_suffix=_fifo_suffix,
    ),
    "AWS::SQS::QueuePolicy": TypeSpec(name_property=None, max_name_length=255, ref=lambda n: n.name),
    "AWS::S3::Bucket": TypeSpec(
        name_property="BucketName",
        max_name_length=63,
        lowercase_name=True,
        ref=lambda n: n.name,
        attributes={
            "Arn": _arn("s3", "{name}", regional=False),
            "DomainName": lambda n: f"{n.name}.s3.{n.url_suffix}",
            "RegionalDomainName": lambda n: f"{n.name}.s3.{n.region}.{n.url_suffix}",
            "DualStackDomainName": lambda n: f"{n.name}.s3.dualstack.{n.region}.{n.url_suffix}",
        },
    ),
    "AWS::S3::BucketPolicy": TypeSpec(name_property=None, max_name_length=255, ref=lambda n: n.name),
    "AWS::IAM::Role": TypeSpec(
        name_property="RoleName",
        max_name_length=64,
        ref=lambda n: n.name,
        attributes={"Arn": _role_arn, "RoleId": lambda n: ""},
        late_attributes=frozenset({"RoleId"}),
    ),
    "AWS::Serverless::Function": TypeSpec(
        name_property="FunctionName",
        max_name_length=64,
        ref=lambda n: n.name,
        attributes={"Arn": _arn("lambda", "function:{name}")},
    ),
    "AWS::Serverless::LayerVersion": TypeSpec(
        name_property="LayerName",
        max_name_length=140,
        ref=lambda n: "",
        late_ref=True,
        # SAM names an unnamed layer after its logical id, not with a generated suffix.
        default_name=lambda logical_id: logical_id,
    ),
    "AWS::Serverless::StateMachine": _state_machine("Name"),
    "AWS::StepFunctions::StateMachine": _state_machine("StateMachineName"),
    "AWS::Scheduler::ScheduleGroup": TypeSpec(
        name_property="Name",
        max_name_length=64,
        ref=lambda n: n.name,
        attributes={"Arn": _arn("scheduler", "schedule-group/{name}")},
    ),
    "AWS::Scheduler::Schedule": TypeSpec(
        name_property="Name", max_name_length=64, ref=lambda n: n.name, attributes={"Arn": _schedule_arn}
    ),
    "AWS::Events::EventBus": TypeSpec(
        name_property="Name",
        max_name_length=256,
        ref=lambda n: n.name,
        attributes={"Arn": _arn("events", "event-bus/{name}"), "Name": lambda n: n.name},
    ),
    "AWS::Events::Rule": TypeSpec(
        name_property="Name", max_name_length=64, ref=lambda n: n.name, attributes={"Arn": _rule_arn}
    ),
    "AWS::SecretsManager::Secret": TypeSpec(
        name_property="Name",
        max_name_length=512,
        ref=lambda n: "",
        attributes={"Id": lambda n: ""},
        late_ref=True,
        late_attributes=frozenset({"Id"}),
        default_name=lambda logical_id: f"{logical_id}-{_suffix(logical_id, 12)}",
    ),
    "AWS::CloudWatch::Dashboard": TypeSpec(
        name_property="DashboardName", max_name_length=255, ref=lambda n: n.name
    ),
    "AWS::Logs::LogGroup": TypeSpec(
        name_property="LogGroupName",
        max_name_length=512,
        ref=lambda n: n.name,
        attributes={"Arn": _arn("logs", "log-group:{name}:*")},
    ),
    "AWS::CloudWatch::Alarm": TypeSpec(
        name_property="AlarmName",
        max_name_length=255,
        ref=lambda n: n.name,
        attributes={"Arn": _arn("cloudwatch", "alarm:{name}")},
    ),
    "AWS::Lambda::Permission": TypeSpec(name_property=None, max_name_length=255, ref=lambda n: n.name),
    "AWS::Lambda::EventSourceMapping": TypeSpec(
        name_property=None,
        max_name_length=255,
        ref=lambda n: "",
        late_ref=True,
        attributes={"Id": lambda n: ""},
        late_attributes=frozenset({"Id"}),
    ),
}


def _suffix(seed: str, length: int) -> str:
    """Deterministic stand-in for CloudFormation's random name suffix (stable across runs)."""
    digest = base64.b32encode(hashlib.sha256(seed.encode()).digest()).decode()
    return digest[:length]


def generated_name(stack_name: str, logical_id: str, spec: TypeSpec, suffix: str = "") -> str:
    """`<stack>-<LogicalId>-<hash>` trimmed to the type's limit, as CloudFormation generates names."""
    random_part = _suffix(f"{stack_name}/{logical_id}", 12)
    if spec.lowercase_name:
        random_part = random_part.lower()
    budget = spec.max_name_length - len(suffix) - len(random_part) - 2
    stack_part, logical_part = stack_name, logical_id
    if len(stack_part) + len(logical_part) > budget:
        stack_part = stack_part[: max(budget // 2, 1)]
        logical_part = logical_part[: max(budget - len(stack_part), 1)]
    name = f"{stack_part}-{logical_part}-{random_part}{suffix}"
    return name.lower() if spec.lowercase_name else name


# ------------------------------------------------------------------------------------------------ plan


@dataclass
class _Bound:
    ref: str | None = None
    attributes: dict[str, str] = field(default_factory=dict)


class StackPlan:
    """A template bound to a stack name, region, account and parameters; evaluates intrinsics."""

    def __init__(
        self,
        template: Template,
        *,
        stack_name: str = DEFAULT_STACK_NAME,
        region: str = DEFAULT_REGION,
        account_id: str = DEFAULT_ACCOUNT_ID,
        parameters: Mapping[str, Any] | None = None,
    ) -> None:
        self.template = template
        self.stack_name = stack_name
        self.region = region
        self.account_id = account_id
        self.partition = _partition(region)
        self.url_suffix = "amazonaws.com.cn" if self.partition == "aws-cn" else "amazonaws.com"
        self.parameters = self._parameter_values(dict(parameters or {}))
        self._conditions: dict[str, bool] = {}
        self._evaluating: set[str] = set()
        self._bound: dict[str, _Bound] = {}
        self._names: dict[str, str] = {}
        self._check_types()
        self.order = self._creation_order()

    # -------------------------------------------------------------- public

    @property
    def resources(self) -> Mapping[str, Mapping[str, Any]]:
        """Every resource of the expanded template, active or not (see `is_active`)."""
        return self.template.resources

    def is_active(self, logical_id: str) -> bool:
        """False when the resource's Condition evaluates to false (CloudFormation skips it)."""
        condition = self.resources[logical_id].get("Condition")
        return condition is None or self.condition(str(condition))

    def type_of(self, logical_id: str) -> str:
        return str(self.resources[logical_id]["Type"])

    def properties(self, logical_id: str) -> dict[str, Any]:
        """The resource's properties with every intrinsic resolved (dependencies must be bound first)."""
        raw = self.resources[logical_id].get("Properties") or {}
        resolved = self.resolve(raw, logical_id)
        return resolved if isinstance(resolved, dict) else {}

    def raw_properties(self, logical_id: str) -> Mapping[str, Any]:
        return self.resources[logical_id].get("Properties") or {}

    def physical_name(self, logical_id: str) -> str:
        """The name CloudFormation would give the resource: its name property or a generated one."""
        if logical_id not in self._names:
            spec = TYPE_SPECS[self.type_of(logical_id)]
            given = None
            if spec.name_property is not None:
                given = self._resolve_property(logical_id, spec.name_property)
            if given:
                self._names[logical_id] = str(given)
            elif spec.default_name is not None:
                self._names[logical_id] = spec.default_name(logical_id)
            else:
                suffix = spec.name_suffix(self._names_for(logical_id, ""))
                self._names[logical_id] = generated_name(self.stack_name, logical_id, spec, suffix)
        return self._names[logical_id]

    def ref(self, logical_id: str, where: str = "") -> Any:
        """What `!Ref logical_id` evaluates to: a parameter value, pseudo-parameter or resource Ref."""
        if logical_id in self.parameters:
            return self.parameters[logical_id]
        pseudo = self._pseudo(logical_id)
        if pseudo is not None:
            return pseudo
        self._require_resource(logical_id, f"Ref {logical_id}", where)
        bound = self._bound.get(logical_id)
        if bound is not None and bound.ref is not None:
            return bound.ref
        spec = TYPE_SPECS[self.type_of(logical_id)]
        if spec.late_ref:
            raise TemplateError(
                f"{where or logical_id}: Ref {logical_id} is only known once {logical_id} exists "
                "(its value is assigned at creation); a resource referencing it must be created after it"
            )
        return spec.ref(self._names_for(logical_id))

    def get_att(self, logical_id: str, attribute: str, where: str = "") -> str:
        """What `!GetAtt logical_id.attribute` evaluates to."""
        self._require_resource(logical_id, f"GetAtt {logical_id}.{attribute}", where)
        bound = self._bound.get(logical_id)
        if bound is not None and attribute in bound.attributes:
            return bound.attributes[attribute]
        resource_type = self.type_of(logical_id)
        spec = TYPE_SPECS[resource_type]
        if attribute not in spec.attributes:
            known = ", ".join(sorted(spec.attributes)) or "none"
            raise TemplateError(
                f"{where or logical_id}: GetAtt {logical_id}.{attribute}: {resource_type} has no attribute "
                f"{attribute!r} in the local stack (known: {known})"
            )
        if attribute in spec.late_attributes:
            raise TemplateError(
                f"{where or logical_id}: GetAtt {logical_id}.{attribute} is only known once {logical_id} "
                "exists (and has that feature enabled)"
            )
        return spec.attributes[attribute](self._names_for(logical_id))

    def bind(self, logical_id: str, ref: str | None = None, attributes: Mapping[str, str] | None = None) -> None:
        """Record values known only after creation (e.g. a secret's ARN with moto's random suffix)."""
        bound = self._bound.setdefault(logical_id, _Bound())
        if ref is not None:
            bound.ref = ref
        bound.attributes.update(attributes or {})

    def condition(self, name: str) -> bool:
        """Evaluate a named Condition (memoised; cycles are an error)."""
        if name in self._conditions:
            return self._conditions[name]
        conditions = self.template.body.get("Conditions") or {}
        if name not in conditions:
            raise TemplateError(f"Condition {name!r} is not declared in Conditions")
        if name in self._evaluating:
            raise TemplateError(f"Condition {name!r} depends on itself")
        self._evaluating.add(name)
        try:
            value = self._evaluate_condition(conditions[name], f"Conditions.{name}")
        finally:
            self._evaluating.discard(name)
        self._conditions[name] = value
        return value

    def outputs(self) -> dict[str, Any]:
        """Resolved Outputs whose Condition holds (call after every resource is bound)."""
        result: dict[str, Any] = {}
        for name, output in (self.template.body.get("Outputs") or {}).items():
            condition = output.get("Condition")
            if condition is not None and not self.condition(str(condition)):
                continue
            result[name] = self.resolve(output.get("Value"), f"Outputs.{name}")
        return result

    def resolve(self, value: Any, where: str) -> Any:
        """Evaluate every intrinsic function in `value`; `where` names the logical id in errors."""
        resolved = self._resolve(value, where)
        return None if resolved is _NO_VALUE else resolved

    # -------------------------------------------------------------- parameters

    def _parameter_values(self, overrides: dict[str, Any]) -> dict[str, Any]:
        declared: Mapping[str, Any] = self.template.body.get("Parameters") or {}
        unknown = sorted(set(overrides) - set(declared))
        if unknown:
            raise TemplateError(f"unknown parameter(s) {', '.join(unknown)}; declared: {', '.join(declared)}")
        values: dict[str, Any] = {}
        for name, declaration in declared.items():
            if name in overrides:
                raw = overrides[name]
            elif "Default" in declaration:
                raw = declaration["Default"]
            else:
                raise TemplateError(f"Parameters.{name}: no Default, so a value must be given")
            values[name] = _parameter_value(name, declaration, raw)
        return values

    def _pseudo(self, name: str) -> Any:
        stack_uuid = uuid.uuid5(uuid.NAMESPACE_URL, f"{self.account_id}/{self.region}/{self.stack_name}")
        pseudo: dict[str, Any] = {
            "AWS::StackName": self.stack_name,
            "AWS::Region": self.region,
            "AWS::AccountId": self.account_id,
            "AWS::Partition": self.partition,
            "AWS::URLSuffix": self.url_suffix,
            "AWS::NoValue": _NO_VALUE,
            "AWS::NotificationARNs": [],
            "AWS::StackId": (
                f"arn:{self.partition}:cloudformation:{self.region}:{self.account_id}:"
                f"stack/{self.stack_name}/{stack_uuid}"
            ),
        }
        return pseudo.get(name)

    # -------------------------------------------------------------- resources

    def _check_types(self) -> None:
        for logical_id, resource in self.resources.items():
            resource_type = resource.get("Type")
            if resource_type not in TYPE_SPECS:
                supported = ", ".join(sorted(TYPE_SPECS))
                raise TemplateError(
                    f"Resource {logical_id} has type {resource_type}, which the local stack does not "
                    f"support (supported: {supported})"
                )

    def _require_resource(self, logical_id: str, what: str, where: str) -> None:
        if logical_id not in self.resources:
            raise TemplateError(f"{where or '?'}: {what}: no parameter, pseudo-parameter or resource of that name")
        if not self.is_active(logical_id):
            raise TemplateError(f"{where or '?'}: {what}: {logical_id} is not created (its Condition is false)")

    def _names_for(self, logical_id: str, name: str | None = None) -> Names:
        return Names(
            name=self.physical_name(logical_id) if name is None else name,
            region=self.region,
            account_id=self.account_id,
            partition=self.partition,
            url_suffix=self.url_suffix,
            properties=lambda key: self._resolve_property(logical_id, key),
        )

    def _resolve_property(self, logical_id: str, key: str) -> Any:
        return self.resolve(self.raw_properties(logical_id).get(key), f"{logical_id}.Properties.{key}")

    def _creation_order(self) -> list[str]:
        """Active resources ordered so that each comes after everything it references (DependsOn too)."""
        active = [lid for lid in self.resources if self.is_active(lid)]
        dependencies = {lid: self._dependencies(lid) & set(active) for lid in active}
        order: list[str] = []
        state: dict[str, str] = {}

        def visit(lid: str, path: list[str]) -> None:
            if state.get(lid) == "done":
                return
            if state.get(lid) == "visiting":
                cycle = " -> ".join([*path[path.index(lid) :], lid])
                raise TemplateError(f"Resources form a dependency cycle: {cycle}")
            state[lid] = "visiting"
            for dependency in sorted(dependencies[lid]):
                visit(dependency, [*path, lid])
            state[lid] = "done"
            order.append(lid)

        for lid in active:
            visit(lid, [])
        return order

    def _dependencies(self, logical_id: str) -> set[str]:
        resource = self.resources[logical_id]
        found = set(_references(resource.get("Properties") or {}))
        depends_on = resource.get("DependsOn") or []
        found.update([depends_on] if isinstance(depends_on, str) else depends_on)
        missing = sorted(d for d in found if d not in self.resources and d not in self.parameters)
        missing = [d for d in missing if not d.startswith("AWS::")]
        if missing:
            raise TemplateError(f"{logical_id}: references undeclared {', '.join(missing)}")
        return {d for d in found if d in self.resources and d != logical_id}

    # -------------------------------------------------------------- intrinsics

    def _resolve(self, value: Any, where: str) -> Any:
        if isinstance(value, list):
            items = [self._resolve(item, where) for item in value]
            return [item for item in items if item is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        function = _intrinsic_name(value)
        if function is not None:
            return self._intrinsic(function, value[function], where)
        resolved = {key: self._resolve(item, where) for key, item in value.items()}
        return {key: item for key, item in resolved.items() if item is not _NO_VALUE}

    def _intrinsic(self, function: str, argument: Any, where: str) -> Any:
        if function == "Ref":
            return self.ref(str(self._resolve(argument, where)), where)
        if function == "Fn::GetAtt":
            resource, attribute = self._get_att_argument(argument, where)
            return self.get_att(resource, attribute, where)
        if function == "Fn::Sub":
            return self._sub(argument, where)
        if function == "Fn::Join":
            delimiter, items = self._args(function, argument, 2, where)
            values = self._resolve(items, where)
            if not isinstance(values, list):
                raise TemplateError(f"{where}: Fn::Join needs a list to join, got {values!r}")
            return str(delimiter).join(_to_string(item, where) for item in values)
        if function == "Fn::Select":
            index, items = self._args(function, argument, 2, where)
            values = self._resolve(items, where)
            position = int(self._resolve(index, where))
            if not isinstance(values, list) or not 0 <= position < len(values):
                raise TemplateError(f"{where}: Fn::Select index {position} is outside {values!r}")
            return values[position]
        if function == "Fn::Split":
            delimiter, source = self._args(function, argument, 2, where)
            return _to_string(self._resolve(source, where), where).split(str(delimiter))
        if function == "Fn::If":
            name, when_true, when_false = self._args(function, argument, 3, where)
            return self._resolve(when_true if self.condition(str(name)) else when_false, where)
        if function in {"Fn::Equals", "Fn::Not", "Fn::And", "Fn::Or"}:
            return self._evaluate_condition({function: argument}, where)
        if function == "Fn::FindInMap":
            return self._find_in_map(argument, where)
        if function == "Fn::GetAZs":
            region = self._resolve(argument, where) or self.region
            return [f"{region}{zone}" for zone in "abc"]
        if function == "Fn::Base64":
            text = _to_string(self._resolve(argument, where), where)
            return base64.b64encode(text.encode()).decode()
        if function == "Fn::ToJsonString":
            return json.dumps(self._resolve(argument, where), separators=(",", ":"))
        if function == "Fn::Length":
            items = self._resolve(argument, where)
            if not isinstance(items, list):
                raise TemplateError(f"{where}: Fn::Length needs a list, got {items!r}")
            return len(items)
        if function == "Fn::ImportValue":
            raise TemplateError(
                f"{where}: Fn::ImportValue {argument!r} cannot be resolved: the local stack has no other "
                "stacks to import from"
            )
        raise TemplateError(f"{where}: intrinsic function {function} is not supported by the local stack")

    def _get_att_argument(self, argument: Any, where: str) -> tuple[str, str]:
        if isinstance(argument, str):
            resource, _, attribute = argument.partition(".")
            return resource, attribute
        if isinstance(argument, list) and len(argument) == 2:
            return str(argument[0]), str(self._resolve(argument[1], where))
        raise TemplateError(f"{where}: Fn::GetAtt needs [resource, attribute], got {argument!r}")

    def _args(self, function: str, argument: Any, count: int, where: str) -> list[Any]:
        if not isinstance(argument, list) or len(argument) != count:
            raise TemplateError(f"{where}: {function} needs a list of {count} arguments, got {argument!r}")
        return argument

    def _sub(self, argument: Any, where: str) -> str:
        variables: dict[str, Any] = {}
        if isinstance(argument, list):
            text, raw_variables = self._args("Fn::Sub", argument, 2, where)
            variables = {key: self._resolve(item, where) for key, item in (raw_variables or {}).items()}
        else:
            text = argument
        if not isinstance(text, str):
            raise TemplateError(f"{where}: Fn::Sub needs a string, got {text!r}")

        def replace(match: re.Match[str]) -> str:
            expression = match.group(1)
            if expression.startswith("!"):
                return "${" + expression[1:] + "}"
            name = expression.strip()
            if name in variables:
                return _to_string(variables[name], where)
            if "." in name and not name.startswith("AWS::"):
                resource, _, attribute = name.partition(".")
                return self.get_att(resource, attribute, where)
            return _to_string(self.ref(name, where), where)

        return _SUB_PLACEHOLDER.sub(replace, text)

    def _find_in_map(self, argument: Any, where: str) -> Any:
        map_name, top_key, second_key = (
            _to_string(self._resolve(item, where), where)
            for item in self._args("Fn::FindInMap", argument, 3, where)
        )
        mappings = self.template.body.get("Mappings") or {}
        try:
            return mappings[map_name][top_key][second_key]
        except KeyError as exc:
            raise TemplateError(
                f"{where}: Fn::FindInMap [{map_name}, {top_key}, {second_key}] finds nothing in Mappings"
            ) from exc

    def _evaluate_condition(self, value: Any, where: str) -> bool:
        function = _intrinsic_name(value) if isinstance(value, dict) else None
        if function is None and isinstance(value, dict) and set(value) == {"Condition"}:
            return self.condition(str(value["Condition"]))
        if function == "Fn::Equals":
            left, right = self._args(function, value[function], 2, where)
            return _to_string(self.resolve(left, where), where) == _to_string(self.resolve(right, where), where)
        if function == "Fn::Not":
            (inner,) = self._args(function, value[function], 1, where)
            return not self._evaluate_condition(inner, where)
        if function in {"Fn::And", "Fn::Or"}:
            items = value[function]
            if not isinstance(items, list) or not 2 <= len(items) <= 10:
                raise TemplateError(f"{where}: {function} needs 2 to 10 conditions")
            results = (self._evaluate_condition(item, where) for item in items)
            return all(results) if function == "Fn::And" else any(results)
        resolved = self.resolve(value, where)
        if isinstance(resolved, bool) or str(resolved).lower() in {"true", "false"}:
            return str(resolved).lower() == "true"
        raise TemplateError(f"{where}: {value!r} is not a condition")


# ------------------------------------------------------------------------------------------------ helpers

_NO_VALUE = object()
_SUB_PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")
_INTRINSICS = frozenset({"Ref", *(f for f in _SHORT_TAGS.values() if f.startswith("Fn::"))})


def _intrinsic_name(value: dict[str, Any]) -> str | None:
    if len(value) != 1:
        return None
    (key,) = value
    if key in _INTRINSICS or key.startswith("Fn::"):
        return str(key)
    return None


def _references(value: Any) -> Iterator[str]:
    """Logical ids a property value references through Ref, GetAtt or Sub."""
    if isinstance(value, list):
        for item in value:
            yield from _references(item)
        return
    if not isinstance(value, dict):
        return
    function = _intrinsic_name(value)
    argument = value[function] if function else None
    if function == "Ref" and isinstance(argument, str):
        if not argument.startswith("AWS::"):
            yield argument
        return
    if function == "Fn::GetAtt":
        if isinstance(argument, str):
            yield argument.partition(".")[0]
        elif isinstance(argument, list) and argument:
            yield str(argument[0])
        return
    if function == "Fn::Sub":
        text, variables = (argument if isinstance(argument, list) else [argument, {}])[:2]
        if isinstance(text, str):
            for expression in _SUB_PLACEHOLDER.findall(text):
                name = expression.strip().partition(".")[0]
                if not expression.startswith("!") and not name.startswith("AWS::") and name not in variables:
                    yield name
        yield from _references(variables)
        return
    for item in value.values():
        yield from _references(item)


def _partition(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def _to_string(value: Any, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    raise TemplateError(f"{where}: expected a string, got {value!r}")


def _parameter_value(name: str, declaration: Mapping[str, Any], raw: Any) -> Any:
    """Validate a parameter like CloudFormation does; values become strings (lists for list types)."""
    parameter_type = str(declaration.get("Type", "String"))
    where = f"Parameters.{name}"
    if parameter_type.startswith("AWS::SSM::Parameter"):
        raise TemplateError(f"{where}: SSM parameter types cannot be resolved locally; declare it as String")
    if parameter_type.startswith("List<") or parameter_type == "CommaDelimitedList":
        items = raw if isinstance(raw, list) else [part.strip() for part in str(raw).split(",")]
        return [_to_string(item, where) for item in items]
    value = _to_string(raw, where)
    if parameter_type == "Number":
        try:
            number = float(value)
        except ValueError as exc:
            raise TemplateError(f"{where}: {value!r} is not a number") from exc
        if "MinValue" in declaration and number < float(declaration["MinValue"]):
            raise TemplateError(f"{where}: {value} is below MinValue {declaration['MinValue']}")
        if "MaxValue" in declaration and number > float(declaration["MaxValue"]):
            raise TemplateError(f"{where}: {value} is above MaxValue {declaration['MaxValue']}")
    allowed = declaration.get("AllowedValues")
    if allowed is not None and value not in [_to_string(a, where) for a in allowed]:
        raise TemplateError(f"{where}: {value!r} is not one of {allowed}")
    pattern = declaration.get("AllowedPattern")
    if pattern is not None and not re.fullmatch(str(pattern), value):
        raise TemplateError(f"{where}: {value!r} does not match AllowedPattern {pattern!r}")
    if "MinLength" in declaration and len(value) < int(declaration["MinLength"]):
        raise TemplateError(f"{where}: {value!r} is shorter than MinLength {declaration['MinLength']}")
    if "MaxLength" in declaration and len(value) > int(declaration["MaxLength"]):
        raise TemplateError(f"{where}: {value!r} is longer than MaxLength {declaration['MaxLength']}")
    return value
