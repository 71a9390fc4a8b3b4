"""The fault matrix (issue 10): every operation, on both CRM emulators, under every fault that can hit it.

A cell is (operation, CRM, fault). It prepares a few records, injects the fault through the emulator's
control API, runs the real state machine on the local stack (again when the fault fails the first run,
as an operator or the next schedule would), and reads both stores back: the CRM through the control API,
the marketing side through the profile store. Every cell asserts that nothing was lost and nothing
duplicated:
- import: every live CRM record is on exactly one profile, or is a reject;
- export: every profile is in the CRM exactly once (its correlation field), or is a reject;
- import_deleted: exactly the records deleted in the CRM are flagged;
- delete: exactly the given records are gone from the CRM, and exactly their profiles are flagged.
Each cell also checks that its fault fired, so no cell passes without being exercised.

Cells that cannot exist are left out and named in `NOT_APPLICABLE`: reads have no answer to drop after
a write, change tracking has no window boundary, and so on.

The cells of one (operation, CRM) group share a stack and an applied configuration (`Groups`), emptied
before each cell; the group runs on one xdist worker.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from crmsync.config import CrmDeleteSync, CrmsyncConfig
from crmsync.services.operations import Operator
from crmsync.wiring import reset_caches
from crmsync_local.marketing import marketing_profiles
from tests.fixtures.dynamics_emulator import dynamics_handle, reset_dynamics
from tests.fixtures.local_stack import empty_stack
from tests.fixtures.salesforce_emulator import register_oauth, salesforce_handle, salesforce_oauth_credentials

from .conftest import T0, SyncEnvironment, dynamics_environment, salesforce_environment
from .test_export_salesforce import PROFILE_FIELD as SF_CORRELATION
from .test_export_salesforce import leads_export

pytestmark = pytest.mark.slow

NOW = T0 + timedelta(days=1)
N = 6
DYN_CORRELATION = "new_marketingprofileid"

PATHS = {
    ("salesforce", "import"): r"^GET /services/data/v[\d.]+/query",
    ("salesforce", "export"): r"^POST /services/data/v[\d.]+/composite/sobjects$",
    ("salesforce", "import_deleted"): r"^GET /services/data/v[\d.]+/sobjects/Contact/deleted",
    ("salesforce", "delete"): r"^DELETE /services/data/v[\d.]+/composite/sobjects",
    ("dynamics", "import"): r"^GET /api/data/v9\.2/contacts",
    ("dynamics", "export"): r"^POST /api/data/v9\.2/\$batch",
    ("dynamics", "import_deleted"): r"^GET /api/data/v9\.2/contacts",
    ("dynamics", "delete"): r"^POST /api/data/v9\.2/\$batch",
}


# ------------------------------------------------------------------------------------- the CRM side
class Crm:
    def __init__(self, env: Any, kind: str) -> None:
        self.env, self.kind = env, kind
        self.control = env.crm.control
        self.fired_before_clear = 0

    def fault(self, operation: str, **spec: Any) -> None:
        match = spec.pop("match", PATHS[(self.kind, operation)])
        self.control.add_fault(match, **spec)

    def fired(self) -> int:
        faults = (
            self.control.faults() if self.kind == "salesforce" else self.control._call("GET", "faults")["faults"]
        )
        return self.fired_before_clear + sum(int(f.get("fired", 0)) for f in faults)

    def clear(self) -> None:
        self.fired_before_clear = self.fired()
        self.control.clear_faults()

    def contacts(self) -> dict[str, dict[str, Any]]:
        """Live contacts by id."""
        if self.kind == "salesforce":
            return {r["Id"]: r for r in self.control.records("Contact") if not r.get("IsDeleted")}
        return {r["contactid"]: r for r in self.control.records("contacts")}

    def delete(self, crm_id: str) -> None:
        if self.kind == "salesforce":
            self.control.delete("Contact", crm_id, deleted_date=NOW - timedelta(hours=1))
        else:
            self.control.delete_record("contacts", crm_id)

    def exported(self) -> Counter[str]:
        """How many live CRM records carry each profile id."""
        if self.kind == "salesforce":
            rows = [r for r in self.control.records("Lead") if not r.get("IsDeleted")]
            return Counter(r.get(SF_CORRELATION) for r in rows if r.get(SF_CORRELATION))
        return Counter(r.get(DYN_CORRELATION) for r in self.control.records("contacts") if r.get(DYN_CORRELATION))


# ------------------------------------------------------------------------------------- operations
@dataclass
class Operation:
    """One operation of one CRM: the sync it runs, the records it starts from, and the invariant."""

    env: Any
    crm: Crm
    name: str
    sync_id: str = ""
    start: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def link(self) -> str:
        return "sf-prod:Contact" if self.crm.kind == "salesforce" else "dyn-prod:contact"

    def run(self) -> dict[str, Any]:
        return dict(self.env.run(self.sync_id, **self.start))

    def profiles_by_crm_id(self) -> Counter[str]:
        return Counter(p.get("externalIds", {}).get(self.link) for p in self.env.profiles())

    def rejected_crm_ids(self) -> set[str]:
        return {str(r.get("crmId")) for r in self.env.operator.rejects(self.sync_id)}

    def imported(self, count: int = N, **fields: Any) -> list[str]:
        ids = list(self.env.seed_contacts(count, **fields))
        assert self.env.run(IMPORT[self.crm.kind])["created"] == count
        return ids

    # -- set-up and invariant per operation -----------------------------------------------------
    def prepare(self) -> None:
        getattr(self, f"_prepare_{self.name}")()

    def check(self) -> None:
        getattr(self, f"_check_{self.name}")()

    def _prepare_import(self) -> None:
        self.sync_id = IMPORT[self.crm.kind]
        if self.crm.kind == "salesforce":
            self.crm.control.configure(query_page_size=2)  # three pages
        self.env.seed_contacts(N)

    def _check_import(self) -> None:
        on_profiles = self.profiles_by_crm_id()
        live = set(self.crm.contacts())
        assert all(n == 1 for crm_id, n in on_profiles.items() if crm_id), f"duplicated: {on_profiles}"
        lost = live - set(on_profiles) - self.rejected_crm_ids()
        assert not lost, f"lost: {lost}"

    def _prepare_export(self) -> None:
        if self.crm.kind == "salesforce":
            self.crm.control.define_object(
                "Lead", fields=[{"name": SF_CORRELATION, "type": "string", "length": 64}]
            )
            self.sync_id = "sf-leads-matrix"
            apply_sync(self.env, leads_export(self.sync_id))
        else:
            self.sync_id = "dyn-people-export"
        self.state["profiles"] = self.people(N)

    def people(self, count: int, **attrs: Any) -> list[str]:
        rows = [
            {
                "email": f"p{i}@example.com",
                "firstName": f"Ana{i}",
                "lastName": f"Lima{i}",
                "company": "Acme",
                **attrs,
            }
            for i in range(count)
        ]
        ids = marketing_profiles(self.env.container).create_local_many(rows, key_attribute="email")
        assert None not in ids
        return list(ids)

    def _check_export(self) -> None:
        copies = self.crm.exported()
        assert all(n == 1 for n in copies.values()), f"duplicated: {copies}"
        rejected = {str(r.get("profileId")) for r in self.env.operator.rejects(self.sync_id)}
        lost = set(self.state["profiles"]) - set(copies) - rejected
        assert not lost, f"lost: {lost}"

    def _prepare_import_deleted(self) -> None:
        ids = self.imported()
        self.sync_id = DELETED[self.crm.kind]
        if self.crm.kind == "dynamics":
            assert self.env.run(self.sync_id)["status"] == "SUCCEEDED"  # the first run keeps a delta link
        for crm_id in ids[:2]:
            self.crm.delete(crm_id)
        self.state["deleted"] = set(ids[:2])
        self.state["all"] = ids

    def _check_import_deleted(self) -> None:
        flagged = {p["externalIds"][self.link] for p in self.env.profiles() if p.get("deletedInCrm")}
        assert flagged == self.state["deleted"], f"flagged {flagged}, deleted {self.state['deleted']}"
        assert Counter(self.profiles_by_crm_id()) == Counter(self.state["all"])

    def _prepare_delete(self) -> None:
        ids = self.imported()
        if self.crm.kind == "salesforce":
            self.sync_id = "sf-contacts-delete"
        else:
            self.sync_id = "dyn-contacts-delete"
            apply_sync(
                self.env,
                CrmDeleteSync(id=self.sync_id, operation="delete", connection="dyn-prod", object="contact"),
            )
        self.state["deleted"], self.state["kept"] = set(ids[:3]), set(ids[3:])
        self.start = {"population": {"ids": ids[:3]}}

    def _check_delete(self) -> None:
        assert set(self.crm.contacts()) == self.state["kept"]
        flagged = {p["externalIds"][self.link] for p in self.env.profiles() if p.get("deletedInCrm")}
        assert flagged == self.state["deleted"]


IMPORT = {"salesforce": "sf-contacts", "dynamics": "dyn-contacts"}
DELETED = {"salesforce": "sf-contacts-deleted", "dynamics": "dyn-contacts-deleted"}


def apply_sync(env: Any, sync: Any) -> None:
    config = env.config
    env.config = config.model_copy(update={"syncs": [*config.syncs, sync]})
    env.operator.apply(env.config)


# ------------------------------------------------------------------------------------- faults
def run_through(op: Operation) -> list[dict[str, Any]]:
    """Run; when the fault failed the run, clear the faults and run again (the next schedule would)."""
    first = op.run()
    if first["status"] == "SUCCEEDED":
        return [first]
    op.crm.clear()
    if op.name == "delete":
        op.start = {}  # a failed deletion run is resumed by a run without a population (it says so)
    second = op.run()
    assert second["status"] == "SUCCEEDED", second
    return [first, second]


def burst(status: int) -> Callable[[Operation], list[dict[str, Any]]]:
    def cell(op: Operation) -> list[dict[str, Any]]:
        op.crm.fault(op.name, status=status, headers={"Retry-After": "1"}, times=2)
        return run_through(op)

    return cell


def unauthorized_mid_run(op: Operation) -> list[dict[str, Any]]:
    if op.crm.kind == "salesforce":
        op.crm.fault(op.name, status=401, after=1 if op.name == "import" else 0, times=1)
    else:
        op.crm.fault(op.name, status=401, times=1)
    return run_through(op)


def socket_timeout(op: Operation) -> list[dict[str, Any]]:
    config = op.env.config
    op.env.config = config.model_copy(
        update={"connections": [c.model_copy(update={"timeout_seconds": 1.0}) for c in config.connections]}
    )
    op.env.operator.apply(op.env.config)
    op.crm.fault(op.name, latency_ms=1600, times=1)
    return run_through(op)


def crash_then_rerun(op: Operation) -> list[dict[str, Any]]:
    op.crm.fault(
        op.name, status=500, after=1 if (op.crm.kind, op.name) == ("salesforce", "import") else 0, times=None
    )
    runs = run_through(op)
    assert runs[0]["status"] == "FAILED", runs
    assert len(runs) == 2
    return runs


def dropped_answer(op: Operation) -> list[dict[str, Any]]:
    op.crm.fault(op.name, drop_response=True, times=1)
    return run_through(op)


def gateway_error_after_the_write(op: Operation) -> list[dict[str, Any]]:
    op.crm.fault(op.name, status=503, after_apply=True, times=1)
    return run_through(op)


def overlapping_runs(op: Operation) -> list[dict[str, Any]]:
    """The second run starts once the first is inside a slow CRM call, so under its lease. A fixed head
    start was not enough: on a loaded machine the second execution reached its first step only after the
    first run had ended (both SUCCEEDED)."""
    op.crm.fault(op.name, latency_ms=2000, times=1)
    operator = op.env.operator
    first = operator.start(op.sync_id, **op.start)
    deadline = time.monotonic() + 60
    while not op.crm.fired():
        assert time.monotonic() < deadline, "the first run never reached the CRM"
        time.sleep(0.02)
    second = operator.start(op.sync_id, **op.start)
    summaries = [operator.wait(r, timeout=120, poll=0.02) for r in (first, second)]
    assert sorted(s["status"] for s in summaries) == ["REFUSED", "SUCCEEDED"], summaries
    return summaries


GENERIC: dict[str, Callable[[Operation], list[dict[str, Any]]]] = {
    "429-burst-retry-after": burst(429),
    "503-burst-retry-after": burst(503),
    "401-mid-run": unauthorized_mid_run,
    "socket-timeout": socket_timeout,
    "crash-then-rerun": crash_then_rerun,
    "overlapping-runs": overlapping_runs,
}
WRITES = {"dropped-answer-after-write": dropped_answer, "gateway-503-after-write": gateway_error_after_the_write}

CELLS = [
    (op, crm, fault)
    for op in ("import", "export", "import_deleted", "delete")
    for crm in ("salesforce", "dynamics")
    for fault in [*GENERIC, *(WRITES if op in ("export", "delete") else ())]
]

NOT_APPLICABLE = {
    "dropped-answer-after-write / gateway-503-after-write on import and import_deleted": "they only read the CRM",
}


# ------------------------------------------------------------------------------------- one stack per group
class Groups:
    """One local stack and applied configuration per (operation, CRM) group of cells.

    Building a stack and applying the example configuration was most of a cell's time. Before each
    cell of a group, what a new environment would not hold is gone: the stack's items, objects and
    messages (`empty_stack`; the applied definitions stay unless the last cell changed the
    configuration - a sync added, a timeout shortened - then the example's is applied again), the
    Lambda containers' clients, connectors and tokens (`reset_caches`), the emulator's org (reset, the
    same credentials registered again, its clock set as `sync_env` sets it); the operator is new. Only
    one stack runs per process: a cell of another group stops this one first.
    """

    def __init__(self, request: pytest.FixtureRequest) -> None:
        self.request = request
        self.key: tuple[str, str] | None = None
        self.stack: Any = None
        self.env: SyncEnvironment | None = None
        self.base_config: CrmsyncConfig | None = None
        self.oauth: Any = None
        self.monkeypatch = pytest.MonkeyPatch()

    def environment(self, operation: str, crm: str) -> SyncEnvironment:
        if self.key != (operation, crm):
            self.close()
            self.key = (operation, crm)
            self._build(crm)
        else:
            self._refresh(crm)
        assert self.env is not None
        return self.env

    def _build(self, crm: str) -> None:
        from crmsync_local import stack as stack_package

        log = self.request.getfixturevalue("tmp_path_factory").mktemp("fault-matrix") / "local-stack.log"
        self.stack = stack_package.LocalStack(time_scale=0, log_path=log).start()
        self.monkeypatch.setenv("AWS_DEFAULT_REGION", self.stack.region)
        self.monkeypatch.setenv("CRMSYNC_RETRY_BASE_DELAY_SECONDS", "0")
        if crm == "salesforce":
            emulator = salesforce_handle(self.request.getfixturevalue("salesforce_server"))
            self.oauth = salesforce_oauth_credentials(
                emulator, self.request.getfixturevalue("salesforce_jwt_keypair")
            )
            self.env = salesforce_environment(self.stack, emulator, self.oauth)
        else:
            certificate = self.request.getfixturevalue("dynamics_client_certificate")
            self.env = dynamics_environment(
                self.stack, dynamics_handle(self.request.getfixturevalue("dynamics_server"), certificate)
            )
        self.base_config = self.env.config

    def _refresh(self, crm: str) -> None:
        assert self.env is not None
        assert self.base_config is not None
        reconfigured = self.env.config is not self.base_config
        empty_stack(self.stack, keep_tables=frozenset() if reconfigured else frozenset({"DefinitionsTable"}))
        reset_caches()
        emulator = self.env.crm
        if crm == "salesforce":
            emulator.control.reset()
            register_oauth(emulator.control, self.oauth)
        else:
            reset_dynamics(emulator.control, self.request.getfixturevalue("dynamics_client_certificate"))
        operator = Operator("crmsync")
        if reconfigured:
            operator.apply(self.base_config)
        emulator.control.set_clock(T0 + timedelta(days=1), frozen=True)
        self.env = type(self.env)(stack=self.stack, crm=emulator, operator=operator, config=self.base_config)

    def close(self) -> None:
        if self.stack is not None:
            self.stack.stop()
        if self.env is not None and self.key is not None and self.key[1] == "dynamics":
            self.env.crm.control.close()
        self.monkeypatch.undo()
        self.key = self.stack = self.env = self.base_config = self.oauth = None


@pytest.fixture(scope="module")
def groups(request: pytest.FixtureRequest) -> Iterator[Groups]:
    shared = Groups(request)
    yield shared
    shared.close()


@pytest.fixture
def env(groups: Groups, operation: str, crm: str) -> Operation:
    environment = groups.environment(operation, crm)
    op = Operation(environment, Crm(environment, crm), operation)
    op.prepare()
    return op


def grouped(cells: list[tuple[str, str, str]]) -> list[Any]:
    """The cells as parameters, each in its (operation, CRM) group's xdist group (one worker each)."""
    return [
        pytest.param(*cell, id="-".join(cell), marks=pytest.mark.xdist_group(f"fault-matrix-{cell[0]}-{cell[1]}"))
        for cell in cells
    ]


@pytest.mark.parametrize(("operation", "crm", "fault"), grouped(CELLS))
def test_cell_loses_nothing_and_duplicates_nothing(env: Operation, operation: str, crm: str, fault: str) -> None:
    runs = (GENERIC.get(fault) or WRITES[fault])(env)
    assert env.crm.fired() >= 1, f"the fault of cell {fault} never fired"
    assert runs[-1]["status"] in ("SUCCEEDED", "REFUSED")
    env.check()


# ------------------------------------------------------------------------------------- cells of one kind
def boundary_second_and_late_commit(op: Operation) -> list[dict[str, Any]]:
    """Records on the first window's end second, and one committed late inside that window."""
    first_end = NOW - timedelta(seconds=60)  # the sync's lag
    op.env.seed_contacts(2, start=first_end - timedelta(seconds=1), step=timedelta(seconds=1), prefix="edge")
    first = op.run()
    op.env.seed_contacts(1, start=first_end - timedelta(seconds=30), prefix="late")
    op.crm.control.advance_clock(600)
    second = op.run()
    assert first["created"] + second["created"] == N + 3
    return [first, second]


def late_commit_between_deltas(op: Operation) -> list[dict[str, Any]]:
    """Change tracking has no window edge: what is committed after a read comes with the next delta."""
    first = op.run()
    op.env.seed_contacts(2, prefix="late")
    second = op.run()
    assert (first["created"], second["created"]) == (N, 2)
    return [first, second]


def dst_change_inside_the_window(op: Operation) -> list[dict[str, Any]]:
    """A CRM user in Europe/Paris edits records across the spring-forward hour (2024-03-31 01:00 UTC);
    their timestamps carry the user's offset. Each is imported once, by the run whose window holds it."""
    first = op.run()
    op.crm.control.set_clock(datetime(2024, 3, 31, 12, tzinfo=UTC), frozen=True)
    stamps = [
        "2024-03-31T01:30:00+01:00",
        "2024-03-31T01:59:59+01:00",
        "2024-03-31T03:00:00+02:00",
        "2024-03-31T03:30:00+02:00",
    ]
    op.crm.control.seed(
        "Contact",
        [
            {
                "LastName": f"Dst{i}",
                "Email": f"dst{i}@example.com",
                "SystemModstamp": s,
                "LastModifiedDate": s,
                "CreatedDate": s,
            }
            for i, s in enumerate(stamps)
        ],
    )
    second = op.run()
    op.crm.control.advance_clock(3600)
    third = op.run()
    assert (first["created"], second["created"], third["created"]) == (N, 4, 0)
    return [first, second, third]


def malformed_and_oversize_records(op: Operation) -> list[dict[str, Any]]:
    op.env.seed_contacts(1, prefix="long", LastName="L" * 81)
    op.env.seed_contacts(1, prefix="big", FirstName="x" * 1_000_000)
    summary = op.run()
    assert (summary["created"], summary["rejected"]) == (N, 2)
    assert {r["errorSymbol"] for r in op.env.operator.rejects(op.sync_id)} == {
        "STRING_TOO_LONG",
        "RECORD_TOO_LARGE",
    }
    return [summary]


def malformed_export_record(op: Operation) -> list[dict[str, Any]]:
    """A profile the CRM refuses (an e-mail address Salesforce refuses; a last name over Dataverse's 50)."""
    bad = {"email": "not-an-address"} if op.crm.kind == "salesforce" else {"lastName": "L" * 60}
    (refused,) = marketing_profiles(op.env.container).create_local_many(
        [{"email": "bad@example.com", "firstName": "Bad", "lastName": "Bad", "company": "Acme", **bad}],
        key_attribute="email",
    )
    summary = op.run()
    assert (summary["created"], summary["rejected"]) == (N, 1)
    assert [r["profileId"] for r in op.env.operator.rejects(op.sync_id)] == [refused]
    return [summary]


def expired_delta_token(op: Operation) -> list[dict[str, Any]]:
    first = op.run() if op.name == "import" else {"status": "SUCCEEDED"}
    if op.name == "import":
        op.env.seed_contacts(1, prefix="late")
    op.crm.control.expire_delta_tokens()
    second = op.run()
    assert second["status"] == "SUCCEEDED"
    return [first, second]


def period_older_than_the_crm_keeps(op: Operation) -> list[dict[str, Any]]:
    """A period starting before the CRM's deleted-records retention is refused before anything changes;
    the id-set comparison then finds every deletion, however old."""
    op.crm.control.configure(deleted_retention_days=2)
    refused = op.env.run(op.sync_id, period={"start": (NOW - timedelta(days=20)).isoformat()})
    assert refused["status"] == "FAILED"
    assert refused["error"]["type"] == "DeletionPeriodRefused"
    assert not [p for p in op.env.profiles() if p.get("deletedInCrm")]
    compared = op.env.run("sf-contacts-compare")
    assert compared["deleted"] == 2
    return [refused, compared]


SPECIFIC: dict[tuple[str, str, str], Callable[[Operation], list[dict[str, Any]]]] = {
    ("import", "salesforce", "boundary-second-and-late-commit"): boundary_second_and_late_commit,
    ("import", "dynamics", "late-commit-between-deltas"): late_commit_between_deltas,
    ("import", "salesforce", "dst-change-in-a-non-utc-window"): dst_change_inside_the_window,
    ("import", "salesforce", "malformed-and-oversize-records"): malformed_and_oversize_records,
    ("export", "salesforce", "malformed-record"): malformed_export_record,
    ("export", "dynamics", "malformed-record"): malformed_export_record,
    ("import", "dynamics", "expired-delta-token"): expired_delta_token,
    ("import_deleted", "dynamics", "expired-delta-token"): expired_delta_token,
    ("import_deleted", "salesforce", "period-older-than-the-crm-keeps"): period_older_than_the_crm_keeps,
}

NOT_APPLICABLE.update(
    {
        "boundary second on Dynamics imports": "change tracking reads deltas, not windows (late commits: own cell)",
        "DST on Dynamics imports": "change tracking has no time window to cut across the change",
        "malformed and oversize records on Dynamics imports": "Dataverse (and its emulator) refuses "
        "over-long and mistyped values when they are written: no such record can be read",
        "expired delta token on Salesforce": "Salesforce has no delta token (its windows: boundary cell)",
        "deletion period older than kept on Dynamics": "Dataverse reports deletions by change tracking: "
        "its expired token is the cell",
    }
)


@pytest.mark.parametrize(("operation", "crm", "case"), grouped(list(SPECIFIC)))
def test_case_loses_nothing_and_duplicates_nothing(env: Operation, operation: str, crm: str, case: str) -> None:
    runs = SPECIFIC[(operation, crm, case)](env)
    assert runs[-1]["status"] == "SUCCEEDED"
    env.check()
