"""The state machines and the error classification stay in step (DESIGN §7)."""

import inspect
import json
import re
from pathlib import Path

import pytest
import yaml

from crmsync import errors
from crmsync.registry import OPERATIONS, RUN_FAILED

ROOT = Path(__file__).parents[2]
ASL_FILES = sorted((ROOT / "statemachines").glob("*.asl.json"))
AWS_ERROR_PREFIXES = ("States.", "Lambda.", "Sandbox.")


class _CfnLoader(yaml.SafeLoader):
    pass


_CfnLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


def _states(definition):
    for name, state in definition["States"].items():
        yield name, state
        for branch in state.get("Branches", []):
            yield from _states(branch)
        if "ItemProcessor" in state:
            yield from _states(state["ItemProcessor"])
        if "Iterator" in state:
            yield from _states(state["Iterator"])


def _retry_names(path):
    for _, state in _states(json.loads(path.read_text())):
        for retry in state.get("Retry", []):
            yield from retry["ErrorEquals"]


@pytest.mark.parametrize("path", ASL_FILES, ids=lambda p: p.name)
def test_retried_errors_are_retryable_crmsync_errors(path):
    for name in _retry_names(path):
        if name.startswith(AWS_ERROR_PREFIXES):
            continue
        cls = getattr(errors, name, None)
        assert inspect.isclass(cls), f"{path.name} retries {name}, which crmsync.errors does not define"
        assert issubclass(cls, errors.RetryableError), f"{path.name} retries {name}, a permanent error"


CRM_STEPS = [(op, step) for op in OPERATIONS.values() for step in op.steps if step.talks_to_crm]


def test_every_operation_has_a_step_that_talks_to_the_crm():
    assert {op.name for op, _ in CRM_STEPS} == set(OPERATIONS)


@pytest.mark.parametrize(("operation", "step"), CRM_STEPS, ids=lambda v: getattr(v, "name", None) or v.state)
def test_every_retryable_error_is_retried_by_the_step_that_talks_to_the_crm(operation, step):
    definition = json.loads((ROOT / operation.asl).read_text())
    (state,) = [s for name, s in _states(definition) if name == step.state]
    retried = {n for r in state["Retry"] for n in r["ErrorEquals"]}
    retryable = {
        name
        for name, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, errors.RetryableError) and cls is not errors.RetryableError
    }
    assert retryable <= retried, f"{operation.asl}: {step.state} does not retry {sorted(retryable - retried)}"


@pytest.mark.parametrize("operation", OPERATIONS.values(), ids=lambda op: op.name)
def test_every_step_of_the_registry_is_a_task_of_its_state_machine_invoking_its_function(operation):
    definition = json.loads((ROOT / operation.asl).read_text())
    tasks = {name: state for name, state in _states(definition) if state["Type"] == "Task"}
    for step in (*operation.steps, RUN_FAILED):
        assert step.state in tasks, f"{operation.asl} has no Task {step.state}"
        assert f"${{{step.logical_id}Arn}}" in json.dumps(tasks[step.state]["Parameters"])


def test_every_state_machine_file_is_an_operation_of_the_registry():
    assert {p.relative_to(ROOT).as_posix() for p in ASL_FILES} == {op.asl for op in OPERATIONS.values()}


def test_the_export_map_keeps_no_results_in_its_output():
    """The batch ledger holds the results; Distributed Map output (and moto's ResultWriter) is not used."""
    definition = json.loads((ROOT / "statemachines/export.asl.json").read_text())
    batches = definition["States"]["ExportBatches"]
    assert batches["ResultPath"] is None
    assert batches["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED"
    assert "ResultWriter" not in batches


@pytest.mark.parametrize("path", ASL_FILES, ids=lambda p: p.name)
def test_every_substitution_is_defined_by_the_template(path):
    template = yaml.load((ROOT / "template.yaml").read_text(), Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass
    machines = [
        r
        for r in template["Resources"].values()
        if r["Type"] == "AWS::Serverless::StateMachine"
        and r["Properties"].get("DefinitionUri") == f"statemachines/{path.name}"
    ]
    assert machines, f"{path.name} is not deployed by template.yaml"
    placeholders = set(re.findall(r"\$\{(\w+)\}", path.read_text()))
    assert placeholders == set(machines[0]["Properties"]["DefinitionSubstitutions"])


@pytest.mark.parametrize("path", ASL_FILES, ids=lambda p: p.name)
def test_every_task_catches_into_the_error_path(path):
    for name, state in _states(json.loads(path.read_text())):
        if state["Type"] == "Task":
            caught = {n for c in state.get("Catch", []) for n in c["ErrorEquals"]}
            assert "States.ALL" in caught, f"{path.name}: {name} has no Catch of States.ALL"


@pytest.mark.parametrize("operation", OPERATIONS.values(), ids=lambda op: op.name)
def test_a_batched_operations_map_is_distributed_and_keeps_no_results(operation):
    """Batched runs keep their results in the batch ledger; a Map's output (and ResultWriter) is not used."""
    definition = json.loads((ROOT / operation.asl).read_text())
    maps = [state for _, state in _states(definition) if state["Type"] == "Map"]
    for state in maps:
        assert state["ResultPath"] is None
        assert state["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED"
        assert "ResultWriter" not in state


def test_the_initial_transfers_map_fails_on_a_failed_part_and_records_the_failure():
    """On AWS a Map Run fails once its failed children exceed the tolerated count (ToleratedFailureCount,
    0 here, as when absent) and the Map raises States.ExceedToleratedFailureThreshold: it must be caught
    into the error path, and no *Path variant may raise the threshold at run time."""
    definition = json.loads((ROOT / "statemachines/initial-transfer.asl.json").read_text())
    load = definition["States"]["LoadParts"]
    assert load["ToleratedFailureCount"] == 0
    assert not {"ToleratedFailurePercentage", "ToleratedFailureCountPath", "ToleratedFailurePercentagePath"} & set(
        load
    )
    (catch,) = load["Catch"]
    assert (catch["ErrorEquals"], catch["Next"]) == (["States.ALL"], "RecordFailure")
    child = load["ItemProcessor"]["States"]["LoadPart"]
    assert definition["States"]["RecordFailure"]["Next"] == "RunFailed"
    assert {c["Next"] for c in child["Catch"]} == {"PartFailed"}  # the child fails, so the Map Run counts it
    assert load["ItemProcessor"]["States"]["PartFailed"]["Type"] == "Fail"
