"""Enumeration sync, one step: lease, picklist / option-set values into the Enumerations table (SPEC S2)."""

from crmsync.runtime import step_handler
from crmsync.services.enumerations import StartEnumerationsEvent, sync_enumerations

handler = step_handler(StartEnumerationsEvent, sync_enumerations, name="enumerations_sync")
