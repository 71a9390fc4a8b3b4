"""Enumeration sync, one step: lease, picklist / option-set values into the Enumerations table (SPEC S2)."""

from crmsync.runtime import step_handler
from crmsync.services.enumerations import sync_enumerations
from crmsync.services.runs import StartRunEvent

handler = step_handler(StartRunEvent, sync_enumerations, name="enumerations_sync")
