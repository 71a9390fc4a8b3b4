"""Import step 3: move the watermark forward under the lease, close the run, release the lease (SPEC I7)."""

from crmsync.runtime import step_handler
from crmsync.services.imports import ImportState, finish_import

handler = step_handler(ImportState, finish_import, name="import_finish")
