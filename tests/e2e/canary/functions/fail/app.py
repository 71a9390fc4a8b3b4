"""Canary handler: fails the way the event asks, to check error names and payloads."""

import logging


class PermanentError(Exception):
    """A failure the canary state machine catches by name."""


class OtherError(Exception):
    """A failure only `States.ALL` catches."""


def handler(event, context):
    if "log" in event:
        logging.getLogger(event["log"]).info("fail handler logs to %s", event["log"])
    kind = event.get("error")
    if kind == "permanent":
        raise PermanentError(f"permanent failure for {event.get('id')}")
    if kind == "other":
        raise OtherError("something else went wrong")
    if kind == "unserializable":
        return {"value": object()}
    return {"ok": True}
