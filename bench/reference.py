"""The reference walk (docs/behaviour.md, "The walk") done the way the hosted model did it.

Everything runs one item at a time, in order: each prompt through the text encoder(s) alone;
the shared start and then each keyframe denoised at batch 1 with its own copy of the
scheduler and two UNet calls per step (conditional, then unconditional); one VAE decode per
frame; FILM on one pair per call, bisecting each gap recursively; all frames held on the
host, then encoded. It uses the pipeline's components, noise and step split, so its
keyframes must equal the pipeline's: that is what makes the timing comparison honest.
While it runs, those components are in the form the original ran them in (see
original_form); the pipeline's own form is restored afterwards.
"""

import contextlib
import copy
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers.models.attention_processor import AttnProcessor

from animate import Settings
from animate.slerp import slerp
from animate.diffusion.denoise import initial_noise, shared_step_count
from animate.frames.host import to_uint8
from animate.output.gif import encode_gif
from animate.output.mp4 import encode_mp4
from animate.pipeline import plan_for
from animate.text.conditioning import Conditioning
from animate.text.sdxl import add_time_ids, encode_sdxl_prompts
from animate.weights import Components, place_unet, place_vae
from bench.measure import StageClock


@dataclass
class ReferenceOutput:
    """keyframe_latents (K, 4, H/8, W/8) and keyframes (K, 3, H, W) in [0, 1], both float32
    on the CPU, and the animation file (None when not encoded)."""

    keyframe_latents: torch.Tensor
    keyframes: torch.Tensor
    animation: Path | None


@contextlib.contextmanager
def original_form(components: Components) -> Iterator[None]:
    """Inside the block the UNet and VAE attend with diffusers' classic attention (an explicit
    score matrix, softmax, matmul: the diffusers of 2022 predate PyTorch's
    scaled-dot-product attention) in the contiguous memory format, and FILM runs in float32
    (the original ran the official FILM, in float32). Those three are the pipeline's speed
    work, so the reference must not have them. Afterwards the models are placed as
    load_components places them, with the attention they had.
    """
    unet, vae, film = components.unet, components.vae, components.film
    attention = {model: model.attn_processors for model in (unet, vae)}
    film_dtype = next(film.parameters()).dtype
    try:
        for model in (unet, vae):
            model.set_attn_processor(AttnProcessor())
            model.to(memory_format=torch.contiguous_format)
        film.float()
        yield
    finally:
        for model, processors in attention.items():
            model.set_attn_processor(processors)
        place_unet(unet, components.device)
        place_vae(vae, components.device)
        film.to(film_dtype)


def encode_text(components: Components, prompt: str) -> torch.Tensor:
    """One prompt's last hidden state (1, 77, D): padded to the encoder's length, truncated."""
    tokenizer = components.tokenizer
    ids = tokenizer(
        [prompt], padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids
    return components.text_encoder(ids.to(components.device), return_dict=False)[0]


def encode_texts(components: Components, settings: Settings) -> tuple[list[Conditioning], Conditioning]:
    """Each prompt's conditioning (1 sample), one prompt per encoder call, and the empty
    negative prompt's. SDXL: both encoders and the pooled embedding (animate.text.sdxl,
    whose negative side comes with each prompt: zeros when the checkpoint says
    force_zeros_for_empty_prompt), with the size conditioning of the requested size."""
    if components.kind != "sdxl":
        prompts = [Conditioning(encode_text(components, prompt)) for prompt in settings.prompts]
        return prompts, Conditioning(encode_text(components, ""))
    texts = [encode_sdxl_prompts(components, [prompt], "") for prompt in settings.prompts]
    time_ids = add_time_ids(settings.height, settings.width, texts[0].embeddings.dtype).to(components.device)
    prompts = [Conditioning(text.embeddings, text.pooled, time_ids) for text in texts]
    return prompts, Conditioning(texts[0].negative_embeddings, texts[0].negative_pooled, time_ids)


def conditioning_at(prompts: list[Conditioning], segment: int, t: float) -> Conditioning:
    """The conditioning (1 sample) at time t of a segment: slerp of its two prompts'
    per-token embeddings (1, 77, D), and of their pooled embeddings (1, E) for SDXL."""
    start, end = prompts[segment], prompts[segment + 1]
    pooled = None if start.pooled is None else slerp(t, start.pooled, end.pooled)
    return Conditioning(slerp(t, start.embeddings, end.embeddings), pooled, start.time_ids)


def guided_noise(components: Components, scheduler, latent, timestep, cond, uncond, guidance_scale) -> torch.Tensor:
    """Classifier-free guidance the original way: the two halves as two UNet calls at batch 1.

    latent (1, 4, h, w); cond and uncond: Conditioning of 1 sample. Returns the guided
    noise (1, 4, h, w).
    """
    unet = components.unet
    model_input = scheduler.scale_model_input(latent, timestep)
    noise_cond = unet(model_input, timestep, **cond.unet_arguments(), return_dict=False)[0]
    if guidance_scale <= 1.0:  # as diffusers: guidance off, the unconditional half is skipped
        return noise_cond
    noise_uncond = unet(model_input, timestep, **uncond.unet_arguments(), return_dict=False)[0]
    return noise_uncond + guidance_scale * (noise_cond - noise_uncond)


def denoise(components: Components, scheduler, latent, timesteps, cond, uncond, guidance_scale) -> torch.Tensor:
    """Run `scheduler` over `timesteps` from latent (1, 4, h, w); returns the new latent."""
    for timestep in timesteps:
        noise = guided_noise(components, scheduler, latent, timestep, cond, uncond, guidance_scale)
        latent = scheduler.step(noise, timestep, latent, return_dict=False)[0]
    return latent


def decode(components: Components, latent: torch.Tensor) -> torch.Tensor:
    """One VAE decode: latent (1, 4, h, w) -> image (3, H, W) in [0, 1], float32."""
    vae = components.vae
    dtype = vae.dtype
    image = vae.decode(latent.to(dtype) / vae.config.scaling_factor, return_dict=False)[0]
    if torch.isnan(image).any() and dtype != torch.float32:
        # The same rescue as the pipeline: fp16 decodes can overflow, float32 ones do not.
        vae.float()
        try:
            image = vae.decode(latent.float() / vae.config.scaling_factor, return_dict=False)[0]
        finally:
            vae.to(dtype)
    return (image[0].float() / 2 + 0.5).clamp(0, 1)


def film_gap(film, left: torch.Tensor, right: torch.Tensor, depth: int) -> list[torch.Tensor]:
    """FILM frames (3, H, W) at times m / 2^depth, m = 0 .. 2^depth, of one gap, from
    recursive bisection with one model call per midpoint (batch 1)."""
    frames = [left, right]
    for _ in range(depth):
        refined = [frames[0]]
        for x0, x1 in zip(frames[:-1], frames[1:]):
            middle = film(x0[None], x1[None])[0].clamp(0, 1).to(x0.dtype)
            refined += [middle, x1]
        frames = refined
    return frames


def film_inbetweens(film, left: torch.Tensor, right: torch.Tensor, steps: int) -> list[torch.Tensor]:
    """The steps - 1 in-betweens (3, H, W) of one gap at times j / steps: FILM's own frame
    where j / steps is a bisection time, else the two around it blended linearly in time."""
    depth = (steps - 1).bit_length()  # ceil(log2 steps)
    parameter = next(film.parameters())
    frames = film_gap(film, left.to(parameter.dtype), right.to(parameter.dtype), depth)
    intervals = len(frames) - 1
    inbetweens = []
    for j in range(1, steps):
        lower, remainder = divmod(j * intervals, steps)
        if remainder == 0:
            inbetweens.append(frames[lower])
        else:
            inbetweens.append(torch.lerp(frames[lower], frames[lower + 1], remainder / steps))
    return inbetweens


def latent_inbetweens(components: Components, left: torch.Tensor, right: torch.Tensor, steps: int) -> list[torch.Tensor]:
    """The steps - 1 in-betweens (3, H, W) of one gap: slerp(j / steps) of the two keyframe
    latents (1, 4, h, w), each decoded alone."""
    return [decode(components, slerp(j / steps, left, right)) for j in range(1, steps)]


@torch.inference_mode()
def run_reference(
    components: Components, settings: Settings, output_dir: Path, clock: StageClock, encode: bool = True
) -> ReferenceOutput:
    """The whole walk, sequentially; each stage timed under the names of animate.progress.STAGES.
    With encode=False the frames are made and not encoded (no stage "encode"), as animate's."""
    plan = plan_for(settings)
    guidance = settings.guidance_scale

    with clock.stage("text"):
        prompts, uncond = encode_texts(components, settings)
        middle = conditioning_at(prompts, *plan.walk_position(0.5))
        keyframe_conds = [conditioning_at(prompts, *time) for time in plan.keyframe_times()]

    with clock.stage("shared_denoise"):
        scheduler = copy.deepcopy(components.scheduler)
        scheduler.set_timesteps(settings.num_inference_steps, device=components.device)
        n_shared = shared_step_count(settings.num_inference_steps, settings.prompt_strength)
        noise = initial_noise(settings.seed, settings.height, settings.width, components.device, components.dtype)
        shared = denoise(
            components, scheduler, noise * scheduler.init_noise_sigma,
            scheduler.timesteps[:n_shared], middle, uncond, guidance,
        )

    with clock.stage("keyframe_denoise"):
        keyframe_latents = []
        for number, cond in enumerate(keyframe_conds, start=1):
            own_scheduler = copy.deepcopy(scheduler)  # each keyframe goes on from the shared state
            keyframe_latents.append(
                denoise(components, own_scheduler, shared.clone(), scheduler.timesteps[n_shared:], cond, uncond, guidance)
            )
            print(f"reference: keyframe {number}/{plan.num_keyframes} denoised", flush=True)

    with clock.stage("decode"):
        keyframes = [decode(components, latent) for latent in keyframe_latents]

    with clock.stage("inbetweens"):
        steps = settings.num_interpolation_steps
        frames = []  # uint8 (H, W, 3) on the host, all of them, as the original held its images
        for gap in range(plan.num_keyframes - 1):
            frames.append(to_uint8(keyframes[gap]))
            if settings.film_interpolation:
                inbetweens = film_inbetweens(components.film, keyframes[gap], keyframes[gap + 1], steps)
            else:
                inbetweens = latent_inbetweens(components, keyframe_latents[gap], keyframe_latents[gap + 1], steps)
            frames += [to_uint8(frame) for frame in inbetweens]
            print(f"reference: gap {gap + 1}/{plan.num_keyframes - 1} interpolated", flush=True)
        frames.append(to_uint8(keyframes[-1]))

    path = None
    if encode:
        with clock.stage("encode"):
            if settings.ping_pong:
                frames = frames + frames[-2:0:-1]
            path = Path(output_dir) / f"animation.{settings.output_format}"
            if settings.output_format == "gif":
                palette_frames = [to_uint8(image) for image in keyframes]
                encode_gif(frames, path, settings.frames_per_second, palette_frames, len(frames))
            else:
                encode_mp4(frames, path, settings.frames_per_second)

    return ReferenceOutput(
        keyframe_latents=torch.cat(keyframe_latents).float().cpu(),
        keyframes=torch.stack(keyframes).float().cpu(),
        animation=path,
    )
