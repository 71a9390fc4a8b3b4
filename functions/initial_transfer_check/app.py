"""Initial transfer step 4, looped: one page of the completeness check - every CRM id loaded, rejected or filtered, a missing one re-read by id (SPEC T1)."""

from crmsync.runtime import step_handler
from crmsync.services.initial_transfers import TransferState, check_transfer

handler = step_handler(TransferState, check_transfer, name="initial_transfer_check")
