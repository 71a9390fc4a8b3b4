"""The state machines and the error classification stay in step (DESIGN §7)."""

import inspect
import json
import re
from pathlib import Path

import pytest
import yaml

from crmsync import errors

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


@pytest.mark.parametrize(
    ("machine", "step"),
    [("import", "ImportPage"), ("export", "ExportBatch"), ("enumerations", "SyncEnumerations")],
)
def test_every_retryable_error_is_retried_by_the_step_that_talks_to_the_crm(machine, step):
    definition = json.loads((ROOT / f"statemachines/{machine}.asl.json").read_text())
    (state,) = [s for name, s in _states(definition) if name == step]
    retried = {n for r in state["Retry"] for n in r["ErrorEquals"]}
    retryable = {
        name
        for name, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, errors.RetryableError) and cls is not errors.RetryableError
    }
    assert retryable <= retried


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
