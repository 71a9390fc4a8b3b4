"""Every sample event under events/ (for `sam local invoke -e`) parses into its handler's model."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
EVENTS = sorted((ROOT / "events").glob("*/*.json"))


def handler_model(function: str):
    from crmsync.services import crm_deletes, deletion_imports, exports, imports, runs

    return {
        "deletion_import_start": deletion_imports.StartDeletionImportEvent,
        "deletion_import_page": deletion_imports.DeletionImportState,
        "deletion_import_finish": deletion_imports.DeletionImportState,
        "delete_start": crm_deletes.StartDeleteEvent,
        "delete_batch": crm_deletes.DeleteBatchEvent,
        "delete_finish": crm_deletes.DeleteState,
        "export_start": exports.StartExportEvent,
        "export_batch": exports.ExportBatchEvent,
        "export_finish": exports.ExportState,
        "import_start": imports.StartImportEvent,
        "import_page": imports.ImportState,
        "import_finish": imports.ImportState,
        "run_failed": runs.RunFailedEvent,
        "enumerations_sync": runs.StartRunEvent,
    }[function]


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
