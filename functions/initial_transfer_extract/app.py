"""Initial transfer step 2, looped: extract the object into JSON Lines parts in S3, then plan them as the part ledger (SPEC T1, N3)."""

from crmsync.runtime import step_handler
from crmsync.services.initial_transfers import TransferState, extract_transfer

handler = step_handler(TransferState, extract_transfer, name="initial_transfer_extract")
