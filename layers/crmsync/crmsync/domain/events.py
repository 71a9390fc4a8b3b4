"""Marketing e-mail events and the CRM activity each becomes (SPEC M1, M2, M5). Pure: no I/O.

An event arrives as JSON (an SQS message body, or an EventBridge event's `detail`). `MarketingEvent`
validates it; `activity_fields` turns it into the field values of one timeline activity. The activity's
identity comes from the event id alone - a Salesforce External ID value, a Dataverse `activityid` that is
a UUIDv5 of it - so the same event pushed twice (a redelivery, a back-fill) lands on the same record.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import quote

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

EventType = Literal["send", "open", "click", "bounce"]

ACTIVITY_NAMESPACE = uuid.UUID("6f1d0c3e-58a4-5b8e-9d2f-4c7a1e0b9f63")
"""Fixed forever: changing it would give every event pushed before a second activity."""

SUBJECT_MAX = 80
"""Salesforce's Name field holds 80 characters; Dataverse's subject 200. One length for both."""


class MarketingEvent(BaseModel):
    """One e-mail event as the marketing platform sends it (issue 15's wire format)."""

    model_config = ConfigDict(extra="ignore", frozen=True, str_strip_whitespace=True)

    event_id: str = Field(min_length=1, max_length=100)
    type: EventType
    profile_id: str = Field(min_length=1, max_length=128)
    campaign_id: str = Field(min_length=1, max_length=100)
    campaign_name: str = Field(default="", max_length=255)
    delivery_id: str = Field(min_length=1, max_length=100)
    delivery_name: str = Field(default="", max_length=255)
    at: AwareDatetime = Field(description="when it happened, with its offset (ISO 8601)")
    url: str | None = Field(default=None, max_length=2000, description="the clicked link; clicks only")
    mirror_page_url: str | None = Field(default=None, max_length=2000)

    @field_validator("url", "mirror_page_url")
    @classmethod
    def _web_address(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        assert value is not None
        if not value.lower().startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL")
        return value

    @model_validator(mode="after")
    def _click_url(self) -> MarketingEvent:
        if self.type == "click" and self.url is None:
            raise ValueError("a click event carries the clicked url")
        return self

    @property
    def at_utc(self) -> datetime:
        return self.at.astimezone(UTC)

    @property
    def subject(self) -> str:
        """Campaign id + delivery id (SPEC M2)."""
        return f"{self.campaign_id} / {self.delivery_id}"[:SUBJECT_MAX]

    def archived(self) -> dict[str, Any]:
        """The event as the archive keeps it: the validated fields, `at` in UTC."""
        data = self.model_dump(mode="json", exclude_none=True)
        data["at"] = iso_utc(self.at_utc)
        return data


def parse_event(body: str | bytes | dict[str, Any]) -> MarketingEvent:
    """The event of a message body: the event itself, or an EventBridge envelope whose `detail` is it
    (a rule without `InputPath`). Raises `ValueError` whose text names what is wrong, field by field."""
    import json

    if isinstance(body, str | bytes):
        try:
            document = json.loads(body)
        except ValueError as exc:
            raise ValueError(f"not JSON: {exc.args[0] if exc.args else exc}") from None
    else:
        document = body
    if isinstance(document, dict) and isinstance(document.get("detail"), dict) and "detail-type" in document:
        document = document["detail"]
    if not isinstance(document, dict):
        raise ValueError("an event is a JSON object")
    try:
        return MarketingEvent.model_validate(document)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(map(str, e['loc'])) or 'event'}: {str(e['msg']).removeprefix('Value error, ')}"
            for e in exc.errors(include_url=False)
        ]
        raise ValueError("; ".join(problems)) from None


def iso_utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def activity_id(event_id: str) -> str:
    """The Dataverse `activityid` of an event: a UUIDv5 of its id, the same on every push."""
    return str(uuid.uuid5(ACTIVITY_NAMESPACE, event_id))


def activity_fields(event: MarketingEvent, names: dict[str, str]) -> dict[str, Any]:
    """The activity's values by CRM field (SPEC M2): subject, type, campaign and delivery names, the
    date-time, the clicked URL on clicks only, the mirror page. `names` maps each event attribute to
    its CRM field; an attribute without a field is not written. Owner and regarding are bound by the
    CRM's writer (they are references, not values)."""
    values: dict[str, Any] = {
        "subject": event.subject,
        "type": event.type,
        "campaign_name": event.campaign_name or None,
        "delivery_name": event.delivery_name or None,
        "at": iso_utc(event.at_utc),
        "mirror_page_url": event.mirror_page_url,
    }
    if event.type == "click":
        values["url"] = event.url
    if "event_id" in names:
        values["event_id"] = event.event_id
    return {names[key]: value for key, value in values.items() if key in names and value is not None}


def timeline_link(template: str, profile_id: str) -> str:
    """The link to a profile's marketing timeline (SPEC M5): `{profileId}` replaced, URL-escaped."""
    return template.replace("{profileId}", quote(profile_id, safe=""))
