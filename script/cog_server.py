"""Run this project's real Cog server (coglet) on 127.0.0.1: start it, wait for READY, talk
to it, stop it. Used by script/demo, script/soak and tests/server; standard library only.
It also holds what every script under script/ shares: REPO_ROOT, and
run_with_project_python for scripts started with a Python that lacks what they need.

Facts about cog 0.23's server this relies on: it is started as `python -m cog.server.http`
from the project root with COG_PREDICT_TYPE_STUB naming the predictor; its worker is
started as `python` from PATH, so the virtualenv's bin/ goes first in PATH; it runs in
its own process group, because killing only the parent leaves the worker behind.
"""

import base64
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PREDICTOR = "predict.py:Predictor"
# The virtualenv the Makefile makes (VENV in the Makefile).
PROJECT_VENV = REPO_ROOT / ".venv"


def run_with_project_python(modules: tuple[str, ...], how_to_install: str) -> None:
    """Make sure the running script has the modules it needs, else run it again under the
    project's virtualenv, else exit with one sentence.

    A script run as `script/NAME` starts with the first python3 on PATH (its #! line),
    which usually lacks the project's packages; when one of `modules` cannot be found and
    .venv exists, the script is started again, with the same arguments, by .venv/bin/python.
    `how_to_install` ends the sentence when that cannot help (e.g. "run `make schema`").
    """
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if not missing:
        return
    venv_python = PROJECT_VENV / "bin" / "python"
    in_project_venv = Path(sys.prefix).resolve() == PROJECT_VENV.resolve()
    if venv_python.exists() and not in_project_venv:
        os.execv(venv_python, [str(venv_python), sys.argv[0], *sys.argv[1:]])
    raise SystemExit(f"{sys.executable} lacks {', '.join(missing)}: {how_to_install}.")


class ServerError(RuntimeError):
    """The server stopped, failed its setup, or did not get ready in time."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(
    port: int,
    log_path: Path,
    weights_dir: Path | None = None,
    extra_args: tuple[str, ...] = (),
    extra_env: dict[str, str] | None = None,
    predictor: str = PREDICTOR,
) -> subprocess.Popen:
    """Start the server in a new process group, its output going to log_path.

    Uses the Python running this code (the project's virtualenv); weights_dir, when
    given, becomes ANIMATE_WEIGHTS. extra_args go to the server (e.g. --upload-url URL),
    extra_env into its environment (e.g. TMPDIR); predictor is the `file:Class` it serves
    (a test's subclass of predict.py's, say).
    """
    env = dict(os.environ, **(extra_env or {}), COG_PREDICT_TYPE_STUB=predictor, PORT=str(port))
    # Not resolved: a virtualenv's python is a symlink, and its bin/ is what must come first.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    if weights_dir is not None:
        env["ANIMATE_WEIGHTS"] = str(weights_dir)
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "cog.server.http", "--host", "127.0.0.1", *extra_args],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop(process: subprocess.Popen) -> None:
    """Stop the server and its worker: SIGTERM to the group, SIGKILL after 10 s."""
    for sig, wait_s in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def get_json(url: str, timeout: float = 10) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.load(response)


def post_json(url: str, body: dict, headers: dict | None = None, timeout: float = 600) -> tuple[int, dict]:
    """POST body as JSON; (HTTP status, decoded JSON reply), error statuses included."""
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def wait_until_ready(base_url: str, process: subprocess.Popen, deadline_s: float) -> dict:
    """Poll GET /health-check until the status is READY; return that health report.

    Raises ServerError when the process exits, setup fails, or deadline_s passes.
    """
    deadline = time.monotonic() + deadline_s
    status = "not answering"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerError(f"the server exited with code {process.returncode} before it was ready")
        try:
            health = get_json(f"{base_url}/health-check", timeout=5)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.5)
            continue
        status = health.get("status")
        if status == "READY":
            return health
        if status in ("SETUP_FAILED", "DEFUNCT"):
            logs = (health.get("setup") or {}).get("logs", "")
            raise ServerError(f"the server's setup failed ({status}):\n{logs}")
        time.sleep(0.5)
    raise ServerError(f"the server was not READY after {deadline_s:.0f} s (last status: {status})")


def decode_data_uri(uri: str) -> tuple[str, bytes]:
    """('video/mp4', b'...') from 'data:video/mp4;base64,...'."""
    header, _, payload = uri.partition(",")
    if not header.startswith("data:") or not header.endswith(";base64"):
        raise ValueError(f"not a base64 data URI: {uri[:60]!r}")
    return header[len("data:") : -len(";base64")], base64.b64decode(payload)


def log_tail(log_path: Path, lines: int = 40) -> str:
    """The last lines of the server log, for error messages."""
    try:
        return "\n".join(log_path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no server log)"
