"""`loop` and `pacing` through the real server (docs/behaviour.md, "Loop", "Pacing").

Each changes the animation where it should, at its default leaves it byte for byte as it
was, and gives the documented frame count; loop with ping-pong fails in one sentence and
the server is READY afterwards. Requests are small (128x128, 4 steps), as in
test_new_inputs.
"""

import json

import pytest

from animate import KeyframePlan
from tests.server.live_server import REPO_ROOT, succeeded_outputs
from tests.server.media import gif_info, mp4_info
from tests.server.test_bad_input_battery import assert_refused, failed_sentence, send, with_input
from tests.server.test_new_inputs import REQUEST, animation


@pytest.fixture(scope="module")
def default_animation(server) -> bytes:
    """REQUEST without loop and pacing: what the package made before they existed."""
    return animation(server, num_animation_frames=4)[0]


def test_loop_and_pacing_at_their_defaults_change_no_byte(server, default_animation):
    assert animation(server, num_animation_frames=4, loop=False, pacing="linear")[0] == default_animation


def test_loop_walks_back_to_the_first_prompt_with_k_times_s_frames(server, default_animation):
    looped, log = animation(server, num_animation_frames=4, loop=True)
    plan = KeyframePlan(num_prompts=2, keyframes_per_segment=4, interpolation_steps=2, loop=True)
    assert (plan.num_keyframes, plan.num_frames) == (6, 12)
    assert looped != default_animation
    assert gif_info(looped).frames == plan.num_frames
    assert "Walk over 2 prompts and back to the first: 6 keyframes, 12 frames, 12 in the animation" in log


def test_the_seed_example_with_loop_gives_the_documented_frame_count(server, tmp_path):
    """The hosted model's example (2 prompts, 25 keyframes, S = 5, MP4) with loop instead of
    ping-pong: K = 2 * 24 = 48 keyframes and F = 48 * 5 = 240 frames. Small and with latent
    in-betweens as in test_predictions."""
    example = json.loads((REPO_ROOT / "script" / "example-request.json").read_text())["input"]
    request = {**example, "width": 128, "height": 128, "num_inference_steps": 5, "film_interpolation": False,
               "gif_ping_pong": False, "loop": True}
    plan = KeyframePlan(num_prompts=2, keyframes_per_segment=25, interpolation_steps=5, loop=True)
    assert (plan.num_keyframes, plan.num_output_frames) == (48, 240)
    outputs = succeeded_outputs(*server.predict(request))
    assert [mime for mime, _ in outputs] == ["video/mp4"]
    video = mp4_info(outputs[0][1], tmp_path)
    assert (video.frames, video.fps, video.moov_before_mdat) == (240, 20.0, True)


def test_loop_with_ping_pong_fails_in_one_sentence_before_any_model_runs(server):
    status, _, text = send(server, with_input(loop=True, gif_ping_pong=True))
    sentence = failed_sentence(status, text)
    assert sentence.startswith("loop and gif_ping_pong cannot both be true")
    assert "Walk over" not in json.loads(text)["logs"]  # refused before the walk began
    assert server.wait_for_health("READY") == "READY"


def test_even_pacing_changes_the_animation_but_not_its_frame_count(server, default_animation):
    even, log = animation(server, num_animation_frames=4, pacing="even")
    assert even != default_animation
    assert gif_info(even).frames == gif_info(default_animation).frames == 3 * 2 + 1
    assert "pacing: even: 2 keyframes evenly first, then 2 more where the picture changes most" in log


def test_even_pacing_gives_the_same_bytes_for_the_same_seed(server):
    first, _ = animation(server, num_animation_frames=4, pacing="even", loop=True)
    assert animation(server, num_animation_frames=4, pacing="even", loop=True)[0] == first


@pytest.mark.parametrize("value", ["Even", "uniform", "", 1, True])
def test_a_pacing_outside_the_choices_is_422(server, value):
    assert_refused(*send(server, with_input(pacing=value)), {"pacing"})
    assert server.wait_for_health("READY") == "READY"


@pytest.mark.parametrize("value", ["yes", 2, [True]])
def test_a_loop_that_is_not_a_boolean_is_422(server, value):
    assert_refused(*send(server, with_input(loop=value)), {"loop"})
    assert server.wait_for_health("READY") == "READY"


def test_intermediate_output_with_even_pacing_returns_every_keyframe_then_the_animation(server):
    status, reply = server.predict({**REQUEST, "num_animation_frames": 4, "pacing": "even", "intermediate_output": True})
    outputs = succeeded_outputs(status, reply)
    assert [mime for mime, _ in outputs] == ["image/png"] * 4 + ["image/gif"]
