"""Every sample event under events/ (for `sam local invoke -e`) parses into its handler's model."""

import importlib.util
import json
from pathlib import Path

import pytest

from crmsync.registry import QUEUE_OPERATIONS, all_functions, all_steps

ROOT = Path(__file__).parents[2]
EVENTS = sorted((ROOT / "events").glob("*/*.json"))


def handler_model(function: str):
    (step,) = [step for step in all_functions() if step.function == function]
    return step.event_model()


def test_every_function_has_sample_events():
    functions = {p.name for p in (ROOT / "functions").iterdir() if p.is_dir() and not p.name.startswith("_")}
    assert functions == {p.parent.name for p in EVENTS}


@pytest.mark.parametrize("path", EVENTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_sample_event_parses_into_the_handler_model(path):
    handler_model(path.parent.name).model_validate(json.loads(path.read_text()))


@pytest.mark.parametrize("function", sorted({p.parent.name for p in EVENTS}))
def test_handler_module_exposes_handler(function):
    spec = importlib.util.spec_from_file_location(f"fn_{function}", ROOT / "functions" / function / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert callable(module.handler)


@pytest.mark.parametrize("step", all_steps(), ids=lambda s: s.function)
def test_handler_parses_the_registry_event_and_runs_its_use_case(step):
    """The two lines of `functions/<step>/app.py` are the registry's row: its event model and its use case."""
    source = (ROOT / "functions" / step.function / "app.py").read_text()
    event_module, _, event = step.event.partition(":")
    case_module, _, use_case = step.use_case.partition(":")
    assert event_module == case_module
    assert f"from {event_module} import {event}, {use_case}" in source
    assert f"step_handler({event}, {use_case}, name={step.function!r})".replace("'", '"') in source
    assert callable(step.run())


@pytest.mark.parametrize("operation", QUEUE_OPERATIONS.values(), ids=lambda op: op.step.function)
def test_queue_handler_runs_the_registry_use_case_over_powertools_batch_processing(operation):
    """A queue's function is two lines too: the registry's use case under `queue_handler`."""
    step = operation.step
    source = (ROOT / "functions" / step.function / "app.py").read_text()
    case_module, _, use_case = step.use_case.partition(":")
    assert f"from {case_module} import {use_case}" in source
    assert f'queue_handler({use_case}, name="{step.function}")' in source
    assert callable(step.run())
