"""Run the Salesforce emulator on its own: `python -m crmsync_local.emulators.salesforce --port 8443`.

Prints the instance URL, the CA bundle clients must trust, and the default connected app's credentials.
"""

from __future__ import annotations

import argparse
import threading

from ..common import EmulatorServer
from .app import SalesforceEmulator
from .org import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_PASSWORD,
    DEFAULT_SECURITY_TOKEN,
    DEFAULT_USERNAME,
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve the Salesforce emulator over HTTPS.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    args = parser.parse_args(argv)
    server = EmulatorServer(SalesforceEmulator(), host=args.host, port=args.port).start()
    print(f"instance_url   {server.url}")
    print(f"ca_bundle      {server.ca_bundle}")
    print(f"token endpoint {server.url}/services/oauth2/token")
    print(f"client_id      {DEFAULT_CLIENT_ID}   client_secret {DEFAULT_CLIENT_SECRET}")
    print(f"username       {DEFAULT_USERNAME}   password+token {DEFAULT_PASSWORD}{DEFAULT_SECURITY_TOKEN}")
    print(f"control API    {server.control_url}   (Ctrl-C to stop)", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
