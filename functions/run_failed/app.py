"""Error path of every run: record the failure, release the lease, leave the watermark (SPEC R2)."""

from crmsync.runtime import step_handler
from crmsync.services.runs import RunFailedEvent, record_failure

handler = step_handler(RunFailedEvent, record_failure, name="run_failed")
