"""The one retry policy: retryable errors back off, permanent ones never retry."""

import pytest

from crmsync.connectors.retry import RetryPolicy
from crmsync.errors import CrmAuthenticationFailed, CrmRateLimited, CrmUnavailable


def policy(sleeps):
    return RetryPolicy(attempts=4, base_delay=1, max_delay=3, sleep=sleeps.append, jitter=lambda: 1.0)


def test_retryable_error_is_retried_with_exponential_back_off():
    sleeps, calls = [], []

    def flaky():
        calls.append(1)
        if len(calls) < 4:
            raise CrmUnavailable("503")
        return "ok"

    assert policy(sleeps).run(flaky) == "ok"
    assert sleeps == [1, 2, 3]


def test_retry_after_is_honoured():
    sleeps, calls = [], []

    def limited():
        calls.append(1)
        if len(calls) == 1:
            raise CrmRateLimited("429", retry_after_seconds=7)
        return "ok"

    policy(sleeps).run(limited)
    assert sleeps == [7]


def test_last_retryable_error_surfaces_for_the_state_machine():
    with pytest.raises(CrmUnavailable):
        policy([]).run(lambda: (_ for _ in ()).throw(CrmUnavailable("down")))


def test_permanent_error_is_not_retried():
    calls = []

    def refused():
        calls.append(1)
        raise CrmAuthenticationFailed("invalid_grant")

    with pytest.raises(CrmAuthenticationFailed):
        policy([]).run(refused)
    assert len(calls) == 1
