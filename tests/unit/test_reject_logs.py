"""A reject's warning names its code, fields and ids; the CRM's message, which quotes values, stays out of logs."""

import json
import logging

import pytest

from crmsync.domain.records import Reject
from crmsync.stores.rejects import RejectContext, RejectRouter

CONTEXT = RejectContext(sync_id="sf-contacts", run_id="run-1", operation="import", direction="from_crm")
QUOTING = [
    Reject(
        "INVALID_EMAIL_ADDRESS", "Email: invalid email address: jean.dupont.2d7de8@example", {}, "003A", ("Email",)
    ),
    Reject(
        "STRING_TOO_LONG",
        "Last Name: data value too large: de la Fuente y Gómez de la Fuente y Gómez",
        {},
        "003B",
        ("LastName",),
    ),
    Reject(
        "TYPE_MISMATCH", "Phone: '+33 6 12 34 56 78' is not an integer", {}, None, ("Phone",), profile_id="p-9"
    ),
]
VALUES = ["jean.dupont", "Fuente", "Gómez", "+33 6 12 34 56 78", "12 34"]


class Store:
    """Stands in for the reject store: keeps what it is given in the message shape."""

    def __init__(self):
        self.bodies = []

    def put(self, rejects, context):
        messages = [
            r.as_message(
                sync_id=context.sync_id,
                run_id=context.run_id,
                operation=context.operation,
                direction=context.direction,
            )
            for r in rejects
        ]
        self.bodies += messages
        return [str(i) for i in range(len(messages))]


class Queue:
    def __init__(self):
        self.notices = []

    def send_message(self, QueueUrl, MessageBody, **_):
        self.notices.append(json.loads(MessageBody))
        return {}


@pytest.mark.parametrize("routed", [True, False])
def test_reject_warnings_carry_codes_fields_and_ids_but_no_value(caplog, routed):
    with caplog.at_level(logging.WARNING, logger="crmsync"):
        RejectRouter(Store(), Queue(), "url").route(QUOTING, CONTEXT, enabled=routed)
    logged = [
        (r.getMessage(), json.dumps({k: str(v) for k, v in r.__dict__.items()}, ensure_ascii=False))
        for r in caplog.records
    ]
    assert [message for message, _ in logged] == [
        "reject INVALID_EMAIL_ADDRESS on Email",
        "reject STRING_TOO_LONG on LastName",
        "reject TYPE_MISMATCH on Phone",
    ]
    assert [(r.crm_id, r.profile_id, r.fields) for r in caplog.records] == [
        ("003A", None, ["Email"]),
        ("003B", None, ["LastName"]),
        (None, "p-9", ["Phone"]),
    ]
    for value in VALUES:
        assert not [text for _, text in logged if value in text], value


def test_the_routed_reject_keeps_the_crm_message_whole():
    store, queue = Store(), Queue()
    RejectRouter(store, queue, "url").route(QUOTING, CONTEXT)
    assert [b["errorMessage"] for b in store.bodies] == [r.error_message for r in QUOTING]
    for value in VALUES:
        assert value not in json.dumps(queue.notices, ensure_ascii=False), value
