"""The real Cog server on an SDXL checkpoint (the tiny one, `python -m animate.tiny --kind
sdxl`): the same requests, outputs and cancellation as with SD 1.x.

One server for the module. Sizes and steps are small, as in test_predictions.py; frame
counts follow docs/behaviour.md, "Frame arithmetic".
"""

import json
import subprocess
import sys
import time
import uuid

import pytest

from animate import KeyframePlan
from tests.server.live_server import REPO_ROOT, LiveServer, succeeded_outputs
from tests.server.media import gif_info, mp4_info, png_size

SMALL = {"width": 128, "height": 128, "num_inference_steps": 4}
CANCEL_DEADLINE_S = 15


@pytest.fixture(scope="module")
def sdxl_server(tmp_path_factory):
    """The server with the tiny SDXL weights, READY."""
    work_dir = tmp_path_factory.mktemp("sdxl-server")
    weights = work_dir / "tiny-sdxl"
    subprocess.run(
        [sys.executable, "-m", "animate.tiny", "--kind", "sdxl", str(weights)], cwd=REPO_ROOT, check=True, timeout=300
    )
    live = LiveServer(work_dir, weights_dir=weights).start(build_weights=False)
    try:
        live.wait_until_ready()
        yield live
    finally:
        live.stop()


def test_setup_says_it_loaded_sdxl(sdxl_server):
    sdxl_server.wait_for_log_message(r"Checkpoint: SDXL \(StableDiffusionXLPipeline\), prediction type epsilon")
    sdxl_server.wait_for_log_message(
        r"^Loaded UNet, VAE, two CLIP text encoders \(CLIPTextModel, CLIPTextModelWithProjection\) "
        r"and their two tokenizers, scheduler \(EulerDiscreteScheduler\); "
    )


def test_example_request_returns_an_mp4_with_every_frame(sdxl_server, tmp_path):
    """The published example (2 prompts, 25 keyframes, 5 steps per gap, ping-pong, MP4) at
    128x128, 5 denoising steps and latent in-betweens, as test_predictions.py sends it."""
    example = json.loads((REPO_ROOT / "script" / "example-request.json").read_text())["input"]
    request = {**example, "width": 128, "height": 128, "num_inference_steps": 5, "film_interpolation": False}
    plan = KeyframePlan(num_prompts=2, keyframes_per_segment=25, interpolation_steps=5, ping_pong=True)
    assert (plan.num_keyframes, plan.num_frames, plan.num_output_frames) == (25, 121, 240)

    outputs = succeeded_outputs(*sdxl_server.predict(request))

    assert [mime for mime, _ in outputs] == ["video/mp4"]
    video = mp4_info(outputs[0][1], tmp_path)
    assert video.frames == plan.num_output_frames == 2 * plan.num_frames - 2
    assert (video.codec, video.size, video.fps) == ("h264", (128, 128), 20.0)


def test_intermediate_output_with_a_negative_prompt_and_film(sdxl_server):
    request = {
        "prompt_start": "a red apple", "prompt_end": "a green pear | a yellow banana", **SMALL,
        "num_animation_frames": 2, "num_interpolation_steps": 3, "intermediate_output": True,
        "negative_prompt": "blurry", "seed": 5,
    }
    plan = KeyframePlan(num_prompts=3, keyframes_per_segment=2, interpolation_steps=3)

    status, reply = sdxl_server.predict(request)
    outputs = succeeded_outputs(status, reply)

    assert [mime for mime, _ in outputs] == ["image/png"] * plan.num_keyframes + ["image/gif"]
    keyframes = [data for _, data in outputs[:-1]]
    assert all(png_size(data) == (128, 128) for data in keyframes)
    assert keyframes[0] != keyframes[-1], "the walk must move from the first prompt to the last"
    assert gif_info(outputs[-1][1]).frames == plan.num_frames == 7
    assert "Using seed: 5" in reply["logs"].splitlines()


def test_cancel_during_the_sdxl_walk_and_the_next_prediction_succeeds(sdxl_server, webhooks):
    long = {
        "prompt_start": "a red apple", "prompt_end": "a green pear",
        "width": 128, "height": 128, "num_inference_steps": 500, "num_animation_frames": 4,
    }
    prediction_id = f"cancel-sdxl-{uuid.uuid4().hex[:12]}"
    status, reply = sdxl_server.predict_async(prediction_id, long, webhooks.url, ["start", "logs", "completed"])
    assert status == 202, reply

    denoising = webhooks.wait_for(prediction_id, lambda e: "step" in (e.get("logs") or ""), timeout_s=120)
    assert denoising is not None, "the prediction never started denoising"
    cancel_sent = time.monotonic()
    cancel_status, _ = sdxl_server.cancel(prediction_id)
    assert cancel_status == 200
    final = webhooks.wait_for(
        prediction_id, lambda e: e.get("status") in {"succeeded", "failed", "canceled"}, CANCEL_DEADLINE_S
    )
    assert final is not None, f"no terminal webhook within {CANCEL_DEADLINE_S} s of the cancel"
    assert final["status"] == "canceled" and not final.get("output")
    assert time.monotonic() - cancel_sent < CANCEL_DEADLINE_S

    assert sdxl_server.wait_for_health("READY") == "READY"
    small = {**long, "num_inference_steps": 2, "num_animation_frames": 2, "num_interpolation_steps": 2}
    outputs = succeeded_outputs(*sdxl_server.predict(small))
    assert [mime for mime, _ in outputs] == ["image/gif"]
