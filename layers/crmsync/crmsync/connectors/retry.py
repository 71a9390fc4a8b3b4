"""The one retry policy for calls to a CRM.

Inside a Lambda invocation a call is retried a few times with short exponential back-off and jitter;
when that is not enough, the retryable error surfaces and the state machine's `Retry` takes over with
long back-off. Permanent errors are never retried.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from ..errors import CrmRateLimited, RetryableError

T = TypeVar("T")
logger = logging.getLogger(__name__)


def log_retries(crm: str) -> Callable[[int, RetryableError], None]:
    """The `on_retry` hook of the connectors: one warning per retried call, naming the CRM."""

    def log(attempt: int, error: RetryableError) -> None:
        logger.warning("%s call retried (attempt %d): %s", crm, attempt + 1, error)

    return log


@dataclass
class RetryPolicy:
    attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 8.0
    max_retry_after: float = 30.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    jitter: Callable[[], float] = field(default=random.random, repr=False)

    def delay(self, attempt: int, error: RetryableError) -> float:
        """Seconds to wait before attempt `attempt + 1`; a CRM's Retry-After is honoured up to a cap."""
        if isinstance(error, CrmRateLimited) and error.retry_after_seconds is not None:
            return min(error.retry_after_seconds, self.max_retry_after)
        backoff = min(self.base_delay * (2**attempt), self.max_delay)
        return float(backoff * (0.5 + self.jitter() / 2))

    def run(
        self,
        call: Callable[[], T],
        on_retry: Callable[[int, RetryableError], None] | None = None,
        *,
        give_up: tuple[type[RetryableError], ...] = (),
    ) -> T:
        """Call until it succeeds; errors of the `give_up` classes surface at once (unsafe to repeat)."""
        for attempt in range(self.attempts):
            try:
                return call()
            except RetryableError as error:
                if attempt + 1 >= self.attempts or isinstance(error, give_up):
                    raise
                if on_retry is not None:
                    on_retry(attempt + 1, error)
                self.sleep(self.delay(attempt, error))
        raise AssertionError("unreachable: the last attempt either returns or raises")
