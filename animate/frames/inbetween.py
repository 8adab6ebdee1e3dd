"""In-between frames (docs/behaviour.md, "In-between frames"): slerped latents, or FILM.

Both paths yield the F = (K-1)S + 1 frames of the animation in order, one (3, H, W) tensor
in [0, 1] at a time: for each gap the left keyframe then S-1 in-betweens at j/S, and
finally the last keyframe. Keyframes are reused as decoded, never rendered again.
"""

from collections.abc import Iterator

import torch
from diffusers import AutoencoderKL

import film_net
from animate.diffusion.vae import decode_latents
from animate.memory import film_batch_size
from animate.progress import Progress
from animate.slerp import slerp


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
