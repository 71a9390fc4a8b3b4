"""CRM deletion step 2, one per batch: delete its records in the CRM once, apply locally, route rejects (SPEC D3, R1)."""

from crmsync.runtime import step_handler
from crmsync.services.crm_deletes import DeleteBatchEvent, delete_batch

handler = step_handler(DeleteBatchEvent, delete_batch, name="delete_batch")
