"""film_net.interpolate: recursive FILM midpoints, time blending, batching and streaming."""

import itertools
import weakref

import pytest
import torch

import film_net
from film_net.recursive import bisection_depth


class RecordingModel:
    """A stand-in for FilmNet that records its calls. Its 'midpoint' is deliberately not
    linear in the inputs, so a blend of two of its frames is never one of its frames."""

    def __init__(self, midpoint=None):
        self.midpoint = midpoint or (lambda x0, x1: (x0 + x1) / 2 + 0.25 * (x1 - x0) ** 2)
        self.batch_sizes = []
        self.outputs = []

    def __call__(self, x0, x1):
        assert torch.is_inference_mode_enabled()
        self.batch_sizes.append(len(x0))
        output = self.midpoint(x0, x1)
        self.outputs.extend(output.clamp(0, 1))
        return output


def constant_keyframes(values, size=(4, 6)):
    """Keyframes (K, 3, *size), keyframe k filled with values[k]."""
    return torch.tensor(values, dtype=torch.float32).view(-1, 1, 1, 1).expand(-1, 3, *size).contiguous()


@pytest.mark.parametrize("keyframe_count", [2, 3])
@pytest.mark.parametrize("steps", [1, 2, 3, 5, 8])
def test_frame_count_and_order_with_keyframes_exact(keyframe_count, steps):
    keyframes = torch.rand(keyframe_count, 3, 4, 6)
    frames = list(film_net.interpolate(RecordingModel(), keyframes, steps))
    assert len(frames) == (keyframe_count - 1) * steps + 1
    for k in range(keyframe_count):
        assert torch.equal(frames[k * steps], keyframes[k])
    assert all(frame.shape == (3, 4, 6) for frame in frames)


@pytest.mark.parametrize("steps", [3, 5, 6, 7])
def test_in_betweens_are_blended_linearly_in_time(steps):
    # With the average as midpoint, the FILM frame at time t is exactly t (0 -> 1), so every
    # frame must be its own time j / steps whatever the blend weights are made of.
    model = RecordingModel(lambda x0, x1: (x0 + x1) / 2)
    frames = list(film_net.interpolate(model, constant_keyframes([0.0, 1.0, 0.0]), steps))
    times = [j / steps for j in range(steps)] + [1 - j / steps for j in range(steps)] + [0.0]
    for frame, time in zip(frames, times, strict=True):
        torch.testing.assert_close(frame, torch.full_like(frame, time), rtol=0, atol=1e-6)
    # Bisection depth ceil(log2 S): 2^d - 1 midpoints per gap.
    assert sum(model.batch_sizes) == 2 * (2 ** bisection_depth(steps) - 1)


@pytest.mark.parametrize("steps", [2, 4, 8])
def test_power_of_two_steps_use_only_model_frames(steps):
    model = RecordingModel()
    keyframes = torch.rand(3, 3, 4, 6)
    frames = list(film_net.interpolate(model, keyframes, steps))
    in_betweens = [frame for i, frame in enumerate(frames) if i % steps != 0]
    assert len(in_betweens) == 2 * (steps - 1) == len(model.outputs)
    for frame in in_betweens:
        assert any(torch.equal(frame, output) for output in model.outputs)


def test_non_power_of_two_steps_blend_between_the_two_nearest_film_frames():
    model = RecordingModel()
    keyframes = constant_keyframes([0.1, 0.9])
    frames = list(film_net.interpolate(model, keyframes, 3))
    # Depth 2: FILM frames F at 0, 1/4, 1/2, 3/4, 1. Time 1/3 lies between 1/4 and 1/2,
    # a third of the way; time 2/3 between 1/2 and 3/4, two thirds of the way.
    mid = model.midpoint(keyframes[:1], keyframes[1:]).clamp(0, 1)[0]
    quarter = model.midpoint(keyframes[0], mid).clamp(0, 1)
    three_quarters = model.midpoint(mid, keyframes[1]).clamp(0, 1)
    torch.testing.assert_close(frames[1], quarter + (mid - quarter) / 3)
    torch.testing.assert_close(frames[2], mid + 2 * (three_quarters - mid) / 3)


def test_matches_direct_calls_of_a_tiny_film_net():
    torch.manual_seed(0)
    model = film_net.FilmNet(film_net.TINY_OPTIONS).eval()
    keyframes = torch.rand(2, 3, 64, 64)
    with torch.inference_mode():
        half = model(keyframes[:1], keyframes[1:]).clamp(0, 1)
        quarter = model(keyframes[:1], half).clamp(0, 1)
        three_quarters = model(half, keyframes[1:]).clamp(0, 1)
    frames = list(film_net.interpolate(model, keyframes, 4))
    expected = [keyframes[0], quarter[0], half[0], three_quarters[0], keyframes[1]]
    for frame, reference in zip(frames, expected, strict=True):
        torch.testing.assert_close(frame, reference, rtol=0, atol=1e-5)
    assert frames[2].std() > 1e-3


@pytest.mark.parametrize("steps", [2, 5, 8])
def test_film_net_extracts_each_frame_once_and_matches_pair_by_pair_calls(steps):
    torch.manual_seed(0)
    model = film_net.FilmNet(film_net.TINY_OPTIONS).eval()
    keyframes = torch.rand(3, 3, 70, 66)  # not multiples of 64: padding and cropping matter
    extracted = []
    extract = model.extract
    model.extract = lambda frames: extracted.append(len(frames)) or extract(frames)
    cached = list(film_net.interpolate(model, keyframes, steps, max_batch=3))
    # Per pair call the same model, through its forward only.
    uncached = list(film_net.interpolate(lambda x0, x1: model(x0, x1), keyframes, steps, max_batch=3))
    for frame, reference in zip(cached, uncached, strict=True):
        torch.testing.assert_close(frame, reference, rtol=0, atol=1e-5)
    depth = bisection_depth(steps)
    gaps = keyframes.shape[0] - 1
    # Every keyframe once, then every midpoint that is bisected again, once.
    assert sum(extracted) == keyframes.shape[0] + gaps * (2 ** (depth - 1) - 1)


def test_model_calls_take_the_earliest_intervals_across_gaps_and_are_bounded_by_max_batch():
    model = RecordingModel()
    list(film_net.interpolate(model, torch.rand(6, 3, 4, 6), 4, max_batch=4))
    # Five gaps of depth 2: the first four gaps' midpoints, then the eight halves of those
    # gaps in two calls, then the last gap alone and its two halves.
    assert model.batch_sizes == [4, 4, 4, 1, 2]

    model = RecordingModel()
    list(film_net.interpolate(model, torch.rand(2, 3, 4, 6), 8, max_batch=3))
    assert max(model.batch_sizes) <= 3 and sum(model.batch_sizes) == 7


def test_a_call_that_runs_out_of_memory_is_done_again_in_smaller_calls_with_the_same_frames():
    def midpoint(x0, x1):
        if len(x0) > 2:  # as a GPU would, inside the call
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (a test's model)")
        return (x0 + x1) / 2 + 0.25 * (x1 - x0) ** 2

    keyframes = torch.rand(6, 3, 4, 6)
    expected = list(film_net.interpolate(RecordingModel(), keyframes, 4, max_batch=2))
    model, failed = RecordingModel(midpoint), []
    frames = list(
        film_net.interpolate(model, keyframes, 4, max_batch=4, on_out_of_memory=lambda pairs: failed.append(pairs) or 2)
    )
    assert failed == [4]
    assert model.batch_sizes == [4, 2, 2, 2, 2, 2, 2, 1, 2]  # the call of 4 failed; its pairs came again
    assert all(torch.equal(frame, reference) for frame, reference in zip(frames, expected, strict=True))
    with pytest.raises(torch.cuda.OutOfMemoryError):  # without a handler, the error is the caller's
        list(film_net.interpolate(RecordingModel(midpoint), keyframes, 4, max_batch=4))


def test_before_call_hears_the_pairs_of_each_call_and_may_run_out_of_memory_for_it():
    announced = []

    def before_call(pairs):
        announced.append(pairs)
        if pairs > 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (a test's hook)")

    model = RecordingModel()
    frames = list(film_net.interpolate(model, torch.rand(3, 3, 4, 6), 2, max_batch=4, before_call=before_call,
                                       on_out_of_memory=lambda pairs: pairs // 2))
    assert len(frames) == 5
    assert announced == [2, 1, 1] and model.batch_sizes == [1, 1]


def test_frames_stream_as_soon_as_they_are_final():
    model = RecordingModel()
    frames = film_net.interpolate(model, torch.rand(5, 3, 4, 6), 4, max_batch=1)
    first_gap = list(itertools.islice(frames, 4))
    assert len(first_gap) == 4
    assert sum(model.batch_sizes) == 3  # only the first gap's midpoints so far
    assert len(list(frames)) == 3 * 4 + 1


class PyramidCounter:
    """A stand-in for FilmNet's extract / midpoints that counts how many frames' pyramids
    are held at once (the memory FILM's cache costs), by watching their storage die."""

    def __init__(self):
        self.held = 0
        self.peak = 0

    def extract(self, frames):
        pyramid = frames * 1.0
        self.held += len(frames)
        self.peak = max(self.peak, self.held)
        weakref.finalize(pyramid.untyped_storage(), self.release, len(frames))
        return [pyramid]

    def release(self, count):
        self.held -= count

    def midpoints(self, extracted, size):
        frames = extracted[0]
        pairs = len(frames) // 2
        return (frames[:pairs] + frames[pairs:]) / 2


@pytest.mark.parametrize("max_batch", [1, 4])
@pytest.mark.parametrize("steps", [2, 50])
def test_pyramids_held_do_not_grow_with_the_number_of_keyframes(steps, max_batch):
    peaks = []
    for keyframe_count in (20, 40):
        model = PyramidCounter()
        frames = film_net.interpolate(model, torch.rand(keyframe_count, 3, 2, 2), steps, max_batch=max_batch)
        assert sum(1 for _ in frames) == (keyframe_count - 1) * steps + 1
        peaks.append(model.peak)
    assert peaks[0] == peaks[1] <= (bisection_depth(steps) + 2) * max_batch + 1


def test_in_betweens_have_the_keyframes_dtype_and_stay_in_range():
    model = film_net.FilmNet(film_net.TINY_OPTIONS).to(torch.bfloat16).eval()
    frames = list(film_net.interpolate(model, torch.rand(2, 3, 64, 64), 3))
    assert all(frame.dtype == torch.float32 for frame in frames)
    assert all(0 <= frame.min() and frame.max() <= 1 for frame in frames)


@pytest.mark.parametrize(
    ("keyframes", "steps", "message"),
    [
        (torch.rand(3, 4, 4), 2, "shape"),
        (torch.rand(2, 3, 4, 4), 0, "steps"),
        (torch.rand(2, 3, 4, 4), 2.0, "steps"),
    ],
)
def test_bad_arguments_are_rejected(keyframes, steps, message):
    with pytest.raises(ValueError, match=message):
        next(film_net.interpolate(RecordingModel(), keyframes, steps))


def test_a_single_keyframe_is_the_whole_animation():
    keyframes = torch.rand(1, 3, 4, 6)
    frames = list(film_net.interpolate(RecordingModel(), keyframes, 5))
    assert len(frames) == 1 and torch.equal(frames[0], keyframes[0])


# A frame count per gap (even pacing, audio): each gap bisected to its own depth.


@pytest.mark.parametrize("steps", [[3, 1, 8, 5], [1, 1, 1, 1], [2, 16, 1, 7]])
def test_each_gap_has_its_own_frames_at_its_own_times(steps):
    model = RecordingModel(lambda x0, x1: (x0 + x1) / 2)  # the FILM frame at time t is t (0 -> 1)
    values = [0.0, 1.0, 0.0, 1.0, 0.0]
    frames = list(film_net.interpolate(model, constant_keyframes(values), steps))
    times = [
        values[gap] + (values[gap + 1] - values[gap]) * j / count
        for gap, count in enumerate(steps) for j in range(count)
    ] + [values[-1]]
    for frame, time in zip(frames, times, strict=True):
        torch.testing.assert_close(frame, torch.full_like(frame, time), rtol=0, atol=1e-6)
    # Bisection depth ceil(log2 S_g) per gap: 2^d - 1 midpoints each, none for S_g = 1.
    assert sum(model.batch_sizes) == sum(2 ** bisection_depth(count) - 1 for count in steps)


@pytest.mark.parametrize("steps", [3, 4, 5])
def test_one_count_for_every_gap_is_the_same_as_one_per_gap(steps):
    torch.manual_seed(0)
    model = film_net.FilmNet(film_net.TINY_OPTIONS).eval()
    keyframes = torch.rand(4, 3, 64, 64)
    together = list(film_net.interpolate(model, keyframes, steps, max_batch=2))
    per_gap = list(film_net.interpolate(model, keyframes, [steps] * 3, max_batch=2))
    assert all(torch.equal(a, b) for a, b in zip(together, per_gap, strict=True))


def test_gaps_of_different_depths_still_stream_from_the_left():
    model = RecordingModel()
    frames = film_net.interpolate(model, torch.rand(4, 3, 4, 6), [2, 8, 1], max_batch=1)
    assert len(list(itertools.islice(frames, 2))) == 2
    assert sum(model.batch_sizes) == 1  # the first gap's one midpoint, nothing of the second yet
    assert len(list(frames)) == 2 + 8 + 1 + 1 - 2


@pytest.mark.parametrize("steps", [[2, 3], [2, 3, 4, 5], [2, 0, 3], [2, 2.0, 3], [True, 2, 3]])
def test_a_count_per_gap_needs_one_whole_positive_number_per_gap(steps):
    with pytest.raises(ValueError, match="one per gap"):
        next(film_net.interpolate(RecordingModel(), torch.rand(4, 3, 4, 4), steps))
