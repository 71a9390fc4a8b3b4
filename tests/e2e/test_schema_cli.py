"""`crmsync schema ...` and `config validate` type checks, as an operator runs them against the local stack
and the emulators (SPEC S1, S3)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from crmsync.config import load_config
from crmsync_local.cli import app

ROOT = Path(__file__).parents[2]
EXAMPLE = ROOT / "examples" / "syncs.yaml"
AGE_AS_NUMBER = "attributes:\n  - { name: birthDate, type: number }\n"


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


@pytest.fixture
def sf_config(sync_env, salesforce_emulator, monkeypatch, tmp_path) -> Path:
    monkeypatch.setenv("CRMSYNC_SALESFORCE_URL", salesforce_emulator.url)
    monkeypatch.setenv("CRMSYNC_CA_BUNDLE", salesforce_emulator.ca_bundle)
    for sobject in ("Lead", "Contact"):  # the correlation field the example's export writes
        salesforce_emulator.control.define_object(
            sobject,
            fields=[{"name": "Marketing_Profile_Id__c", "type": "string", "length": 64, "externalId": True}],
        )
    path = tmp_path / "syncs.yaml"
    path.write_text(EXAMPLE.read_text(encoding="utf-8"), encoding="utf-8")
    return path


def test_schema_objects_lists_standard_and_custom_objects(sf_config):
    result = invoke("schema", "objects", "sf-prod", "--config", str(sf_config), "--json")
    assert result.exit_code == 0, result.output
    objects = {o["name"]: o for o in json.loads(result.stdout)}
    assert objects["Subscription__c"]["custom"]
    assert not objects["Contact"]["custom"]


def test_schema_describe_shows_picklist_labels(sf_config):
    result = invoke("schema", "describe", "sf-prod", "Subscription__c", "--config", str(sf_config), "--json")
    channel = next(f for f in json.loads(result.stdout)["fields"] if f["name"] == "Channel__c")
    assert {"value": "Post", "label": "Postal mail", "active": True, "default": False} in channel["picklist"]


def test_schema_mapping_prints_a_file_that_validates(sf_config, tmp_path):
    out = tmp_path / "contacts.yaml"
    result = invoke(
        "schema", "mapping", "sf-prod", "Contact", "--config", str(sf_config), "--id", "contacts", "-o", str(out)
    )
    assert result.exit_code == 0, result.output
    assert load_config(out.read_text(encoding="utf-8")).syncs[0].id == "contacts"
    assert invoke("config", "validate", str(out)).exit_code == 0


def test_a_date_onto_a_number_is_refused_offline_from_the_snapshot(sf_config):
    pulled = invoke("schema", "pull", "sf-prod", "--config", str(sf_config))
    assert pulled.exit_code == 0, pulled.output
    assert (sf_config.parent / "schema" / "sf-prod" / "Contact.json").exists()
    sf_config.write_text(sf_config.read_text(encoding="utf-8") + AGE_AS_NUMBER, encoding="utf-8")
    result = invoke("config", "validate", str(sf_config))
    assert result.exit_code == 2
    assert "Birthdate (date) -> birthDate (number)" in result.output


def test_a_date_onto_a_number_is_refused_online(sf_config):
    sf_config.write_text(sf_config.read_text(encoding="utf-8") + AGE_AS_NUMBER, encoding="utf-8")
    result = invoke("config", "validate", str(sf_config), "--online")
    assert result.exit_code == 2
    assert "Birthdate (date) -> birthDate (number)" in result.output
    assert "rule S3" in result.output


def test_online_validation_names_a_connection_it_could_not_reach(sf_config):
    result = invoke("config", "validate", str(sf_config), "--online")
    assert result.exit_code == 1
    assert "could not check the syncs of dyn-prod" in result.output


def test_the_example_validates_against_its_snapshots(sf_config):
    invoke("schema", "pull", "sf-prod", "--config", str(sf_config))
    result = invoke("config", "validate", str(sf_config))
    assert result.exit_code == 0, result.output
    assert "checked against snapshots" in result.output
