import itertools
import random

import pytest

from animate import KeyframePlan, ping_pong_order
from animate.inputs.plan import coarse_plan, share_out, split_places


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


# Loops, frames per gap and even pacing's arithmetic (docs/behaviour.md, "Frame arithmetic").


@pytest.mark.parametrize("prompts", [2, 3, 4, 5])
@pytest.mark.parametrize("n, s", [(2, 1), (10, 5), (4, 3)])
def test_a_loop_has_p_times_n_minus_1_keyframes_and_k_times_s_frames(prompts, n, s):
    loop = KeyframePlan(prompts, n, s, loop=True)
    assert loop.num_segments == prompts
    assert loop.num_keyframes == len(loop.keyframe_times()) == prompts * (n - 1)
    assert loop.num_gaps == loop.num_keyframes
    assert loop.num_frames == loop.num_output_frames == loop.num_keyframes * s
    # The open walk's keyframes come first, unchanged; the closing segment adds the rest,
    # up to (but without) the first keyframe again.
    open_times = KeyframePlan(prompts, n, s).keyframe_times()
    times = loop.keyframe_times()
    assert times[: len(open_times) - 1] == open_times[:-1]
    assert times[len(open_times) - 1] == (prompts - 1, 0.0)  # the last prompt, on the closing segment
    assert times[-1] == (prompts - 1, (n - 2) / (n - 1))
    assert loop.walk_position(0.5) == KeyframePlan(prompts, n, s).walk_position(0.5)


def test_a_loop_cannot_play_ping_pong():
    with pytest.raises(ValueError, match="ping-pong"):
        KeyframePlan(2, 3, 2, ping_pong=True, loop=True)


def test_frames_per_gap_given_replace_s_and_set_the_frame_count():
    plan = KeyframePlan(2, 4, 5, gap_frames=(1, 7, 2))
    assert plan.frames_per_gap() == (1, 7, 2)
    assert plan.num_frames == 1 + 7 + 2 + 1
    loop = KeyframePlan(2, 3, 5, loop=True, gap_frames=(3, 1, 2, 6))
    assert loop.num_frames == 12
    assert KeyframePlan(2, 4, 5).frames_per_gap() == (5, 5, 5)


@pytest.mark.parametrize("gap_frames", [(1, 2), (1, 2, 3, 4), (1, 0, 2)])
def test_frames_per_gap_must_be_one_positive_number_per_gap(gap_frames):
    with pytest.raises(ValueError, match="gap_frames must be 3 numbers"):
        KeyframePlan(2, 4, 5, gap_frames=gap_frames)


def test_places_given_set_the_keyframes():
    places = ((0, 0.0), (0, 0.25), (0, 0.3), (0, 1.0))
    plan = KeyframePlan(2, 3, 2, places=places)
    assert plan.keyframe_times() == list(places)
    assert (plan.num_keyframes, plan.num_frames) == (4, 7)


def test_share_out_gives_everyone_one_and_the_rest_by_weight():
    assert share_out([1, 1, 1], 15) == [5, 5, 5]
    assert share_out([0, 0, 0, 0], 10) == [3, 3, 2, 2]  # no weight at all: as if equal
    assert share_out([0.0, 8.0, 0.0, 2.0], 14) == [1, 9, 1, 3]
    assert share_out([5.0, 0.001], 2) == [1, 1]
    with pytest.raises(ValueError):
        share_out([1, 1, 1], 2)


@pytest.mark.parametrize("seed", range(5))
def test_share_out_makes_the_largest_weight_per_share_as_small_as_it_can_be(seed):
    rng = random.Random(seed)
    weights = [rng.random() ** 3 for _ in range(4)]
    total = rng.randint(4, 12)
    shares = share_out(weights, total)
    assert sum(shares) == total and min(shares) >= 1
    best = min(
        max(w / s for w, s in zip(weights, candidate))
        for candidate in itertools.product(range(1, total + 1), repeat=4)
        if sum(candidate) == total
    )
    assert max(w / s for w, s in zip(weights, shares)) == pytest.approx(best)


@pytest.mark.parametrize(
    "n, coarse_n", [(2, 2), (3, 2), (5, 3), (10, 4), (11, 6), (25, 13), (50, 8), (8, 2)]
)
def test_the_coarse_round_divides_each_segment_evenly(n, coarse_n):
    plan = KeyframePlan(3, n, 5, loop=True)
    coarse = coarse_plan(plan)
    assert coarse.keyframes_per_segment == coarse_n and coarse.loop and coarse.num_prompts == 3
    assert set(coarse.keyframe_times()) <= set(plan.keyframe_times())  # a subset of linear's places


def test_splitting_every_coarse_gap_alike_gives_linears_places():
    for plan in (KeyframePlan(2, 10, 5), KeyframePlan(3, 5, 2, loop=True)):
        coarse = coarse_plan(plan)
        parts = [(plan.keyframes_per_segment - 1) // (coarse.keyframes_per_segment - 1)] * coarse.num_gaps
        places = split_places(coarse, parts)
        assert [segment for (segment, _), _ in places] == [segment for segment, _ in plan.keyframe_times()]
        assert [t for (_, t), _ in places] == pytest.approx([t for _, t in plan.keyframe_times()])
        assert [own for _, own in places] == [place in coarse.keyframe_times() for place, _ in places]


def test_splitting_puts_keyframes_evenly_inside_each_gap_and_the_closing_one():
    coarse = KeyframePlan(2, 3, 5, loop=True)  # (0, 0), (0, 0.5), (1, 0), (1, 0.5), then back to (0, 0)
    places = split_places(coarse, [1, 3, 1, 2])
    assert places == [
        ((0, 0.0), True), ((0, 0.5), True), ((0, 0.5 + 0.5 / 3), False), ((0, 0.5 + 0.5 * 2 / 3), False),
        ((1, 0.0), True), ((1, 0.5), True), ((1, 0.75), False),
    ]
    open_places = split_places(KeyframePlan(2, 2, 5), [4])
    assert open_places == [((0, 0.0), True), ((0, 0.25), False), ((0, 0.5), False), ((0, 0.75), False), ((0, 1.0), True)]
