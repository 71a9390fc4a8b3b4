"""Reconciliation and de-duplication of imported records against local profiles (SPEC I10).

Match on the CRM id first, then on the configured unique key; update the match, create otherwise. A key
that belongs to a profile linked to another record of the object is a duplicate, unless that profile is
flagged deleted in the CRM: a new record with the key of a deleted one is the same person re-created, and
takes the profile over.
This module only decides; the profile store executes the decision with conditional writes, so two
runs (or a retried page) racing on one CRM record still end with one profile.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .conversions import parse_crm_datetime
from .records import LocalRecord, RecordRejected, RejectCode

_MISSING = object()


def normalize_key(value: Any, *, case_insensitive: bool) -> str | None:
    """The unique key as compared: trimmed, and lower-cased unless configured otherwise."""
    if value is None:
        return None
    text = str(value).strip()
    if not text:
        return None
    return text.casefold() if case_insensitive else text


@dataclass
class StoredProfile:
    profile_id: str
    attributes: dict[str, Any]
    links: dict[str, str]
    crm_modified_at: dict[str, str]
    version: int
    key_value: str | None = None
    deleted_in_crm: bool = False


@dataclass
class Create:
    record: LocalRecord
    profile_id: str
    key: str | None


@dataclass
class Update:
    record: LocalRecord
    profile: StoredProfile
    changed: dict[str, Any]
    relink: bool
    key: str | None
    key_changed: bool
    undelete: bool


@dataclass
class ReconciliationPlan:
    creates: list[Create] = field(default_factory=list)
    updates: list[Update] = field(default_factory=list)
    unchanged: list[LocalRecord] = field(default_factory=list)
    rejects: list[tuple[LocalRecord, RecordRejected]] = field(default_factory=list)


def latest_per_crm_id(records: Iterable[LocalRecord]) -> list[LocalRecord]:
    """The same CRM record twice in one batch: keep its most recent version, once."""
    latest: dict[str, LocalRecord] = {}
    for record in records:
        seen = latest.get(record.crm_id)
        if seen is None or record.modified_at >= seen.modified_at:
            latest[record.crm_id] = record
    return list(latest.values())


def _stored_modified(profile: StoredProfile, link: str) -> datetime | None:
    text = profile.crm_modified_at.get(link)
    if not text:
        return None
    try:
        return parse_crm_datetime(text)
    except ValueError:
        return None


def reconcile(
    records: Iterable[LocalRecord],
    *,
    link: str,
    key_attribute: str | None,
    case_insensitive: bool,
    by_crm_id: dict[str, StoredProfile],
    by_key: dict[str, StoredProfile],
    new_profile_id: Callable[[], str],
) -> ReconciliationPlan:
    """Decide, for each record, create / update / unchanged / reject (duplicate key)."""
    plan = ReconciliationPlan()
    claimed_keys: dict[str, str] = {}  # key -> crm id of a record of this batch that takes it

    for record in latest_per_crm_id(records):
        key = (
            normalize_key(record.attributes.get(key_attribute), case_insensitive=case_insensitive)
            if key_attribute
            else None
        )
        profile = by_crm_id.get(record.crm_id)
        if profile is None and key is not None:
            candidate = by_key.get(key)
            if candidate is not None:
                owner = candidate.links.get(link)
                recreated = candidate.deleted_in_crm and claimed_keys.get(key, record.crm_id) == record.crm_id
                if owner is not None and owner != record.crm_id and not recreated:
                    plan.rejects.append((record, _duplicate(key_attribute, owner)))
                    continue
                # A key owned by a record deleted in the CRM: the person's record was re-created, so the
                # profile is linked to the new record (and no longer flagged) instead of refusing it as a
                # duplicate on every run.
                profile = candidate
            elif key in claimed_keys:
                plan.rejects.append((record, _duplicate(key_attribute, claimed_keys[key])))
                continue

        if profile is None:
            if key is not None:
                claimed_keys[key] = record.crm_id
            plan.creates.append(Create(record=record, profile_id=new_profile_id(), key=key))
            continue

        if key is not None and key != profile.key_value:
            other = by_key.get(key)
            if (other is not None and other.profile_id != profile.profile_id) or (
                key in claimed_keys and claimed_keys[key] != record.crm_id
            ):
                owner = (other.links.get(link) if other else None) or claimed_keys.get(key) or "another record"
                plan.rejects.append((record, _duplicate(key_attribute, owner)))
                continue

        stored = _stored_modified(profile, link)
        if stored is not None and stored > record.modified_at:
            plan.unchanged.append(record)
            continue
        changed = {
            name: value
            for name, value in record.attributes.items()
            if profile.attributes.get(name, _MISSING) != value
        }
        relink = profile.links.get(link) != record.crm_id
        key_changed = key_attribute is not None and key != profile.key_value
        if not changed and not relink and not key_changed and not profile.deleted_in_crm:
            plan.unchanged.append(record)
            continue
        profile.links[link] = record.crm_id
        if key is not None:
            claimed_keys[key] = record.crm_id
        plan.updates.append(
            Update(
                record=record,
                profile=profile,
                changed=changed,
                relink=relink,
                key=key,
                key_changed=key_changed,
                undelete=profile.deleted_in_crm,
            )
        )
    return plan


def _duplicate(key_attribute: str | None, owner: str) -> RecordRejected:
    return RecordRejected(
        RejectCode.DUPLICATE_KEY,
        f"{key_attribute} is the unique key and this value already belongs to the profile of CRM record {owner}",
        (key_attribute or "",),
    )
