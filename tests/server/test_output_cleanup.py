"""predict.py's setup() makes a temporary folder for the outputs of every prediction; it is
removed when the server stops, whichever way coglet ends the worker. Each test starts a
server of its own, with a TMPDIR of its own, so what is left behind is this server's."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.server.live_server import LiveServer, cog_server, succeeded_outputs

SMALL = {
    "prompt_start": "a red apple",
    "prompt_end": "a green pear",
    "width": 128,
    "height": 128,
    "num_inference_steps": 2,
    "num_animation_frames": 2,
    "num_interpolation_steps": 2,
}
# The worker removes the folder while it ends, which may be just after the server exits.
REMOVAL_DEADLINE_S = 15


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("cleanup-weights") / "tiny"
    subprocess.run([sys.executable, "-m", "animate.tiny", str(directory)], cwd=REPO_ROOT, check=True)
    return directory


def stop_process_group(process: subprocess.Popen) -> None:
    """SIGTERM to the server and its worker together: `kill -- -<pid>`, script/cog_server.stop."""
    cog_server.stop(process)


def stop_server_only(process: subprocess.Popen) -> None:
    """SIGTERM to the server alone: coglet then asks its worker to shut down."""
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)


def output_folders_left(temporary: Path) -> list[Path]:
    """The animation-outputs-* folders under temporary, once the deadline for removal passed."""
    deadline = time.monotonic() + REMOVAL_DEADLINE_S
    while True:
        left = sorted(temporary.glob("animation-outputs-*"))
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)


@pytest.mark.parametrize("stop", [stop_process_group, stop_server_only], ids=["process group", "server only"])
def test_no_output_folder_is_left_after_the_server_stops(tmp_path, weights_dir, stop):
    live = LiveServer(tmp_path, weights_dir)
    live.start(build_weights=False)
    try:
        live.wait_until_ready()
        temporary = tmp_path / "tmp"  # the server's TMPDIR (LiveServer.start)
        (output_base,) = temporary.glob("animation-outputs-*")
        succeeded_outputs(*live.predict(SMALL))
        assert list(output_base.glob("prediction-*/*")), "the prediction's files are in the folder"
        stop(live.process)
        assert output_folders_left(temporary) == []
    finally:
        live.stop()
