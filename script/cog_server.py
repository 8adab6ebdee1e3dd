"""Run this project's real Cog server (coglet) on 127.0.0.1: start it, wait for READY, talk
to it, stop it. Used by script/demo, script/soak and tests/server; standard library only.
It also holds what every script under script/ shares: REPO_ROOT, and
run_with_project_python for scripts started with a Python that lacks what they need.

Facts about cog 0.23's server this relies on: it is started as `python -m cog.server.http`
from the project root with COG_PREDICT_TYPE_STUB naming the predictor; its worker is
started as `python` from PATH, so the virtualenv's bin/ goes first in PATH; it runs in
its own process group, because killing only the parent leaves the worker behind.
"""

import argparse
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
import urllib.parse
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


# The checkpoints script/download-weights fetches, by the width of the text embeddings their
# UNet reads (unet/config.json's cross_attention_dim), which tells them apart in a folder.
CHECKPOINT_WIDTHS = {"sd15": 768, "sd21": 1024, "sdxl": 2048}
# What setup reads from a component folder of a diffusers checkpoint, by folder name; any
# other folder (unet, vae, text_encoder, safety_checker, ...) is a model: config.json and
# a .safetensors file. One of each set of alternatives is enough.
COMPONENT_FILES = {
    "scheduler": [("scheduler_config.json",)],
    "tokenizer": [("vocab.json", "tokenizer.json")],
    "tokenizer_2": [("vocab.json", "tokenizer.json")],
    "feature_extractor": [("preprocessor_config.json",)],
}
MODEL_FILES = [("config.json",), ("*.safetensors",)]


def checkpoint_width(sd_dir: Path) -> int | None:
    """The cross_attention_dim of the UNet in sd_dir, or None (none there, or unreadable)."""
    try:
        return json.loads((sd_dir / "unet" / "config.json").read_text(encoding="utf-8"))["cross_attention_dim"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def missing_part(weights_dir: Path) -> Path | None:
    """The first file or folder that a weights directory (stable-diffusion/ and FILM's file,
    see weights/README.md) lacks, or None when every part setup reads is there: every
    component model_index.json names, with the files of COMPONENT_FILES or MODEL_FILES.

    It looks only at which files exist, in the standard library, so that script/demo can
    choose its weights at once; setup itself also finds a file that is cut short.
    """
    sd_dir = weights_dir / "stable-diffusion"
    index_path = sd_dir / "model_index.json"
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return index_path
    film_file = weights_dir / "film_net" / "film_net_style.safetensors"
    components = [name for name, value in index.items() if not name.startswith("_") and isinstance(value, list)]
    for name in components:
        optional = name in ("safety_checker", "feature_extractor") and not (sd_dir / "safety_checker").exists()
        if index[name][0] is None or optional:  # not in this checkpoint, or no safety check (weights/README.md)
            continue
        for alternatives in COMPONENT_FILES.get(name, MODEL_FILES):
            if not any(next((sd_dir / name).glob(pattern), None) for pattern in alternatives):
                return sd_dir / name / alternatives[0]
    return None if film_file.exists() else film_file


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


def wait_until_ready(base_url: str, process: subprocess.Popen, deadline_s: float, log_path: Path | None = None) -> dict:
    """Poll GET /health-check until the status is READY; return that health report.

    Raises ServerError, in one sentence naming the port, when the process exits (checked
    twice a second, so a server that cannot bind its port is noticed at once, not after
    deadline_s; with log_path, the sentence gives the reason the log ends with), when
    setup fails (with setup's own last line), or when deadline_s passes.
    """
    port = urllib.parse.urlsplit(base_url).port
    deadline = time.monotonic() + deadline_s
    status = "not answering"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerError(exit_sentence(port, process.returncode, exit_reason(log_path)))
        try:
            health = get_json(f"{base_url}/health-check", timeout=5)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.5)
            continue
        status = health.get("status")
        if status == "READY":
            return health
        if status in ("SETUP_FAILED", "DEFUNCT"):
            logs = (health.get("setup") or {}).get("logs", "").strip()
            last = logs.splitlines()[-1].removeprefix("Setup failed: ").removeprefix("setup failed: ") if logs else ""
            raise ServerError(f"The Cog server on port {port} failed its setup ({status}): {last or 'no reason logged.'}")
        time.sleep(0.5)
    raise ServerError(f"The Cog server on port {port} was not READY after {deadline_s:.0f} s (last status: {status}).")


def exit_reason(log_path: Path | None) -> str:
    """The last line of the Python traceback the server's log ends with, e.g.
    "RuntimeError: Address already in use (os error 98)"; "" without one."""
    if log_path is None or not log_path.exists():
        return ""
    lines = [line for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
    if "Traceback (most recent call last):" not in lines:
        return ""
    return lines[-1].strip()


def exit_sentence(port: int, code: int, reason: str) -> str:
    """One sentence for a server that exited before it was ready."""
    if "Address already in use" in reason:
        return f"The Cog server could not listen on port {port}, which another program uses: stop that one or pick another port."
    because = f": {reason.rstrip('.')}" if reason else ""
    return f"The Cog server on port {port} exited with code {code} before it was ready{because}."


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


def main(argv: list[str]) -> None:
    """`script/cog_server.py`: start the server in the background and return once it is READY."""
    parser = argparse.ArgumentParser(
        prog="script/cog_server.py",
        description=(
            "Start this project's Cog server on 127.0.0.1:PORT in the background, wait until it is READY, "
            "and print its URL and how to stop it, or say in one sentence why it did not get ready. "
            "script/demo, script/soak and the tests import this file to do the same."
        ),
    )
    parser.add_argument("--port", type=int, default=5000, help="the port to listen on (default 5000)")
    parser.add_argument(
        "--weights", type=Path, metavar="DIR",
        help="the weights directory, e.g. weights/tiny (default: $ANIMATE_WEIGHTS, else weights/)",
    )
    parser.add_argument(
        "--log", type=Path, default=REPO_ROOT / "outputs" / "server.log", metavar="FILE",
        help="where the server's log goes (default: outputs/server.log)",
    )
    parser.add_argument(
        "--setup-deadline", type=float, default=300, metavar="SECONDS", help="how long to wait for READY (default 300)"
    )
    parser.add_argument(
        "--pid-file", type=Path, metavar="FILE",
        help="write the server's process id here, for `kill -- -$(cat FILE)`, which stops it and its worker",
    )
    arguments = parser.parse_args(argv)
    run_with_project_python(("cog",), "run `make schema`, which installs it into .venv")
    arguments.log.parent.mkdir(parents=True, exist_ok=True)
    weights = arguments.weights.resolve() if arguments.weights else None
    started = time.monotonic()
    process = start(arguments.port, arguments.log, weights)
    try:
        wait_until_ready(f"http://127.0.0.1:{arguments.port}", process, arguments.setup_deadline, arguments.log)
    except ServerError as error:
        stop(process)
        raise SystemExit(str(error)) from None
    if arguments.pid_file:
        arguments.pid_file.write_text(f"{process.pid}\n")
    print(
        f"READY at http://127.0.0.1:{arguments.port} after {time.monotonic() - started:.1f} s "
        f"(log: {arguments.log}); stop it with: kill -- -{process.pid}",
        flush=True,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
