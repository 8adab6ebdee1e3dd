"""The real Cog server with tiny weights, started once per test session and shared.

tests/server/ and tests/test_schema.py both talk to it; it is started by whichever needs it
first (schema written, tiny weights built, READY waited for) and stopped at the end of the
session. script/cog_server.py does the process handling, as for `make demo`.
"""

import json
import re
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "script"))
import cog_server  # noqa: E402  (script/ is not a package)

# Starting means importing torch and diffusers and loading the tiny models: seconds, but
# a loaded 2-core CI machine can be slow.
SETUP_DEADLINE_S = 300
PREDICTION_TIMEOUT_S = 600
BUSY_RETRY_S = 10


class LiveServer:
    """One running server: its URL, its log, and small helpers for requests."""

    def __init__(
        self,
        work_dir: Path,
        weights_dir: Path | None = None,
        extra_args: tuple[str, ...] = (),
        extra_env: dict[str, str] | None = None,
        predictor: str = cog_server.PREDICTOR,
    ):
        self.work_dir = work_dir
        self.weights_dir = weights_dir or work_dir / "tiny-weights"
        self.extra_args = extra_args  # to the server, e.g. ("--upload-url", url)
        self.extra_env = extra_env  # into its environment, e.g. {"TMPDIR": ...}
        self.predictor = predictor  # the `file:Class` served, predict.py's by default
        self.log_path = work_dir / "server.log"
        self.process: subprocess.Popen | None = None
        self.base_url = ""

    def start(self, build_weights: bool = True) -> "LiveServer":
        """Write the schema, build tiny weights, start the server and wait for READY."""
        subprocess.run([sys.executable, str(REPO_ROOT / "script" / "schema")], cwd=REPO_ROOT, check=True)
        if build_weights:
            subprocess.run(
                [sys.executable, "-m", "animate.tiny", str(self.weights_dir)], cwd=REPO_ROOT, check=True
            )
        port = cog_server.free_port()
        self.base_url = f"http://127.0.0.1:{port}"
        # The server's temporary files (predict()'s outputs included) go under work_dir,
        # which pytest removes a few runs later, instead of piling up in /tmp.
        temporary = self.work_dir / "tmp"
        temporary.mkdir(exist_ok=True)
        env = {"TMPDIR": str(temporary), **(self.extra_env or {})}
        self.process = cog_server.start(port, self.log_path, self.weights_dir, self.extra_args, env, self.predictor)
        return self

    def wait_until_ready(self) -> dict:
        """The health report once READY; stops the server and raises with its log if not."""
        try:
            return cog_server.wait_until_ready(self.base_url, self.process, SETUP_DEADLINE_S, self.log_path)
        except cog_server.ServerError as error:
            self.stop()
            raise cog_server.ServerError(f"{error}\n--- server log ---\n{self.log_tail()}") from None

    def stop(self) -> None:
        if self.process is not None:
            cog_server.stop(self.process)
            self.process = None

    def log_tail(self, lines: int = 60) -> str:
        return cog_server.log_tail(self.log_path, lines)

    def log_records(self) -> list[dict]:
        """The server log's JSON records, one per line (a line still being written is skipped)."""
        records = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return records

    def wait_for_log_message(self, pattern: str, timeout_s: float = 30) -> re.Match:
        """The first server-log message matching pattern, waiting up to timeout_s for it.

        Read setup's lines here, not in the health check's setup logs: coglet answers READY
        as soon as setup returns, and the last lines setup printed may still be on their way
        from the worker then (seen on a loaded 2-core machine). Those lines miss the health
        check's logs for good, but always reach the server log shortly after.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            for record in self.log_records():
                match = re.search(pattern, record.get("fields", {}).get("message", ""))
                if match:
                    return match
            assert time.monotonic() < deadline, f"no {pattern!r} in the server log\n{self.log_tail()}"
            time.sleep(0.2)

    def health_report(self) -> dict:
        """GET /health-check: status, and setup with its logs."""
        return cog_server.get_json(f"{self.base_url}/health-check")

    def health(self) -> str:
        return self.health_report()["status"]

    def wait_for_health(self, wanted: str, timeout_s: float = 30) -> str:
        """Poll until the health status is `wanted` (e.g. READY after a prediction ends)."""
        deadline = time.monotonic() + timeout_s
        status = self.health()
        while status != wanted and time.monotonic() < deadline:
            time.sleep(0.2)
            status = self.health()
        return status

    def openapi(self) -> dict:
        return cog_server.get_json(f"{self.base_url}/openapi.json")

    def predict(self, model_input: dict, retry_busy: bool = True, **extra) -> tuple[int, dict]:
        """A synchronous POST /predictions; (HTTP status, reply).

        For about 0.1 s after answering a prediction coglet still reports BUSY and answers
        409, so a test's back-to-back requests would fail now and then; with retry_busy a
        409 is retried for up to BUSY_RETRY_S. Tests of the 409 itself pass retry_busy=False.
        """
        deadline = time.monotonic() + BUSY_RETRY_S
        while True:
            status, reply = cog_server.post_json(
                f"{self.base_url}/predictions", {"input": model_input, **extra}, timeout=PREDICTION_TIMEOUT_S
            )
            if status != 409 or not retry_busy or time.monotonic() > deadline:
                return status, reply
            time.sleep(0.05)

    def predict_async(self, prediction_id: str, model_input: dict, webhook: str, events: list[str]) -> tuple[int, dict]:
        """POST /predictions with `Prefer: respond-async`; webhooks report its progress."""
        body = {"id": prediction_id, "input": model_input, "webhook": webhook, "webhook_events_filter": events}
        return cog_server.post_json(
            f"{self.base_url}/predictions", body, headers={"Prefer": "respond-async"}, timeout=30
        )

    def cancel(self, prediction_id: str) -> tuple[int, dict]:
        return cog_server.post_json(f"{self.base_url}/predictions/{prediction_id}/cancel", {}, timeout=30)


def succeeded_outputs(status: int, reply: dict) -> list[tuple[str, bytes]]:
    """[(mime type, bytes)] of a prediction that must have succeeded (else a clear failure)."""
    assert status == 200, f"HTTP {status}: {json.dumps(reply)[:2000]}"
    assert reply["status"] == "succeeded", f"{reply.get('error')}\nlogs:\n{reply.get('logs', '')[-3000:]}"
    return [cog_server.decode_data_uri(uri) for uri in reply["output"]]


_shared: LiveServer | None = None
_shared_failure: BaseException | None = None


def shared_server(work_dir: Path) -> LiveServer:
    """The session's server, started on first use (a failed start is not retried)."""
    global _shared, _shared_failure
    if _shared_failure is not None:
        raise _shared_failure
    if _shared is None:
        server = LiveServer(work_dir)
        try:
            server.start()
            server.wait_until_ready()
        except BaseException as error:
            server.stop()
            _shared_failure = error
            raise
        _shared = server
    return _shared


def stop_shared_server() -> None:
    global _shared
    if _shared is not None:
        _shared.stop()
        _shared = None
