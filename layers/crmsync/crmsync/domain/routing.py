"""Where one exported profile goes in the CRM, and how it is written (SPEC E1, E5).

Pure decisions: the caller has already looked the batch's e-mail addresses up in the CRM (in a few
batched queries) and passes what it found.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from .records import RecordRejected, RejectCode

WriteMode = Literal["insert_or_update", "upsert", "update"]


@dataclass(frozen=True)
class CrmMatch:
    """A CRM record found by e-mail."""

    object: str
    crm_id: str


@dataclass(frozen=True)
class Route:
    object: str
    kind: Literal["insert", "update", "upsert"]
    crm_id: str | None = None


def route_by_link(mode: WriteMode, object_name: str, linked_id: str | None) -> Route:
    """A profile linked to a record of the object updates it; otherwise it is inserted (SPEC E1).
    `upsert` lets the CRM decide by the external id; `update` never creates."""
    if mode == "upsert":
        return Route(object_name, "upsert")
    if linked_id is not None:
        return Route(object_name, "update", linked_id)
    if mode == "update":
        raise RecordRejected(
            RejectCode.NOT_LINKED,
            f"the profile is not linked to a {object_name} record and write: update never creates one",
        )
    return Route(object_name, "insert")


def route_lead_or_contact(
    links: Mapping[str, str],
    email: str | None,
    found: Mapping[str, Sequence[CrmMatch]],
    *,
    lead: str,
    contact: str,
) -> Route:
    """A profile the CRM knows - linked, or with the same e-mail - is updated as the Lead or Contact it
    is; one it does not know becomes a Lead (SPEC E5). A Contact wins over a Lead (a converted lead
    lives on as its contact); two records of the same kind with the address are ambiguous."""
    if contact in links:
        return Route(contact, "update", links[contact])
    if lead in links:
        return Route(lead, "update", links[lead])
    matches = found.get(email, ()) if email else ()
    for kind in (contact, lead):
        of_kind = sorted({m.crm_id for m in matches if m.object == kind})
        if len(of_kind) > 1:
            raise RecordRejected(
                RejectCode.MULTIPLE_MATCHES,
                f"{len(of_kind)} {kind} records have this e-mail address ({', '.join(of_kind)}); "
                "merge them in the CRM, then replay",
            )
        if of_kind:
            return Route(kind, "update", of_kind[0])
    return Route(lead, "insert")
