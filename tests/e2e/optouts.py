"""What the two-way (opt-out) end-to-end tests share: a CRM side (Salesforce or Dynamics, changed through the
control API as a person, never as the integration user), the marketing side (profile edits), and runs of
the real `two-way` state machine in the local stack.

Times: the marketing side stamps its changes with the real clock (whole seconds), so every CRM change is
placed relative to the marketing change's own stamp, with the CRM's clock moved to it; before a run the
CRM clock is put after every change (the window ends at CRM time minus the sync's lag, 0 here)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from crmsync.config import OptOutSettings, TwoWaySync, WatermarkSettings
from crmsync_local.marketing import marketing_profiles


@dataclass
class CrmSide:
    """The CRM's opt-out fields under the names the tests use: email, phone."""

    env: Any
    kind: str

    @property
    def fields(self) -> dict[str, str]:
        if self.kind == "salesforce":
            return {"email": "HasOptedOutOfEmail", "phone": "DoNotCall"}
        # donotemail / donotphone are imported one way by dyn-contacts (examples/syncs.yaml)
        return {"email": "donotbulkemail", "phone": "donotfax"}

    @property
    def attributes(self) -> dict[str, str]:
        """The marketing attribute of each channel."""
        if self.kind == "salesforce":
            return {"email": "denyListEmail", "phone": "denyListPhone"}
        return {"email": "denyList", "phone": "denyListFax"}

    @property
    def object(self) -> str:
        return "Contact" if self.kind == "salesforce" else "contact"

    def connection(self) -> str:
        return "sf-prod" if self.kind == "salesforce" else "dyn-prod"

    def set_clock(self, moment: datetime) -> None:
        self.env.crm.control.set_clock(moment, frozen=True)

    def track(self, *channels: str) -> None:
        """Per-field history (Salesforce) or auditing (Dataverse) on for these channels only."""
        names = [self.fields[c] for c in channels]
        control = self.env.crm.control
        if self.kind == "salesforce":
            control.track_history("Contact", names)
        else:
            control.set_auditing(
                environment=True,
                tables={"contact": True},
                columns={"contact": {f: f in names for f in self.fields.values()}},
            )

    def change(self, crm_id: str, at: datetime, *, as_integration: bool = False, **channels: bool) -> None:
        """A person (or, with `as_integration`, the integration user: a workflow) sets opt-outs at `at`."""
        self.set_clock(at)
        values = {self.fields[c]: v for c, v in channels.items()}
        control = self.env.crm.control
        if self.kind == "salesforce":
            user = "integration@crmsync.example" if as_integration else None
            control.seed("Contact", [{"Id": crm_id, **values, "LastModifiedDate": at.isoformat()}], as_user=user)
        else:
            assert not as_integration, "Dataverse control edits act as the administrator"
            control.put_records("contacts", [{"contactid": crm_id, **values}])

    def values(self, crm_id: str) -> dict[str, bool]:
        if self.kind == "salesforce":
            rows = {r["Id"]: r for r in self.env.crm.control.records("Contact")}
        else:
            rows = {r["contactid"]: r for r in self.env.crm.control.records("contacts")}
        return {c: bool(rows[crm_id][f]) for c, f in self.fields.items()}

    def write_calls(self) -> int:
        stats = self.env.crm.control.stats()["calls"]
        if self.kind == "salesforce":
            return sum(n for call, n in stats.items() if call.startswith("PATCH") and "composite" in call)
        # A $batch also carries the change-history reads (GET): only the requests that write count.
        batched = self.env.crm.control.stats()["batched"]
        return sum(n for request, n in batched.items() if not request.startswith("GET "))

    def reset_stats(self) -> None:
        self.env.crm.control.reset_stats()


def two_way_sync(side: CrmSide, sync_id: str, direction: str = "both") -> TwoWaySync:
    return TwoWaySync(
        id=sync_id,
        operation="two_way",
        connection=side.connection(),
        object=side.object,
        opt_outs=OptOutSettings(
            direction=direction,
            fields={side.attributes[c]: f for c, f in side.fields.items()},  # type: ignore[arg-type]
        ),
        watermark=WatermarkSettings(overlap_seconds=3600, lag_seconds=0),  # re-reads are harmless
        batch_size=200,
        max_concurrency=1,
    )


class OptOuts:
    """A linked population and a two-way sync over it, baselined by a first run."""

    def __init__(self, env: Any, kind: str, *, count: int = 3, direction: str = "both", sync_id: str = "optouts"):
        self.env, self.side, self.sync_id = env, CrmSide(env, kind), sync_id
        self.crm_ids = env.seed_contacts(count)
        importer = "sf-contacts" if kind == "salesforce" else "dyn-contacts"
        assert env.run(importer)["status"] == "SUCCEEDED"
        by_crm = {p["externalId"]: p["profileId"] for p in env.profiles()}
        self.profile_ids = [by_crm[c] for c in self.crm_ids]
        self.add(direction, sync_id)
        assert self.run(settle=True)["status"] == "SUCCEEDED"  # the first run: both sides read, nothing differs

    def add(self, direction: str, sync_id: str) -> None:
        config = self.env.config
        syncs = [s for s in config.syncs if not s.id.endswith("optouts")] + [
            two_way_sync(self.side, sync_id, direction)
        ]
        self.env.config = config.model_copy(update={"syncs": syncs})
        self.env.operator.apply(self.env.config)

    def run(self, *, settle: bool = False) -> dict[str, Any]:
        """Put the CRM clock after every change, let the marketing window pass the last edit, run
        (`settle`: no marketing edit to wait for)."""
        if not settle:
            time.sleep(1.05)  # the change index is read up to our clock's last whole second, excluded
        self.side.set_clock(datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=5))
        return dict(self.env.run(self.sync_id))

    def side_now(self) -> datetime:
        """A moment for a CRM change "now": the real clock's second (the marketing side's clock)."""
        return datetime.now(UTC).replace(microsecond=0)

    def mark(self, index: int, **channels: bool) -> datetime:
        """A marketing-side edit of profile `index`; answers its change time (whole seconds)."""
        profile_id = self.profile_ids[index]
        attributes = self.side.attributes
        marketing_profiles(self.env.container).update_local(
            profile_id, {attributes[c]: v for c, v in channels.items()}
        )
        stamp = self.env.container.profiles.get(profile_id)["attrChangedAt"][attributes[next(iter(channels))]]
        return datetime.fromisoformat(stamp)

    def marketing(self, index: int) -> dict[str, bool]:
        attrs = self.env.container.profiles.get(self.profile_ids[index])["attrs"]
        return {c: bool(attrs.get(a)) for c, a in self.side.attributes.items()}

    def consent(self, index: int) -> list[dict[str, Any]]:
        return self.env.container.consent.history(self.profile_ids[index])
