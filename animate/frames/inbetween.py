"""In-between frames (docs/behaviour.md, "In-between frames"): slerped latents, or FILM.

Both paths yield the frames of the animation in order, one (3, H, W) tensor in [0, 1] at
a time: for each gap g the left keyframe then S_g - 1 in-betweens at j/S_g, and finally
the last keyframe, unless the walk loops: then the last gap runs from the last keyframe
back to the first, which is not shown again. gap_frames, the S_g, has K - 1 numbers, or K
for a loop. Keyframes are reused as decoded, never rendered again.
"""

import itertools
from collections.abc import Iterator, Sequence

import torch
from diffusers import AutoencoderKL

import film_net
from animate.diffusion.vae import decode_checked
from animate.memory import StageBatches
from animate.progress import Progress
from animate.slerp import slerp


def closes_the_loop(num_keyframes: int, gap_frames: Sequence[int]) -> bool:
    """Whether the gaps close back to the first keyframe: K gaps (loop) rather than K - 1."""
    if len(gap_frames) not in (num_keyframes - 1, num_keyframes):
        raise ValueError(
            f"{num_keyframes} keyframes have {num_keyframes - 1} gaps, or {num_keyframes} as a loop, not {len(gap_frames)}"
        )
    return len(gap_frames) == num_keyframes


def inbetween_times(gap_frames: Sequence[int]) -> list[tuple[int, float]]:
    """(left keyframe, t) of every in-between in animation order: j/S_g for j = 1..S_g-1 per gap."""
    return [(gap, j / frames) for gap, frames in enumerate(gap_frames) for j in range(1, frames)]


def decoded_inbetweens(
    vae: AutoencoderKL, keyframe_latents: torch.Tensor, gap_frames: Sequence[int], batches: StageBatches
) -> Iterator[torch.Tensor]:
    """In-between images (3, H, W) in order, from slerp(j/S_g, z_left, z_right) decoded in the
    batches of `batches` (stage "in-betweens"; sized by animate.memory.decode_batch_size).

    keyframe_latents (K, 4, h, w); a loop's last gap goes from the last latent to the first.
    Batches span gaps, so small S_g still fill a batch.
    """
    times = inbetween_times(gap_frames)
    count = keyframe_latents.shape[0]

    def decode(start: int, stop: int) -> torch.Tensor:
        """The in-betweens times[start:stop], decoded: (B, 3, H, W)."""
        chunk = times[start:stop]
        left = torch.tensor([gap for gap, _ in chunk], device=keyframe_latents.device)
        t = torch.tensor([time for _, time in chunk], device=keyframe_latents.device)
        return decode_checked(vae, slerp(t, keyframe_latents[left], keyframe_latents[(left + 1) % count]))

    for _, _, images in batches.over(len(times), decode):
        yield from images


def latent_frames(
    vae: AutoencoderKL,
    keyframe_latents: torch.Tensor,
    keyframe_images: torch.Tensor,
    gap_frames: Sequence[int],
    batches: StageBatches,
) -> Iterator[torch.Tensor]:
    """All frames, with in-betweens from slerped latents (film_interpolation=false).

    keyframe_latents (K, 4, h, w); keyframe_images (K, 3, H, W), their decoded images;
    batches: as decoded_inbetweens.
    """
    loop = closes_the_loop(keyframe_images.shape[0], gap_frames)
    inbetweens = decoded_inbetweens(vae, keyframe_latents, gap_frames, batches)
    for gap, frames in enumerate(gap_frames):
        yield keyframe_images[gap]
        for _ in range(frames - 1):
            yield next(inbetweens)
    if not loop:
        yield keyframe_images[-1]


def film_frames(
    film: film_net.FilmNet,
    keyframe_images: torch.Tensor,
    gap_frames: Sequence[int],
    progress: Progress,
    batches: StageBatches,
) -> Iterator[torch.Tensor]:
    """All frames, with in-betweens from FILM (film_interpolation=true).

    keyframe_images (K, 3, H, W) in [0, 1]; they are given to FILM in its own dtype. A
    loop's last gap is FILM's gap from the last keyframe to the first keyframe again, whose
    own frame is left out (it is the animation's first). Before each FILM call,
    progress.step("inbetweens", frames made, all frames, "FILM"): a place to stop, since
    one frame can take several calls. batches (stage "FILM"; sized by
    animate.memory.film_batch_size): the pairs per call, halved when a call runs out of
    memory.
    """
    loop = closes_the_loop(keyframe_images.shape[0], gap_frames)
    if all(frames == 1 for frames in gap_frames):
        yield from keyframe_images  # no in-betweens to make
        return
    parameter = next(film.parameters())
    keyframes = keyframe_images.to(parameter.device, parameter.dtype)
    if loop:
        keyframes = torch.cat([keyframes, keyframes[:1]])
    total = sum(gap_frames) + (0 if loop else 1)
    made = 0

    def before_call(pairs: int) -> None:
        progress.step("inbetweens", made, total, "FILM")
        batches.memory.before_batch(batches.stage, pairs)

    frames = film_net.interpolate(
        film, keyframes, list(gap_frames), max_batch=batches.size, before_call=before_call,
        on_out_of_memory=batches.shrink,
    )
    for frame in itertools.islice(frames, total):
        made += 1
        yield frame
