"""Two-way step 2, one per batch: write the CRM side once, then the profiles, then the write and consent ledgers (SPEC O3)."""

from crmsync.runtime import step_handler
from crmsync.services.two_way import TwoWayBatchEvent, two_way_batch

handler = step_handler(TwoWayBatchEvent, two_way_batch, name="two_way_batch")
