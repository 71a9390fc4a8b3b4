"""Import step 1: take the sync's lease, check it against the CRM, compute the window (SPEC I7, I12)."""

from crmsync.runtime import step_handler
from crmsync.services.imports import StartImportEvent, start_import

handler = step_handler(StartImportEvent, start_import, name="import_start")
