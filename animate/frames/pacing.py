"""How much the picture changes from one frame to the next, and how even that is
(docs/behaviour.md, "Pacing").

The measure: for consecutive frames, d = the RMS difference of their RGB values (0-255)
after each is scaled by a box filter so that its long side is 128 px; the unevenness of an
animation is the coefficient of variation of its d, std(d) / mean(d), and its largest
jump is max(d) / median(d). Even pacing measures its keyframes with it, and the tests and
the benchmark measure animations with it.
"""

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

# Pictures are compared at this long side, so the measure does not depend on the frame size.
THUMBNAIL_LONG_SIDE = 128
# Values per colour channel: pictures in [0, 1] are compared as 0-255.
LEVELS = 255


def thumbnails(images: torch.Tensor) -> torch.Tensor:
    """Images (B, 3, H, W) in [0, 1] -> (B, 3, h, w) float32 in 0-255 with max(h, w) = 128,
    each thumbnail pixel the mean of the pixels it covers (a box filter)."""
    height, width = images.shape[-2:]
    scale = THUMBNAIL_LONG_SIDE / max(height, width)
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    return torch.nn.functional.adaptive_avg_pool2d(images.float() * LEVELS, size)


def rms_differences(thumbs: torch.Tensor, closed: bool = False) -> list[float]:
    """RMS difference between each thumbnail (B, 3, h, w) and the next: B - 1 numbers, or
    B when `closed` (the last compared with the first, as a loop plays them)."""
    following = torch.roll(thumbs, -1, dims=0) if closed else thumbs[1:]
    difference = following - thumbs[: following.shape[0]]
    return difference.square().mean(dim=(1, 2, 3)).sqrt().tolist()


def picture_changes(images: torch.Tensor, closed: bool = False) -> list[float]:
    """d between each image (K, 3, H, W) in [0, 1] and the next (and the last and the first
    when `closed`)."""
    return rms_differences(thumbnails(images), closed)


class ChangeMeter:
    """d between consecutive frames fed to it in order, a chunk at a time, holding only the
    last thumbnail: frames as uint8 (B, H, W, 3), as the encoder gets them."""

    def __init__(self) -> None:
        self.changes: list[float] = []
        self.last: torch.Tensor | None = None

    def add(self, pictures: np.ndarray) -> None:
        images = torch.from_numpy(np.ascontiguousarray(pictures)).movedim(-1, -3).float() / LEVELS
        thumbs = thumbnails(images)
        if self.last is not None:
            thumbs = torch.cat([self.last, thumbs])
        self.changes += rms_differences(thumbs)
        self.last = thumbs[-1:]

    def add_all(self, frames: Iterable[np.ndarray]) -> "ChangeMeter":
        for frame in frames:
            self.add(frame[None])
        return self


@dataclass(frozen=True)
class Unevenness:
    """How even the changes d are: cv = std(d) / mean(d) (0: perfectly even), and the
    largest jump, max(d) / median(d). Both are 0 when nothing changes at all."""

    cv: float
    largest_jump: float

    @classmethod
    def of(cls, changes: Sequence[float]) -> "Unevenness":
        mean = statistics.fmean(changes)
        if mean == 0:
            return cls(0.0, 0.0)
        median = statistics.median(changes)
        return cls(statistics.pstdev(changes) / mean, max(changes) / median if median > 0 else float("inf"))
