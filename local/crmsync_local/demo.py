"""`crmsync demo`: the main job end to end on the embedded default, in one process.

Emulated AWS (the real template, ASL and handlers), an emulated Salesforce org and an emulated Dynamics
365 org, each seeded with a realistic contact set; the example configuration is applied, Salesforce's
contacts are first imported from a CSV export (a couple of rows damaged, a few cut out: rejects name the
row and column, and the completeness check re-reads what is missing), first imports run, some records change, and an incremental import reads only those changes. Then the marketing side
changes: new people sign up (a few with data Salesforce refuses, some already known there as Leads) and
imported profiles are edited; an export sends exactly those to Salesforce. Then Dynamics: the contacts'
initial transfer by files (a small threshold), a first import, changes and deletions, and incremental imports through the change-tracking delta link. Last, opt-outs
both ways: a Salesforce opt-out reaches the profile, a marketing one reaches Salesforce and Dynamics, a
field changed on both sides goes to the later change, and a profile's consent history is printed.
"""

from __future__ import annotations

import csv
import json
import random
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console

from crmsync.config import CrmsyncConfig, InitialTransferSync, load_config
from crmsync.domain.conversions import parse_crm_datetime
from crmsync.services.operations import Operator
from crmsync_local import demo_data
from crmsync_local.emulators.dynamics import DynamicsControl
from crmsync_local.environment import LocalEnvironment
from crmsync_local.marketing import marketing_profiles

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "syncs.yaml"
EXPORT = "sf-people-export"
SIGNUPS = 40
KNOWN_LEADS = 6
EDITED = 12
NEXT_STEPS = """\
The demo's stack stopped with it. To try the commands on a local stack that
stays up, seeded with the same data and schema:

  crmsync local up --seed &       # until Ctrl-C; writes .crmsync/local.json
  eval "$(crmsync local env)"     # points this shell's crmsync at it
  crmsync config apply examples/syncs.yaml
  crmsync run sf-contacts --wait  # pages and records as the run goes
  crmsync status                  # every sync: last run, watermark, rejects
  crmsync runs sf-contacts        # then crmsync runs show RUN; crmsync logs RUN
  crmsync rejects export sf-contacts -o rejects.csv   # Data Loader-style CSV
"""
DEMO_TRANSFER_THRESHOLD = 100
"""The demo's Dynamics contacts are a few hundred: the initial transfer goes by files from 100 (not 500,000)."""
REFUSED = (
    {"email": "jean.dupont@example", "lastName": "Dupont", "company": "Acme"},
    {"email": "sans.nom@example.net", "company": "Acme"},
    {"email": "long.name@example.net", "lastName": "de la Fuente y Gómez " * 5, "company": "Acme"},
)


def _small_transfers(config: CrmsyncConfig, *, dynamics_contacts: int) -> CrmsyncConfig:
    """The example's initial transfers with the demo's threshold, and parts small enough to make four."""
    syncs = [
        sync.model_copy(
            update={"threshold": DEMO_TRANSFER_THRESHOLD, "part_records": max(10, -(-dynamics_contacts // 4))}
        )
        if isinstance(sync, InitialTransferSync)
        else sync
        for sync in config.syncs
    ]
    return config.model_copy(update={"syncs": syncs})


def _run(console: Console, operator: Operator, sync_id: str, title: str, **start: Any) -> dict[str, Any]:
    from crmsync_local.cli import summary_table

    started = operator.start(sync_id, **start)
    with console.status(f"{title}: running {started.run_id}"):
        summary = operator.wait(started, timeout=900, poll=0.1)
    console.print(summary_table(summary, title=title))
    return summary


def _schema_and_enumerations(console: Console, operator: Operator, environ: dict[str, str]) -> bool:
    """Discovery, one mapping refused at validation (SPEC S1, S3), and both enumeration syncs (S2)."""
    from rich.table import Table

    from crmsync.services.schema import check_config

    text = EXAMPLE.read_text(encoding="utf-8")
    config = load_config(text, source=str(EXAMPLE), environ=environ)
    connectors = {c.name: operator.connector(c.name, config) for c in config.connections}
    contact = connectors["sf-prod"].describe("Contact", values=True)
    picklists = [f.name for f in contact.fields.values() if f.picklist]
    console.print(
        f"schema describe sf-prod Contact: {len(contact.fields)} fields, picklists {', '.join(picklists)}",
        highlight=False,
    )
    # A configuration that declares birthDate a number: the date Birthdate cannot land in it.
    declared = load_config(
        text + "\nattributes:\n  - { name: birthDate, type: number }\n", source="(demo)", environ=environ
    )
    check = check_config(declared, lambda c, o: connectors[c].describe(o))
    console.print("config validate --online, with birthDate declared a number:", highlight=False)
    for problem in check.problems:
        console.print(f"  [red]refused[/red] {problem}", highlight=False)
    sf = _run(console, operator, "sf-enumerations", "enumeration sync sf-enumerations (Salesforce picklists)")
    dyn = _run(
        console, operator, "dyn-enumerations", "enumeration sync dyn-enumerations (option sets, Yes/No labels)"
    )
    table = Table(title="Enumerations table (crmsync enumerations show NAME)")
    for column in ("enumeration", "value", "label", "active"):
        table.add_column(column)
    for name in ("leadSource", "gender", "emailPermission", "channel"):
        for value in operator.container.enumerations.values(name):
            table.add_row(name, value.value, value.label, "yes" if value.active else "no")
    console.print(table)
    refused = any("Birthdate (date) -> birthDate (number)" in p for p in check.problems)
    return refused and sf.get("status") == dyn.get("status") == "SUCCEEDED"


def _dynamics(console: Console, crm: DynamicsControl, url: str, operator: Operator, *, contacts: int) -> bool:
    """Contacts into profiles and a custom entity into its resource table; then changes and deletions."""
    now = datetime.now(UTC).replace(microsecond=0)
    with console.status(f"seeding {contacts:,} Dynamics contacts"):
        ids, subscriptions = demo_data.seed_dynamics(crm, contacts_count=contacts, now=now)
    console.print(
        f"Dynamics emulator at {url}: {len(ids):,} contacts, {len(subscriptions):,} rows of the custom table "
        "new_subscription"
    )
    first = _run(
        console,
        operator,
        "dyn-contacts-transfer",
        f"1st import of dyn-contacts by files: initial transfer (threshold {DEMO_TRANSFER_THRESHOLD} for the demo)",
    )
    console.print(
        f"counted {first.get('counted', 0):,} contacts (RetrieveTotalRecordCount): extracted by change tracking into "
        f"{first.get('parts', 0)} JSON Lines parts in S3, loaded side by side; dyn-contacts' watermark and delta "
        "link set, so its next run reads the changes only",
        highlight=False,
    )
    custom = _run(console, operator, "dyn-subscriptions", "1st import of dyn-subscriptions (custom entity)")

    changed, deleted = ids[10:40], ids[50:55]
    crm.put_records(
        "contacts",
        [
            {"contactid": i, "jobtitle": "Changed in Dynamics", "firstname": f"Renée-{n}"}
            for n, i in enumerate(changed)
        ],
    )
    new_rows = list(demo_data.dynamics_contacts(10, now=now, seed=101))
    for n, row in enumerate(new_rows):
        row["emailaddress1"] = f"new.contact.{n}@{demo_data.DYNAMICS_DOMAIN}"
        del row["createdon"], row["modifiedon"]  # stamped by the CRM, as for any new record
    crm.put_records("contacts", new_rows)
    for contact in deleted:
        crm.delete_record("contacts", contact)
    crm.put_records(
        "new_subscriptions", [{"new_subscriptionid": s, "new_optin": False} for s in subscriptions[:5]]
    )
    crm.delete_record("new_subscriptions", subscriptions[5])
    crm.advance_clock(timedelta(minutes=2).total_seconds())
    console.print(
        f"changed {len(changed)}, created {len(new_rows)} and deleted {len(deleted)} contacts in Dynamics; "
        "changed 5 subscriptions and deleted 1"
    )
    second = _run(
        console, operator, "dyn-contacts", "2nd import of dyn-contacts (the delta link: changes, deletions)"
    )
    custom_second = _run(console, operator, "dyn-subscriptions", "2nd import of dyn-subscriptions (delta link)")
    deletions = _run(
        console,
        operator,
        "dyn-contacts-deleted",
        "import of Dynamics deletions (first run: id-set comparison, then its own delta link)",
    )
    return (
        deletions.get("status") == "SUCCEEDED"
        and deletions.get("deleted", 0) + deletions.get("already", 0) == len(deleted)
        and first.get("mode") == "files"
        and {first.get("status"), custom.get("status"), second.get("status"), custom_second.get("status")}
        == {"SUCCEEDED"}
        and second.get("read") == len(changed) + len(new_rows)
        and second.get("deleted") == len(deleted)
        and (custom_second.get("read"), custom_second.get("deleted")) == (5, 1)
    )


CSV_COLUMNS = (
    "Id",
    "SystemModstamp",
    "FirstName",
    "LastName",
    "Email",
    "Phone",
    "MailingCountry",
    "Birthdate",
    "LeadSource",
    "CreatedDate",
    "HasOptedOutOfEmail",
    "DoNotCall",
)
CSV_CUT = 3


def _csv_import(console: Console, operator: Operator, crm: Any) -> bool:
    """A first import from a CSV file (SPEC T2): Salesforce's contacts as a report exports them (the sync's
    filter applied), with two rows damaged on the way - a cell that is not a boolean, a row with a cell too
    many - and three rows cut out. The damaged rows become rejects naming their row and column; the
    completeness check that ends the transfer finds the three cut ids and re-reads them from Salesforce."""
    from crmsync_local.cli import summary_table

    selected = [
        r
        for r in crm.records("Contact")
        if not r.get("IsDeleted") and not (r.get("HasOptedOutOfEmail") and r.get("DoNotCall"))
    ]
    rows: list[list[str]] = [
        [
            "" if r.get(c) is None else str(r[c]).lower() if isinstance(r[c], bool) else str(r[c])
            for c in CSV_COLUMNS
        ]
        for r in selected
    ]
    del rows[5 : 5 + CSV_CUT]
    rows[20][CSV_COLUMNS.index("HasOptedOutOfEmail")] = "yes"
    rows[40].append("surplus")
    path = Path(".crmsync") / "sf-contacts-export.csv"
    path.parent.mkdir(exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(CSV_COLUMNS)
        writer.writerows(rows)
    console.print(
        f"{path}: {len(rows):,} contacts exported from Salesforce; on the way 2 rows were damaged and "
        f"{CSV_CUT} cut out",
        highlight=False,
    )
    summary = operator.transfer("sf-contacts", str(path))
    console.print(summary_table(summary.model_dump(mode="json"), title=f"crmsync transfer sf-contacts {path}"))
    malformed = [
        r for r in operator.rejects("sf-contacts", run_id=summary.run_id) if r["errorSymbol"] == "MALFORMED_ROW"
    ]
    for reject in malformed:
        console.print(f"  MALFORMED_ROW  {reject['errorMessage']}", highlight=False, markup=False)
    figures = summary.completeness
    return (
        summary.status == "SUCCEEDED"
        and len(malformed) == 2
        and figures is not None
        and figures.missing == figures.re_read == CSV_CUT
        and figures.crm_ids == figures.loaded + figures.rejected + figures.filtered + figures.missing
    )


def _export(console: Console, operator: Operator, crm: Any, contact_ids: list[str]) -> dict[str, Any]:
    """New sign-ups and edited profiles on the marketing side, exported to Salesforce (SPEC E1-E6, R1)."""
    from crmsync_local.cli import rejects_by_symbol

    demo_data.define_export_fields(crm)
    people = demo_data.marketing_people(SIGNUPS - len(REFUSED))
    crm.seed(
        "Lead",
        [
            {"LastName": p["lastName"], "Company": "Known already", "Email": p["email"].upper()}
            for p in people[:KNOWN_LEADS]
        ],
    )
    profiles = marketing_profiles(operator.container)
    profiles.create_local_many([*people, *REFUSED], key_attribute="email")
    imported = [
        profiles.find_by_crm_id("sf-prod", "Contact", crm_id) for crm_id in contact_ids[100 : 100 + EDITED]
    ]
    for n, profile in enumerate(p for p in imported if p is not None):
        profiles.update_local(profile["profileId"], {"phone": f"+33 1 00 00 00 {n:02d}"})
    console.print(
        f"marketing side: {SIGNUPS} sign-ups ({KNOWN_LEADS} already Leads in Salesforce, {len(REFUSED)} with data "
        f"Salesforce refuses) and {EDITED} edited profiles that came from Salesforce Contacts"
    )
    summary = _run(console, operator, EXPORT, f"export of {EXPORT} (new and changed profiles to Salesforce)")
    export_rejects = [r for r in operator.rejects(EXPORT) if r.get("operation") == "export"]
    console.print(rejects_by_symbol(export_rejects))
    return summary


def _deletions(console: Console, operator: Operator, crm: Any, contact_ids: list[str]) -> bool:
    """Deletions both ways (SPEC D1-D3): records deleted in Salesforce flag their profiles; profiles
    flagged on the marketing side have their Contacts deleted in Salesforce; an id-set comparison finds
    records deleted longer ago than Salesforce keeps them."""
    deleted_there = contact_ids[200:208]
    for crm_id in deleted_there:
        crm.delete("Contact", crm_id)
    long_ago = parse_crm_datetime(crm.clock()["now"]) - timedelta(days=60)
    purged = contact_ids[220:222]
    for crm_id in purged:
        crm.delete("Contact", crm_id, deleted_date=long_ago)  # older than getDeleted reaches back
    crm.advance_clock(timedelta(minutes=2).total_seconds())
    console.print(
        f"deleted {len(deleted_there)} Contacts in Salesforce, and {len(purged)} more dated 60 days ago (older than "
        "Salesforce keeps deletions)"
    )
    found = _run(console, operator, "sf-contacts-deleted", "import of Salesforce deletions (getDeleted)")
    compared = _run(console, operator, "sf-contacts-compare", "id-set comparison of Salesforce Contacts")

    profiles = marketing_profiles(operator.container)
    marked = [
        p["profileId"]
        for p in (profiles.find_by_crm_id("sf-prod", "Contact", i) for i in contact_ids[300:306])
        if p is not None
    ]
    for profile_id in marked:
        profiles.update_local(profile_id, {"deleteInCrm": True})
    console.print(f"marketing side: {len(marked)} profiles flagged deleteInCrm")
    removed = _run(
        console, operator, "sf-contacts-delete", "deletion in Salesforce of the flagged profiles' Contacts"
    )
    again = _run(
        console,
        operator,
        "sf-contacts-delete",
        "the same Contacts deleted again, by id (harmless: already gone)",
        population={"ids": contact_ids[300:306]},
    )
    return (
        {found.get("status"), compared.get("status"), removed.get("status"), again.get("status")} == {"SUCCEEDED"}
        and found.get("reported") == len(deleted_there)
        and found.get("deleted", 0) + found.get("unknown", 0) == len(deleted_there)
        and compared.get("deleted") == len(purged)
        and removed.get("deleted") == len(marked)
        and again.get("already_gone") == len(contact_ids[300:306])
    )


def _optouts(console: Console, operator: Operator, env: LocalEnvironment, config: Any, ids: list[str]) -> bool:
    """Opt-outs both ways (SPEC O1-O3): Salesforce -> profile, profile -> Salesforce and Dynamics, a
    field changed on both sides decided by the later change, and one profile's consent history."""
    from crmsync_local.cli import consent_table

    sf, dyn = env.salesforce_control, env.dynamics_control
    # The demo's changes are seconds old: its two-way syncs wait for no lag (the example waits 60 s).
    syncs = [
        s.model_copy(update={"watermark": s.watermark.model_copy(update={"lag_seconds": 0})})
        if s.operation == "two_way"
        else s
        for s in config.syncs
    ]
    operator.apply(config.model_copy(update={"syncs": syncs}))
    sf.track_history("Contact", ["HasOptedOutOfEmail", "DoNotCall", "HasOptedOutOfFax", "Title", "Department"])
    dyn.set_auditing(environment=True, tables={"contact": True})
    by_priority, by_time, blank = ids[90], ids[91], ids[92]
    # An hour ago (its history row is older than the changes below): the first run brings it to the profile.
    an_hour_ago = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    sf.seed("Contact", [{"Id": blank, "Title": "Analyst", "LastModifiedDate": an_hour_ago}])
    console.print(
        "field history on for the Contact opt-out checkboxes, Title and Department; auditing on for Dynamics "
        "contacts"
    )
    first = _run(console, operator, "sf-optouts", "1st two-way run of sf-optouts (Salesforce opt-outs come in)")
    dyn_first = _run(console, operator, "dyn-optouts", "1st two-way run of dyn-optouts")

    profiles = marketing_profiles(operator.container)
    profile_of = {i: (profiles.find_by_crm_id("sf-prod", "Contact", i) or {}).get("profileId") for i in ids[60:93]}
    now = datetime.now(UTC).replace(microsecond=0)
    in_crm, in_marketing, both = ids[60:63], ids[70:72], ids[80]
    sf.seed(
        "Contact", [{"Id": i, "HasOptedOutOfEmail": True, "LastModifiedDate": now.isoformat()} for i in in_crm]
    )
    for contact in in_marketing:
        profiles.update_local(str(profile_of[contact]), {"denyListPhone": True})
    both_profile = str(profile_of[both])
    profiles.update_local(both_profile, {"denyListFax": True})
    marked = datetime.fromisoformat(profiles.get(both_profile)["attrChangedAt"]["denyListFax"])
    sf.seed(
        "Contact",
        [{"Id": both, "HasOptedOutOfFax": True, "LastModifiedDate": (marked - timedelta(seconds=30)).isoformat()}],
    )
    sf.seed(
        "Contact",
        [
            {
                "Id": both,
                "HasOptedOutOfFax": False,
                "LastModifiedDate": (marked + timedelta(seconds=30)).isoformat(),
            }
        ],
    )
    # Any field (SPEC B1): Title has priority crm, Department goes to the later change. Both sides change
    # one contact's Title and another's Department (the marketing side later); a person empties a Title.
    profiles.update_local(str(profile_of[by_priority]), {"jobTitle": "Head of Marketing"})
    profiles.update_local(str(profile_of[by_time]), {"department": "Marketing"})
    earlier = (marked - timedelta(seconds=20)).isoformat()
    sf.seed("Contact", [{"Id": by_priority, "Title": "CMO", "LastModifiedDate": earlier}])
    sf.seed("Contact", [{"Id": by_time, "Department": "Sales", "LastModifiedDate": earlier}])
    sf.seed("Contact", [{"Id": blank, "Title": None, "LastModifiedDate": earlier}])
    dyn_contact = dyn.records("contacts")[0]["contactid"]
    dyn_profile = str((profiles.find_by_crm_id("dyn-prod", "contact", dyn_contact) or {}).get("profileId"))
    profiles.update_local(dyn_profile, {"denyList": True})
    sf.set_clock(marked + timedelta(minutes=5), frozen=False)
    console.print(
        f"a person opted {len(in_crm)} contacts out of e-mail in Salesforce; the marketing side opted "
        f"{len(in_marketing)} profiles out of calls and one Dynamics profile out of bulk e-mail; one fax opt-out "
        "was set on the marketing side while in Salesforce a person set it and took it back 30 s later; "
        "both sides changed one contact's Title (Salesforce: CMO, then the marketing side: Head of Marketing) "
        "and another's Department (Sales, then Marketing); a person emptied a third contact's Title"
    )
    time.sleep(1.1)  # the change index is read up to the last whole second
    second = _run(console, operator, "sf-optouts", "2nd two-way run of sf-optouts (both ways, latest wins)")
    dyn_second = _run(console, operator, "dyn-optouts", "2nd two-way run of dyn-optouts (marketing -> Dynamics)")
    console.print(
        consent_table(operator.consent_history(both_profile), f"consent history of profile {both_profile}")
    )
    console.print(
        consent_table(
            operator.consent_history(str(profile_of[in_crm[0]])),
            f"consent history of profile {profile_of[in_crm[0]]}",
        )
    )

    fields = second.get("fields", {})
    console.print(
        "per field: "
        + "; ".join(
            f"{name}: {counts['by_priority']} by priority, {counts['by_time']} by time, "
            f"{counts['blanks_filled']} blank filled"
            for name, counts in fields.items()
            if name in ("jobTitle", "department")
        )
    )
    contacts = {r["Id"]: r for r in sf.records("Contact")}
    dyn_row = next(r for r in dyn.records("contacts") if r["contactid"] == dyn_contact)
    attrs = {i: (profiles.get(str(profile_of[i])) or {}).get("attrs", {}) for i in (by_priority, by_time, blank)}
    for label, contact, field, local in (
        ("Title, priority crm", by_priority, "Title", "jobTitle"),
        ("Department, the later change", by_time, "Department", "department"),
        ("Title emptied in Salesforce, filled from the profile", blank, "Title", "jobTitle"),
    ):
        console.print(
            f"{label}: Salesforce {contacts[contact].get(field)!r}, profile {attrs[contact].get(local)!r}"
        )
    return (
        {first.get("status"), dyn_first.get("status"), second.get("status"), dyn_second.get("status")}
        == {"SUCCEEDED"}
        and all(
            (profiles.get(str(profile_of[i])) or {}).get("attrs", {}).get("denyListEmail") is True for i in in_crm
        )
        and all(contacts[i]["DoNotCall"] is True for i in in_marketing)
        and contacts[both]["HasOptedOutOfFax"] is False
        and (profiles.get(both_profile) or {}).get("attrs", {}).get("denyListFax") is False
        and fields.get("denyListFax", {}).get("by_time") == 1
        and dyn_row["donotbulkemail"] is True
        and contacts[by_priority]["Title"] == attrs[by_priority].get("jobTitle") == "CMO"
        and contacts[by_time]["Department"] == attrs[by_time].get("department") == "Marketing"
        and contacts[blank]["Title"] == attrs[blank].get("jobTitle") == "Analyst"
        and (fields.get("jobTitle", {}).get("by_priority"), fields.get("jobTitle", {}).get("blanks_filled"))
        == (1, 1)
        and fields.get("department", {}).get("by_time") == 1
    )


def _events(console: Console, env: LocalEnvironment, operator: Operator) -> bool:
    """E-mail events on both timelines (SPEC M1-M4): a few hundred sends, opens, clicks and bounces for
    profiles linked to Salesforce Contacts and Dynamics contacts, some sent twice, some for profiles with
    no CRM record yet, and one malformed message from a broken producer."""
    from rich.table import Table

    store = marketing_profiles(operator.container)
    profiles = store.scan_profiles()
    linked = {
        # not a profile whose record the demo deleted in the CRM: its events have no record to go to
        link: [
            p["profileId"] for p in profiles if link in (p.get("externalIds") or {}) and not p.get("deletedInCrm")
        ][:60]
        for link in ("sf-prod:Contact", "dyn-prod:contact")
    }
    strangers = store.create_local_many([{"email": f"new.{n}@example.org"} for n in range(5)])
    rng = random.Random(15)
    now = datetime.now(UTC)
    events: list[dict[str, Any]] = []
    owners = [*linked["sf-prod:Contact"], *linked["dyn-prod:contact"], *[str(p) for p in strangers]]
    for number in range(240):
        kind = ("send", "open", "open", "click", "bounce")[number % 5]
        profile = owners[number % len(owners)]
        event = {
            "event_id": f"demo-{number:04d}",
            "type": kind,
            "profile_id": profile,
            "campaign_id": "CMP-2026-12",
            "campaign_name": "Soldes d'hiver / Winter sale",
            "delivery_id": f"DLV-{number % 4 + 1}",
            "delivery_name": f"Vague {number % 4 + 1}",
            "at": (now - timedelta(hours=rng.randint(1, 72))).isoformat(),
            "mirror_page_url": f"https://marketing.example.com/mirror/DLV-{number % 4 + 1}/{profile}",
        }
        if kind == "click":
            event["url"] = f"https://shop.example.com/winter?p={number}"
        events.append(event)
    duplicates = rng.sample(events, 60)
    lines = [json.dumps(e, ensure_ascii=False) for e in [*events, *duplicates]]
    sent = operator.send_events(lines)
    sqs = operator.aws.client("sqs")
    sqs.send_message(QueueUrl=operator.events_queue_url, MessageBody='{"event_id": "demo-x", "type": "forward"}')
    delivered = env.deliver_events()
    console.print(
        f"{sent.sent} e-mail events queued ({len(duplicates)} of them twice), plus one malformed message, "
        f"delivered in {delivered.batches} batch(es) of the events queue. Each event goes to both CRMs' events "
        f"syncs and is written where its profile has a record; {delivered.failed} messages stay in the queue "
        "because their profile has no record yet on one of the CRMs (retried until unlinked_retry_hours, then "
        "a reject there)"
    )
    table = Table(title="e-mail events on the CRM timelines")
    table.add_column("CRM")
    for kind in ("send", "open", "click", "bounce"):
        table.add_column(kind, justify="right")
    table.add_column("total", justify="right")
    sf_rows = env.salesforce_control.records("Marketing_Event__c")
    dyn_rows = env.dynamics_control.records("cr_marketingevents")
    counts = {
        "Salesforce Marketing_Event__c": Counter(r["Event_Type__c"] for r in sf_rows),
        "Dynamics cr_marketingevent": Counter(r["cr_eventtype"] for r in dyn_rows),
    }
    for name, counted in counts.items():
        table.add_row(name, *(str(counted[k]) for k in ("send", "open", "click", "bounce")), str(counted.total()))
    console.print(table)
    dlq = operator.aws.client("sqs").get_queue_url(QueueName=f"{operator.names.stack}-events-dlq")["QueueUrl"]
    dead = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10, MessageAttributeNames=["All"]).get(
        "Messages", []
    )
    for message in dead:
        console.print(
            f"dead-letter queue: {message['MessageAttributes']['reason']['StringValue']}", highlight=False
        )
    expected = {
        link: len({e["event_id"] for e in events if e["profile_id"] in set(ids)}) for link, ids in linked.items()
    }
    return (
        counts["Salesforce Marketing_Event__c"].total() == expected["sf-prod:Contact"]
        and counts["Dynamics cr_marketingevent"].total() == expected["dyn-prod:contact"]
        and len(dead) == 1
    )


def run_demo(console: Console, *, contacts: int = 2400) -> int:
    from crmsync_local.cli import rejects_by_symbol

    console.rule("crmsync demo - emulated AWS, Salesforce and Dynamics 365, no account needed")
    with LocalEnvironment() as env:
        crm = env.salesforce_control
        now = datetime.now(UTC).replace(microsecond=0)
        crm.set_clock(now, frozen=False)
        with console.status(f"seeding {contacts:,} Salesforce contacts"):
            ids = demo_data.seed_salesforce(crm, contacts_count=contacts, now=now)
        countries = {r["MailingCountry"] for r in demo_data.contacts(contacts, now=now)}
        console.print(
            f"Salesforce emulator at {env.salesforce.url if env.salesforce else ''}: "
            f"{len(ids):,} contacts from {len(countries)} countries, accented and non-Latin names"
        )

        config = _small_transfers(
            load_config(EXAMPLE.read_text(encoding="utf-8"), source=str(EXAMPLE), environ=env.config_environ()),
            dynamics_contacts=max(100, contacts // 4),
        )
        operator = Operator("crmsync")
        operator.apply(config)
        console.print(f"applied {EXAMPLE.name}: syncs {', '.join(s.id for s in config.syncs)}")

        console.rule("A first import from a CSV file")
        csv_ok = _csv_import(console, operator, crm)

        console.rule("Imports through the API")

        first = _run(console, operator, "sf-contacts", "1st import of sf-contacts (first run: every record)")
        resources = _run(console, operator, "sf-subscriptions", "import of sf-subscriptions (custom object)")

        changed = ids[10:50]
        crm.seed(
            "Contact",
            [
                {"Id": i, "Title": "Changed in Salesforce", "FirstName": f"Renée-{n}"}
                for n, i in enumerate(changed)
            ],
        )
        new_rows = list(demo_data.contacts(15, now=now, seed=99, rejects=False))
        for n, row in enumerate(new_rows):
            row["Email"] = f"new.contact.{n}@example.org"
            for key in ("SystemModstamp", "LastModifiedDate", "CreatedDate"):
                row.pop(key)  # set by the CRM's clock, as for any new record
        crm.seed("Contact", new_rows)
        crm.advance_clock(timedelta(minutes=2).total_seconds())
        console.print(f"changed {len(changed)} contacts and created {len(new_rows)} in Salesforce")

        second = _run(
            console, operator, "sf-contacts", "2nd import of sf-contacts (incremental: the changes only)"
        )

        rejects = operator.rejects("sf-contacts")
        console.print(rejects_by_symbol(rejects))
        option, mark = operator.watermark("sf-contacts")
        console.print(f"watermark {option} = {mark.text if mark else None}", highlight=False)

        console.rule("Export to Salesforce")
        export = _export(console, operator, crm, ids)

        console.rule("Deletions, both ways")
        deletions_ok = _deletions(console, operator, crm, ids)

        console.rule("Dynamics 365")
        dynamics_ok = _dynamics(
            console,
            env.dynamics_control,
            env.dynamics_emulator.base_url,
            operator,
            contacts=max(100, contacts // 4),
        )

        console.rule("E-mail events on the CRM timelines")
        events_ok = _events(console, env, operator)

        console.rule("Opt-outs, both ways")
        optouts_ok = _optouts(console, operator, env, config, ids)

        console.rule("Schema and enumerations")
        schema_ok = _schema_and_enumerations(console, operator, env.config_environ())

        accounted = sum(second.get(k, 0) for k in ("created", "updated", "unchanged", "rejected"))
        ok = (
            first.get("status") == second.get("status") == resources.get("status") == "SUCCEEDED"
            and 0 < second.get("read", 0) <= len(changed) + len(new_rows)
            and accounted == second.get("read")
            and csv_ok
            and dynamics_ok
            and schema_ok
            and deletions_ok
            and optouts_ok
            and events_ok
            and export.get("status") == "SUCCEEDED"
            and export.get("selected", 0) == EDITED + SIGNUPS
            and export.get("rejected", 0) == len(REFUSED)
            and export.get("created", 0) + export.get("updated", 0) == EDITED + SIGNUPS - len(REFUSED)
        )
        if not ok:
            console.print("[red]the demo did not end as expected; see .crmsync/local-lambda.log[/red]")
            return 1
        console.rule("[green]demo done[/green]")
        console.print(NEXT_STEPS, highlight=False, markup=False, soft_wrap=True)
        return 0
