"""Canary handler: sleeps as long as asked, to overrun its one-second Timeout."""

import time


def handler(event, context):
    print("slow handler sleeps")
    time.sleep(event["seconds"])
    print("slow handler woke")
    return {"slept": event["seconds"]}
