"""The one error classification of crmsync.

Step Functions `Retry` blocks list the class names of `RetryableError` subclasses (a Lambda's errorType is
the exception class name), so nothing anywhere matches on message text. Renaming a class here means
renaming it in `statemachines/*.asl.json`; `tests/unit/test_state_machines.py` keeps both in step.
"""

from __future__ import annotations

from typing import Any


class CrmsyncError(Exception):
    """Base of every error crmsync raises on purpose."""


# -- configuration: the user must change something; retrying cannot help ---------------------------
class ConfigurationError(CrmsyncError):
    """Invalid configuration or input, found before any data moved."""

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))


class SyncNotFound(ConfigurationError):
    """A run names a sync that `crmsync config apply` never stored."""


# -- retryable: the same call may succeed later ---------------------------------------------------
class RetryableError(CrmsyncError):
    """A transient failure; the step is retried with back-off by the state machine."""


class CrmUnavailable(RetryableError):
    """The CRM answered 5xx, timed out or cut the connection."""


class CrmRateLimited(RetryableError):
    """The CRM refused the call for a rate or API limit (Salesforce REQUEST_LIMIT_EXCEEDED, HTTP 429)."""

    def __init__(self, message: str, retry_after_seconds: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class CrmOutcomeUnknown(CrmUnavailable):
    """A write may or may not have been applied: the connection was cut or timed out after it was sent.

    Never retried blindly: the caller resolves the outcome first (an upsert may be re-sent; an insert
    is looked up by its correlation value), so a record is never created twice (SPEC E4).
    `completed` holds the results of the records a writer finished before the uncertain call.
    """

    def __init__(self, message: str, completed: tuple[Any, ...] = ()) -> None:
        super().__init__(message)
        self.completed = completed


class BulkJobInProgress(RetryableError):
    """A CRM bulk job is still running when the step's polling budget ran out; the step resumes it."""


class StoreThrottled(RetryableError):
    """DynamoDB/SQS/S3 throttled us beyond the SDK's own retries."""


# -- permanent: the run fails cleanly, the watermark stays --------------------------------------------
class PermanentError(CrmsyncError):
    """A failure retrying cannot fix; the run takes its error path."""


class CrmAuthenticationFailed(PermanentError):
    """The CRM refused the credentials (wrong secret, revoked app, wrong scope)."""


class CrmRequestRejected(PermanentError):
    """The CRM refused the request itself (malformed query, unknown field, missing permission)."""

    def __init__(self, message: str, error_code: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.status = status


class DeltaTokenExpired(PermanentError):
    """The CRM no longer knows a change-tracking delta link (Dataverse 0x80044352); the import falls back
    to a full read and an id comparison, so this never ends a run by itself."""


class DeletionPeriodRefused(PermanentError):
    """The period starts before the oldest deletion the CRM keeps (Salesforce `INVALID_REPLICATION_DATE`);
    `earliest_available` says from when it can answer (SPEC D1)."""

    def __init__(self, message: str, earliest_available: str | None = None) -> None:
        super().__init__(message)
        self.earliest_available = earliest_available


class TooManyDeletedIds(PermanentError):
    """One period holds more deleted ids than the CRM returns at once (Salesforce `EXCEEDED_ID_LIMIT`,
    600,000): the period is split, so this never ends a run by itself."""


class CrmSecretInvalid(PermanentError):
    """The Secrets Manager secret of a connection is missing or lacks a field its auth flow needs."""


class RunAlreadyInProgress(PermanentError):
    """Another run of the same sync holds the lease; runs of one sync never overlap (SPEC I12)."""


class LeaseLost(PermanentError):
    """This run's lease expired and was taken over; it must not apply more data or move the watermark."""


class WatermarkConflict(PermanentError):
    """The watermark could not move forward under this run's lease (it was moved or the lease was lost)."""
