"""Fixtures for the tests that talk HTTP to the real Cog server."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.server.live_server import LiveServer, shared_server, stop_shared_server


@pytest.fixture(scope="session")
def server(tmp_path_factory) -> LiveServer:
    """The real server with tiny weights, READY (started once per session)."""
    live = shared_server(tmp_path_factory.mktemp("cog-server"))
    yield live
    stop_shared_server()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Attach the end of the server log to every failing server test."""
    outcome = yield
    report = outcome.get_result()
    live = getattr(item, "funcargs", {}).get("server")
    if report.failed and isinstance(live, LiveServer):
        report.sections.append(("cog server log (last lines)", live.log_tail()))


class WebhookReceiver:
    """Collects the prediction webhooks the server POSTs to http://127.0.0.1:<port>/hook."""

    def __init__(self):
        self.events: list[dict] = []
        self.changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                self.send_response(200)
                self.end_headers()
                with receiver.changed:
                    receiver.events.append(body)
                    receiver.changed.notify_all()

            def log_message(self, *args):
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}/hook"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def wait_for(self, prediction_id: str, matches, timeout_s: float) -> dict | None:
        """The first webhook of prediction_id for which matches(event) is true, or None on timeout."""
        deadline = time.monotonic() + timeout_s
        with self.changed:
            while True:
                for event in self.events:
                    if event.get("id") == prediction_id and matches(event):
                        return event
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self.changed.wait(remaining)

    def close(self):
        self.http.shutdown()
        self.http.server_close()


@pytest.fixture
def webhooks() -> WebhookReceiver:
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()
