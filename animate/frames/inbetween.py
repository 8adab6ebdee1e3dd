"""In-between frames (docs/behaviour.md, "In-between frames"): slerped latents, or FILM.

Both paths yield the F = (K-1)S + 1 frames of the animation in order, one (3, H, W) tensor
in [0, 1] at a time: for each gap the left keyframe then S-1 in-betweens at j/S, and
finally the last keyframe. Keyframes are reused as decoded, never rendered again.
"""

from collections.abc import Iterator

import torch
from diffusers import AutoencoderKL

import film_net
from animate.diffusion.vae import decode_checked
from animate.memory import StageBatches
from animate.progress import Progress
from animate.slerp import slerp


def inbetween_times(num_keyframes: int, steps: int) -> list[tuple[int, float]]:
    """(left keyframe, t) of every in-between in animation order: j/S for j = 1..S-1 per gap."""
    return [(gap, j / steps) for gap in range(num_keyframes - 1) for j in range(1, steps)]


def decoded_inbetweens(
    vae: AutoencoderKL, keyframe_latents: torch.Tensor, steps: int, batches: StageBatches
) -> Iterator[torch.Tensor]:
    """In-between images (3, H, W) in order, from slerp(j/S, z_left, z_right) decoded in the
    batches of `batches` (stage "in-betweens"; sized by animate.memory.decode_batch_size).

    keyframe_latents (K, 4, h, w). Batches span gaps, so small S still fills a batch.
    """
    times = inbetween_times(keyframe_latents.shape[0], steps)

    def decode(start: int, stop: int) -> torch.Tensor:
        """The in-betweens times[start:stop], decoded: (B, 3, H, W)."""
        chunk = times[start:stop]
        left = torch.tensor([gap for gap, _ in chunk], device=keyframe_latents.device)
        t = torch.tensor([time for _, time in chunk], device=keyframe_latents.device)
        return decode_checked(vae, slerp(t, keyframe_latents[left], keyframe_latents[left + 1]))

    for _, _, images in batches.over(len(times), decode):
        yield from images


def latent_frames(
    vae: AutoencoderKL,
    keyframe_latents: torch.Tensor,
    keyframe_images: torch.Tensor,
    steps: int,
    batches: StageBatches,
) -> Iterator[torch.Tensor]:
    """All frames, with in-betweens from slerped latents (film_interpolation=false).

    keyframe_latents (K, 4, h, w); keyframe_images (K, 3, H, W), their decoded images;
    batches: as decoded_inbetweens.
    """
    inbetweens = decoded_inbetweens(vae, keyframe_latents, steps, batches)
    for gap in range(keyframe_images.shape[0] - 1):
        yield keyframe_images[gap]
        for _ in range(steps - 1):
            yield next(inbetweens)
    yield keyframe_images[-1]


def film_frames(
    film: film_net.FilmNet,
    keyframe_images: torch.Tensor,
    steps: int,
    progress: Progress,
    batches: StageBatches,
) -> Iterator[torch.Tensor]:
    """All frames, with in-betweens from FILM (film_interpolation=true).

    keyframe_images (K, 3, H, W) in [0, 1]; they are given to FILM in its own dtype.
    Before each FILM call, progress.step("inbetweens", frames made, all frames, "FILM"):
    a place to stop, since one frame can take several calls. batches (stage "FILM"; sized
    by animate.memory.film_batch_size): the pairs per call, halved when a call runs out of
    memory.
    """
    if steps == 1:
        yield from keyframe_images  # no in-betweens to make
        return
    parameter = next(film.parameters())
    keyframes = keyframe_images.to(parameter.device, parameter.dtype)
    total = (keyframes.shape[0] - 1) * steps + 1
    made = 0

    def before_call(pairs: int) -> None:
        progress.step("inbetweens", made, total, "FILM")
        batches.memory.before_batch(batches.stage, pairs)

    frames = film_net.interpolate(
        film, keyframes, steps, max_batch=batches.size, before_call=before_call, on_out_of_memory=batches.shrink
    )
    for frame in frames:
        made += 1
        yield frame
