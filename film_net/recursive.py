"""In-between frames by recursive FILM midpoints (docs/behaviour.md, "In-between frames").

FILM was trained for the midpoint only, so more frames come from bisection: the midpoint
of a gap, then the midpoints of both halves, and so on to depth d = ceil(log2 S). That
gives frames at the times m / 2^d; a frame at time j / S is the FILM frame itself when
j / S is one of those times (always, when S is a power of two), and otherwise the two
FILM frames around it blended linearly in time.
"""

import collections
from collections.abc import Callable, Iterable, Iterator

import torch

DEFAULT_MAX_BATCH = 4

MidpointModel = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def bisection_depth(steps: int) -> int:
    """ceil(log2(steps)): how many times each gap is halved to reach time step 1 / steps."""
    return (steps - 1).bit_length()


def interpolate(
    model: MidpointModel,
    keyframes: torch.Tensor,
    steps: int,
    max_batch: int = DEFAULT_MAX_BATCH,
    before_call: Callable[[int], None] | None = None,
    on_out_of_memory: Callable[[int], int] | None = None,
) -> Iterator[torch.Tensor]:
    """Yields the (K - 1) * steps + 1 frames (3, H, W) of the animation through `keyframes`.

    keyframes: (K, 3, H, W), values in [0, 1], on the model's device. For each gap, the
    left keyframe then the steps - 1 in-betweens at times j / steps; finally the last
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
    check_arguments(keyframes, steps, max_batch)
    depth = bisection_depth(steps)
    film_frames = bisected_frames(model, keyframes, depth, max_batch, before_call, on_out_of_memory)
    yield from frames_at_steps(film_frames, 1 << depth, steps)


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
    depth: int,
    max_batch: int,
    before_call: Callable[[int], None] | None = None,
    on_out_of_memory: Callable[[int], int] | None = None,
) -> Iterator[torch.Tensor]:
    """Yields, in time order, the FILM frames (3, H, W) of every gap at the times m / 2^depth,
    m = 0 .. 2^depth, the gap's end keyframe counted once: G * 2^depth + 1 frames for the G
    gaps between `keyframes` (G + 1, 3, H, W). Midpoints are clipped to [0, 1].

    Time runs in units of 1 / 2^depth of a gap, so keyframe k is at k * 2^depth. The work
    is a list of intervals still to bisect, in time order; each model call takes the
    earliest `max_batch` of them (from one gap or several), and each interval longer than
    two units gives its two halves back to the front of the list. So frames become final
    from the left, are yielded and dropped at once, and only the frames and pyramids
    around the front of the list are held: at most (depth + 2) * max_batch + 1 frames' pyramids.
    before_call and on_out_of_memory are interpolate's: a call that runs out of memory
    changes nothing (its intervals go back to the front of the list, and the extractions
    it finished stay valid), so it is done again with the smaller max_batch.
    """
    if depth == 0 or keyframes.shape[0] == 1:  # nothing to bisect
        yield from keyframes
        return
    pairs_model = pair_model(model)
    size = tuple(keyframes.shape[-2:])
    span = 1 << depth
    last_time = (keyframes.shape[0] - 1) * span
    frames = {gap * span: keyframe for gap, keyframe in enumerate(keyframes)}  # time -> (3, H, W)
    extracted: dict[int, list[torch.Tensor]] = {}  # time -> what `extract` gave for that frame
    pending = collections.deque((gap * span, (gap + 1) * span) for gap in range(keyframes.shape[0] - 1))
    next_time = 0  # the earliest frame not yielded yet
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
            if right - left > 2:  # its halves are bisected again
                halves += [(left, middle), (middle, right)]
        pending.extendleft(reversed(halves))
        del midpoints, midpoint  # the frames dictionary holds what is still needed
        # Every frame up to the start of the earliest pending interval is final; the one
        # at that start is still needed, those before it are not.
        final_time = pending[0][0] if pending else last_time
        while next_time <= final_time:
            yield frames[next_time]
            next_time += 1
        for held in (frames, extracted):
            for time in [time for time in held if time < final_time]:
                del held[time]


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
def frames_at_steps(film_frames: Iterable[torch.Tensor], intervals: int, steps: int) -> Iterator[torch.Tensor]:
    """The frames at times n / steps (in gaps) from FILM frames at times m / intervals, given
    in time order (intervals = 2^d >= steps): the FILM frame itself when n / steps is one of
    those times, otherwise the two around it blended linearly in time."""
    previous = None
    output = 0  # the next frame to give, at time output / steps
    for time, frame in enumerate(film_frames):
        while True:
            # Kept as a fraction to stay exact: lower + remainder / steps, in FILM frames.
            lower, remainder = divmod(output * intervals, steps)
            if lower == time and remainder == 0:
                yield frame
            elif lower == time - 1 and remainder > 0:
                yield torch.lerp(previous, frame, remainder / steps)
            else:
                break
            output += 1
        previous = frame
