"""The run lease outlives the step that holds it (SPEC I12, issue 10): a step running longer than the lease
keeps it, and another run of the sync is refused meanwhile."""

from __future__ import annotations

import time

import pytest

from crmsync.errors import RunAlreadyInProgress
from crmsync.services.operations import Operator
from crmsync.stores.runs import stop_heartbeats


@pytest.fixture
def ledger(local_stack, monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", local_stack.region)
    yield Operator("crmsync").container.runs
    stop_heartbeats()


def test_a_step_running_longer_than_the_lease_keeps_it_and_a_second_run_is_refused(ledger):
    ledger.acquire("sf-contacts", "run-1", lease_seconds=2)
    ledger.renew("sf-contacts", "run-1", lease_seconds=2)  # a page step starts...
    time.sleep(3)  # ...and is still writing when the lease it took would have ended
    with pytest.raises(RunAlreadyInProgress):
        ledger.acquire("sf-contacts", "scheduled-run", lease_seconds=2)
    assert ledger.lease_holder("sf-contacts")["holder"] == "run-1"


def test_once_the_step_is_over_the_lease_is_no_longer_renewed(ledger):
    ledger.acquire("sf-contacts", "run-1", lease_seconds=2)
    stop_heartbeats()
    # The expiry is stored in whole seconds (floor of the clock plus the lease): only after lease + 1 s is
    # it behind the clock whatever fraction of a second the lease was taken at.
    time.sleep(3.1)
    ledger.acquire("sf-contacts", "next-run", lease_seconds=2)
    assert ledger.lease_holder("sf-contacts")["holder"] == "next-run"


def test_releasing_the_lease_stops_its_heartbeat(ledger):
    ledger.acquire("sf-contacts", "run-1", lease_seconds=2)
    assert ledger.release("sf-contacts", "run-1")
    time.sleep(1)
    assert ledger.lease_holder("sf-contacts") is None


def test_a_lease_taken_apart_from_another_sync_is_refused_while_that_sync_runs_naming_it(ledger):
    ledger.acquire("sf-contacts-transfer", "transfer-run", lease_seconds=30)
    with pytest.raises(RunAlreadyInProgress, match=r"its initial transfer 'sf-contacts-transfer'.*transfer-run"):
        ledger.acquire(
            "sf-contacts",
            "scheduled-run",
            lease_seconds=30,
            apart_from={"sf-contacts-transfer": "its initial transfer"},
        )
    assert ledger.lease_holder("sf-contacts") is None  # nothing taken by the refused start
    # The transfer's own import route starts the import under the transfer's run id: it passes.
    ledger.acquire(
        "sf-contacts",
        "transfer-run",
        lease_seconds=30,
        apart_from={"sf-contacts-transfer": "its initial transfer"},
    )
    assert ledger.lease_holder("sf-contacts")["holder"] == "transfer-run"
    ledger.release("sf-contacts", "transfer-run")
    ledger.release("sf-contacts-transfer", "transfer-run")
