"""E-mail events from the events queue onto the CRM timeline, in batches, with partial batch responses (SPEC M1-M4)."""

from crmsync.runtime import queue_handler
from crmsync.services.events import push_events

handler = queue_handler(push_events, name="events_push")
