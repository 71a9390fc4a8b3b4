"""Deletion import step 1: take the lease, choose the period or the delta link, record the run (SPEC D1)."""

from crmsync.runtime import step_handler
from crmsync.services.deletion_imports import StartDeletionImportEvent, start_deletion_import

handler = step_handler(StartDeletionImportEvent, start_deletion_import, name="deletion_import_start")
