"""Microsoft Dynamics 365 / Dataverse emulator: Entra ID token endpoint plus the Web API v9.2, over HTTPS.

from crmsync_local.emulators.common import EmulatorServer
from crmsync_local.emulators.dynamics import DynamicsControl, DynamicsEmulator

with EmulatorServer(DynamicsEmulator()) as server:
    control = DynamicsControl(server.url, server.ca_bundle)
    app = control.register_app(client_secret="s3cret")
    # msal authority: f"{server.url}/{app['tenant_id']}", scope: f"{server.url}/.default"
"""

from .app import ADMIN_USER_ID, BUSINESS_UNIT_ID, DEFAULT_TENANT_ID, ORGANIZATION_ID, DynamicsEmulator
from .control import DynamicsControl, DynamicsControlError
from .webapi import API_PATH

__all__ = [
    "ADMIN_USER_ID",
    "API_PATH",
    "BUSINESS_UNIT_ID",
    "DEFAULT_TENANT_ID",
    "ORGANIZATION_ID",
    "DynamicsControl",
    "DynamicsControlError",
    "DynamicsEmulator",
]
