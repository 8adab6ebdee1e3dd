"""In-between frames by recursive FILM midpoints (SPEC.md section 2.6).

FILM was trained for the midpoint only, so more frames come from bisection: the midpoint
of a gap, then the midpoints of both halves, and so on to depth d = ceil(log2 S). That
gives frames at the times m / 2^d; a frame at time j / S is the FILM frame itself when
j / S is one of those times (always, when S is a power of two), and otherwise the two
FILM frames around it blended linearly in time.
"""

from collections.abc import Callable, Iterator

import torch

DEFAULT_MAX_BATCH = 4

MidpointModel = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def bisection_depth(steps: int) -> int:
    """ceil(log2(steps)): how many times each gap is halved to reach time step 1 / steps."""
    return (steps - 1).bit_length()


def interpolate(
    model: MidpointModel, keyframes: torch.Tensor, steps: int, max_batch: int = DEFAULT_MAX_BATCH
) -> Iterator[torch.Tensor]:
    """Yields the (K - 1) * steps + 1 frames (3, H, W) of the animation through `keyframes`.

    keyframes: (K, 3, H, W), values in [0, 1], on the model's device. For each gap, the
    left keyframe then the steps - 1 in-betweens at times j / steps; finally the last
    keyframe. Keyframes are yielded as they are; in-betweens have the keyframes' dtype,
    are clipped to [0, 1] (also before being bisected again) and are inference tensors.

    `model(x0, x1)` gives midpoints of batches (B, 3, H, W). A FilmNet is used through
    its `extract` and `midpoints` instead, so each frame's pyramids are computed once
    (same frames as calling it pair by pair, to float rounding). Gaps are
    bisected together in chunks (as many gaps as fill `max_batch` pairs at the finest
    level); no model call takes more than `max_batch` pairs, and a chunk's frames are all
    yielded before the next chunk is computed, so memory stays bounded by one chunk however
    long the animation.
    """
    check_arguments(keyframes, steps, max_batch)
    depth = bisection_depth(steps)
    if depth == 0:  # one step per gap: the keyframes are all the frames
        yield from keyframes
        return
    gaps = keyframes.shape[0] - 1
    # The finest level of one gap has 2^(depth - 1) pairs.
    gaps_per_chunk = max(1, max_batch // (1 << (depth - 1)))
    for start in range(0, gaps, gaps_per_chunk):
        stop = min(start + gaps_per_chunk, gaps)
        film_frames = bisect(model, keyframes[start : stop + 1], depth, max_batch)
        for gap in range(stop - start):
            yield keyframes[start + gap]
            for j in range(1, steps):
                yield frame_at(film_frames[gap], j, steps)
        del film_frames  # before the next chunk is computed, so only one chunk is held
    yield keyframes[-1]


def check_arguments(keyframes: torch.Tensor, steps: int, max_batch: int) -> None:
    """Raises ValueError, in one sentence, for arguments interpolate cannot use."""
    if keyframes.dim() != 4 or keyframes.shape[0] < 1 or keyframes.shape[1] != 3:
        raise ValueError(f"interpolate needs keyframes of shape (K, 3, H, W) with K >= 1, got {tuple(keyframes.shape)}.")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"interpolate needs an integer number of steps of at least 1, got {steps!r}.")
    if max_batch < 1:
        raise ValueError(f"interpolate needs max_batch of at least 1, got {max_batch}.")


class CallablePairs:
    """A plain midpoint callable seen through FilmNet's extract / midpoints interface: what
    it "extracts" from a frame is the frame itself."""

    def __init__(self, model: MidpointModel):
        self.model = model

    def extract(self, frames: torch.Tensor) -> list[torch.Tensor]:
        """(N, 3, H, W) -> [frames]."""
        return [frames]

    def midpoints(self, extracted0: list[torch.Tensor], extracted1: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        """[x0], [x1], both (B, 3, H, W) -> model(x0, x1)."""
        return self.model(extracted0[0], extracted1[0])


def pair_model(model: MidpointModel):
    """The model itself when it can extract each frame once (a FilmNet), else an adapter."""
    return model if hasattr(model, "extract") and hasattr(model, "midpoints") else CallablePairs(model)


@torch.inference_mode()
def bisect(model: MidpointModel, keyframes: torch.Tensor, depth: int, max_batch: int) -> torch.Tensor:
    """The G gaps between `keyframes` (G + 1, 3, H, W) -> (G, 2^depth + 1, 3, H, W): the frames
    at times m / 2^depth, m = 0 .. 2^depth; the ends are the gap's keyframes, the others FILM
    midpoints (clipped to [0, 1]), each level of all gaps computed in batches.

    Every frame is in two pairs of the next level (as the right and the left frame), so
    what FILM extracts from a frame alone (pyramids of images and features) is computed once
    per frame and kept until its last pair; the frames of the last level need none.
    """
    pairs_model = pair_model(model)
    gaps, size = keyframes.shape[0] - 1, tuple(keyframes.shape[-2:])
    frames = torch.stack((keyframes[:-1], keyframes[1:]), dim=1)
    extracted = extract_per_frame(pairs_model, keyframes, 2 * max_batch)
    extracted = [extracted[gap : gap + 2] for gap in range(gaps)]  # [gap][position in time]
    for level in range(depth):
        intervals = frames.shape[1] - 1
        pairs = [(gap_extracted[m], gap_extracted[m + 1]) for gap_extracted in extracted for m in range(intervals)]
        midpoints = torch.cat(
            [midpoint_batch(pairs_model, pairs[i : i + max_batch], size, frames.dtype) for i in range(0, len(pairs), max_batch)]
        )
        midpoints = midpoints.view(gaps, intervals, *frames.shape[2:])
        refined = frames.new_empty((gaps, 2 * intervals + 1, *frames.shape[2:]))
        refined[:, 0::2] = frames
        refined[:, 1::2] = midpoints
        frames = refined
        if level + 1 < depth:
            extracted_midpoints = extract_per_frame(pairs_model, midpoints.flatten(0, 1), 2 * max_batch)
            extracted = [
                interleave(gap_extracted, extracted_midpoints[gap * intervals : (gap + 1) * intervals])
                for gap, gap_extracted in enumerate(extracted)
            ]
    return frames


def extract_per_frame(pairs_model, frames: torch.Tensor, max_batch: int) -> list[list[torch.Tensor]]:
    """Frames (N, 3, H, W) -> for each frame, the list of what `extract` gives for it (each a
    view without the batch dimension), extracted in batches of at most `max_batch`."""
    per_frame = []
    for start in range(0, frames.shape[0], max_batch):
        batch = pairs_model.extract(frames[start : start + max_batch])
        per_frame.extend([tensor[row] for tensor in batch] for row in range(batch[0].shape[0]))
    return per_frame


def midpoint_batch(pairs_model, pairs: list, size: tuple[int, int], dtype: torch.dtype) -> torch.Tensor:
    """Pairs of per-frame extractions -> their midpoint frames (B, 3, H, W), clipped to [0, 1]
    (the model's output is not bounded, and frames are images), in `dtype`."""
    extracted0 = [torch.stack(rows) for rows in zip(*(pair[0] for pair in pairs))]
    extracted1 = [torch.stack(rows) for rows in zip(*(pair[1] for pair in pairs))]
    return pairs_model.midpoints(extracted0, extracted1, size).clamp(0, 1).to(dtype)


def interleave(ends: list, middles: list) -> list:
    """[a, b, c], [ab, bc] -> [a, ab, b, bc, c]."""
    merged = [ends[0]]
    for middle, end in zip(middles, ends[1:]):
        merged += [middle, end]
    return merged


@torch.inference_mode()
def frame_at(film_frames: torch.Tensor, j: int, steps: int) -> torch.Tensor:
    """The frame (3, H, W) at time j / steps of one gap, from its FILM frames (2^d + 1, 3,
    H, W) at times m / 2^d: that frame when j / steps is one of those times, otherwise the
    two around it blended linearly in time."""
    intervals = film_frames.shape[0] - 1
    # Time in units of 1 / 2^d, kept as a fraction to stay exact: lower + remainder / steps.
    lower, remainder = divmod(j * intervals, steps)
    if remainder == 0:
        return film_frames[lower]
    return torch.lerp(film_frames[lower], film_frames[lower + 1], remainder / steps)
