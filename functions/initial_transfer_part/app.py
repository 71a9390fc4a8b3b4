"""Initial transfer step 3, one per part of the manifest: load it with the import's rules; a loaded part is skipped (SPEC T1)."""

from crmsync.runtime import step_handler
from crmsync.services.initial_transfers import TransferPartEvent, load_transfer_part

handler = step_handler(TransferPartEvent, load_transfer_part, name="initial_transfer_part")
