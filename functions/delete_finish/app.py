"""CRM deletion step 3: add the ledger up, move the watermark, close the run (SPEC D3)."""

from crmsync.runtime import step_handler
from crmsync.services.crm_deletes import DeleteState, finish_delete

handler = step_handler(DeleteState, finish_delete, name="delete_finish")
