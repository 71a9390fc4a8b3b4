"""The marketing profile store (DESIGN §5), one class over the profiles table, written by concern:

- `profile_items`: the item layout (keys, lookups, the change index) and the reads every part shares;
- `profile_imports`: reconciling and writing imported records;
- `profile_exports`: the changed profiles an export reads, and what it writes back;
- `profile_deletions`: deletions in the CRM applied to the profiles, flagged or removed.

Profiles born or changed on the marketing side are written by the marketing platform, not by crmsync:
the demo, the tests and the benchmarks write them with `crmsync_local.marketing`.
"""

from __future__ import annotations

from .profile_deletions import DeletionWrites
from .profile_exports import ExportedProfile, ExportLink, ExportLinks, LinkResult
from .profile_imports import ImportWrites
from .profile_items import ApplyResult, crm_id_key, link_name, unique_key
from .resources import ResourceStore


class ProfileStore(ImportWrites, ExportLinks, DeletionWrites):
    """The profiles table: imports, exports and deletions."""


__all__ = [
    "ApplyResult",
    "ExportLink",
    "ExportedProfile",
    "LinkResult",
    "ProfileStore",
    "ResourceStore",
    "crm_id_key",
    "link_name",
    "unique_key",
]
