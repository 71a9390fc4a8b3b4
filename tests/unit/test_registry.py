"""The operation registry is the one list of operations: the configuration, the template, the functions
and the CLI agree with it, so a new operation is covered by every check once it has its row."""

import typing
from pathlib import Path

import pytest
import yaml

from crmsync.config import SYNC_OPERATIONS, SyncDefinition
from crmsync.registry import OPERATIONS, QUEUE_OPERATIONS, all_functions, operation, summary_fields
from crmsync.services.operations import StackNames

ROOT = Path(__file__).parents[2]


class _CfnLoader(yaml.SafeLoader):
    """SafeLoader that also reads CloudFormation's short tags, as {tag: value}."""


def _tag(loader, suffix, node):
    if isinstance(node, yaml.ScalarNode):
        return {suffix: loader.construct_scalar(node)}
    if isinstance(node, yaml.SequenceNode):
        return {suffix: loader.construct_sequence(node)}
    return {suffix: loader.construct_mapping(node)}


_CfnLoader.add_multi_constructor("!", _tag)
TEMPLATE = yaml.load((ROOT / "template.yaml").read_text(), Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass
RESOURCES = TEMPLATE["Resources"]


def test_the_registry_holds_exactly_the_operations_the_configuration_accepts():
    (union, _) = typing.get_args(SyncDefinition)
    tags = {typing.get_args(model.model_fields["operation"].annotation)[0] for model in typing.get_args(union)}
    assert set(OPERATIONS) | set(QUEUE_OPERATIONS) == tags == set(SYNC_OPERATIONS)
    assert not set(OPERATIONS) & set(QUEUE_OPERATIONS)
    for name, row in {**OPERATIONS, **QUEUE_OPERATIONS}.items():
        assert typing.get_args(row.sync_model.model_fields["operation"].annotation) == (name,)


@pytest.mark.parametrize("row", QUEUE_OPERATIONS.values(), ids=lambda op: op.name)
def test_every_queue_operation_has_its_function_mapped_to_its_queue_with_partial_batch_responses(row):
    function = RESOURCES[row.step.logical_id]
    assert function["Properties"]["CodeUri"] == f"functions/{row.step.function}/"
    (source,) = function["Properties"]["Events"].values()
    assert source["Type"] == "SQS"
    assert source["Properties"]["Queue"] == {"GetAtt": f"{row.queue}.Arn"}
    assert source["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert source["Properties"]["BatchSize"] > 10
    assert source["Properties"]["MaximumBatchingWindowInSeconds"] >= 1


@pytest.mark.parametrize("row", OPERATIONS.values(), ids=lambda op: op.name)
def test_every_operation_has_its_state_machine_in_the_template(row):
    machine = RESOURCES[row.logical_id]
    assert machine["Type"] == "AWS::Serverless::StateMachine"
    assert machine["Properties"]["DefinitionUri"] == row.asl
    assert machine["Properties"]["Name"] == {"Sub": f"${{AWS::StackName}}-{row.machine}"}
    assert TEMPLATE["Outputs"][f"{row.logical_id}Arn"]["Value"] == {"Ref": row.logical_id}
    scheduler = RESOURCES["SchedulerRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"][0]
    assert {"Ref": row.logical_id} in scheduler["Resource"]


@pytest.mark.parametrize("row", OPERATIONS.values(), ids=lambda op: op.name)
def test_every_step_is_a_function_of_the_template_its_state_machine_may_invoke(row):
    substitutions = RESOURCES[row.logical_id]["Properties"]["DefinitionSubstitutions"]
    for step in row.steps:
        function = RESOURCES[step.logical_id]
        assert function["Type"] == "AWS::Serverless::Function"
        assert function["Properties"]["CodeUri"] == f"functions/{step.function}/"
        assert substitutions[f"{step.logical_id}Arn"] == {"GetAtt": f"{step.logical_id}.Arn"}


def test_every_function_of_the_template_is_a_step_of_the_registry():
    functions = {lid for lid, r in RESOURCES.items() if r["Type"] == "AWS::Serverless::Function"}
    assert functions == {step.logical_id for step in all_functions()}
    folders = {p.name for p in (ROOT / "functions").iterdir() if p.is_dir() and not p.name.startswith("_")}
    assert folders == {step.function for step in all_functions()}


@pytest.mark.parametrize("row", OPERATIONS.values(), ids=lambda op: op.name)
def test_the_summary_shows_every_count_of_the_operation(row):
    finishes = [step for step in row.steps if step.function.endswith("_finish")]
    if finishes:
        (finish,) = finishes
        counts = set(finish.event_model().model_fields["totals"].annotation.model_fields)
    else:  # a one-step operation: the counts are the integers of the summary its step returns
        summary = typing.get_type_hints(row.steps[-1].run())["return"]
        counts = {name for name, f in summary.model_fields.items() if f.annotation is int}
    shown_apart = {"deleted_unknown"}  # the CLI shows it on its own line, only when there are some
    assert set(row.summary_fields) == counts - shown_apart


def test_a_summary_of_an_unknown_operation_shows_the_counts_of_every_operation():
    assert set(summary_fields("nope")) == {name for op in OPERATIONS.values() for name in op.summary_fields}
    assert summary_fields("delete") == OPERATIONS["delete"].summary_fields


@pytest.mark.parametrize("row", OPERATIONS.values(), ids=lambda op: op.name)
def test_a_sync_starts_the_state_machine_the_registry_names(row):
    names = StackNames(stack="acme", region="eu-west-1", account="123456789012")
    assert names.state_machine_arn(row.name) == (
        f"arn:aws:states:eu-west-1:123456789012:stateMachine:acme-{row.machine}"
    )


def test_an_unknown_operation_is_named_in_the_error():
    with pytest.raises(KeyError, match="no operation 'merge'"):
        operation("merge")


def test_the_rejects_of_imports_exports_and_deletions_in_the_crm_are_replayed_by_their_ids():
    from crmsync.services.rejects import REPLAYABLE

    assert REPLAYABLE == {"import": "crmId", "export": "profileId", "delete": "crmId"}
