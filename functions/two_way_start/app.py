"""Two-way step 1: lease, then resume the unfinished run, or read both sides' changes, decide each field and plan batches (SPEC O1-O3)."""

from crmsync.runtime import step_handler
from crmsync.services.two_way import StartTwoWayEvent, start_two_way

handler = step_handler(StartTwoWayEvent, start_two_way, name="two_way_start")
