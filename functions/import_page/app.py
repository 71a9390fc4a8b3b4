"""Import step 2, looped: read, map, reconcile and apply one page; route its rejects (SPEC I1-I10, R1)."""

from crmsync.runtime import step_handler
from crmsync.services.imports import ImportState, import_page

handler = step_handler(ImportState, import_page, name="import_page")
