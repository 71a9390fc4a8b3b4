"""What differs between the CRMs is one row per CRM (`connectors.rules`), carried by its adapter, so the
services read a rule instead of testing a CRM's kind."""

from pathlib import Path

import pytest

from crmsync.connectors.dynamics.connector import DynamicsConnector
from crmsync.connectors.port import DeletedRecordsConnector
from crmsync.connectors.rules import CRM_RULES, DYNAMICS, SALESFORCE, crm_rules
from crmsync.connectors.salesforce.connector import SalesforceConnector
from crmsync.errors import ConfigurationError

SERVICES = Path(__file__).resolve().parents[2] / "layers" / "crmsync" / "crmsync" / "services"
ADAPTERS = [SalesforceConnector, DynamicsConnector]


@pytest.mark.parametrize("adapter", ADAPTERS, ids=lambda a: a.__name__)
def test_every_adapter_carries_its_crms_row(adapter):
    assert CRM_RULES[adapter.kind] is adapter.rules
    assert adapter.bulk_deletes is adapter.rules.bulk_api


@pytest.mark.parametrize("adapter", ADAPTERS, ids=lambda a: a.__name__)
def test_a_crm_lists_deleted_records_exactly_when_its_adapter_reads_them(adapter):
    reads = [name for name in _members(DeletedRecordsConnector) if callable(getattr(adapter, name, None))]
    assert (reads == _members(DeletedRecordsConnector)) is adapter.rules.deleted_records_list


def _members(protocol):
    """The methods a protocol adds to the CRM port."""
    return sorted(n for n in vars(protocol) if not n.startswith("_") and callable(vars(protocol)[n]))


def test_the_default_watermarks_are_the_system_set_last_change():
    assert (SALESFORCE.watermark_field, DYNAMICS.watermark_field) == ("SystemModstamp", "modifiedon")


def test_only_salesforce_has_record_types_and_only_dataverse_global_option_sets():
    assert (SALESFORCE.record_types, SALESFORCE.option_sets) == (True, False)
    assert (DYNAMICS.record_types, DYNAMICS.option_sets) == (False, True)


def test_an_unknown_crm_is_refused_as_a_configuration_error():
    with pytest.raises(ConfigurationError, match="hubspot"):
        crm_rules("hubspot")


@pytest.mark.parametrize("needle", ['"salesforce"', '"dynamics"', "connectors.salesforce", "connectors.dynamics"])
def test_no_service_names_a_crm(needle):
    naming = [p.name for p in sorted(SERVICES.glob("*.py")) if needle in p.read_text(encoding="utf-8")]
    assert naming == []
