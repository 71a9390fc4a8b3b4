"""The one HTTP session every CRM adapter uses: https only, default timeout, CA bundle, call counting."""

from __future__ import annotations

import contextlib
import threading
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import requests

from ..errors import ConfigurationError


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
