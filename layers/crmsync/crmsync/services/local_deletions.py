"""CRM deletions applied on the marketing side (SPEC D2), whichever run found them: an import's change
tracking, a deletion import's period or id-set comparison, or a deletion made in the CRM by crmsync.

Where the records live - profiles linked to a connection's object, or a resource's rows - is a
`LocalTarget`; every caller goes through it, so a deletion is applied the same way wherever it came from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from ..domain.records import CrmDeletion, DeletionResult
from ..wiring import Container


@dataclass(frozen=True)
class LocalTarget:
    """The local records of one CRM object from one connection."""

    connection: str
    object: str
    kind: Literal["profiles", "resource"] = "profiles"
    resource: str | None = None


def apply_deletions(
    container: Container,
    target: LocalTarget,
    deletions: Sequence[CrmDeletion],
    *,
    run_id: str,
    remove: bool = False,
) -> DeletionResult:
    """Flag (default) or remove the local records of `deletions`; a record never imported is counted as
    unknown, one already flagged as already - both idempotent, so a retried step changes nothing."""
    if not deletions:
        return DeletionResult()
    if target.kind == "resource":
        assert target.resource is not None
        if remove:
            return container.resources.remove_deleted(
                deletions, resource=target.resource, connection=target.connection
            )
        return container.resources.mark_deleted(
            deletions, resource=target.resource, connection=target.connection, run_id=run_id
        )
    if remove:
        return container.profiles.remove_deleted(
            deletions, connection=target.connection, object_name=target.object, run_id=run_id
        )
    return container.profiles.mark_deleted(
        deletions, connection=target.connection, object_name=target.object, run_id=run_id
    )


def local_crm_ids(
    container: Container, target: LocalTarget, *, after: str | None = None, limit: int
) -> tuple[list[str], str | None]:
    """A page of the CRM ids the target's records have locally, and the cursor of the next page."""
    if target.kind == "resource":
        assert target.resource is not None
        return container.resources.crm_ids(target.resource, target.connection, after=after, limit=limit)
    return container.profiles.crm_ids(target.connection, target.object, after=after, limit=limit)


__all__ = ["LocalTarget", "apply_deletions", "local_crm_ids"]
