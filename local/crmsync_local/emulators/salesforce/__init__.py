"""A Salesforce emulator (REST, sObject Collections, Bulk API 2.0, OAuth) for tests, benchmarks and the demo."""

from .app import SalesforceEmulator
from .control import SalesforceControl
from .org import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_PASSWORD,
    DEFAULT_SECURITY_TOKEN,
    DEFAULT_USERNAME,
    EmulatorConfig,
)

__all__ = [
    "DEFAULT_CLIENT_ID",
    "DEFAULT_CLIENT_SECRET",
    "DEFAULT_PASSWORD",
    "DEFAULT_SECURITY_TOKEN",
    "DEFAULT_USERNAME",
    "EmulatorConfig",
    "SalesforceControl",
    "SalesforceEmulator",
]
