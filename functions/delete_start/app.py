"""CRM deletion step 1: lease, then resume the unfinished run or snapshot the ids into batches (SPEC D3)."""

from crmsync.runtime import step_handler
from crmsync.services.crm_deletes import StartDeleteEvent, start_delete

handler = step_handler(StartDeleteEvent, start_delete, name="delete_start")
