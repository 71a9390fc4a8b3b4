"""Serve an emulator over HTTPS with a certificate from a test CA (trustme), in a background thread."""

from __future__ import annotations

import logging
import ssl
import tempfile
import threading
from pathlib import Path
from typing import Any

import trustme
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from .app import EmulatorApp


class _QuietHandler(WSGIRequestHandler):
    """No request logging; and the app's own `Date` header wins over the server's wall-clock one.

    http.server always sends `Date` with the real time before the application's headers, so an emulator
    with an emulated clock would otherwise answer two `Date` headers. The server's is held back and only
    sent when the application did not set one.
    """

    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass

    def log_error(self, *args: Any) -> None:
        pass

    def send_response(self, code: int, message: str | None = None) -> None:
        self.log_request(code)
        self.send_response_only(code, message)
        self.send_header("Server", self.version_string())
        self._app_sent_date = False

    def send_header(self, keyword: str, value: str) -> None:
        if keyword.lower() == "date":
            self._app_sent_date = True
        super().send_header(keyword, value)

    def end_headers(self) -> None:
        if not getattr(self, "_app_sent_date", True):
            super().send_header("Date", self.date_time_string())
        self._app_sent_date = True
        super().end_headers()


class TestCertificateAuthority:
    """One CA per process; its PEM is written to a file that clients use as `ca_bundle`."""

    __test__ = False  # not a pytest test class

    _shared: TestCertificateAuthority | None = None
    _shared_lock = threading.Lock()

    def __init__(self, directory: Path | None = None) -> None:
        self.ca = trustme.CA(organization_name="crmsync test CA")
        self.server_cert = self.ca.issue_cert("127.0.0.1", "localhost")
        directory = directory or Path(tempfile.mkdtemp(prefix="crmsync-ca-"))
        directory.mkdir(parents=True, exist_ok=True)
        self.bundle_path = directory / "crmsync-test-ca.pem"
        self.ca.cert_pem.write_to_path(str(self.bundle_path))

    @classmethod
    def shared(cls) -> TestCertificateAuthority:
        with cls._shared_lock:
            if cls._shared is None:
                cls._shared = cls()
            return cls._shared

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.server_cert.configure_cert(context)
        return context


class EmulatorServer:
    """Runs an `EmulatorApp` on https://127.0.0.1:<port> until `stop()`."""

    def __init__(
        self,
        app: EmulatorApp,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ca: TestCertificateAuthority | None = None,
    ) -> None:
        self.app = app
        self.ca = ca or TestCertificateAuthority.shared()
        self._server: BaseWSGIServer = make_server(
            host,
            port,
            app,
            threaded=True,
            request_handler=_QuietHandler,
            ssl_context=self.ca.server_context(),
        )
        self.host = host
        self.port = self._server.server_port
        self.url = f"https://{host}:{self.port}"
        app.base_url = self.url
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"{app.name}-https", daemon=True)

    @property
    def ca_bundle(self) -> str:
        return str(self.ca.bundle_path)

    @property
    def control_url(self) -> str:
        return f"{self.url}/__emulator"

    def start(self) -> EmulatorServer:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
