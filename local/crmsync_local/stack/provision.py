"""Create each resource of a `StackPlan` in moto through the AWS APIs, as CloudFormation would.

Creation goes through boto3 clients (in-process mock or the moto server), never moto's models, so a
resource the stack creates is the same as one any client creates. Each type lists the properties it
models and the ones it accepts without local effect; anything else is an error naming the logical id,
so a template feature the local stack would silently drop never goes unnoticed.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

from botocore.client import BaseClient
from botocore.exceptions import BotoCoreError, ClientError

from crmsync_local.stack.errors import StackError, TemplateError
from crmsync_local.stack.template import StackPlan

ClientFactory = Callable[[str], BaseClient]

_PLACEHOLDER = re.compile(r"\$\{[^}]*\}")


class ResourceInfo(TypedDict):
    """One created resource: `physical_id` is what CloudFormation reports (= its Ref value)."""

    type: str
    physical_id: str
    arn: str | None


@dataclass(frozen=True)
class FunctionSpec:
    """What the in-process Lambda runtime needs to run one function of the template."""

    logical_id: str
    name: str
    arn: str
    code_dir: Path
    handler: str
    runtime: str
    timeout: int
    memory_size: int
    environment: Mapping[str, str]
    layer_dirs: tuple[Path, ...] = ()
    log_group: str | None = None
    """`LoggingConfig.LogGroup`, where the function's logs go instead of /aws/lambda/<name>."""


@dataclass(frozen=True)
class QueueMapping:
    """An SQS event source mapping, delivered by `LocalStack.drain_queue` (see `Provisioner`)."""

    logical_id: str
    uuid: str
    queue_arn: str
    queue_url: str
    function_name: str
    batch_size: int
    enabled: bool
    report_batch_item_failures: bool


@dataclass
class Provisioned:
    """Everything the stack created, by logical id."""

    resources: dict[str, ResourceInfo] = field(default_factory=dict)
    functions: dict[str, FunctionSpec] = field(default_factory=dict)
    definitions: dict[str, str] = field(default_factory=dict)
    queue_mappings: dict[str, QueueMapping] = field(default_factory=dict)
    layer_dirs: dict[str, Path] = field(default_factory=dict)


def placeholder_zip() -> bytes:
    """A minimal deployment package: moto needs one; the real code is dispatched in-process."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("README.txt", "crmsync local stack: the handler runs in-process from CodeUri\n")
    return buffer.getvalue()


_ZIP = placeholder_zip()


class Provisioner:
    """Creates the resources of a plan in dependency order and binds the values moto assigns."""

    def __init__(self, plan: StackPlan, client: ClientFactory) -> None:
        self.plan = plan
        self.client = client
        self.created = Provisioned()
        self._creators: dict[str, Callable[[str, dict[str, Any]], ResourceInfo]] = {
            "AWS::DynamoDB::Table": self._table,
            "AWS::SQS::Queue": self._queue,
            "AWS::SQS::QueuePolicy": self._queue_policy,
            "AWS::S3::Bucket": self._bucket,
            "AWS::S3::BucketPolicy": self._bucket_policy,
            "AWS::IAM::Role": self._role,
            "AWS::Serverless::Function": self._function,
            "AWS::Serverless::LayerVersion": self._layer,
            "AWS::Serverless::StateMachine": self._state_machine,
            "AWS::StepFunctions::StateMachine": self._state_machine,
            "AWS::Scheduler::ScheduleGroup": self._schedule_group,
            "AWS::Scheduler::Schedule": self._schedule,
            "AWS::Events::EventBus": self._event_bus,
            "AWS::Events::Rule": self._rule,
            "AWS::SecretsManager::Secret": self._secret,
            "AWS::Logs::LogGroup": self._log_group,
            "AWS::CloudWatch::Dashboard": self._dashboard,
            "AWS::CloudWatch::Alarm": self._alarm,
            "AWS::Lambda::Permission": self._permission,
            "AWS::Lambda::EventSourceMapping": self._event_source_mapping,
        }

    @property
    def supported_types(self) -> frozenset[str]:
        return frozenset(self._creators)

    def create_all(self) -> Provisioned:
        for logical_id in self.plan.order:
            resource_type = self.plan.type_of(logical_id)
            properties = self.plan.properties(logical_id)
            _check_properties(logical_id, resource_type, properties)
            try:
                self.created.resources[logical_id] = self._creators[resource_type](logical_id, properties)
            except (BotoCoreError, ClientError) as exc:
                raise StackError(f"{logical_id} ({resource_type}): moto refused to create it: {exc}") from exc
        return self.created

    # -------------------------------------------------------------- data

    def _table(self, logical_id: str, p: dict[str, Any]) -> ResourceInfo:
        name = self.plan.physical_name(logical_id)
        dynamodb = self.client("dynamodb")
        billing = p.get("BillingMode", "PROVISIONED")
        request: dict[str, Any] = {
            "TableName": name,
            "AttributeDefinitions": p["AttributeDefinitions"],
            "KeySchema": p["KeySchema"],
            "BillingMode": billing,
        }
        if billing == "PROVISIONED":
            request["ProvisionedThroughput"] = _throughput(p.get("ProvisionedThroughput"), logical_id)
        if "GlobalSecondaryIndexes" in p:
            request["GlobalSecondaryIndexes"] = [
                _index(index, billing, logical_id) for index in p["GlobalSecondaryIndexes"]
            ]
        if "LocalSecondaryIndexes" in p:
            request["LocalSecondaryIndexes"] = p["LocalSecondaryIndexes"]
        stream = p.get("StreamSpecification")
        if stream:
            request["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream["StreamViewType"]}
        sse = p.get("SSESpecification")
        if sse:
            request["SSESpecification"] = {
                "Enabled": _bool(sse.get("SSEEnabled", False)),
                **{key: sse[key] for key in ("SSEType", "KMSMasterKeyId") if key in sse},
            }
        for key in ("TableClass", "DeletionProtectionEnabled"):
            if key in p:
                request[key] = p[key]
        if p.get("Tags"):
            request["Tags"] = p["Tags"]
        description = dynamodb.create_table(**request)["TableDescription"]
        ttl = p.get("TimeToLiveSpecification")
        if ttl and _bool(ttl.get("Enabled", False)):
            dynamodb.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]},
            )
        recovery = p.get("PointInTimeRecoverySpecification")
        if recovery and _bool(recovery.get("PointInTimeRecoveryEnabled", False)):
            dynamodb.update_continuous_backups(
                TableName=name, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
            )
        if description.get("LatestStreamArn"):
            self.plan.bind(logical_id, attributes={"StreamArn": description["LatestStreamArn"]})
        return _info("AWS::DynamoDB::Table", name, description["TableArn"])

    def _queue(self, logical_id: str, p: dict[str, Any]) -> ResourceInfo:
        name = self.plan.physical_name(logical_id)
        attributes: dict[str, str] = {}
        for key in (
            "DelaySeconds",
            "MaximumMessageSize",
            "MessageRetentionPeriod",
            "ReceiveMessageWaitTimeSeconds",
            "VisibilityTimeout",
            "FifoQueue",
            "ContentBasedDeduplication",
            "DeduplicationScope",
            "FifoThroughputLimit",
            "KmsMasterKeyId",
            "KmsDataKeyReusePeriodSeconds",
            "SqsManagedSseEnabled",
        ):
            if key in p:
                attributes[key] = _attribute(p[key])
        for key in ("RedrivePolicy", "RedriveAllowPolicy"):
            if key in p:
                attributes[key] = p[key] if isinstance(p[key], str) else json.dumps(p[key])
        request: dict[str, Any] = {"QueueName": name, "Attributes": attributes}
        if p.get("Tags"):
            request["tags"] = _tag_dict(p["Tags"])
        self.client("sqs").create_queue(**request)
        # The AWS-form URL (a server answers with its own host); SQS resolves either by queue name.
        return _info("AWS::SQS::Queue", str(self.plan.ref(logical_id)), self.plan.get_att(logical_id, "Arn"))

    def _queue_policy(self, logical_id: str, p: dict[str, Any]) -> ResourceInfo:
        for url in p["Queues"]:
            self.client("sqs").set_queue_attributes(
                QueueUrl=url, Attributes={"Policy": json.dumps(p["PolicyDocument"])}
            )
        return _info("AWS::SQS::QueuePolicy", self.plan.physical_name(logical_id), None)

    def _bucket(self, logical_id: str, p: dict[str, Any]) -> ResourceInfo:
        name = self.plan.physical_name(logical_id)
        s3 = self.client("s3")
        request: dict[str, Any] = {"Bucket": name}
        if self.plan.region != "us-east-1":
            request["CreateBucketConfiguration"] = {"LocationConstraint": self.plan.region}
        s3.create_bucket(**request)
        versioning = p.get("VersioningConfiguration")
        if versioning:
            s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": versioning["Status"]})
        encryption = p.get("BucketEncryption")
        if encryption:
            s3.put_bucket_encryption(
                Bucket=name,
                ServerSideEncryptionConfiguration={
                    "Rules": [_encryption_rule(rule) for rule in encryption["ServerSideEncryptionConfiguration"]]
                },
            )
        public_access = p.get("PublicAccessBlockConfiguration")
        if public_access:
            s3.put_public_access_block(
                Bucket=name,
                PublicAccessBlockConfiguration={key: _bool(value) for key, value in public_access.items()},
            )
        cors = p.get("CorsConfiguration")
        if cors:
            s3.put_bucket_cors(
                Bucket=name, CORSConfiguration={"CORSRules": [_cors_rule(r) for r in cors["CorsRules"]]}
            )
        if p.get("Tags"):
            s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": p["Tags"]})
        return _info("AWS::S3::Bucket", name, self.plan.get_att(logical_id, "Arn"))

    def _bucket_policy(self, logical_id: str, p: dict[str, Any]) -> ResourceInfo:
        # moto evaluates bucket policies but ignores their Conditions, so a conditional Deny (HTTPS only,
        # say) would deny every request. Such statements are left out locally; AWS applies them.
        document = dict(p["PolicyDocument"])
        document["Statement"] = [
            s for s in _statements(document) if not (s.get("Effect") == "Deny" and s.get("Condition"))
        ]
        if document["Statement"]:
            self.client("s3").put_bucket_policy(Bucket=p["Bucket"], Policy=json.dumps(document))
        return _info("AWS::S3::BucketPolicy", self.plan.physical_name(logical_id), None)

    # -------------------------------------------------------------- identity

    def _role(self, logical_id: str, p: dict[str, Any]) -> ResourceInfo:
        name = self.plan.physical_name(logical_id)
        iam = self.client("iam")
        request: dict[str, Any] = {
            "RoleName": name,
            "AssumeRolePolicyDocument": json.dumps(_versioned(p["AssumeRolePolicyDocument"])),
        }
        for key in ("Path", "Description", "MaxSessionDuration"):
            if key in p:
                request[key] = p[key]
        if p.get("Tags"):
            request["Tags"] = p["Tags"]
        role = iam.create_role(**request)["Role"]
        for policy in p.get("Policies") or []:
            iam.put_role_policy(
                RoleName=name,
                PolicyName=policy["PolicyName"],
                PolicyDocument=json.dumps(_versioned(policy["PolicyDocument"])),
            )
        for policy_arn in p.get("ManagedPolicyArns") or []:
            # moto loads no AWS managed policies (and enforces no IAM): attach only the stack's own.
            if ":iam::aws:policy/" not in policy_arn:
                iam.attach_role_policy(RoleName=name, PolicyArn=policy_arn)
        self.plan.bind(logical_id, attributes={"RoleId": role["RoleId"]})
        return _info("AWS::IAM::Role", name, role["Arn"])

    def _secret(self, logical_id: str, p: dict[str, Any]) -> ResourceInfo:
        secrets = self.client("secretsmanager")
        request: dict[str, Any] = {"Name": self.plan.physical_name(logical_id)}
        for key in ("Description", "KmsKeyId", "Tags"):
            if key in p:
                request[key] = p[key]
        if "SecretString" in p:
            request["SecretString"] = p["SecretString"]
        elif "GenerateSecretString" in p:
            request["SecretString"] = self._generated_secret(p["GenerateSecretString"])
        arn = secrets.create_secret(**request)["ARN"]
        self.plan.bind(logical_id, ref=arn, attributes={"Id": arn})
        return _info("AWS::SecretsManager::Secret", arn, arn)

    def _generated_secret(self, spec: Mapping[str, Any]) -> str:
        options = {
            "PasswordLength": "PasswordLength",
            "ExcludeCharacters": "ExcludeCharacters",
            "ExcludeLowercase": "ExcludeLowercase",
            "ExcludeUppercase": "ExcludeUppercase",
            "ExcludeNumbers": "ExcludeNumbers",
            "ExcludePunctuation": "ExcludePunctuation",
            "IncludeSpace": "IncludeSpace",
            "RequireEachIncludedType": "RequireEachIncludedType",
        }
        request = {api: spec[key] for key, api in options.items() if key in spec}
        password = self.client("secretsmanager").get_random_password(**request)["RandomPassword"]
        if "SecretStringTemplate" in spec:
            document = json.loads(spec["SecretStringTemplate"])
            document[spec["GenerateStringKey"]] = password
            return json.dumps(document)
        return str(password)

    # -------------------------------------------------------------- compute

    def _layer(self, logical_id: str, p: dict[str, Any]) -> ResourceInfo:
        content = p.get("ContentUri")
        if not isinstance(content, str):
            raise TemplateError(f"{logical_id} (AWS::Serverless::LayerVersion): ContentUri must be a local path")
        request: dict[str, Any] = {
            "LayerName": self.plan.physical_name(logical_id),
            "Content": {"ZipFile": _ZIP},
        }
        for key in ("Description", "CompatibleRuntimes", "CompatibleArchitectures", "LicenseInfo"):
            if key in p:
                request[key] = p[key]
        arn = self.client("lambda").publish_layer_version(**request)["LayerVersionArn"]
        self.plan.bind(logical_id, ref=arn)
        self.created.layer_dirs[arn] = (self.plan.template.root / content).resolve()
        return _info("AWS::Serverless::LayerVersion", arn, arn)

    def _function(self, logical_id: str, p: dict[str, Any]) -> ResourceInfo:
        name = self.plan.physical_name(logical_id)
        code_uri = p.get("CodeUri")
        if not isinstance(code_uri, str):
            raise TemplateError(
                f"{logical_id} (AWS::Serverless::Function): CodeUri must be a local directory, got {code_uri!r}"
            )
        if "Handler" not in p or "Runtime" not in p:
            raise TemplateError(f"{logical_id} (AWS::Serverless::Function): Handler and Runtime are required")
        variables = {
            key: _env_value(value) for key, value in ((p.get("Environment") or {}).get("Variables") or {}).items()
        }
        # Only the stack's own layers exist in moto; an external one (e.g. AWS's public Powertools layer)
        # would make moto refuse the function: its code has to be importable from the virtualenv.
        layers = [str(layer) for layer in p.get("Layers") or [] if str(layer) in self.created.layer_dirs]
        request: dict[str, Any] = {
            "FunctionName": name,
            "Runtime": p["Runtime"],
            "Role": p["Role"],
            "Handler": p["Handler"],
            "Code": {"ZipFile": _ZIP},
            "Timeout": int(p.get("Timeout", 3)),
            "MemorySize": int(p.get("MemorySize", 128)),
            "Environment": {"Variables": variables},
            "Layers": layers,
            "TracingConfig": {"Mode": "Active" if p.get("Tracing") == "Active" else "PassThrough"},
            "Architectures": p.get("Architectures", ["x86_64"]),
        }
        if "Description" in p:
            request["Description"] = p["Description"]
        if "EphemeralStorage" in p:
            request["EphemeralStorage"] = {"Size": int(p["EphemeralStorage"]["Size"])}
        if p.get("Tags"):
            request["Tags"] = {str(k): str(v) for k, v in p["Tags"].items()}
        arn = self.client("lambda").create_function(**request)["FunctionArn"]
        self.created.functions[logical_id] = FunctionSpec(
            logical_id=logical_id,
            name=name,
            arn=arn,
            code_dir=(self.plan.template.root / code_uri).resolve(),
            handler=str(p["Handler"]),
            runtime=str(p["Runtime"]),
            timeout=request["Timeout"],
            memory_size=request["MemorySize"],
            environment=variables,
            layer_dirs=tuple(self.created.layer_dirs[layer] for layer in layers),
            log_group=str((p.get("LoggingConfig") or {}).get("LogGroup") or "") or None,
        )
        return _info("AWS::Serverless::Function", name, arn)

    def _event_source_mapping(self, logical_id: str, p: dict[str, Any]) -> ResourceInfo:
        source_arn = str(p["EventSourceArn"])
        if ":sqs:" not in source_arn:
            raise TemplateError(
                f"{logical_id} (AWS::Lambda::EventSourceMapping): only SQS sources run in the local stack, "
                f"got {source_arn}"
            )
        request: dict[str, Any] = {
            "EventSourceArn": source_arn,
            "FunctionName": p["FunctionName"],
            "BatchSize": int(p.get("BatchSize", 10)),
            "Enabled": _bool(p.get("Enabled", True)),
        }
        for key in ("FilterCriteria", "FunctionResponseTypes", "MaximumBatchingWindowInSeconds", "ScalingConfig"):
            if key in p:
                request[key] = p[key]
        mapping = self.client("lambda").create_event_source_mapping(**request)
        function_name = str(mapping["FunctionArn"]).split(":function:", 1)[1].split(":", 1)[0]
        queue_name = source_arn.rsplit(":", 1)[-1]
        _detach_inline_delivery(self.plan.account_id, self.plan.region, queue_name, mapping["FunctionArn"])
        self.created.queue_mappings[logical_id] = QueueMapping(
            logical_id=logical_id,
            uuid=mapping["UUID"],
            queue_arn=source_arn,
            queue_url=self.client("sqs").get_queue_url(QueueName=queue_name)["QueueUrl"],
            function_name=function_name,
            batch_size=request["BatchSize"],
            enabled=request["Enabled"],
            report_batch_item_failures="ReportBatchItemFailures" in (p.get("FunctionResponseTypes") or []),
        )
        self.plan.bind(logical_id, ref=mapping["UUID"], attributes={"Id": mapping["UUID"]})
        return _info("AWS::Lambda::EventSourceMapping", mapping["UUID"], mapping.get("EventSourceMappingArn"))

    def _permission(self, logical_id: str, p: dict[str, Any]) -> ResourceInfo:
        statement_id = self.plan.physical_name(logical_id)
        request: dict[str, Any] = {
            "FunctionName": p["FunctionName"],
            "StatementId": statement_id,
            "Action": p["Action"],
            "Principal": p["Principal"],
        }
        for key in ("SourceArn", "SourceAccount", "EventSourceToken", "FunctionUrlAuthType"):
            if key in p:
                request[key] = p[key]
        self.client("lambda").add_permission(**request)
        return _info("AWS::Lambda::Permission", statement_id, None)

    # -------------------------------------------------------------- orchestration and schedules

    def _state_machine(self, logical_id: str, p: dict[str, Any]) -> ResourceInfo:
        resource_type = self.plan.type_of(logical_id)
        serverless = resource_type == "AWS::Serverless::StateMachine"
        name = self.plan.physical_name(logical_id)
        definition = self._definition(logical_id, p, serverless)
        request: dict[str, Any] = {
            "name": name,
            "definition": definition,
            "roleArn": p["Role"] if serverless else p["RoleArn"],
            "type": p.get("Type" if serverless else "StateMachineType", "STANDARD"),
        }
        tracing = p.get("Tracing" if serverless else "TracingConfiguration")
        if tracing:
            request["tracingConfiguration"] = {"enabled": _bool(tracing.get("Enabled", False))}
        tags = p.get("Tags")
        if tags:
            pairs = tags.items() if isinstance(tags, dict) else ((t["Key"], t["Value"]) for t in tags)
            request["tags"] = [{"key": str(k), "value": str(v)} for k, v in pairs]
        arn = self.client("stepfunctions").create_state_machine(**request)["stateMachineArn"]
        self.created.definitions[logical_id] = definition
        return _info(resource_type, arn, arn)

    def _definition(self, logical_id: str, p: dict[str, Any], serverless: bool) -> str:
        """The ASL text with DefinitionSubstitutions applied; any placeholder left is an error."""
        where = f"{logical_id} ({self.plan.type_of(logical_id)})"
        if "Definition" in p:
            text = json.dumps(p["Definition"], indent=2)
        elif not serverless and "DefinitionString" in p:
            text = str(p["DefinitionString"])
        elif serverless and isinstance(p.get("DefinitionUri"), str):
            path = self.plan.template.root / p["DefinitionUri"]
            if not path.is_file():
                raise TemplateError(f"{where}: DefinitionUri {p['DefinitionUri']} not found at {path}")
            text = path.read_text(encoding="utf-8")
        else:
            raise TemplateError(
                f"{where}: needs an inline Definition or a local DefinitionUri file "
                "(S3 locations are not supported locally)"
            )
        for key, value in (p.get("DefinitionSubstitutions") or {}).items():
            text = text.replace("${" + key + "}", _env_value(value))
        left = sorted(set(_PLACEHOLDER.findall(text)))
        if left:
            raise TemplateError(
                f"{where}: unresolved placeholder(s) in the definition: {', '.join(left)} "
                "(add them to DefinitionSubstitutions)"
            )
        try:
            json.loads(text)
        except json.JSONDecodeError as exc:
            raise TemplateError(f"{where}: the definition is not valid JSON after substitution: {exc}") from exc
        return text

    def _schedule_group(self, logical_id: str, p: dict[str, Any]) -> ResourceInfo:
        name = self.plan.physical_name(logical_id)
        request: dict[str, Any] = {"Name": name}
        if p.get("Tags"):
            request["Tags"] = p["Tags"]
        arn = self.client("scheduler").create_schedule_group(**request)["ScheduleGroupArn"]
        return _info("AWS::Scheduler::ScheduleGroup", name, arn)

    def _schedule(self, logical_id: str, p: dict[str, Any]) -> ResourceInfo:
        name = self.plan.physical_name(logical_id)
        request: dict[str, Any] = {
            "Name": name,
            "ScheduleExpression": p["ScheduleExpression"],
            "FlexibleTimeWindow": p["FlexibleTimeWindow"],
            "Target": p["Target"],
        }
        for key in (
            "GroupName",
            "Description",
            "State",
            "ScheduleExpressionTimezone",
            "StartDate",
            "EndDate",
            "KmsKeyArn",
        ):
            if key in p:
                request[key] = p[key]
        arn = self.client("scheduler").create_schedule(**request)["ScheduleArn"]
        return _info("AWS::Scheduler::Schedule", name, arn)

    def _event_bus(self, logical_id: str, p: dict[str, Any]) -> ResourceInfo:
        name = self.plan.physical_name(logical_id)
        request: dict[str, Any] = {"Name": name}
        for key in ("Description", "Tags"):
            if key in p:
                request[key] = p[key]
        arn = self.client("events").create_event_bus(**request)["EventBusArn"]
        return _info("AWS::Events::EventBus", name, arn)

    def _rule(self, logical_id: str, p: dict[str, Any]) -> ResourceInfo:
        name = self.plan.physical_name(logical_id)
        events = self.client("events")
        request: dict[str, Any] = {"Name": name, "State": p.get("State", "ENABLED")}
        if "ScheduleExpression" in p:
            request["ScheduleExpression"] = p["ScheduleExpression"]
        if "EventPattern" in p:
            pattern = p["EventPattern"]
            request["EventPattern"] = pattern if isinstance(pattern, str) else json.dumps(pattern)
        for key in ("Description", "EventBusName", "RoleArn"):
            if key in p:
                request[key] = p[key]
        arn = events.put_rule(**request)["RuleArn"]
        targets = [
            {key: json.dumps(v) if key == "Input" and not isinstance(v, str) else v for key, v in target.items()}
            for target in p.get("Targets") or []
        ]
        if targets:
            bus = {"EventBusName": p["EventBusName"]} if "EventBusName" in p else {}
            events.put_targets(Rule=name, Targets=targets, **bus)
        return _info("AWS::Events::Rule", name, arn)

    def _log_group(self, logical_id: str, p: dict[str, Any]) -> ResourceInfo:
        name = self.plan.physical_name(logical_id)
        logs = self.client("logs")
        logs.create_log_group(logGroupName=name, **({"tags": _tag_dict(p["Tags"])} if p.get("Tags") else {}))
        if "RetentionInDays" in p:
            logs.put_retention_policy(logGroupName=name, retentionInDays=int(p["RetentionInDays"]))
        return _info("AWS::Logs::LogGroup", name, self.plan.get_att(logical_id, "Arn"))

    def _alarm(self, logical_id: str, p: dict[str, Any]) -> ResourceInfo:
        """A metric alarm, created in moto as CloudFormation would (moto never evaluates it)."""
        name = self.plan.physical_name(logical_id)
        request: dict[str, Any] = {
            "AlarmName": name,
            "EvaluationPeriods": int(p["EvaluationPeriods"]),
            "ComparisonOperator": p["ComparisonOperator"],
        }
        for key in ("Period", "DatapointsToAlarm"):
            if key in p:
                request[key] = int(p[key])
        if "Threshold" in p:
            request["Threshold"] = float(p["Threshold"])
        if "ActionsEnabled" in p:
            request["ActionsEnabled"] = _bool(p["ActionsEnabled"])
        request.update({key: p[key] for key in _ALARM_AS_GIVEN if key in p})
        self.client("cloudwatch").put_metric_alarm(**request)
        return _info("AWS::CloudWatch::Alarm", name, self.plan.get_att(logical_id, "Arn"))

    def _dashboard(self, logical_id: str, p: dict[str, Any]) -> ResourceInfo:
        """Stored as CloudWatch would (its body must be JSON); nothing draws it locally."""
        name = self.plan.physical_name(logical_id)
        self.client("cloudwatch").put_dashboard(DashboardName=name, DashboardBody=str(p["DashboardBody"]))
        return _info("AWS::CloudWatch::Dashboard", name, None)


# ------------------------------------------------------------------------------------------------ properties

# Alarm properties put_metric_alarm takes as the template gives them.
_ALARM_AS_GIVEN = (
    "AlarmDescription",
    "Namespace",
    "MetricName",
    "Dimensions",
    "Statistic",
    "ExtendedStatistic",
    "Unit",
    "TreatMissingData",
    "AlarmActions",
    "OKActions",
    "InsufficientDataActions",
)

# type -> (modelled properties, accepted properties without local effect)
_PROPERTIES: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "AWS::DynamoDB::Table": (
        frozenset(
            {
                "TableName",
                "AttributeDefinitions",
                "KeySchema",
                "BillingMode",
                "ProvisionedThroughput",
                "GlobalSecondaryIndexes",
                "LocalSecondaryIndexes",
                "StreamSpecification",
                "SSESpecification",
                "TimeToLiveSpecification",
                "PointInTimeRecoverySpecification",
                "TableClass",
                "DeletionProtectionEnabled",
                "Tags",
            }
        ),
        frozenset({"ContributorInsightsSpecification", "ResourcePolicy", "OnDemandThroughput", "WarmThroughput"}),
    ),
    "AWS::SQS::Queue": (
        frozenset(
            {
                "QueueName",
                "DelaySeconds",
                "MaximumMessageSize",
                "MessageRetentionPeriod",
                "ReceiveMessageWaitTimeSeconds",
                "VisibilityTimeout",
                "RedrivePolicy",
                "RedriveAllowPolicy",
                "FifoQueue",
                "ContentBasedDeduplication",
                "DeduplicationScope",
                "FifoThroughputLimit",
                "KmsMasterKeyId",
                "KmsDataKeyReusePeriodSeconds",
                "SqsManagedSseEnabled",
                "Tags",
            }
        ),
        frozenset(),
    ),
    "AWS::SQS::QueuePolicy": (frozenset({"Queues", "PolicyDocument"}), frozenset()),
    "AWS::S3::Bucket": (
        frozenset(
            {
                "BucketName",
                "VersioningConfiguration",
                "BucketEncryption",
                "PublicAccessBlockConfiguration",
                "CorsConfiguration",
                "Tags",
            }
        ),
        # moto neither expires nor replicates objects: these change nothing a local run can observe.
        frozenset(
            {
                "LifecycleConfiguration",
                "LoggingConfiguration",
                "OwnershipControls",
                "AccelerateConfiguration",
                "MetricsConfigurations",
                "AnalyticsConfigurations",
                "IntelligentTieringConfigurations",
                "InventoryConfigurations",
                "ReplicationConfiguration",
                "ObjectLockEnabled",
                "ObjectLockConfiguration",
                "AccessControl",
            }
        ),
    ),
    "AWS::S3::BucketPolicy": (frozenset({"Bucket", "PolicyDocument"}), frozenset()),
    "AWS::IAM::Role": (
        frozenset(
            {
                "RoleName",
                "AssumeRolePolicyDocument",
                "Path",
                "Description",
                "MaxSessionDuration",
                "Policies",
                "ManagedPolicyArns",
                "Tags",
            }
        ),
        frozenset({"PermissionsBoundary"}),
    ),
    "AWS::Serverless::Function": (
        frozenset(
            {
                "FunctionName",
                "Description",
                "CodeUri",
                "Handler",
                "Runtime",
                "Timeout",
                "MemorySize",
                "Environment",
                "Layers",
                "Tracing",
                "Architectures",
                "Role",
                "Policies",
                "Events",
                "Tags",
                "EphemeralStorage",
                "PackageType",
            }
        ),
        # Concurrency, networking, signing and delivery settings have no meaning for in-process calls.
        frozenset(
            {
                "ReservedConcurrentExecutions",
                "ProvisionedConcurrencyConfig",
                "VpcConfig",
                "KmsKeyArn",
                "DeadLetterQueue",
                "EventInvokeConfig",
                "FileSystemConfigs",
                "CodeSigningConfigArn",
                "RuntimeManagementConfig",
                "SnapStartConfig",
                "LoggingConfig",
                "RecursiveLoop",
                "PermissionsBoundary",
                "RolePath",
            }
        ),
    ),
    "AWS::Serverless::LayerVersion": (
        frozenset(
            {
                "LayerName",
                "ContentUri",
                "Description",
                "CompatibleRuntimes",
                "CompatibleArchitectures",
                "LicenseInfo",
            }
        ),
        frozenset({"RetentionPolicy"}),
    ),
    "AWS::Serverless::StateMachine": (
        frozenset(
            {
                "Name",
                "Definition",
                "DefinitionUri",
                "DefinitionSubstitutions",
                "Role",
                "Policies",
                "Type",
                "Tracing",
                "Events",
                "Tags",
            }
        ),
        frozenset({"Logging", "PermissionsBoundary", "RolePath"}),
    ),
    "AWS::StepFunctions::StateMachine": (
        frozenset(
            {
                "StateMachineName",
                "Definition",
                "DefinitionString",
                "DefinitionSubstitutions",
                "RoleArn",
                "StateMachineType",
                "TracingConfiguration",
                "Tags",
            }
        ),
        frozenset({"LoggingConfiguration"}),
    ),
    "AWS::Scheduler::ScheduleGroup": (frozenset({"Name", "Tags"}), frozenset()),
    "AWS::Scheduler::Schedule": (
        frozenset(
            {
                "Name",
                "GroupName",
                "ScheduleExpression",
                "ScheduleExpressionTimezone",
                "FlexibleTimeWindow",
                "Target",
                "State",
                "Description",
                "StartDate",
                "EndDate",
                "KmsKeyArn",
            }
        ),
        frozenset(),
    ),
    "AWS::Events::EventBus": (
        frozenset({"Name", "Description", "Tags"}),
        frozenset({"EventSourceName", "KmsKeyIdentifier", "DeadLetterConfig", "LogConfig", "Policy"}),
    ),
    "AWS::Events::Rule": (
        frozenset(
            {
                "Name",
                "Description",
                "ScheduleExpression",
                "EventPattern",
                "State",
                "EventBusName",
                "Targets",
                "RoleArn",
            }
        ),
        frozenset(),
    ),
    "AWS::SecretsManager::Secret": (
        frozenset({"Name", "Description", "SecretString", "GenerateSecretString", "KmsKeyId", "Tags"}),
        frozenset({"ReplicaRegions"}),
    ),
    "AWS::CloudWatch::Dashboard": (frozenset({"DashboardName", "DashboardBody"}), frozenset()),
    "AWS::Logs::LogGroup": (
        frozenset({"LogGroupName", "RetentionInDays", "Tags"}),
        frozenset({"KmsKeyId", "DataProtectionPolicy", "LogGroupClass"}),
    ),
    "AWS::CloudWatch::Alarm": (
        frozenset(
            {
                "AlarmName",
                "Period",
                "EvaluationPeriods",
                "DatapointsToAlarm",
                "Threshold",
                "ComparisonOperator",
                "ActionsEnabled",
                *_ALARM_AS_GIVEN,
            }
        ),
        frozenset({"Metrics", "ThresholdMetricId", "EvaluateLowSampleCountPercentile"}),
    ),
    "AWS::Lambda::Permission": (
        frozenset(
            {
                "Action",
                "FunctionName",
                "Principal",
                "SourceArn",
                "SourceAccount",
                "EventSourceToken",
                "FunctionUrlAuthType",
            }
        ),
        frozenset({"PrincipalOrgID"}),
    ),
    "AWS::Lambda::EventSourceMapping": (
        frozenset(
            {
                "EventSourceArn",
                "FunctionName",
                "BatchSize",
                "Enabled",
                "FilterCriteria",
                "FunctionResponseTypes",
                "MaximumBatchingWindowInSeconds",
                "ScalingConfig",
            }
        ),
        frozenset({"KmsKeyArn", "MetricsConfig", "Tags"}),
    ),
}


def _check_properties(logical_id: str, resource_type: str, properties: Mapping[str, Any]) -> None:
    modelled, accepted = _PROPERTIES[resource_type]
    unknown = sorted(set(properties) - modelled - accepted)
    if unknown:
        raise TemplateError(
            f"{logical_id} ({resource_type}): propert(y/ies) {', '.join(unknown)} not supported by the "
            "local stack; model them in crmsync_local/stack/provision.py"
        )


def supported_properties(resource_type: str) -> frozenset[str]:
    """Every property of a type the local stack accepts (modelled or without local effect)."""
    modelled, accepted = _PROPERTIES[resource_type]
    return modelled | accepted


# ------------------------------------------------------------------------------------------------ helpers


def _info(resource_type: str, physical_id: str, arn: str | None) -> ResourceInfo:
    return {"type": resource_type, "physical_id": physical_id, "arn": arn}


def _bool(value: Any) -> bool:
    return value is True or str(value).lower() == "true"


def _attribute(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _env_value(value: Any) -> str:
    """CloudFormation turns environment values into strings (booleans as true/false)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def _versioned(document: Mapping[str, Any]) -> dict[str, Any]:
    """IAM accepts a policy without Version (meaning 2008-10-17); moto refuses it, so name the current one."""
    return {"Version": "2012-10-17", **document}


def _tag_dict(tags: Any) -> dict[str, str]:
    if isinstance(tags, dict):
        return {str(k): str(v) for k, v in tags.items()}
    return {str(tag["Key"]): str(tag["Value"]) for tag in tags}


def _throughput(value: Any, logical_id: str) -> dict[str, int]:
    if not value:
        raise TemplateError(
            f"{logical_id}: ProvisionedThroughput is required unless BillingMode is PAY_PER_REQUEST"
        )
    return {key: int(value[key]) for key in ("ReadCapacityUnits", "WriteCapacityUnits")}


def _index(index: Mapping[str, Any], billing: str, logical_id: str) -> dict[str, Any]:
    result = {key: index[key] for key in ("IndexName", "KeySchema", "Projection")}
    if billing == "PROVISIONED":
        result["ProvisionedThroughput"] = _throughput(index.get("ProvisionedThroughput"), logical_id)
    return result


def _encryption_rule(rule: Mapping[str, Any]) -> dict[str, Any]:
    renamed = {"ServerSideEncryptionByDefault": "ApplyServerSideEncryptionByDefault"}
    return {renamed.get(key, key): value for key, value in rule.items()}


def _cors_rule(rule: Mapping[str, Any]) -> dict[str, Any]:
    renamed = {"ExposedHeaders": "ExposeHeaders", "MaxAge": "MaxAgeSeconds", "Id": "ID"}
    return {renamed.get(key, key): value for key, value in rule.items()}


def _detach_inline_delivery(account_id: str, region: str, queue_name: str, function_arn: str) -> None:
    """Stop moto from invoking the function inside every SendMessage call.

    moto delivers each message on its own, synchronously inside the sender's `SendMessage` (so a handler
    sending to a queue would run the consumer nested in its own call) and ignores `batchItemFailures`.
    The mapping stays visible through the API; `LocalStack.drain_queue` delivers batches as Lambda does.
    """
    from moto.sqs.models import sqs_backends  # moto internals: imported only when a mapping exists

    queue = sqs_backends[account_id][region].queues[queue_name]
    queue.lambda_event_source_mappings.pop(function_arn, None)


def _statements(document: dict[str, Any]) -> list[dict[str, Any]]:
    statements = document.get("Statement", [])
    return [statements] if isinstance(statements, dict) else list(statements)
