"""Service protection API limits, evaluated per user as "Service protection API limits" describes:
requests and combined execution time over a sliding 300-second window, and concurrent requests.

Defaults are the documented per-server values (6,000 requests, 1,200,000 ms of execution time, 52
concurrent requests); tests and benchmarks lower or raise them through the control API. A request over a
limit is answered 429 with `Retry-After` (seconds) and the documented code and message; every answer carries
the `x-ms-ratelimit-*` headers. The window runs on the real clock: it measures load, not business time.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from . import errors


@dataclass
class LimitsConfig:
    max_requests: int = 6000
    window_seconds: int = 300
    max_execution_ms: int = 1_200_000
    max_concurrent: int = 52
    concurrency_retry_after: int = 1

    def update(self, values: dict[str, Any]) -> None:
        for name in (
            "max_requests",
            "window_seconds",
            "max_execution_ms",
            "max_concurrent",
            "concurrency_retry_after",
        ):
            if name in values:
                setattr(self, name, int(values[name]))


@dataclass
class _UserState:
    requests: deque[float] = field(default_factory=deque)
    durations: deque[tuple[float, float]] = field(default_factory=deque)  # (finished at, ms)
    in_flight: int = 0


class ServiceProtection:
    def __init__(self) -> None:
        self.config = LimitsConfig()
        self._users: dict[str, _UserState] = {}
        self._lock = threading.Lock()

    def reset(self) -> None:
        with self._lock:
            self._users.clear()
            self.config = LimitsConfig()

    def clear_windows(self) -> None:
        with self._lock:
            self._users.clear()

    def admit(self, user: str) -> dict[str, str]:
        """Count a request in, or raise the 429 DataverseError; answer the rate-limit headers."""
        now = time.monotonic()
        config = self.config
        with self._lock:
            state = self._users.setdefault(user, _UserState())
            horizon = now - config.window_seconds
            while state.requests and state.requests[0] <= horizon:
                state.requests.popleft()
            while state.durations and state.durations[0][0] <= horizon:
                state.durations.popleft()
            if state.in_flight >= config.max_concurrent:
                raise errors.too_many_concurrent(config.max_concurrent, config.concurrency_retry_after)
            if len(state.requests) >= config.max_requests:
                retry = max(1, math.ceil(state.requests[0] + config.window_seconds - now))
                raise errors.too_many_requests(config.max_requests, config.window_seconds, retry)
            spent = sum(ms for _, ms in state.durations)
            if spent >= config.max_execution_ms:
                retry = max(1, math.ceil(state.durations[0][0] + config.window_seconds - now))
                raise errors.execution_time_exceeded(config.max_execution_ms, config.window_seconds, retry)
            state.requests.append(now)
            state.in_flight += 1
            return {
                "x-ms-ratelimit-burst-remaining-xrm-requests": str(config.max_requests - len(state.requests)),
                "x-ms-ratelimit-time-remaining-xrm-requests": f"{max(0.0, config.max_execution_ms - spent):,.2f}",
            }

    def release(self, user: str, started: float) -> None:
        finished = time.monotonic()
        with self._lock:
            state = self._users.setdefault(user, _UserState())
            state.in_flight = max(0, state.in_flight - 1)
            state.durations.append((finished, (finished - started) * 1000))
