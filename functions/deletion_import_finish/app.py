"""Deletion import step 3: move the watermark to the latest date the CRM covered, close the run (SPEC D1)."""

from crmsync.runtime import step_handler
from crmsync.services.deletion_imports import DeletionImportState, finish_deletion_import

handler = step_handler(DeletionImportState, finish_deletion_import, name="deletion_import_finish")
