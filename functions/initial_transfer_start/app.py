"""Initial transfer step 1: lease, resume the unfinished transfer or count the object and choose files or the ordinary import (SPEC T1)."""

from crmsync.runtime import step_handler
from crmsync.services.initial_transfers import StartTransferEvent, start_transfer

handler = step_handler(StartTransferEvent, start_transfer, name="initial_transfer_start")
