"""`upscale` through the real server: the hosted model's example upscaled 2x, the largest
output refused in one sentence, and a server without the upscaler, which starts and refuses
only the requests that upscale. (A file in the upscaler's place that is no upscaler fails
setup: test_setup_failure.py. Cancelling while upscaling: test_cancel_points.py.)"""

import json

import pytest

from animate import KeyframePlan
from animate.tiny import write_tiny_weights
from animate.weights import UPSCALER_FILE
from tests.server.live_server import REPO_ROOT, LiveServer, succeeded_outputs
from tests.server.media import mp4_info, png_size
from tests.server.test_bad_input_battery import PROBE, failed_sentence, send, with_input


def test_the_example_request_upscaled_2x_returns_every_frame_at_twice_the_size(server, tmp_path):
    """The hosted model's example (2 prompts, 25 keyframes, S = 5, ping-pong, MP4) at 128x128
    with latent in-betweens, as in test_predictions.py, and 2 steps, upscaled to 256x256."""
    example = json.loads((REPO_ROOT / "script" / "example-request.json").read_text())["input"]
    request = {
        **example, "width": 128, "height": 128, "num_inference_steps": 2, "film_interpolation": False,
        "upscale": "2x",
    }
    plan = KeyframePlan(num_prompts=2, keyframes_per_segment=25, interpolation_steps=5, ping_pong=True)

    outputs = succeeded_outputs(*server.predict(request))

    assert [mime for mime, _ in outputs] == ["video/mp4"]
    video = mp4_info(outputs[0][1], tmp_path)
    assert video.frames == plan.num_output_frames == 240
    assert (video.codec, video.pix_fmt, video.size, video.fps) == ("h264", "yuv420p", (256, 256), 20.0)
    assert server.wait_for_log_message(r"Upscaler: (.*)").group(1) == (
        "RealESRGAN Compact, 4x, 4,920 parameters, torch.float32"
    )


def test_keyframe_pngs_come_upscaled_4x(server):
    outputs = succeeded_outputs(*server.predict({**PROBE, "upscale": "4x", "intermediate_output": True}))
    assert [mime for mime, _ in outputs] == ["image/png", "image/png", "image/gif"]
    assert [png_size(data) for _, data in outputs[:2]] == [(512, 512), (512, 512)]


def test_a_frame_over_the_largest_output_is_refused_in_one_sentence(server):
    status, _, text = send(server, with_input(width=1024, height=768, upscale="4x"))
    assert failed_sentence(status, text).startswith("upscale=4x would make frames of 4096x3072 pixels")
    assert server.wait_for_health("READY") == "READY"


@pytest.fixture(scope="module")
def server_without_upscaler(tmp_path_factory):
    """A server on the tiny weights less their upscaler file, READY."""
    work = tmp_path_factory.mktemp("no-upscaler")
    weights = write_tiny_weights(work / "weights")
    (weights / UPSCALER_FILE).unlink()
    live = LiveServer(work, weights_dir=weights).start(build_weights=False)
    live.wait_until_ready()
    yield live
    live.stop()


def test_without_the_upscaler_setup_says_so_and_only_upscaling_fails(server_without_upscaler):
    live = server_without_upscaler
    logged = live.wait_for_log_message(r"Upscaler: (.*)").group(1)
    assert logged == f"none, so upscale=2x and 4x fail: {live.weights_dir / UPSCALER_FILE} is not there " \
        "(script/download-weights fetches it)"
    status, _, text = send(live, with_input(upscale="4x"))
    assert failed_sentence(status, text) == (
        "upscale=4x needs the upscaler weights (upscaler/realesr-general-x4v3.pth in the weights directory), "
        "which this server did not find at setup: leave upscale at none, or fetch them with "
        "script/download-weights and restart the server."
    )
    outputs = succeeded_outputs(*live.predict(PROBE))
    assert [mime for mime, _ in outputs] == ["image/gif"]
