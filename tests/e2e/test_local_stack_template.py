"""The template loader: CloudFormation tags, intrinsics, parameters, conditions, names (no moto needed)."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from crmsync_local.stack import DEFAULT_TEMPLATE, StackPlan, Template, TemplateError
from crmsync_local.stack.provision import Provisioner, supported_properties
from crmsync_local.stack.template import TYPE_SPECS, parse_template_text


def plan_of(body: str, tmp_path: Path, **options: object) -> StackPlan:
    template = Template.from_text(textwrap.dedent(body), tmp_path / "template.yaml")
    return StackPlan(template, **options)  # type: ignore[arg-type]


QUEUE = "Type: AWS::SQS::Queue"


def test_short_form_tags_parse_to_long_form() -> None:
    body = parse_template_text(
        textwrap.dedent(
            """
            Resources:
              Q:
                Type: AWS::SQS::Queue
                Properties:
                  A: !Ref X
                  B: !GetAtt Table.StreamArn
                  C: !Sub "${AWS::Region}-x"
                  D: !Join [",", [a, b]]
                  E: !Select [0, !Split [",", "a,b"]]
                  F: !If [Cond, !Not [!Equals [a, b]], !FindInMap [M, k, v]]
                  G: !GetAZs ""
                  H: !ImportValue other-stack-output
            """
        )
    )
    properties = body["Resources"]["Q"]["Properties"]
    assert properties["A"] == {"Ref": "X"}
    assert properties["B"] == {"Fn::GetAtt": ["Table", "StreamArn"]}
    assert properties["C"] == {"Fn::Sub": "${AWS::Region}-x"}
    assert properties["D"] == {"Fn::Join": [",", ["a", "b"]]}
    assert properties["E"] == {"Fn::Select": [0, {"Fn::Split": [",", "a,b"]}]}
    assert properties["F"] == {
        "Fn::If": ["Cond", {"Fn::Not": [{"Fn::Equals": ["a", "b"]}]}, {"Fn::FindInMap": ["M", "k", "v"]}]
    }
    assert properties["G"] == {"Fn::GetAZs": ""}
    assert properties["H"] == {"Fn::ImportValue": "other-stack-output"}


def test_template_version_date_stays_a_string(tmp_path: Path) -> None:
    plan = plan_of(f"AWSTemplateFormatVersion: 2010-09-09\nResources:\n  Q:\n    {QUEUE}\n", tmp_path)
    assert plan.template.body["AWSTemplateFormatVersion"] == "2010-09-09"


def test_sub_resolves_pseudo_parameters_references_attributes_and_variables(tmp_path: Path) -> None:
    plan = plan_of(
        """
        Parameters:
          Env: { Type: String, Default: dev }
        Resources:
          Table:
            Type: AWS::DynamoDB::Table
            Properties: { TableName: !Sub "${AWS::StackName}-${Env}" }
          Q:
            Type: AWS::SQS::Queue
            Properties:
              QueueName: !Sub
                - "${Table}|${Table.Arn}|${AWS::AccountId}|${AWS::Partition}|${AWS::URLSuffix}|${Extra}|${!Literal}"
                - { Extra: !Ref AWS::Region }
        """,
        tmp_path,
    )
    assert plan.physical_name("Q") == (
        "crmsync-dev|arn:aws:dynamodb:us-east-1:123456789012:table/crmsync-dev|123456789012|aws|"
        "amazonaws.com|us-east-1|${Literal}"
    )


def test_join_select_split_find_in_map_get_azs_and_base64_resolve(tmp_path: Path) -> None:
    plan = plan_of(
        """
        Mappings:
          Sizes: { dev: { memory: 256 } }
        Resources:
          Q:
            Type: AWS::SQS::Queue
            Properties:
              Tags:
                - { Key: joined, Value: !Join ["-", [a, !Select [1, !Split [",", "x,y,z"]], c]] }
                - { Key: mapped, Value: !FindInMap [Sizes, dev, memory] }
                - { Key: zone, Value: !Select [0, !GetAZs ""] }
                - { Key: encoded, Value: !Base64 hello }
        """,
        tmp_path,
    )
    tags = {tag["Key"]: tag["Value"] for tag in plan.properties("Q")["Tags"]}
    assert tags == {"joined": "a-y-c", "mapped": 256, "zone": "us-east-1a", "encoded": "aGVsbG8="}


def test_conditions_select_values_and_skip_resources(tmp_path: Path) -> None:
    plan = plan_of(
        """
        Parameters:
          Env: { Type: String, Default: dev }
        Conditions:
          IsProd: !Equals [!Ref Env, prod]
          IsNotProd: !Not [!Condition IsProd]
          DevAndNotProd: !And [!Condition IsNotProd, !Equals [!Ref Env, dev]]
        Resources:
          ProdOnly:
            Type: AWS::SQS::Queue
            Condition: IsProd
          Q:
            Type: AWS::SQS::Queue
            Properties:
              QueueName: !If [DevAndNotProd, dev-queue, !Ref AWS::NoValue]
              DelaySeconds: !If [IsProd, 5, !Ref AWS::NoValue]
        """,
        tmp_path,
    )
    assert not plan.is_active("ProdOnly")
    assert plan.order == ["Q"]
    assert plan.properties("Q") == {"QueueName": "dev-queue"}


def test_parameters_take_overrides_and_are_validated(tmp_path: Path) -> None:
    body = """
        Parameters:
          Level: { Type: String, Default: INFO, AllowedValues: [INFO, DEBUG] }
          Seconds: { Type: Number, Default: 60, MinValue: 1, MaxValue: 900 }
        Resources:
          Q: { Type: AWS::SQS::Queue, Properties: { VisibilityTimeout: !Ref Seconds } }
        """
    assert plan_of(body, tmp_path, parameters={"Level": "DEBUG"}).parameters == {"Level": "DEBUG", "Seconds": "60"}
    with pytest.raises(TemplateError, match=r"Parameters.Level: 'TRACE' is not one of"):
        plan_of(body, tmp_path, parameters={"Level": "TRACE"})
    with pytest.raises(TemplateError, match=r"Parameters.Seconds: 901 is above MaxValue 900"):
        plan_of(body, tmp_path, parameters={"Seconds": 901})
    with pytest.raises(TemplateError, match=r"unknown parameter\(s\) Nope"):
        plan_of(body, tmp_path, parameters={"Nope": "x"})


def test_unnamed_resources_get_deterministic_generated_names(tmp_path: Path) -> None:
    body = """
        Resources:
          Outbox: { Type: AWS::SQS::Queue }
          Ordered: { Type: AWS::SQS::Queue, Properties: { FifoQueue: true } }
          Files: { Type: AWS::S3::Bucket }
        """
    plan = plan_of(body, tmp_path, stack_name="demo")
    assert re.fullmatch(r"demo-Outbox-[A-Z2-7]{12}", plan.physical_name("Outbox"))
    assert re.fullmatch(r"demo-Ordered-[A-Z2-7]{12}\.fifo", plan.physical_name("Ordered"))
    assert re.fullmatch(r"demo-files-[a-z2-7]{12}", plan.physical_name("Files"))
    assert plan_of(body, tmp_path, stack_name="demo").physical_name("Outbox") == plan.physical_name("Outbox")


def test_refs_and_attributes_follow_cloudformation_per_type(tmp_path: Path) -> None:
    plan = plan_of(
        """
        Resources:
          Table: { Type: AWS::DynamoDB::Table, Properties: { TableName: t } }
          Queue: { Type: AWS::SQS::Queue, Properties: { QueueName: q } }
          Bucket: { Type: AWS::S3::Bucket, Properties: { BucketName: b } }
          Role: { Type: AWS::IAM::Role, Properties: { RoleName: r, Path: /svc/ } }
          Group: { Type: AWS::Scheduler::ScheduleGroup, Properties: { Name: g } }
          Machine: { Type: AWS::StepFunctions::StateMachine, Properties: { StateMachineName: m } }
        """,
        tmp_path,
    )
    assert plan.ref("Table") == "t"
    assert plan.get_att("Table", "Arn") == "arn:aws:dynamodb:us-east-1:123456789012:table/t"
    assert plan.ref("Queue") == "https://sqs.us-east-1.amazonaws.com/123456789012/q"
    assert plan.get_att("Queue", "Arn") == "arn:aws:sqs:us-east-1:123456789012:q"
    assert plan.get_att("Queue", "QueueName") == "q"
    assert plan.ref("Bucket") == "b"
    assert plan.get_att("Bucket", "Arn") == "arn:aws:s3:::b"
    assert plan.ref("Role") == "r"
    assert plan.get_att("Role", "Arn") == "arn:aws:iam::123456789012:role/svc/r"
    assert plan.ref("Group") == "g"
    assert plan.ref("Machine") == "arn:aws:states:us-east-1:123456789012:stateMachine:m"
    assert plan.get_att("Machine", "Name") == "m"


def test_globals_merge_environment_and_add_layers(tmp_path: Path) -> None:
    plan = plan_of(
        """
        Transform: AWS::Serverless-2016-10-31
        Globals:
          Function:
            Runtime: python3.12
            Timeout: 60
            Layers: [arn:aws:lambda:us-east-1:123456789012:layer:a:1]
            Environment: { Variables: { A: global, B: global } }
        Resources:
          Fn:
            Type: AWS::Serverless::Function
            Properties:
              Handler: app.handler
              CodeUri: fn/
              Timeout: 5
              Layers: [arn:aws:lambda:us-east-1:123456789012:layer:b:1]
              Environment: { Variables: { B: local, C: local } }
        """,
        tmp_path,
    )
    properties = plan.raw_properties("Fn")
    assert properties["Runtime"] == "python3.12"
    assert properties["Timeout"] == 5
    assert properties["Environment"] == {"Variables": {"A": "global", "B": "local", "C": "local"}}
    assert [layer.split(":")[-2] for layer in properties["Layers"]] == ["a", "b"]


def test_sam_function_gets_an_implicit_role_and_event_resources(tmp_path: Path) -> None:
    plan = plan_of(
        """
        Transform: AWS::Serverless-2016-10-31
        Resources:
          Inbox: { Type: AWS::SQS::Queue }
          Fn:
            Type: AWS::Serverless::Function
            Properties:
              Handler: app.handler
              Runtime: python3.12
              CodeUri: fn/
              Events:
                Messages: { Type: SQS, Properties: { Queue: !GetAtt Inbox.Arn, BatchSize: 5 } }
                Daily: { Type: ScheduleV2, Properties: { ScheduleExpression: rate(1 day) } }
        """,
        tmp_path,
    )
    assert plan.type_of("FnRole") == "AWS::IAM::Role"
    assert plan.type_of("FnMessages") == "AWS::Lambda::EventSourceMapping"
    assert plan.type_of("FnDaily") == "AWS::Scheduler::Schedule"
    assert plan.type_of("FnDailyRole") == "AWS::IAM::Role"
    assert plan.order.index("FnRole") < plan.order.index("Fn") < plan.order.index("FnMessages")


def test_unsupported_resource_type_names_the_logical_id(tmp_path: Path) -> None:
    body = "Resources:\n  Network:\n    Type: AWS::EC2::VPC\n"
    with pytest.raises(TemplateError, match=r"Resource Network has type AWS::EC2::VPC, which the local stack"):
        plan_of(body, tmp_path)


def test_unsupported_intrinsic_names_the_logical_id(tmp_path: Path) -> None:
    plan = plan_of(
        "Resources:\n  Q:\n    Type: AWS::SQS::Queue\n    Properties:\n      QueueName: !Cidr [10.0.0.0/16, 2, 8]\n",
        tmp_path,
    )
    with pytest.raises(
        TemplateError, match=r"Q\.Properties\.QueueName: intrinsic function Fn::Cidr is not supported"
    ):
        plan.physical_name("Q")


def test_import_value_fails_with_a_clear_message(tmp_path: Path) -> None:
    plan = plan_of(
        f"Resources:\n  Q:\n    {QUEUE}\n    Properties:\n      QueueName: !ImportValue shared\n", tmp_path
    )
    with pytest.raises(TemplateError, match=r"Fn::ImportValue 'shared' cannot be resolved"):
        plan.physical_name("Q")


def test_reference_to_undeclared_resource_names_both(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match=r"Q: references undeclared Missing"):
        plan_of(f"Resources:\n  Q:\n    {QUEUE}\n    Properties:\n      QueueName: !Ref Missing\n", tmp_path)


def test_dependency_cycle_is_reported(tmp_path: Path) -> None:
    body = """
        Resources:
          A: { Type: AWS::SQS::Queue, Properties: { QueueName: !GetAtt B.QueueName } }
          B: { Type: AWS::SQS::Queue, Properties: { QueueName: !GetAtt A.QueueName } }
        """
    with pytest.raises(TemplateError, match=r"dependency cycle: A -> B -> A"):
        plan_of(body, tmp_path)


def test_unsupported_sam_event_type_names_function_and_event(tmp_path: Path) -> None:
    body = """
        Resources:
          Fn:
            Type: AWS::Serverless::Function
            Properties:
              Handler: app.handler
              Runtime: python3.12
              CodeUri: fn/
              Events:
                Web: { Type: Api, Properties: { Path: /, Method: get } }
        """
    with pytest.raises(TemplateError, match=r"Fn\.Events\.Web: event type Api is not supported"):
        plan_of(body, tmp_path)


def test_every_type_the_loader_names_can_be_created() -> None:
    provisioner = Provisioner(StackPlan(Template.load(DEFAULT_TEMPLATE)), client=lambda service: None)  # type: ignore[arg-type,return-value]
    assert provisioner.supported_types == set(TYPE_SPECS)
    assert all(supported_properties(resource_type) for resource_type in TYPE_SPECS)


def test_real_template_plans_without_moto() -> None:
    plan = StackPlan(Template.load(DEFAULT_TEMPLATE))
    assert plan.physical_name("ProfilesTable") == "crmsync-profiles"
    assert plan.get_att("ImportPageFunction", "Arn") == (
        "arn:aws:lambda:us-east-1:123456789012:function:crmsync-import-page"
    )
    assert plan.ref("ImportStateMachine") == "arn:aws:states:us-east-1:123456789012:stateMachine:crmsync-import"


def test_stack_name_changes_every_derived_name() -> None:
    plan = StackPlan(Template.load(DEFAULT_TEMPLATE), stack_name="acme")
    assert plan.physical_name("ProfilesTable") == "acme-profiles"
    assert plan.physical_name("DataBucket") == "acme-data-123456789012-us-east-1"
    assert plan.ref("RejectsQueue") == "https://sqs.us-east-1.amazonaws.com/123456789012/acme-rejects"


def test_unsupported_transform_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match=r"Transform AWS::Include is not supported"):
        plan_of(
            f"Transform: [AWS::Serverless-2016-10-31, AWS::Include]\nResources:\n  Q:\n    {QUEUE}\n", tmp_path
        )
