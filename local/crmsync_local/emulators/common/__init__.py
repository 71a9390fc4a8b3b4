"""Pieces shared by the CRM emulators: WSGI base with faults/stats/control API, HTTPS server, test CA."""

from .app import CONTROL_PREFIX, CallStats, EmulatorApp, Fault, FaultInjector, drop_connection, json_response
from .server import EmulatorServer, TestCertificateAuthority

__all__ = [
    "CONTROL_PREFIX",
    "CallStats",
    "EmulatorApp",
    "EmulatorServer",
    "Fault",
    "FaultInjector",
    "TestCertificateAuthority",
    "drop_connection",
    "json_response",
]
