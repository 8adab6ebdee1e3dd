"""A server whose weights are broken fails its setup with one sentence naming the file and the
fix, and says so on every request instead of hanging or crashing.

What coglet 0.23.1 does with a failed setup: GET /health-check answers status SETUP_FAILED
with setup.status "failed" and setup.logs replaced by one line, "worker setup failed: ...
Setup failed: setup failed: <ExceptionType>: <message>"; POST /predictions answers 503
(its message says setup "has not finished yet", which is coglet's wording); the process
keeps running. The other faults (missing directory, corrupt tokenizer, scheduler) are
tested on load_components directly in tests/animate/test_weights.py, and a missing
directory through the server in test_setup_failure.py.
"""

import re

import pytest

from animate.tiny import write_tiny_weights
from tests.server.live_server import LiveServer, cog_server

UNET_FILE = "stable-diffusion/unet/diffusion_pytorch_model.safetensors"


@pytest.fixture(scope="module")
def truncated_weights(tmp_path_factory):
    """Tiny weights whose UNet file lost its second half, as after an interrupted download."""
    weights = write_tiny_weights(tmp_path_factory.mktemp("broken-weights") / "tiny")
    path = weights / UNET_FILE
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return weights


def test_truncated_weights_fail_setup_naming_the_file_and_the_fix(truncated_weights, tmp_path):
    live = LiveServer(tmp_path, weights_dir=truncated_weights).start(build_weights=False)
    try:
        with pytest.raises(cog_server.ServerError, match="SETUP_FAILED"):
            cog_server.wait_until_ready(live.base_url, live.process, 300)
        health = live.health_report()
        status, reply = cog_server.post_json(f"{live.base_url}/predictions", {"input": {"prompt_start": "a", "prompt_end": "b"}})
        still_running = live.process.poll() is None
        again = live.health()
    finally:
        live.stop()

    assert health["status"] == "SETUP_FAILED" and health["setup"]["status"] == "failed"
    logs = health["setup"]["logs"]
    match = re.search(r"setup failed: WeightsError: (.*)$", logs.strip())
    assert match, logs
    sentence = match.group(1)
    assert sentence.startswith(f"Model weights file {truncated_weights / UNET_FILE} is corrupt or truncated (")
    assert "delete it and fetch it again" in sentence and "script/download-weights" in sentence
    assert sentence.endswith(".") and "\n" not in sentence and "Traceback" not in logs
    assert status == 503 and reply["status"] == "failed" and reply["error"]
    assert still_running and again == "SETUP_FAILED"
