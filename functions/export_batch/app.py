"""Export step 2, one per batch of the manifest: write it to the CRM exactly once (SPEC E1-E6, E4, R1)."""

from crmsync.runtime import step_handler
from crmsync.services.exports import ExportBatchEvent, export_batch

handler = step_handler(ExportBatchEvent, export_batch, name="export_batch")
