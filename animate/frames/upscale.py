"""Upscaled frames (docs/behaviour.md, "Upscaling"): every frame of the animation, 2x or 4x,
streamed in batches that fit in memory, a frame too large for that in overlapping tiles.

The upscaler is a spandrel ImageModelDescriptor of a 4x model (animate.weights.load_upscaler):
called on images (B, 3, H, W) in [0, 1], in its dtype and on its device, it returns
(B, 3, 4H, 4W) in [0, 1]. For 2x its output is scaled down by half.
"""

from collections.abc import Iterable, Iterator

import torch
import torch.nn.functional as F

from animate.memory import StageBatches
from animate.progress import Progress

# Input pixels each tile reads beyond its own on every side (fewer at the frame's edges).
# realesr-general-x4v3 is 34 3x3 convolutions before its pixel shuffle, so an output pixel
# depends on input pixels at most 34 away: with this overlap a tile's kept part is what the
# whole frame gives, up to float rounding. (Deeper architectures, such as RRDBNet, see
# further, and their tiles would differ slightly at the seams.)
TILE_OVERLAP = 34
# The smallest tile side, in input pixels, however small the budget: smaller tiles would
# spend most of each call on their overlap.
MIN_TILE = 32
# The fewest input pixels per call that still changes the calls of a large frame: a budget
# below this gives MIN_TILE tiles all the same (see upscale_images).
SMALLEST_TILE_CALL = (MIN_TILE + 2 * TILE_OVERLAP) ** 2


def upscale_images(upscaler, images: torch.Tensor, factor: int, batches: StageBatches) -> torch.Tensor:
    """upscale_batch of images (B, 3, H, W) with the input pixels per call of `batches`
    (stage "upscale"), halved and done again when a call runs out of memory (animate.memory):
    down to one frame per call, and for a frame larger than SMALLEST_TILE_CALL on to tiles
    of MIN_TILE, below which a smaller budget would make the same calls."""
    smallest = min(SMALLEST_TILE_CALL, images.shape[-2] * images.shape[-1])
    return batches.sized(lambda pixels_per_call: upscale_batch(upscaler, images, factor, pixels_per_call), smallest)


def upscale_batch(upscaler, images: torch.Tensor, factor: int, pixels_per_call: int) -> torch.Tensor:
    """Images (B, 3, H, W) in [0, 1] -> (B, 3, factor*H, factor*W) in [0, 1], in the
    upscaler's dtype on its device: the one batched upscaler call of the walk.

    Each upscaler call gets at most pixels_per_call input pixels (animate.memory sizes it):
    as many whole frames as fit, or, when one frame does not fit, one tile of it at a time.
    """
    images = images.to(upscaler.device, upscaler.dtype)
    frames_per_call = pixels_per_call // (images.shape[-2] * images.shape[-1])
    if frames_per_call >= 1:
        groups = [upscaler(group) for group in images.split(frames_per_call)]
    else:
        groups = [upscale_in_tiles(upscaler, image, tile_side(pixels_per_call)) for image in images]
    return torch.cat([scaled_to(group, factor, upscaler.scale) for group in groups])


def tile_side(pixels_per_call: int) -> int:
    """The side of a square tile, in input pixels, such that the tile with its overlap on
    every side holds at most pixels_per_call pixels (at least MIN_TILE)."""
    return max(MIN_TILE, int(pixels_per_call**0.5) - 2 * TILE_OVERLAP)


def spans(length: int, tile: int) -> list[tuple[int, int]]:
    """[start, end) of consecutive tiles of at most `tile` covering 0..length."""
    return [(start, min(start + tile, length)) for start in range(0, length, tile)]


def upscale_in_tiles(upscaler, image: torch.Tensor, tile: int) -> torch.Tensor:
    """One image (3, H, W) -> (1, 3, sH, sW) at the upscaler's scale s, one tile of at most
    tile x tile input pixels per call.

    Each tile is upscaled with up to TILE_OVERLAP pixels of its neighbours around it, and
    only its own part of the result is kept, so the seams do not show.
    """
    scale = upscaler.scale
    height, width = image.shape[-2:]
    output = image.new_empty(1, image.shape[0], height * scale, width * scale)
    for top, bottom in spans(height, tile):
        for left, right in spans(width, tile):
            read_top, read_left = max(0, top - TILE_OVERLAP), max(0, left - TILE_OVERLAP)
            read_bottom, read_right = min(height, bottom + TILE_OVERLAP), min(width, right + TILE_OVERLAP)
            upscaled = upscaler(image[None, :, read_top:read_bottom, read_left:read_right])
            kept = upscaled[
                ...,
                (top - read_top) * scale : (bottom - read_top) * scale,
                (left - read_left) * scale : (right - read_left) * scale,
            ]
            output[..., top * scale : bottom * scale, left * scale : right * scale] = kept
    return output


def scaled_to(images: torch.Tensor, factor: int, scale: int) -> torch.Tensor:
    """Images (B, 3, sH, sW) at the upscaler's scale s -> (B, 3, factor*H, factor*W).

    Shrinking averages each block of s/factor x s/factor pixels (OpenCV's INTER_AREA, the
    usual choice for shrinking by a whole factor): no ringing, and it runs in half
    precision on every device.
    """
    if factor == scale:
        return images
    return F.avg_pool2d(images, scale // factor)


def upscaled_frames(
    upscaler,
    frames: Iterable[torch.Tensor],
    total: int,
    factor: int,
    batches: StageBatches,
    progress: Progress,
) -> Iterator[torch.Tensor]:
    """The `total` frames (3, H, W) in [0, 1], each upscaled by `factor`, in order.

    Frames are taken from `frames` (which makes them: in-betweens, outside this stage) as
    many at a time as fit in the input pixels per call of `batches`, at least one, and
    upscaled together (upscale_images) in stage "upscale" of `progress`.
    progress.step("upscale", frames done, total, "4x") comes before each batch, a place to
    stop, and after each frame, as for the in-betweens.
    """
    iterator = iter(frames)
    detail = f"{factor}x"
    done = 0
    while done < total:
        first = next(iterator)
        batch_size = max(1, batches.size // (first.shape[-2] * first.shape[-1]))
        batch = [first] + [next(iterator) for _ in range(min(batch_size, total - done) - 1)]
        progress.step("upscale", done, total, detail)
        with progress.stage("upscale"):
            upscaled = upscale_images(upscaler, torch.stack(batch), factor, batches)
        for frame in upscaled:
            yield frame
            done += 1
            progress.step("upscale", done, total, detail)
