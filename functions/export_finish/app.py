"""Export step 3: add the batch ledger up, move the export watermark, close the run (SPEC E4, R2)."""

from crmsync.runtime import step_handler
from crmsync.services.exports import ExportState, finish_export

handler = step_handler(ExportState, finish_export, name="export_finish")
