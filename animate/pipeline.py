"""The whole walk (docs/behaviour.md, "The walk"), one named stage after another.

[init image read] -> prompts -> text conditioning -> keyframe conditioning -> shared start
(or the init image, noised) -> keyframe batches (denoise, decode, safety check, [keyframe
PNGs, upscaled as the frames are]) -> in-betweens -> [upscaling] -> [ping-pong] -> encoder
-> the animation file, yielded last. Each stage reports to one Progress (animate.progress).
SD 1.x/2.x and SDXL checkpoints differ only in their text conditioning (text_conditioning);
the rest of the walk is the same.
"""

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch

from animate.diffusion.denoise import (
    denoise_keyframes,
    image_start,
    latent_noise,
    seed_generator,
    shared_denoise,
    uses_guidance,
)
from animate.diffusion.safety import check_keyframes
from animate.diffusion.schedulers import chosen_scheduler
from animate.diffusion.vae import decode_latents
from animate.frames.host import ping_pong, to_uint8
from animate.frames.inbetween import film_frames, latent_frames
from animate.frames.upscale import tile_side, upscale_batch, upscaled_frames
from animate.inputs.init_image import load_init_image
from animate.inputs.plan import KeyframePlan
from animate.inputs.settings import Settings
from animate.memory import decode_batch_size, keyframe_batch_size, upscale_pixels_per_call
from animate.output.encoder_thread import encode_in_background
from animate.output.files import write_png
from animate.output.gif import encode_gif, gif_encoder_count
from animate.output.mp4 import encode_mp4
from animate.progress import Progress
from animate.slerp import slerp
from animate.text.clip import encode_prompts
from animate.text.conditioning import Conditioning
from animate.text.sdxl import add_time_ids, encode_sdxl_prompts
from animate.weights import Components, require_upscaler

# Frames per device-to-host copy; a few frames, so host memory stays small at 1024x768.
HOST_CHUNK = 8


def plan_for(settings: Settings) -> KeyframePlan:
    return KeyframePlan(
        num_prompts=len(settings.prompts),
        keyframes_per_segment=settings.num_animation_frames,
        interpolation_steps=settings.num_interpolation_steps,
        ping_pong=settings.ping_pong,
    )


def keyframe_embeddings(plan: KeyframePlan, prompt_embeddings: torch.Tensor) -> torch.Tensor:
    """Conditional embedding of each keyframe, (K, ...): slerp(t, e_p, e_p+1) per keyframe.

    prompt_embeddings (P, ...), one per prompt: per-token (P, L, D) or pooled (P, E); each
    prompt's embedding is slerped as one vector.
    """
    times = plan.keyframe_times()
    segments = torch.tensor([segment for segment, _ in times], device=prompt_embeddings.device)
    t = torch.tensor([t for _, t in times], device=prompt_embeddings.device)
    return slerp(t, prompt_embeddings[segments], prompt_embeddings[segments + 1])


def walk_embedding(plan: KeyframePlan, prompt_embeddings: torch.Tensor, position: float) -> torch.Tensor:
    """The embedding (1, ...) at a fraction `position` of the whole walk, from prompt_embeddings (P, ...)."""
    segment, t = plan.walk_position(position)
    return slerp(t, prompt_embeddings[segment : segment + 1], prompt_embeddings[segment + 1 : segment + 2])


def text_conditioning(components: Components, settings: Settings) -> tuple[Conditioning, Conditioning]:
    """The conditioning of the P prompts (P samples) and of the negative prompt (1 sample,
    the unconditional half of guidance), every text encoded once.

    SD 1.x/2.x: CLIP's embeddings (animate.text.clip). SDXL: both encoders' embeddings and the
    pooled one, as diffusers' StableDiffusionXLPipeline makes them (animate.text.sdxl), with
    the size conditioning of the requested size, the same for both halves.
    """
    prompts = list(settings.prompts)
    if components.kind == "sdxl":
        text = encode_sdxl_prompts(components, prompts, settings.negative_prompt)
        # In the embeddings' dtype, as diffusers makes them.
        time_ids = add_time_ids(settings.height, settings.width, text.embeddings.dtype).to(components.device)
        return (
            Conditioning(text.embeddings, text.pooled, time_ids),
            Conditioning(text.negative_embeddings, text.negative_pooled, time_ids),
        )
    embeddings, uncond = encode_prompts(components.tokenizer, components.text_encoder, prompts, settings.negative_prompt)
    return Conditioning(embeddings), Conditioning(uncond)


def keyframe_conditioning(plan: KeyframePlan, prompts: Conditioning) -> Conditioning:
    """Each keyframe's conditioning (K samples): its per-token embedding and (SDXL) its
    pooled embedding, each slerped between the keyframe's two prompts (keyframe_embeddings)."""
    return prompts.map(lambda embeddings: keyframe_embeddings(plan, embeddings))


def walk_conditioning(plan: KeyframePlan, prompts: Conditioning, position: float) -> Conditioning:
    """The conditioning (1 sample) at a fraction `position` of the whole walk (walk_embedding)."""
    return prompts.map(lambda embeddings: walk_embedding(plan, embeddings, position))


def render_keyframes(
    components: Components,
    settings: Settings,
    plan: KeyframePlan,
    keyframes: Conditioning,
    middle: Conditioning,
    uncond: Conditioning,
    progress: Progress,
    init_pixels: torch.Tensor | None = None,
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """Shared start (from noise, or from init_pixels (1, 3, H, W) in [-1, 1] when the walk
    has an init image), then keyframe batches. Yields (first index, latents (B, 4, h, w),
    images (B, 3, H, W) in [0, 1]) per batch, each decoded and safety-checked (unless the
    settings disable it), and tells `progress` of it first.

    keyframes: the K keyframes' conditioning; middle: the walk's at position 0.5, for the
    shared start; uncond: the negative prompt's, used at every step.
    """
    scheduler = chosen_scheduler(settings.scheduler, components.scheduler)
    progress.log("Sampler", f"{type(scheduler).__name__} ({settings.scheduler})")
    generator = seed_generator(settings.seed)
    noise = latent_noise(generator, settings.height, settings.width, components.device, components.dtype)
    if init_pixels is None:
        shared, scheduler, remaining = shared_denoise(
            components.unet, scheduler, noise, settings.num_inference_steps,
            settings.prompt_strength, middle, uncond, settings.guidance_scale, progress, generator,
        )
    else:
        shared, scheduler, remaining = image_start(
            components.vae, scheduler, init_pixels, noise, settings.num_inference_steps,
            settings.prompt_strength, progress,
        )
    batch_size = keyframe_batch_size(components.device, shared, uses_guidance(settings.guidance_scale))
    progress.log("keyframes", f"{plan.num_keyframes} keyframes, {batch_size} per batch")
    batches = denoise_keyframes(
        components.unet, scheduler, shared, remaining, keyframes, uncond,
        settings.guidance_scale, batch_size, progress, generator,
    )
    safety_checker = None if settings.disable_safety_checker else components.safety_checker
    if safety_checker is None and components.safety_checker is not None:
        progress.log("safety check", "skipped, as disable_safety_checker asks")
    for start, latents in batches:
        with progress.stage("decode", f"keyframes {start + 1}-{start + latents.shape[0]} of {plan.num_keyframes}"):
            images = decode_latents(
                components.vae, latents, decode_batch_size(components.device, latents, components.vae.dtype)
            )
        check_keyframes(safety_checker, components.feature_extractor, images, start, plan.num_keyframes)
        progress.keyframes_decoded(start, latents, images, plan.num_keyframes)
        yield start, latents, images


def animation_frames(
    components: Components,
    settings: Settings,
    keyframe_latents: torch.Tensor,
    keyframe_images: torch.Tensor,
    progress: Progress,
) -> Iterator[torch.Tensor]:
    """The F frames (3, H, W) in order, with FILM or with slerped latents."""
    steps = settings.num_interpolation_steps
    if settings.film_interpolation:
        return film_frames(components.film, keyframe_images, steps, progress)
    batch_size = decode_batch_size(components.device, keyframe_latents, components.vae.dtype)
    return latent_frames(components.vae, keyframe_latents, keyframe_images, steps, batch_size)


def upscale_plan(components: Components, settings: Settings, progress: Progress) -> int:
    """Input pixels per upscaler call (animate.memory), logged with the upscaled size."""
    pixels_per_call = upscale_pixels_per_call(components.device, components.upscaler.dtype)
    factor, frame_pixels = settings.upscale_factor, settings.width * settings.height
    frames_per_call = pixels_per_call // frame_pixels
    per_call = (
        f"{frames_per_call} frame{'s' if frames_per_call > 1 else ''} per call" if frames_per_call
        else f"tiles of {tile_side(pixels_per_call)}x{tile_side(pixels_per_call)} pixels"
    )
    progress.log("upscaling", f"{factor}x to {settings.width * factor}x{settings.height * factor}, {per_call}")
    return pixels_per_call


def upscaled_keyframes(
    components: Components, settings: Settings, images: torch.Tensor, pixels_per_call: int, progress: Progress
) -> np.ndarray:
    """Keyframes (B, 3, H, W) in [0, 1] as the PNGs show them: upscaled like every frame of
    the animation (stage "upscale"), as uint8 (B, fH, fW, 3)."""
    if settings.upscale_factor == 1:
        return to_uint8(images)
    with progress.stage("upscale", "keyframe PNGs"):
        return to_uint8(upscale_batch(components.upscaler, images, settings.upscale_factor, pixels_per_call))


def host_frames(frames: Iterable[torch.Tensor], total: int, progress: Progress, method: str) -> Iterator[np.ndarray]:
    """The `total` frames as uint8 (H, W, 3) on the host. Making them is stage "inbetweens"
    of `progress`, reported after each frame; handing them on (to the encoder) is not.

    Frames are converted to uint8 on their device HOST_CHUNK at a time and copied to the
    host in one transfer per chunk: on CUDA each copy waits for the GPU, so one wait per
    chunk instead of one per frame keeps it busy.
    """
    iterator = iter(frames)
    done = 0
    while done < total:
        with progress.stage("inbetweens"):
            chunk = []
            for _ in range(min(HOST_CHUNK, total - done)):
                chunk.append(next(iterator))
                progress.step("inbetweens", done + len(chunk), total, method)
            pictures = to_uint8(torch.stack(chunk))
        done += len(chunk)
        yield from pictures


def gif_encoders(device: torch.device) -> int:
    """ffmpeg processes to encode a GIF with. On CUDA the cores are free while the GPU makes
    the frames, and one ffmpeg would be the slowest stage; on CPU torch's threads already
    use every core, and the frames come slower than one ffmpeg encodes them."""
    return gif_encoder_count() if device.type == "cuda" else 1


def encode_animation(
    settings: Settings,
    frames: Iterable[np.ndarray],
    keyframes: np.ndarray,
    path: Path,
    num_frames: int,
    device: torch.device,
) -> None:
    """Stream the frames (uint8 (H, W, 3)) into the GIF or MP4 at `path`."""
    if settings.output_format == "gif":
        encode_gif(frames, path, settings.frames_per_second, keyframes, num_frames, gif_encoders(device))
    elif settings.output_format == "mp4":
        encode_mp4(frames, path, settings.frames_per_second)
    else:
        raise ValueError(f"unknown output_format {settings.output_format!r}")


@torch.inference_mode()
def animate(
    components: Components, settings: Settings, output_dir: str | Path, progress: Progress | None = None
) -> Iterator[Path]:
    """Run the walk; yield keyframe-NNN.png files (with intermediate_output) as each batch of
    keyframes is ready, then animation.gif / animation.mp4 last.

    `progress` hears of every stage, denoising step, frame and keyframe batch, and may raise
    from its `step` to stop the walk (see animate.progress); by default a new Progress logs
    them on stdout. An init image that cannot be used raises InputError before any model runs.
    """
    progress = Progress() if progress is None else progress
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    plan = plan_for(settings)
    progress.log(
        f"Walk over {len(settings.prompts)} prompts",
        f"{plan.num_keyframes} keyframes, {plan.num_frames} frames, {plan.num_output_frames} in the animation",
    )

    # Checked and read first, so that a request this server cannot serve, or a picture that
    # cannot be used, fails the walk before any model runs.
    require_upscaler(components, settings.upscale)
    pixels_per_call = upscale_plan(components, settings, progress) if settings.upscale_factor > 1 else 0
    init_pixels = None
    if settings.init_image is not None:
        init_pixels = load_init_image(settings.init_image, settings.width, settings.height)

    with progress.stage("text"):
        prompts, uncond = text_conditioning(components, settings)
        keyframes = keyframe_conditioning(plan, prompts)
        middle = walk_conditioning(plan, prompts, 0.5)

    latents, images = [], []
    for start, batch_latents, batch_images in render_keyframes(
        components, settings, plan, keyframes, middle, uncond, progress, init_pixels
    ):
        latents.append(batch_latents)
        images.append(batch_images)
        if settings.intermediate_output:
            pictures = upscaled_keyframes(components, settings, batch_images, pixels_per_call, progress)
            for offset, picture in enumerate(pictures):
                yield write_png(picture, output_dir / f"keyframe-{start + offset:03d}.png")
    keyframe_latents, keyframe_images = torch.cat(latents), torch.cat(images)
    del latents, images  # the batches, now copied: at 1024x768, 50 keyframes are 470 MB in float32

    method = "FILM" if settings.film_interpolation else "latent slerp"
    frames = animation_frames(components, settings, keyframe_latents, keyframe_images, progress)
    if settings.upscale_factor > 1:
        frames = upscaled_frames(
            components.upscaler, frames, plan.num_frames, settings.upscale_factor, pixels_per_call, progress
        )
    frames = host_frames(frames, plan.num_frames, progress, method)
    if settings.ping_pong:
        frames = ping_pong(frames, output_dir)
    path = output_dir / f"animation.{settings.output_format}"
    progress.log("encoding", f"{path.name}, {plan.num_output_frames} frames at {settings.frames_per_second} fps")
    keyframe_pictures = to_uint8(keyframe_images)
    # The encoder runs in a thread alongside the making of the frames (stage "inbetweens",
    # nested in this one): "encode" is the time it adds beyond them, not its whole time.
    with progress.stage("encode"):
        encode_in_background(
            lambda queued: encode_animation(
                settings, queued, keyframe_pictures, path, plan.num_output_frames, components.device
            ),
            frames,
        )
    yield path
