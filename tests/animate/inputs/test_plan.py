import pytest

from animate import KeyframePlan, ping_pong_order


@pytest.mark.parametrize(
    "prompts, n, s, keyframes, frames",
    [
        (2, 2, 1, 2, 2),
        (2, 10, 5, 10, 46),  # the hosted defaults
        (2, 3, 4, 3, 9),
        (3, 3, 2, 5, 9),
        (4, 5, 3, 13, 37),
        (3, 50, 50, 99, 4901),
    ],
)
def test_keyframe_and_frame_counts(prompts, n, s, keyframes, frames):
    forward = KeyframePlan(prompts, n, s)
    assert forward.num_keyframes == keyframes
    assert len(forward.keyframe_times()) == keyframes
    assert forward.num_frames == frames
    assert forward.num_output_frames == frames
    bounced = KeyframePlan(prompts, n, s, ping_pong=True)
    assert bounced.num_output_frames == 2 * frames - 2
    assert len(ping_pong_order(frames)) == 2 * frames - 2


def test_first_and_last_keyframes_are_the_end_prompts_exactly():
    for prompts in (2, 3, 5):
        times = KeyframePlan(prompts, 4, 2).keyframe_times()
        assert times[0] == (0, 0.0)
        assert times[-1] == (prompts - 2, 1.0)


def test_segments_share_their_end_keyframe():
    times = KeyframePlan(3, 3, 1).keyframe_times()
    assert times == [(0, 0.0), (0, 0.5), (1, 0.0), (1, 0.5), (1, 1.0)]


def test_walk_position_half_is_the_middle_of_the_whole_walk():
    assert KeyframePlan(2, 5, 1).walk_position(0.5) == (0, 0.5)
    assert KeyframePlan(3, 5, 1).walk_position(0.5) == (1, 0.0)
    assert KeyframePlan(4, 5, 1).walk_position(0.5) == (1, 0.5)
    assert KeyframePlan(2, 5, 1).walk_position(1.0) == (0, 1.0)


def test_ping_pong_plays_back_without_repeating_ends():
    assert ping_pong_order(2) == [0, 1]
    assert ping_pong_order(5) == [0, 1, 2, 3, 4, 3, 2, 1]


@pytest.mark.parametrize("args", [(1, 3, 1), (2, 1, 1), (2, 3, 0)])
def test_impossible_plans_are_refused(args):
    with pytest.raises(ValueError):
        KeyframePlan(*args)
