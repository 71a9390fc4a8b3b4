"""The one HTTP session every CRM adapter uses: https only, default timeout, CA bundle, call counting."""

from __future__ import annotations

import contextlib
import threading
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import requests

from ..errors import (
    ConfigurationError,
    CrmAuthenticationFailed,
    CrmOutcomeUnknown,
    CrmRateLimited,
    CrmRequestRejected,
    CrmsyncError,
    CrmUnavailable,
)


def unreachable(exc: Exception, crm: str) -> CrmUnavailable:
    """A call that got no usable answer: retryable, and named without the request (it may hold a token)."""
    if isinstance(exc, requests.Timeout):
        return CrmUnavailable(f"{crm} did not answer in time")
    if isinstance(exc, requests.ConnectionError):
        return CrmUnavailable(f"the connection to {crm} failed or was cut")
    return CrmUnavailable(f"unexpected failure talking to {crm}: {type(exc).__name__}")


def refusal(
    crm: str,
    status: int,
    code: str | None,
    message: str,
    *,
    rate_limited: bool = False,
    retry_after: float | None = None,
) -> CrmsyncError:
    """A CRM's HTTP error answer in crmsync's classification: a rate limit (HTTP 429, or what the CRM
    says is one) and a server error are retryable, a refused token is an authentication failure, anything
    else is the request refused for good. An adapter refines the last with its CRM's own codes."""
    text = f"{crm} HTTP {status}" + (f" {code}" if code else "") + (f": {message}" if message else "")
    if status == 429 or rate_limited:
        return CrmRateLimited(text, retry_after_seconds=retry_after)
    if status >= 500:
        return CrmUnavailable(text)
    if status == 401:
        return CrmAuthenticationFailed(text)
    return CrmRequestRejected(text, error_code=code, status=status)


def write_failure(error: CrmsyncError, failure: object) -> CrmsyncError:
    """`error`, classified from `failure`, for a call that changes data: a failure after the request may
    have reached the CRM is an unknown outcome, not a plain retryable error. That includes every 5xx: a
    502, 503 or 504 may come from a gateway or load balancer after the CRM applied the write. Only refusals
    that come before anything is done - rate limits, a connection never opened - are safe to repeat as
    they are; an unknown outcome is resolved by the caller, as a dropped answer is."""
    refused = isinstance(failure, requests.ConnectTimeout)
    if type(error) is CrmUnavailable and not refused:
        return CrmOutcomeUnknown(f"{error} (the write may have been applied)")
    return error


class CrmHttpSession(requests.Session):
    """A `requests.Session` that refuses plain http, always sets a timeout and counts its calls.

    It also remembers the CRM's clock from the `Date` header of the last answer, which is how the
    import window's end is taken from the CRM's time rather than ours (SPEC I7).
    """

    def __init__(self, *, timeout: float = 30.0, ca_bundle: str | None = None) -> None:
        super().__init__()
        self.default_timeout = timeout
        if ca_bundle:
            # REQUESTS_CA_BUNDLE in the environment would otherwise override `verify`.
            self.trust_env = False
            self.verify = ca_bundle
        self.calls = 0
        self._calls_lock = threading.Lock()
        self.server_date: datetime | None = None
        self.headers["User-Agent"] = "crmsync/0.1"

    def crm_clock(self, crm: str) -> datetime:
        """The CRM's time from the `Date` header of its last answer."""
        if self.server_date is None:
            raise CrmUnavailable(f"{crm} sent no Date header; the CRM's clock is unknown")
        return self.server_date

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        target = url.decode() if isinstance(url, bytes) else url
        if urlsplit(target).scheme.lower() != "https":
            raise ConfigurationError(f"refusing a non-https call to a CRM: {urlsplit(target).netloc or target}")
        kwargs.setdefault("timeout", self.default_timeout)
        with self._calls_lock:
            self.calls += 1
        response = super().request(method, url, *args, **kwargs)
        date = response.headers.get("Date")
        if date:
            with contextlib.suppress(TypeError, ValueError):
                self.server_date = parsedate_to_datetime(date)
        return response
