"""Every 15 minutes: the age of each sync's oldest waiting reject, as the OldestRejectAge metric (SPEC R1)."""

from crmsync.runtime import scheduled_handler
from crmsync.services.rejects import ScheduledEvent, measure_reject_ages

handler = scheduled_handler(ScheduledEvent, measure_reject_ages, name="rejects_age")
