"""In-between frames (docs/behaviour.md, "In-between frames"): slerped latents, or FILM.

Both paths yield the F = (K-1)S + 1 frames of the animation in order, one (3, H, W) tensor
in [0, 1] at a time: for each gap the left keyframe then S-1 in-betweens at j/S, and
finally the last keyframe. Keyframes are reused as decoded, never rendered again.
"""

from collections.abc import Iterator

import torch
from diffusers import AutoencoderKL

import film_net
from film_net.recursive import bisection_depth
from animate.diffusion import batch_size_for, decode_latents
from animate.progress import Progress
from animate.slerp import slerp

# FILM pairs per call on CPU: one, because batches run slower there, not faster (per pair,
# 2 threads: tiny FILM at 512x512 0.26 s at batch 1, 0.45 s at batch 4; the full FILM at
# 256x256 1.9 s and 2.3 s), and each pair in a call costs its activations (tiny FILM at
# 1024x768: about 0.6 GB per pair).
FILM_CPU_BATCH = 1
# FILM pairs per call on CUDA: what fits in half the usable memory, by this estimate of the
# peak per pair in fp16. film_net.interpolate holds at most (depth + 2) * batch + 1 frames'
# image and feature pyramids, 164 values per pixel each with the default FILM; one pair's
# flow and fusion activations took 5.4 KB per pixel on CPU in fp32 at 256x256, about half
# that in fp16 (not measured on a GPU). At most MAX_FILM_BATCH: bigger batches stop paying.
FILM_PYRAMID_BYTES_PER_PIXEL = 164 * 2
FILM_ACTIVATION_BYTES_PER_PIXEL = 2700
MAX_FILM_BATCH = 16


def inbetween_times(num_keyframes: int, steps: int) -> list[tuple[int, float]]:
    """(left keyframe, t) of every in-between in animation order: j/S for j = 1..S-1 per gap."""
    return [(gap, j / steps) for gap in range(num_keyframes - 1) for j in range(1, steps)]


def decoded_inbetweens(
    vae: AutoencoderKL, keyframe_latents: torch.Tensor, steps: int, batch_size: int | None
) -> Iterator[torch.Tensor]:
    """In-between images (3, H, W) in order, from slerp(j/S, z_left, z_right) decoded in batches.

    keyframe_latents (K, 4, h, w). Batches span gaps, so small S still fills a batch.
    """
    times = inbetween_times(keyframe_latents.shape[0], steps)
    if batch_size is None:
        batch_size = len(times) or 1
    for start in range(0, len(times), batch_size):
        chunk = times[start : start + batch_size]
        left = torch.tensor([gap for gap, _ in chunk], device=keyframe_latents.device)
        t = torch.tensor([time for _, time in chunk], device=keyframe_latents.device)
        latents = slerp(t, keyframe_latents[left], keyframe_latents[left + 1])
        yield from decode_latents(vae, latents, batch_size)


def latent_frames(
    vae: AutoencoderKL,
    keyframe_latents: torch.Tensor,
    keyframe_images: torch.Tensor,
    steps: int,
    batch_size: int | None = None,
) -> Iterator[torch.Tensor]:
    """All frames, with in-betweens from slerped latents (film_interpolation=false).

    keyframe_latents (K, 4, h, w); keyframe_images (K, 3, H, W), their decoded images.
    """
    inbetweens = decoded_inbetweens(vae, keyframe_latents, steps, batch_size)
    for gap in range(keyframe_images.shape[0] - 1):
        yield keyframe_images[gap]
        for _ in range(steps - 1):
            yield next(inbetweens)
    yield keyframe_images[-1]


def film_frames(
    film: film_net.FilmNet, keyframe_images: torch.Tensor, steps: int, progress: Progress
) -> Iterator[torch.Tensor]:
    """All frames, with in-betweens from FILM (film_interpolation=true).

    keyframe_images (K, 3, H, W) in [0, 1]; they are given to FILM in its own dtype.
    Before each FILM call, progress.step("inbetweens", frames made, all frames, "FILM"):
    a place to stop, since one frame can take several calls.
    """
    if steps == 1:
        yield from keyframe_images  # no in-betweens to make
        return
    parameter = next(film.parameters())
    keyframes = keyframe_images.to(parameter.device, parameter.dtype)
    total = (keyframes.shape[0] - 1) * steps + 1
    made = 0

    def before_call() -> None:
        progress.step("inbetweens", made, total, "FILM")

    batch = film_batch_size(keyframes, steps)
    for frame in film_net.interpolate(film, keyframes, steps, max_batch=batch, before_call=before_call):
        made += 1
        yield frame


def film_batch_size(keyframes: torch.Tensor, steps: int) -> int:
    """FILM pairs per call for keyframes (K, 3, H, W) in the model's dtype and device, with
    `steps` frames per gap: FILM_CPU_BATCH on CPU, sized from free memory on CUDA."""
    pyramids_per_pair = bisection_depth(steps) + 3  # (d + 2) * B + 1 <= (d + 3) * B
    per_pixel = pyramids_per_pair * FILM_PYRAMID_BYTES_PER_PIXEL + FILM_ACTIVATION_BYTES_PER_PIXEL
    per_pair = per_pixel * keyframes.shape[-2] * keyframes.shape[-1] * keyframes.element_size() // 2
    return batch_size_for(keyframes.device, per_pair, FILM_CPU_BATCH, MAX_FILM_BATCH)
