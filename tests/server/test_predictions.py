"""Predictions through the real Cog server: the files it returns, read back and counted.

Frame counts come from the keyframe plan of docs/behaviour.md, "Frame arithmetic" (P
prompts, N keyframes per segment, S steps per gap): K = (P-1)(N-1)+1, F = (K-1)S+1, 2F-2
with ping-pong. Sizes and step counts are small so the suite stays fast on a 2-core CPU;
what is checked does not depend on them.
"""

import json
import re
import uuid

from animate import KeyframePlan
from tests.server.live_server import REPO_ROOT, succeeded_outputs
from tests.server.media import gif_info, mp4_info, png_size

SMALL = {"width": 128, "height": 128, "num_inference_steps": 4}


def test_server_is_ready_after_loading_the_weights(server):
    assert server.health_report()["status"] == "READY"
    server.wait_for_log_message(f"Loading weights from {re.escape(str(server.weights_dir))}")
    server.wait_for_log_message(r"Setup took [\d.]+ s")


def test_example_request_returns_an_mp4_with_every_frame(server, tmp_path):
    """The hosted model's example (2 prompts, 25 keyframes, 5 steps, ping-pong, MP4).

    Run at 128x128 with 5 denoising steps and latent in-betweens: at its own 512x512, 50
    steps and FILM it takes tens of minutes on a CPU with tiny weights (`make demo` sends it
    unchanged). The frame count, codec and timing do not depend on those three.
    """
    example = json.loads((REPO_ROOT / "script" / "example-request.json").read_text())["input"]
    request = {**example, "width": 128, "height": 128, "num_inference_steps": 5, "film_interpolation": False}
    plan = KeyframePlan(num_prompts=2, keyframes_per_segment=25, interpolation_steps=5, ping_pong=True)
    assert (plan.num_keyframes, plan.num_frames, plan.num_output_frames) == (25, 121, 240)

    outputs = succeeded_outputs(*server.predict(request))

    assert [mime for mime, _ in outputs] == ["video/mp4"]
    video = mp4_info(outputs[0][1], tmp_path)
    assert video.frames == plan.num_output_frames
    assert (video.codec, video.pix_fmt, video.size, video.fps) == ("h264", "yuv420p", (128, 128), 20.0)
    assert video.moov_before_mdat, "MP4 must start with its moov atom to play while loading"


def test_default_gif_request_draws_and_logs_a_seed(server):
    """Defaults apart from size, steps and keyframes: FILM, 5 steps per gap, GIF at 20 fps."""
    request = {"prompt_start": "a red apple", "prompt_end": "a green pear", **SMALL, "num_animation_frames": 4}
    plan = KeyframePlan(num_prompts=2, keyframes_per_segment=4, interpolation_steps=5)

    status, reply = server.predict(request)
    outputs = succeeded_outputs(status, reply)

    assert [mime for mime, _ in outputs] == ["image/gif"]
    gif = gif_info(outputs[0][1])
    assert gif.frames == plan.num_output_frames == 16
    assert gif.size == (128, 128)
    assert gif.durations_ms == [50] * gif.frames
    assert gif.loop == 0, "the GIF must loop forever"
    assert re.search(r"^Using seed: \d+$", reply["logs"], re.M)


def test_intermediate_output_yields_keyframe_pngs_then_the_animation(server):
    request = {
        "prompt_start": "a red apple", "prompt_end": "a green pear", **SMALL,
        "num_animation_frames": 3, "num_interpolation_steps": 2, "intermediate_output": True,
    }
    plan = KeyframePlan(num_prompts=2, keyframes_per_segment=3, interpolation_steps=2)

    outputs = succeeded_outputs(*server.predict(request))

    mimes = [mime for mime, _ in outputs]
    assert mimes == ["image/png"] * plan.num_keyframes + ["image/gif"]
    assert all(png_size(data) == (128, 128) for _, data in outputs[:-1])
    assert gif_info(outputs[-1][1]).frames == plan.num_frames == 5


def test_multi_prompt_walk_visits_every_prompt(server):
    """prompt_end "b|c" gives three prompts: two segments sharing their middle keyframe."""
    request = {
        "prompt_start": "a red apple", "prompt_end": "a green pear | a yellow banana", **SMALL,
        "num_animation_frames": 3, "num_interpolation_steps": 2, "intermediate_output": True,
        "gif_frames_per_second": 30, "seed": 7,
    }
    plan = KeyframePlan(num_prompts=3, keyframes_per_segment=3, interpolation_steps=2)
    assert plan.num_keyframes == 5

    outputs = succeeded_outputs(*server.predict(request))

    keyframes = [data for _, data in outputs[:-1]]
    assert len(keyframes) == plan.num_keyframes
    assert keyframes[0] != keyframes[-1], "the walk must move from the first prompt to the last"
    gif = gif_info(outputs[-1][1])
    assert gif.frames == plan.num_frames == 9
    # At 30 fps the delays (in hundredths) keep the time after frame i at round(100(i+1)/30).
    elapsed_cs = [sum(gif.durations_ms[: i + 1]) // 10 for i in range(gif.frames)]
    assert elapsed_cs == [round(100 * (i + 1) / 30) for i in range(gif.frames)]


def test_same_seed_gives_byte_identical_output(server):
    request = {
        "prompt_start": "a red apple", "prompt_end": "a green pear", **SMALL,
        "num_animation_frames": 2, "num_interpolation_steps": 2, "seed": 1234,
    }
    first_status, first = server.predict(request)
    (_, first_gif), = succeeded_outputs(first_status, first)
    (_, second_gif), = succeeded_outputs(*server.predict(request))
    (_, other_gif), = succeeded_outputs(*server.predict({**request, "seed": 1235}))

    assert "Using seed: 1234" in first["logs"].splitlines()
    assert first_gif == second_gif
    assert other_gif != first_gif, "a different seed must give a different animation"


def test_keyframe_pngs_are_sent_before_the_animation_is_done(server, webhooks):
    """With intermediate_output, the keyframes reach the client while in-betweens are made."""
    request = {
        "prompt_start": "a red apple", "prompt_end": "a green pear", **SMALL,
        "num_animation_frames": 3, "num_interpolation_steps": 16, "intermediate_output": True,
    }
    prediction_id = f"stream-{uuid.uuid4().hex[:12]}"
    status, reply = server.predict_async(prediction_id, request, webhooks.url, ["output", "completed"])
    assert status == 202, reply

    final = webhooks.wait_for(prediction_id, lambda e: e.get("status") in {"succeeded", "failed", "canceled"}, 120)
    assert final is not None and final["status"] == "succeeded", final
    partial = [e["output"] for e in webhooks.events if e.get("id") == prediction_id and e.get("status") == "processing" and e.get("output")]
    assert partial, "no output webhook before the prediction completed"
    first = partial[0]
    assert 0 < len(first) <= 3 and all(uri.startswith("data:image/png") for uri in first)
    assert len(final["output"]) == 4 and final["output"][-1].startswith("data:image/gif")
