"""In-between frames by recursive FILM midpoints (docs/behaviour.md, "In-between frames").

FILM was trained for the midpoint only, so more frames come from bisection: the midpoint
of a gap, then the midpoints of both halves, and so on to depth d = ceil(log2 S) for a gap
of S frames. That gives frames at the times m / 2^d; a frame at time j / S is the FILM
frame itself when j / S is one of those times (always, when S is a power of two), and
otherwise the two FILM frames around it blended linearly in time. Each gap may have its
own S, and is bisected to its own depth.
"""

import collections
from collections.abc import Callable, Iterable, Iterator, Sequence

import torch

DEFAULT_MAX_BATCH = 4

MidpointModel = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def bisection_depth(steps: int) -> int:
    """ceil(log2(steps)): how many times each gap is halved to reach time step 1 / steps."""
    return (steps - 1).bit_length()


def interpolate(
    model: MidpointModel,
    keyframes: torch.Tensor,
    steps: int | Sequence[int],
    max_batch: int = DEFAULT_MAX_BATCH,
    before_call: Callable[[int], None] | None = None,
    on_out_of_memory: Callable[[int], int] | None = None,
) -> Iterator[torch.Tensor]:
    """Yields the frames (3, H, W) of the animation through `keyframes`: S_g per gap g,
    then the last keyframe ((K - 1) * steps + 1 frames when every gap has `steps`).

    keyframes: (K, 3, H, W), values in [0, 1], on the model's device. steps: the frames
    S_g of every gap, one number for all or one per gap (K - 1 of them). For each gap, the
    left keyframe then the S_g - 1 in-betweens at times j / S_g; finally the last
    keyframe. Keyframes are yielded as they are; in-betweens have the keyframes' dtype,
    are clipped to [0, 1] (also before being bisected again) and are inference tensors.

    `model(x0, x1)` gives midpoints of batches (B, 3, H, W); no call takes more than
    `max_batch` pairs. A FilmNet is used through its `extract` and `midpoints` instead, so
    each frame's pyramids are computed once (same frames as calling it pair by pair, to
    float rounding). Frames stream out as soon as they are final, and what is held at once
    depends on the depth and `max_batch`, not on the number of keyframes or steps.

    before_call, when given, is called with the number of pairs before each model call (one
    frame may take several): a caller can stop the work there by raising. on_out_of_memory,
    when given, is called with that number after a call (before_call included) raised
    torch.cuda.OutOfMemoryError, and returns the new max_batch, smaller, or raises: the
    call's pairs are then bisected again in smaller calls, with the same frames as a result.
    Without it the error propagates.
    """
    gap_steps = steps_per_gap(keyframes, steps, max_batch)
    depths = [bisection_depth(count) for count in gap_steps]
    film_frames = bisected_frames(model, keyframes, depths, max_batch, before_call, on_out_of_memory)
    yield from frames_at_steps(film_frames, depths, gap_steps)


def steps_per_gap(keyframes: torch.Tensor, steps: int | Sequence[int], max_batch: int) -> list[int]:
    """The frames of each of the K - 1 gaps; ValueError, in one sentence, for arguments
    interpolate cannot use."""
    if keyframes.dim() != 4 or keyframes.shape[0] < 1 or keyframes.shape[1] != 3:
        raise ValueError(f"interpolate needs keyframes of shape (K, 3, H, W) with K >= 1, got {tuple(keyframes.shape)}.")
    gaps = keyframes.shape[0] - 1
    per_gap = isinstance(steps, Sequence)
    counts = list(steps) if per_gap else [steps]
    if (per_gap and len(counts) != gaps) or not all(
        isinstance(count, int) and not isinstance(count, bool) and count >= 1 for count in counts
    ):
        raise ValueError(
            f"interpolate needs an integer number of steps of at least 1, for all {gaps} gaps or one per gap, got {steps!r}."
        )
    if max_batch < 1:
        raise ValueError(f"interpolate needs max_batch of at least 1, got {max_batch}.")
    return counts if per_gap else counts * gaps


class CallablePairs:
    """A plain midpoint callable seen through FilmNet's extract / midpoints interface: what
    it "extracts" from a frame is the frame itself."""

    def __init__(self, model: MidpointModel):
        self.model = model

    def extract(self, frames: torch.Tensor) -> list[torch.Tensor]:
        """(N, 3, H, W) -> [frames]."""
        return [frames]

    def midpoints(self, extracted: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        """[x0 then x1], (2B, 3, H, W) -> model(x0, x1)."""
        frames = extracted[0]
        pairs = frames.shape[0] // 2
        return self.model(frames[:pairs], frames[pairs:])


def pair_model(model: MidpointModel):
    """The model itself when it can extract each frame once (a FilmNet), else an adapter."""
    return model if hasattr(model, "extract") and hasattr(model, "midpoints") else CallablePairs(model)


@torch.inference_mode()
def bisected_frames(
    model: MidpointModel,
    keyframes: torch.Tensor,
    depths: Sequence[int],
    max_batch: int,
    before_call: Callable[[int], None] | None = None,
    on_out_of_memory: Callable[[int], int] | None = None,
) -> Iterator[torch.Tensor]:
    """Yields, in time order, the FILM frames (3, H, W) of every gap g at the times
    m / 2^depths[g], m = 0 .. 2^depths[g], the gap's end keyframe counted once: the sum of
    the 2^depths[g], plus 1, frames for the gaps between `keyframes` (G + 1, 3, H, W).
    Midpoints are clipped to [0, 1].

    Time runs in units of 1 / 2^D of a gap, D the largest depth, so keyframe k is at
    k * 2^D, and gap g is bisected down to intervals of 2^(D - depths[g]) units. The work
    is a list of intervals still to bisect, in time order; each model call takes the
    earliest `max_batch` of them (from one gap or several), and each interval longer than
    two of its gap's smallest intervals gives its two halves back to the front of the list.
    So frames become final from the left, are yielded and dropped at once, and only the
    frames and pyramids around the front of the list are held: at most
    (D + 2) * max_batch + 1 frames' pyramids.
    before_call and on_out_of_memory are interpolate's: a call that runs out of memory
    changes nothing (its intervals go back to the front of the list, and the extractions
    it finished stay valid), so it is done again with the smaller max_batch.
    """
    pairs_model = pair_model(model)
    size = tuple(keyframes.shape[-2:])
    span = 1 << max(depths, default=0)
    smallest = [span >> depth for depth in depths]  # each gap's smallest interval, in units
    last_time = len(depths) * span
    frames = {gap * span: keyframe for gap, keyframe in enumerate(keyframes)}  # time -> (3, H, W)
    extracted: dict[int, list[torch.Tensor]] = {}  # time -> what `extract` gave for that frame
    pending = collections.deque(
        (gap * span, (gap + 1) * span) for gap, depth in enumerate(depths) if depth > 0
    )
    next_time = 0  # no frame before this time is still to be yielded
    while pending:
        batch = [pending.popleft() for _ in range(min(max_batch, len(pending)))]
        try:
            if before_call is not None:
                before_call(len(batch))
            extract_missing(pairs_model, frames, extracted, batch, 2 * max_batch)
            midpoints = midpoint_batch(
                pairs_model, [(extracted[left], extracted[right]) for left, right in batch], size, keyframes.dtype
            )
        except torch.cuda.OutOfMemoryError:
            if on_out_of_memory is None:
                raise
            midpoints = None  # handled below, once the traceback (and the call's tensors) are gone
        if midpoints is None:
            pending.extendleft(reversed(batch))
            max_batch = on_out_of_memory(len(batch))
            continue
        halves = []
        for (left, right), midpoint in zip(batch, midpoints):
            middle = (left + right) // 2
            frames[middle] = midpoint
            if right - left > 2 * smallest[left // span]:  # its halves are bisected again
                halves += [(left, middle), (middle, right)]
        pending.extendleft(reversed(halves))
        del midpoints, midpoint  # the frames dictionary holds what is still needed
        # Every frame up to the start of the earliest pending interval is final; the one
        # at that start is still needed, those before it are not.
        final_time = pending[0][0] if pending else last_time
        for time in sorted(time for time in frames if next_time <= time <= final_time):
            yield frames[time]
        next_time = final_time + 1
        for held in (frames, extracted):
            for time in [time for time in held if time < final_time]:
                del held[time]
    for time in sorted(time for time in frames if time >= next_time):  # gaps with nothing to bisect
        yield frames[time]


def extract_missing(pairs_model, frames: dict, extracted: dict, intervals: list, max_batch: int) -> None:
    """Extract, in batches of at most `max_batch` frames, every end of `intervals` that has
    not been extracted yet, adding it to `extracted` (time -> list of tensors for that frame)."""
    missing = sorted({time for interval in intervals for time in interval} - extracted.keys())
    for start in range(0, len(missing), max_batch):
        times = missing[start : start + max_batch]
        batch = pairs_model.extract(torch.stack([frames[time] for time in times]))
        for row, time in enumerate(times):
            extracted[time] = [tensor[row] for tensor in batch]


def midpoint_batch(pairs_model, pairs: list, size: tuple[int, int], dtype: torch.dtype) -> torch.Tensor:
    """Pairs of per-frame extractions -> their midpoint frames (B, 3, H, W), clipped to [0, 1]
    (the model's output is not bounded, and frames are images), in `dtype`.

    Each level's rows are stacked once, every pair's left frame then every right frame:
    the layout `midpoints` works in."""
    lefts, rights = [pair[0] for pair in pairs], [pair[1] for pair in pairs]
    extracted = [torch.stack(rows) for rows in zip(*lefts, *rights)]
    return pairs_model.midpoints(extracted, size).clamp(0, 1).to(dtype)


@torch.inference_mode()
def frames_at_steps(
    film_frames: Iterable[torch.Tensor], depths: Sequence[int], steps: Sequence[int]
) -> Iterator[torch.Tensor]:
    """The frames at times j / steps[g] of each gap g, then the last keyframe, from the FILM
    frames at times m / 2^depths[g] of each gap, given in time order (2^depths[g] >=
    steps[g]): the FILM frame itself when j / steps[g] is one of those times, otherwise the
    two around it blended linearly in time."""
    frames = iter(film_frames)
    frame = next(frames)  # the gap's left keyframe, at its time 0
    for depth, gap_steps in zip(depths, steps):
        intervals = 1 << depth
        previous, time = None, 0  # `frame` is the FILM frame at time / intervals of the gap
        for j in range(gap_steps):
            # Kept as a fraction to stay exact: lower + remainder / steps, in FILM frames.
            lower, remainder = divmod(j * intervals, gap_steps)
            while time < lower + (remainder > 0):
                previous, frame, time = frame, next(frames), time + 1
            yield frame if remainder == 0 else torch.lerp(previous, frame, remainder / gap_steps)
        while time < intervals:  # on to the next keyframe
            frame, time = next(frames), time + 1
    yield frame
