"""What the two-way field-sync end-to-end tests share (SPEC B1-B2): six text fields of a contact under
column names the tests use, a two-way sync over them, a linked population, marketing edits (stamped now, or
"long ago" - before the last run - for values a side merely holds) and CRM edits made by a person at a
chosen moment, and runs of the real `two-way` state machine in the local stack."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from crmsync.config import ExternalIdKey, Reconciliation, TwoWayCreate, TwoWayField, TwoWaySync, WatermarkSettings
from crmsync.stores.dynamo import serialize, serialize_value
from crmsync_local.marketing import marketing_profiles

COLUMNS = ("crm", "crm_blank", "marketing", "marketing_blank", "latest", "latest_blank")
"""One field per priority, without and with update_blank_values."""
REMOTE = {
    "salesforce": dict(
        zip(COLUMNS, ("Title", "Department", "HomePhone", "MobilePhone", "Fax", "Description"), strict=True)
    ),
    "dynamics": dict(
        zip(
            COLUMNS,
            ("jobtitle", "middlename", "mobilephone", "address1_city", "address1_postalcode", "address1_country"),
            strict=True,
        )
    ),
}
LONG_AGO = "2020-01-01T00:00:00+00:00"


def field_of(column: str, kind: str) -> TwoWayField:
    priority, _, blank = column.partition("_")
    return TwoWayField(
        remote=REMOTE[kind][column], local=f"f_{column}", priority=priority, update_blank_values=bool(blank)
    )  # type: ignore[arg-type]


class FieldSync:
    """A linked population of `count` contacts and a two-way sync of the six fields, baselined by a run."""

    def __init__(
        self,
        env: Any,
        kind: str,
        *,
        count: int,
        sync_id: str = "people",
        fields=None,
        initial=None,
        creating: bool = False,
        upsert: str | None = None,
    ):
        """`creating`: the sync creates records both ways, reconciled on the e-mail address; it replaces
        the example's import and export of the object (they map the fields it owns), and links nothing
        beforehand: the first run creates the profiles."""
        self.env, self.kind, self.sync_id = env, kind, sync_id
        self.fields: list[TwoWayField] = fields or [field_of(c, kind) for c in COLUMNS]
        self.remote = {f.local: f.remote for f in self.fields}
        self.crm_ids = env.seed_contacts(count)
        if initial:
            for index, values in initial.items():
                self.crm_edit(index, datetime(2024, 3, 1, 12, tzinfo=UTC), values)
            env.crm.control.set_clock(datetime(2024, 3, 2, 9, tzinfo=UTC), frozen=True)  # the fixture's clock
        object_name = "Contact" if kind == "salesforce" else "contact"
        config = env.config
        syncs = list(config.syncs)
        if creating:
            syncs = [s for s in syncs if not (s.operation in ("import", "export") and s.object == object_name)]
        else:
            importer = "sf-contacts" if kind == "salesforce" else "dyn-contacts"
            assert env.run(importer)["status"] == "SUCCEEDED"
        self.track()
        sync = TwoWaySync(
            id=sync_id,
            operation="two_way",
            connection="sf-prod" if kind == "salesforce" else "dyn-prod",
            object="Contact" if kind == "salesforce" else "contact",
            fields=self.fields,
            watermark=WatermarkSettings(overlap_seconds=3600, lag_seconds=0),
            max_concurrency=1,
            **(
                {
                    "create": TwoWayCreate(
                        in_crm=True,
                        in_marketing=True,
                        external_id=ExternalIdKey(remote=upsert) if upsert else None,
                    ),
                    "reconciliation": Reconciliation(key="email"),
                }
                if creating
                else {}
            ),
        )
        env.config = config.model_copy(update={"syncs": [*syncs, sync]})
        env.operator.apply(env.config)
        assert self.run(settle=True)["status"] == "SUCCEEDED"  # the first run: CRM values come in
        link = f"{sync.connection}:{object_name}"
        by_crm = {(p.get("externalIds") or {}).get(link): p["profileId"] for p in env.profiles()}
        self.profile_ids = [by_crm[c] for c in self.crm_ids]

    def track(self) -> None:
        names = list(self.remote.values())
        control = self.env.crm.control
        if self.kind == "salesforce":
            control.track_history("Contact", names)
        else:
            control.set_auditing(
                environment=True, tables={"contact": True}, columns={"contact": dict.fromkeys(names, True)}
            )

    # -- the CRM side -------------------------------------------------------------------------------
    def crm_edit(self, index: int, at: datetime, values: dict[str, Any]) -> None:
        """A person edits contact `index` at `at`: `values` by local name (None empties a field); an empty
        dict touches another field (the first name), so the record is in the run's window."""
        crm_id = self.crm_ids[index]
        self.env.crm.control.set_clock(at, frozen=True)
        fields = {self.remote[local]: value for local, value in values.items()}
        if self.kind == "salesforce":
            fields = fields or {"FirstName": f"Touched{index}"}
            self.env.crm.control.seed("Contact", [{"Id": crm_id, **fields, "LastModifiedDate": at.isoformat()}])
        else:
            fields = fields or {"firstname": f"Touched{index}"}
            self.env.crm.control.put_records("contacts", [{"contactid": crm_id, **fields}])

    def crm_values(self) -> list[dict[str, Any]]:
        if self.kind == "salesforce":
            rows = {r["Id"]: r for r in self.env.crm.control.records("Contact")}
        else:
            rows = {r["contactid"]: r for r in self.env.crm.control.records("contacts")}
        return [{local: rows[c].get(remote) for local, remote in self.remote.items()} for c in self.crm_ids]

    def crm_writes(self) -> int:
        stats = self.env.crm.control.stats()["calls"]
        if self.kind == "salesforce":
            return sum(n for call, n in stats.items() if call.startswith("PATCH") and "composite" in call)
        # A $batch also carries the change-history reads (GET): only the requests that write count.
        batched = self.env.crm.control.stats()["batched"]
        return sum(n for request, n in batched.items() if not request.startswith("GET "))

    # -- the marketing side -------------------------------------------------------------------------
    def mark(self, index: int, values: dict[str, Any]) -> datetime:
        """A marketing-side edit of profile `index` now; answers its change time (whole seconds)."""
        profile_id = self.profile_ids[index]
        marketing_profiles(self.env.container).update_local(profile_id, values)
        stamp = self.env.container.profiles.get(profile_id)["attrChangedAt"][next(iter(values))]
        return datetime.fromisoformat(stamp)

    def hold(self, index: int, values: dict[str, Any]) -> None:
        """Values the profile has held since long before the last run (no change in the run's window)."""
        profiles = self.env.container.profiles
        names = {f"#a{i}": name for i, name in enumerate(values)}
        sets = [f"attrs.#a{i} = :a{i}, attrChangedAt.#a{i} = :old" for i in range(len(values))]
        profiles.client.update_item(
            TableName=profiles.table,
            Key=serialize({"pk": f"P#{self.profile_ids[index]}"}),
            UpdateExpression="SET " + ", ".join(sets),
            ExpressionAttributeNames=names,
            ExpressionAttributeValues={
                ":old": serialize_value(LONG_AGO),
                **{f":a{i}": serialize_value(v) for i, v in enumerate(values.values())},
            },
        )

    def marketing_values(self) -> list[dict[str, Any]]:
        profiles = self.env.container.profiles.get_many(self.profile_ids)
        by_id = {p["profileId"]: p.get("attrs") or {} for p in profiles}
        return [{local: by_id[p].get(local) for local in self.remote} for p in self.profile_ids]

    def run(self, *, settle: bool = False) -> dict[str, Any]:
        """Put the CRM clock after every change, let the marketing window pass the last edit, run."""
        if not settle:
            time.sleep(1.05)  # the change index is read up to our clock's last whole second, excluded
        self.env.crm.control.set_clock(
            datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=5), frozen=True
        )
        return dict(self.env.run(self.sync_id))
