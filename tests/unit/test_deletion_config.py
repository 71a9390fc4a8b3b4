"""Deletion syncs (import_deleted, delete) and deletion periods: clear errors before any data moves."""

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from crmsync.config import CrmDeleteSync, DeletionImportSync, parse_config
from crmsync.errors import ConfigurationError
from crmsync.services.crm_deletes import _flagged_value
from crmsync.services.deletion_imports import Period, parse_period


def config(**sync):
    return {
        "version": 1,
        "instance": "acme",
        "connections": [
            {"name": "sf", "kind": "salesforce", "instance_url": "https://acme.my.salesforce.com", "secret": "s"}
        ],
        "syncs": [{"id": "sf-deleted", "connection": "sf", "object": "Contact", **sync}],
    }


def problems_of(raw) -> list[str]:
    with pytest.raises(ConfigurationError) as caught:
        parse_config(raw)
    return caught.value.problems


def test_a_deletion_import_parses_with_its_defaults():
    (sync,) = parse_config(config(operation="import_deleted")).syncs
    assert isinstance(sync, DeletionImportSync)
    assert (sync.mode, sync.apply, sync.lookback_days, sync.target.kind) == ("auto", "flag", 15, "profiles")
    assert sync.watermark_option("acme") == "LASTDELETED_acme_sf-deleted"


def test_an_unknown_deletion_mode_names_the_modes():
    (problem,) = problems_of(config(operation="import_deleted", mode="recycle"))
    assert problem.startswith("syncs[0] (sf-deleted).mode:")
    assert "'period'" in problem
    assert "'compare'" in problem


def test_a_lookback_beyond_what_a_crm_keeps_is_refused():
    (problem,) = problems_of(config(operation="import_deleted", lookback_days=45))
    assert problem.startswith("syncs[0] (sf-deleted).lookback_days:")


def test_a_delete_sync_parses_with_its_own_watermark():
    (sync,) = parse_config(config(operation="delete")).syncs
    assert isinstance(sync, CrmDeleteSync)
    assert (sync.flag, sync.batch_size) == ("deleteInCrm", 1000)
    assert sync.watermark_option("acme") == "LASTDELETE_acme_sf-deleted"


def test_a_delete_flag_that_is_not_an_attribute_name_is_refused():
    (problem,) = problems_of(config(operation="delete", flag="x'; drop"))
    assert problem.startswith("syncs[0] (sf-deleted).flag:")


def test_a_period_ending_before_it_starts_is_refused():
    with pytest.raises(ValidationError, match="ends"):
        Period(start=datetime(2026, 1, 2, tzinfo=UTC), end=datetime(2026, 1, 1, tzinfo=UTC))


def test_a_period_without_a_time_zone_is_utc():
    assert Period(start=datetime(2026, 1, 2)).start.tzinfo is UTC


def test_a_period_is_read_from_the_watermark_text_or_iso_8601():
    assert parse_period("2026/11/01 00:00:00", "2026-11-10T12:30:00+01:00") == {
        "start": "2026-11-01T00:00:00+00:00",
        "end": "2026-11-10T11:30:00+00:00",
    }


@pytest.mark.parametrize("value", [True, "true", "Yes", "1", 1])
def test_a_deletion_flag_is_set_by_the_usual_truthy_values(value):
    assert _flagged_value(value)


@pytest.mark.parametrize("value", [False, None, "", "no", "0", 0, "deleted"])
def test_anything_else_is_not_a_deletion_flag(value):
    assert not _flagged_value(value)
