"""Frames on the host: uint8 (H, W, 3) arrays from the device's images, checked, played ping-pong."""

import itertools
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch

from animate.output.files import reporting_full_disk


class BrokenFrameError(RuntimeError):
    """A frame holds NaN; the message says what to try."""


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Images (B, 3, H, W) or one (3, H, W) in [0, 1] -> uint8 (B, H, W, 3) or (H, W, 3) on the host.

    Rounds like diffusers' numpy_to_pil (x * 255, rounded). Raises BrokenFrameError for
    NaN, which would otherwise turn into black pixels in the animation without a word.
    """
    if torch.isnan(images).any():
        raise BrokenFrameError(
            "A frame came out as NaN (not a number), which would show as black: "
            "try another seed, or film_interpolation=false."
        )
    scaled = (images.float() * 255).round().clamp(0, 255).to(torch.uint8)
    return scaled.movedim(-3, -1).cpu().numpy()


def checked_frames(frames: Iterable[np.ndarray], shape: tuple[int, ...] | None = None) -> Iterator[np.ndarray]:
    """The frames, each checked to be uint8 of `shape` (the first frame's when None);
    ValueError otherwise."""
    for frame in frames:
        shape = frame.shape if shape is None else shape
        if frame.shape != shape or frame.dtype != np.uint8:
            raise ValueError(f"frames must all be uint8 {shape}, got {frame.dtype} {frame.shape}")
        yield frame


def first_and_rest(frames: Iterable[np.ndarray]) -> tuple[np.ndarray, Iterable[np.ndarray]]:
    """Peek the first frame (to learn the size) and give back the whole sequence."""
    iterator = iter(frames)
    try:
        first = next(iterator)
    except StopIteration:
        raise ValueError("cannot encode an animation without frames") from None
    return first, itertools.chain([first], iterator)


def ping_pong(frames: Iterable[np.ndarray], spool_dir: Path | None = None) -> Iterator[np.ndarray]:
    """frames + reversed(frames[1:-1]) for uint8 (H, W, 3) frames, with flat host memory.

    The forward frames are yielded as they come and also written to a raw temporary file,
    which is then read back from the end, one frame at a time. Nothing is rendered twice.
    """
    with tempfile.TemporaryFile(dir=spool_dir) as spool:
        count = 0
        for frame in checked_frames(frames):
            with reporting_full_disk("the ping-pong frames"):
                spool.write(np.ascontiguousarray(frame).tobytes())
            count += 1
            yield frame
        if count < 3:
            return
        with reporting_full_disk("the ping-pong frames"):
            spool.flush()  # a buffered write that does not fit fails here
        shape = frame.shape  # the last frame's, which checked_frames made every frame's
        frame_bytes = int(np.prod(shape))
        for index in range(count - 2, 0, -1):
            spool.seek(index * frame_bytes)
            yield np.frombuffer(spool.read(frame_bytes), dtype=np.uint8).reshape(shape)
