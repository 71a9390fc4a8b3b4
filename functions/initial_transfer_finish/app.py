"""Initial transfer step 5: add the part ledger up, set the import sync's watermark (and delta link), close the run (SPEC T1)."""

from crmsync.runtime import step_handler
from crmsync.services.initial_transfers import TransferState, finish_transfer

handler = step_handler(TransferState, finish_transfer, name="initial_transfer_finish")
