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

    `model(x0, x1)` gives midpoints of batches (B, 3, H, W), e.g. a FilmNet. Gaps are
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
        film_frames = bisect(model, keyframes[start:stop], keyframes[start + 1 : stop + 1], depth, max_batch)
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


@torch.inference_mode()
def bisect(model: MidpointModel, left: torch.Tensor, right: torch.Tensor, depth: int, max_batch: int) -> torch.Tensor:
    """Gaps from `left` to `right`, both (G, 3, H, W) -> (G, 2^depth + 1, 3, H, W): the frames
    at times m / 2^depth, m = 0 .. 2^depth; the ends are `left` and `right`, the others FILM
    midpoints (clipped to [0, 1]), each level of all gaps computed in batches."""
    frames = torch.stack((left, right), dim=1)
    for _ in range(depth):
        gaps, intervals = frames.shape[0], frames.shape[1] - 1
        x0 = frames[:, :-1].flatten(0, 1)
        x1 = frames[:, 1:].flatten(0, 1)
        midpoints = torch.cat([midpoint(model, x0[i : i + max_batch], x1[i : i + max_batch]) for i in range(0, len(x0), max_batch)])
        refined = frames.new_empty((gaps, 2 * intervals + 1, *frames.shape[2:]))
        refined[:, 0::2] = frames
        refined[:, 1::2] = midpoints.view(gaps, intervals, *frames.shape[2:])
        frames = refined
    return frames


def midpoint(model: MidpointModel, x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
    """FILM frames (B, 3, H, W) halfway between x0 and x1, clipped to [0, 1] (the model's
    output is not bounded, and frames are images), in the inputs' dtype."""
    return model(x0, x1).clamp(0, 1).to(x0.dtype)


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
