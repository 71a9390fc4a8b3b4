"""Export step 1: take the lease, then resume the unfinished run or snapshot a new population (SPEC E1-E4)."""

from crmsync.runtime import step_handler
from crmsync.services.exports import StartExportEvent, start_export

handler = step_handler(StartExportEvent, start_export, name="export_start")
