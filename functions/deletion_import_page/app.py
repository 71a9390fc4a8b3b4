"""Deletion import step 2, looped: one period, page of changes, page of CRM ids or sweep chunk (SPEC D1, D2)."""

from crmsync.runtime import step_handler
from crmsync.services.deletion_imports import DeletionImportState, deletion_import_page

handler = step_handler(DeletionImportState, deletion_import_page, name="deletion_import_page")
