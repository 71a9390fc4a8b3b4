"""Points a peer client's hard-coded login host at the emulator, and nothing else.

tap-salesforce and airbyte-source-salesforce post their refresh-token grant to
`https://login.salesforce.com/services/oauth2/token`; airbyte-source-microsoft-dataverse asks
`https://login.microsoftonline.com/<tenant>/oauth2/v2.0/token`. Those hosts are written in their code, so
the benchmark cannot hand them another one the way it hands them the instance URL. Python imports this
module at start-up when its folder is on PYTHONPATH; it rewrites, in requests' transport adapter, a URL that
starts with a prefix named in CRMSYNC_PEER_REDIRECTS (`from=to` pairs separated by spaces) to the
emulator's URL. The clients' code, their requests and the emulator's answers are untouched: the instance
URL comes from the token response as it does from a real org, and TLS is checked against the CA given in
REQUESTS_CA_BUNDLE - also where a client calls `Session.send` directly (airbyte-cdk does), which skips
the step where requests reads that variable for `Session.request`.
"""

from __future__ import annotations

import os


def _install() -> None:
    pairs = [pair.split("=", 1) for pair in os.environ.get("CRMSYNC_PEER_REDIRECTS", "").split() if "=" in pair]
    bundle = os.environ.get("REQUESTS_CA_BUNDLE")
    if not pairs and not bundle:
        return
    from requests.adapters import HTTPAdapter

    original = HTTPAdapter.send

    def send(self, request, *args, **kwargs):  # type: ignore[no-untyped-def]
        for prefix, target in pairs:
            if request.url and request.url.startswith(prefix):
                request.url = target + request.url[len(prefix) :]
                break
        if bundle and kwargs.get("verify", True) is True:
            kwargs["verify"] = bundle
        return original(self, request, *args, **kwargs)

    HTTPAdapter.send = send  # type: ignore[method-assign]


_install()
