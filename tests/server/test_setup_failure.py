"""A server without weights fails its setup with one sentence naming the directory and the fix;
so does one whose SDXL weights lack the second text encoder."""

import re
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT
from tests.server.live_server import LiveServer, cog_server


def test_missing_weights_fail_setup_with_the_fix(tmp_path):
    missing = tmp_path / "no-weights-here"
    live = LiveServer(tmp_path, weights_dir=missing).start(build_weights=False)
    try:
        try:
            live.wait_until_ready()
        except cog_server.ServerError as error:
            message = str(error)
        else:
            raise AssertionError("setup succeeded without weights")
    finally:
        live.stop()
    assert "SETUP_FAILED" in message
    assert str(missing) in message
    assert "script/download-weights" in message


def test_sdxl_weights_without_text_encoder_2_fail_setup_in_one_sentence(tmp_path):
    """The tiny SDXL, written by `python -m animate.tiny --kind sdxl`, less its text_encoder_2/."""
    weights = tmp_path / "tiny-sdxl"
    subprocess.run(
        [sys.executable, "-m", "animate.tiny", "--kind", "sdxl", str(weights)], cwd=REPO_ROOT, check=True, timeout=300
    )
    missing = weights / "stable-diffusion" / "text_encoder_2"
    shutil.rmtree(missing)
    live = LiveServer(tmp_path, weights_dir=weights).start(build_weights=False)
    try:
        with pytest.raises(cog_server.ServerError, match="SETUP_FAILED"):
            cog_server.wait_until_ready(live.base_url, live.process, 300)
        logs = live.health_report()["setup"]["logs"]
    finally:
        live.stop()
    match = re.search(r"setup failed: WeightsError: (.*)$", logs.strip())
    assert match, logs
    sentence = match.group(1)
    assert sentence.startswith(f"Model weights not found at {missing}: run script/download-weights")
    assert sentence.endswith(".") and "\n" not in sentence and "Traceback" not in logs
