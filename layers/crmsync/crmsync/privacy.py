"""What may appear in logs: never a secret or a readable personal value (SPEC N4)."""

from __future__ import annotations

import re

_EMAIL = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9-]+\.)*([A-Za-z0-9-]+)\.([A-Za-z]{2,})")
_BEARER = re.compile(r"(?i)(bearer|oauth)\s+[A-Za-z0-9._~+/=!-]{8,}")


def mask_email(address: str) -> str:
    """`j***@***.com`: enough to recognise a domain class in a log, not enough to identify anyone."""
    return _EMAIL.sub(lambda m: f"{m.group(1)}***@***.{m.group(4)}", address)


def mask_personal_data(text: str) -> str:
    return _BEARER.sub(r"\1 ***", mask_email(text))
