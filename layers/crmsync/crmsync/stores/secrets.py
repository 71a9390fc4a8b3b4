"""CRM credentials, read from AWS Secrets Manager only (SPEC C1, N4), cached per container."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.parameters import SecretsProvider
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError, TransformParameterError

from ..errors import CrmSecretInvalid

SECRET_MAX_AGE_SECONDS = 300


class SecretReader:
    def __init__(self, client: Any = None, max_age: int = SECRET_MAX_AGE_SECONDS) -> None:
        self.provider = SecretsProvider(boto3_client=client)
        self.max_age = max_age

    def read(self, name: str, *, force_fetch: bool = False) -> dict[str, Any]:
        """The secret's JSON object; a missing or malformed secret is a permanent, named error."""
        try:
            value = self.provider.get(name, transform="json", max_age=self.max_age, force_fetch=force_fetch)
        except TransformParameterError:
            raise CrmSecretInvalid(f"secret {name!r} is not a JSON object") from None
        except GetParameterError as exc:
            cause = type(exc.__cause__).__name__ if exc.__cause__ else "error"
            code = getattr(exc.__cause__, "response", {}).get("Error", {}).get("Code", cause)
            raise CrmSecretInvalid(f"secret {name!r} could not be read ({code})") from None
        if not isinstance(value, dict):
            raise CrmSecretInvalid(f"secret {name!r} is not a JSON object")
        return value
