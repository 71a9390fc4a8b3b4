"""Two-way step 3: add the ledger up, move both watermarks, close the run (SPEC O3)."""

from crmsync.runtime import step_handler
from crmsync.services.two_way import TwoWayState, finish_two_way

handler = step_handler(TwoWayState, finish_two_way, name="two_way_finish")
