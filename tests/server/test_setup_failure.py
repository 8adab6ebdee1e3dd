"""A server without weights fails its setup with one sentence naming the directory and the fix;
so does one whose SDXL weights lack the second text encoder, and one with a UNet where the
upscaler should be."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from animate.tiny import write_tiny_weights
from animate.weights import UPSCALER_FILE
from tests.conftest import REPO_ROOT
from tests.server.live_server import LiveServer, cog_server


def setup_failure_sentence(work_dir: Path, weights: Path) -> str:
    """The sentence a server on `weights` fails its setup with, after coglet's "setup failed:
    WeightsError: " in the health check's setup logs; checked to be one line, no traceback."""
    live = LiveServer(work_dir, weights_dir=weights).start(build_weights=False)
    try:
        with pytest.raises(cog_server.ServerError, match="SETUP_FAILED"):
            cog_server.wait_until_ready(live.base_url, live.process, 300)
        logs = live.health_report()["setup"]["logs"]
    finally:
        live.stop()
    match = re.search(r"setup failed: WeightsError: (.*)$", logs.strip())
    assert match, logs
    sentence = match.group(1)
    assert sentence.endswith(".") and "\n" not in sentence and "Traceback" not in logs
    return sentence


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
    sentence = setup_failure_sentence(tmp_path, weights)
    assert sentence.startswith(f"Model weights not found at {missing}: run script/download-weights")


def test_a_unet_in_the_upscalers_place_fails_setup_in_one_sentence(tmp_path):
    """A PyTorch checkpoint, but of the tiny UNet, saved as upscaler/realesr-general-x4v3.pth."""
    weights = write_tiny_weights(tmp_path / "weights")
    unet = load_file(weights / "stable-diffusion" / "unet" / "diffusion_pytorch_model.safetensors")
    torch.save(unet, weights / UPSCALER_FILE)
    sentence = setup_failure_sentence(tmp_path, weights)
    assert sentence.startswith(
        f"Upscaler weights file {weights / UPSCALER_FILE} holds no upscaler that spandrel recognises "
        "(UnsupportedModelError): put Real-ESRGAN's realesr-general-x4v3.pth there (run script/download-weights"
    )
    assert sentence.endswith("or remove it to run without upscaling.")
