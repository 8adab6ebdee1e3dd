"""The diffusion part of the walk: noise, shared start, batched keyframes, VAE encode and decode.

See docs/behaviour.md, "The walk". The denoising loop follows diffusers'
StableDiffusionPipeline and StableDiffusionXLPipeline step for step (scale_model_input, one
UNet call for both guidance halves, scheduler.step), so one keyframe equals what that
pipeline gives for the same inputs; a walk from an init image starts as
StableDiffusionImg2ImgPipeline does. The text side is a Conditioning (animate.conditioning),
so SD 1.x/2.x and SDXL take the same path.
"""

import copy
import inspect
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from animate.conditioning import Conditioning, cat
from animate.progress import STAGE_WORDS, Progress

LATENT_CHANNELS = 4
VAE_SCALE = 8  # the VAE turns an (H, W) image into (H/8, W/8) latents

# Batch sizes on CPU: larger batches do not run faster there and cost memory.
CPU_KEYFRAME_BATCH = 4
CPU_DECODE_BATCH = 2
# On CUDA the batch is what fits in half the usable memory, by these estimates of peak
# activation memory, and at most MAX_*: bigger batches stop paying. The estimates are
# worked out from SD 1.5's tensor sizes, not measured on a GPU: the UNet's is dominated
# by one 8-head 4096x4096 attention matrix per sample at 512x512 (if the math attention
# kernel runs; flash/memory-efficient kernels need far less), the VAE's by a few
# 128-channel full-resolution tensors per image. Both scale with dtype size from fp16.
# SDXL's UNet has no attention at full latent resolution (at 1024x768 its largest is
# 10 heads over 3072 tokens, about 190 MB per sample), so for it the figure is generous.
UNET_BYTES_PER_LATENT_PIXEL = 64 * 1024  # per UNet sample (one guidance half)
VAE_BYTES_PER_IMAGE_PIXEL = 1536  # per decoded image
MAX_KEYFRAME_BATCH = 16
MAX_DECODE_BATCH = 8


def seed_generator(seed: int) -> torch.Generator:
    """The source of everything random in the walk: x_T first (latent_noise), then the
    noise stochastic samplers draw at each step (see denoise_keyframes).

    A CPU generator, so the noise is the same on every device (CUDA generators differ).
    """
    return torch.Generator("cpu").manual_seed(seed)


def latent_noise(
    generator: torch.Generator, height: int, width: int, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """Noise (1, 4, H/8, W/8) drawn in float32 on the CPU from `generator`, then moved."""
    shape = (1, LATENT_CHANNELS, height // VAE_SCALE, width // VAE_SCALE)
    return torch.randn(shape, generator=generator, dtype=torch.float32).to(device=device, dtype=dtype)


def initial_noise(seed: int, height: int, width: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """x_T, (1, 4, H/8, W/8): the first draw of the seed's generator (see seed_generator)."""
    return latent_noise(seed_generator(seed), height, width, device, dtype)


def usable_cuda_memory(device: torch.device) -> int:
    """Bytes this process can use on the GPU: free memory plus what PyTorch's allocator
    holds in its cache without using it.

    Counting the cache keeps the answer the same from one prediction to the next (the
    cache grows after the first), so batch sizes, and with them the output bytes, repeat.
    """
    free_bytes, _ = torch.cuda.mem_get_info(device)
    cached_bytes = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    return free_bytes + cached_bytes


def batch_size_for(device: torch.device, bytes_per_item: int, cpu_batch: int, max_batch: int) -> int:
    """Items per batch: a fixed small number on CPU; on CUDA what fits in half the usable memory."""
    if device.type != "cuda":
        return cpu_batch
    return max(1, min(max_batch, usable_cuda_memory(device) // 2 // bytes_per_item))


def keyframe_batch_size(device: torch.device, latents: torch.Tensor, guided: bool) -> int:
    """How many keyframes to denoise per UNet call, from the latent size (1, 4, h, w)."""
    latent_pixels = latents.shape[-2] * latents.shape[-1]
    samples_per_keyframe = 2 if guided else 1
    per_keyframe = UNET_BYTES_PER_LATENT_PIXEL * latent_pixels * samples_per_keyframe
    per_keyframe = per_keyframe * latents.element_size() // 2
    return batch_size_for(device, per_keyframe, CPU_KEYFRAME_BATCH, MAX_KEYFRAME_BATCH)


def decode_batch_size(device: torch.device, latents: torch.Tensor, vae_dtype: torch.dtype | None = None) -> int:
    """How many latents (B, 4, h, w) to decode per VAE call with a VAE in vae_dtype (by
    default the latents' dtype; an SDXL VAE that must upcast runs in float32, see
    animate.weights.vae_dtype)."""
    image_pixels = latents.shape[-2] * latents.shape[-1] * VAE_SCALE * VAE_SCALE
    element_size = latents.element_size() if vae_dtype is None else vae_dtype.itemsize
    per_image = VAE_BYTES_PER_IMAGE_PIXEL * image_pixels * element_size // 2
    return batch_size_for(device, per_image, CPU_DECODE_BATCH, MAX_DECODE_BATCH)


def uses_guidance(guidance_scale: float) -> bool:
    """Classifier-free guidance changes nothing at scale 1, so its half is skipped, as in diffusers."""
    return guidance_scale > 1.0


def predicted_noise(
    unet: UNet2DConditionModel,
    scheduler: SchedulerMixin,
    latents: torch.Tensor,
    timestep: torch.Tensor,
    conditioning: Conditioning,
) -> torch.Tensor:
    """The UNet's noise prediction (B, 4, h, w) for latents (B, 4, h, w), each with its
    conditioning (B samples)."""
    model_input = scheduler.scale_model_input(latents, timestep)
    return unet(model_input, timestep, **conditioning.unet_arguments(), return_dict=False)[0]


def guided_noise(
    unet: UNet2DConditionModel,
    scheduler: SchedulerMixin,
    latents: torch.Tensor,
    timestep: torch.Tensor,
    cond: Conditioning,
    uncond: Conditioning,
    guidance_scale: float,
    known_uncond_noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """Noise prediction with classifier-free guidance, (B, 4, h, w).

    latents (B, 4, h, w); cond: B samples, one per latent; uncond: 1 sample, for all.
    Both halves go through the UNet in ONE call of batch 2B: [uncond..., cond...]. When
    known_uncond_noise (1, 4, h, w) is given, every latent is the one it was computed
    for, so only the conditional half runs (batch B).
    """
    if not uses_guidance(guidance_scale):
        return predicted_noise(unet, scheduler, latents, timestep, cond)
    if known_uncond_noise is not None:
        noise_uncond, noise_cond = known_uncond_noise, predicted_noise(unet, scheduler, latents, timestep, cond)
    else:
        both = cat(uncond.expand(latents.shape[0]), cond)
        noise = predicted_noise(unet, scheduler, torch.cat([latents, latents]), timestep, both)
        noise_uncond, noise_cond = noise.chunk(2)
    return noise_uncond + guidance_scale * (noise_cond - noise_uncond)


def steps_done(scheduler: SchedulerMixin, calls: int) -> int:
    """Denoising steps done, out of the user's num_inference_steps T, once `scheduler` has
    made `calls` of the len(scheduler.timesteps) calls of its schedule.

    A scheduler may make more calls than steps: PNDM (SD 1.5's) makes T + 1, as its PLMS
    warm-up runs the first step twice (the second call, on a repeated timestep, corrects
    the first). Steps are counted in proportion, rounded down: with PNDM the first call
    leaves 0 steps done and each later call one more, the last T; with one call per step
    (DDIM) calls are steps. diffusers' progress bar counts the same.
    """
    return calls * scheduler.num_inference_steps // len(scheduler.timesteps)


def step_options(
    scheduler: SchedulerMixin, generator: torch.Generator | list[torch.Generator] | None
) -> dict[str, object]:
    """Keyword arguments for scheduler.step: the generator, for a scheduler whose step draws
    noise (it takes one), as diffusers' pipelines pass it; nothing for the others (PNDM)."""
    if generator is not None and "generator" in inspect.signature(scheduler.step).parameters:
        return {"generator": generator}
    return {}


def denoise(
    unet: UNet2DConditionModel,
    scheduler: SchedulerMixin,
    latents: torch.Tensor,
    timesteps: torch.Tensor,
    cond: Conditioning,
    uncond: Conditioning,
    guidance_scale: float,
    progress: Progress,
    stage: str,
    calls_done: int,
    detail: str = "",
    first_uncond_noise: torch.Tensor | None = None,
    generator: torch.Generator | list[torch.Generator] | None = None,
) -> torch.Tensor:
    """Run `scheduler` over `timesteps` from latents (B, 4, h, w), conditioned on cond (B
    samples) and uncond (1 sample); returns the new latents.

    `timesteps` are the scheduler's own, after the `calls_done` calls it has made. Reports
    progress.step(stage, steps done, T, detail) before the first step and after each, so
    before every step, and the last reads T/T (see steps_done). first_uncond_noise
    (1, 4, h, w), when given, is the unconditional half of the first step, already known
    (see guided_noise). A stochastic scheduler draws its noise from `generator`: one, or
    one per latent (diffusers' randn_tensor draws latent i from generator i).
    """
    total = scheduler.num_inference_steps
    options = step_options(scheduler, generator)
    progress.step(stage, steps_done(scheduler, calls_done), total, detail)
    for index, timestep in enumerate(timesteps):
        known_uncond_noise = first_uncond_noise if index == 0 else None
        noise = guided_noise(unet, scheduler, latents, timestep, cond, uncond, guidance_scale, known_uncond_noise)
        latents = scheduler.step(noise, timestep, latents, return_dict=False, **options)[0]
        progress.step(stage, steps_done(scheduler, calls_done + index + 1), total, detail)
    return latents


def shared_step_count(num_inference_steps: int, prompt_strength: float) -> int:
    """n_shared = int(T * (1 - prompt_strength)) steps run once for all keyframes.

    Literally the hosted model's formula, float rounding included: int(50 * (1 - 0.8)) is
    9, not 10. It counts the scheduler's timesteps (see shared_denoise).
    """
    return int(num_inference_steps * (1 - prompt_strength))


def shared_denoise(
    unet: UNet2DConditionModel,
    scheduler: SchedulerMixin,
    noise: torch.Tensor,
    num_inference_steps: int,
    prompt_strength: float,
    middle: Conditioning,
    uncond: Conditioning,
    guidance_scale: float,
    progress: Progress,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, SchedulerMixin, torch.Tensor]:
    """The shared start: set the scheduler up and run its first n_shared timesteps once,
    as stage "shared_denoise" of `progress`.

    noise: x_T (1, 4, h, w); middle: the conditioning (1 sample) at walk position 0.5. A stochastic
    scheduler draws its step noise from `generator` (which is advanced).
    Returns (latent (1, 4, h, w), the scheduler in its state after those steps, the
    timesteps still to run). `scheduler` itself is not changed.
    """
    with progress.stage("shared_denoise"):
        scheduler = copy.deepcopy(scheduler)
        scheduler.set_timesteps(num_inference_steps, device=noise.device)
        timesteps = scheduler.timesteps
        n_shared = shared_step_count(num_inference_steps, prompt_strength)
        latents = noise * scheduler.init_noise_sigma
        latents = denoise(
            unet, scheduler, latents, timesteps[:n_shared], middle, uncond,
            guidance_scale, progress, "shared_denoise", 0, generator=generator,
        )
    return latents, scheduler, timesteps[n_shared:]


def image_start(
    vae: AutoencoderKL,
    scheduler: SchedulerMixin,
    pixels: torch.Tensor,
    noise: torch.Tensor,
    num_inference_steps: int,
    prompt_strength: float,
    progress: Progress,
) -> tuple[torch.Tensor, SchedulerMixin, torch.Tensor]:
    """The start the keyframes share when the walk starts from a picture, as stage
    "shared_denoise" of `progress`: the picture's latents, noised as if the first n_shared
    timesteps had run, as StableDiffusionImg2ImgPipeline does with a strength whose start
    step is n_shared. No steps run.

    pixels (1, 3, H, W) in [-1, 1] (animate.init_image); noise: x_T (1, 4, h, w).
    Returns what shared_denoise returns: (latent (1, 4, h, w), the scheduler set to start
    at timestep n_shared, the timesteps still to run). `scheduler` itself is not changed.
    """
    with progress.stage("shared_denoise"):
        scheduler = copy.deepcopy(scheduler)
        scheduler.set_timesteps(num_inference_steps, device=noise.device)
        n_shared = shared_step_count(num_inference_steps, prompt_strength)
        # At prompt_strength 0 (n_shared = T) nothing is left to run: every keyframe is the
        # picture. (PNDM has T + 1 timesteps, so one would be left after T of them.)
        remaining = scheduler.timesteps[n_shared:] if n_shared < num_inference_steps else scheduler.timesteps[:0]
        if hasattr(scheduler, "set_begin_index"):
            # As diffusers' img2img: schedulers that count their steps (Euler, LMS,
            # DPM-Solver) count from n_shared, and add_noise takes that step's sigma.
            scheduler.set_begin_index(n_shared)
        latents = encode_image(vae, pixels).to(noise.dtype)
        if len(remaining) > 0:
            latents = scheduler.add_noise(latents, noise, remaining[:1])
            start = f"noised to step {steps_done(scheduler, n_shared)}/{num_inference_steps}"
        else:
            start = "as it is, no steps to run"
        progress.log(STAGE_WORDS["shared_denoise"], f"from init_image, {start}")
    return latents, scheduler, remaining


def shared_uncond_noise(
    unet: UNet2DConditionModel,
    scheduler: SchedulerMixin,
    shared_latent: torch.Tensor,
    remaining_timesteps: torch.Tensor,
    uncond: Conditioning,
    guidance_scale: float,
    count: int,
) -> torch.Tensor | None:
    """The unconditional half (1, 4, h, w) of the first keyframe step, the same for all
    `count` keyframes (see denoise_keyframes); None where it is not needed or saves nothing:
    without guidance, without steps left, or with one keyframe."""
    if count < 2 or len(remaining_timesteps) == 0 or not uses_guidance(guidance_scale):
        return None
    # On a copy: some schedulers count their steps in scale_model_input.
    return predicted_noise(unet, copy.deepcopy(scheduler), shared_latent, remaining_timesteps[0], uncond)


def denoise_keyframes(
    unet: UNet2DConditionModel,
    scheduler: SchedulerMixin,
    shared_latent: torch.Tensor,
    remaining_timesteps: torch.Tensor,
    keyframes: Conditioning,
    uncond: Conditioning,
    guidance_scale: float,
    batch_size: int,
    progress: Progress,
    generator: torch.Generator | None = None,
) -> Iterator[tuple[int, torch.Tensor]]:
    """Finish every keyframe from the shared latent, `batch_size` keyframes per UNet call,
    each batch as an entry of stage "keyframe_denoise" of `progress`.

    shared_latent (1, 4, h, w); keyframes: the conditioning of the K keyframes, one sample
    each; `scheduler` is in its state after the shared steps and is deep-copied per batch,
    so each batch (and each keyframe within it) continues from exactly that state. Yields
    (index of the batch's first keyframe, latents (B, 4, h, w)) as each batch is done.

    A stochastic scheduler draws each keyframe's step noise from its own copy of
    `generator` as it is now: every keyframe gets the same noise at the same step, as one
    denoised alone after the shared start would, however the keyframes are batched.

    At the first of the remaining steps every keyframe's latent is still the shared one, so
    the unconditional half of guidance is the same for all of them: with more than one
    keyframe it runs once, at batch 1, and each batch's first step runs only its
    conditional half (K - 1 UNet samples fewer; the same keyframes).
    """
    count = len(keyframes)
    calls_done = len(scheduler.timesteps) - len(remaining_timesteps)
    generator_state = None if generator is None else generator.get_state()
    first_uncond_noise = None
    for start in range(0, count, batch_size):
        stop = min(start + batch_size, count)
        which = f"keyframes {start + 1}-{stop} of {count}"
        with progress.stage("keyframe_denoise", which):
            if start == 0:
                first_uncond_noise = shared_uncond_noise(
                    unet, scheduler, shared_latent, remaining_timesteps, uncond, guidance_scale, count
                )
            batch_scheduler = copy.deepcopy(scheduler)
            generators = None if generator_state is None else [
                generator_at(generator_state) for _ in range(start, stop)
            ]
            latents = shared_latent.expand(stop - start, -1, -1, -1).clone()
            latents = denoise(
                unet, batch_scheduler, latents, remaining_timesteps, keyframes[start:stop],
                uncond, guidance_scale, progress, "keyframe_denoise", calls_done, which, first_uncond_noise,
                generators,
            )
        yield start, latents


def generator_at(state: torch.Tensor) -> torch.Generator:
    """A new CPU generator in `state` (from Generator.get_state)."""
    generator = torch.Generator("cpu")
    generator.set_state(state)
    return generator


def encode_image(vae: AutoencoderKL, pixels: torch.Tensor) -> torch.Tensor:
    """VAE encode of pixels (1, 3, H, W) in [-1, 1]: latents (1, 4, H/8, W/8) in the VAE's
    dtype: the posterior's mean scaled by to_unet_latents (no sampling: the same picture
    always gives the same latents).

    A reduced-precision encode that gives NaN is done again in float32, as in decode_latents.
    """
    latents = posterior_mean(vae, pixels)
    if torch.isnan(latents).any() and vae.dtype != torch.float32:
        print(f"VAE encode in {vae.dtype} gave NaN; encoding again in float32", flush=True)
        with upcast(vae):
            latents = posterior_mean(vae, pixels)
        latents = latents.to(vae.dtype)
    return latents


def posterior_mean(vae: AutoencoderKL, pixels: torch.Tensor) -> torch.Tensor:
    """encode_image in the VAE's current dtype, without the NaN check."""
    posterior = vae.encode(pixels.to(vae.device, vae.dtype)).latent_dist
    return to_unet_latents(vae, posterior.mean)


def latent_statistics(vae: AutoencoderKL, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The per-channel mean and standard deviation (1, 4, 1, 1) of the VAE's latents, as
    `like`'s device and dtype, when its config gives both (SD's and SDXL base's VAEs give
    neither; some SDXL-architecture checkpoints do), else None."""
    mean = getattr(vae.config, "latents_mean", None)
    std = getattr(vae.config, "latents_std", None)
    if mean is None or std is None:
        return None
    return torch.tensor(mean).view(1, -1, 1, 1).to(like), torch.tensor(std).view(1, -1, 1, 1).to(like)


def to_unet_latents(vae: AutoencoderKL, vae_latents: torch.Tensor) -> torch.Tensor:
    """The VAE's latents (B, 4, h, w) scaled to the UNet's, as diffusers' SDXL img2img
    pipeline does: times the scaling factor, standardised first when the config says how."""
    statistics = latent_statistics(vae, vae_latents)
    if statistics is None:
        return vae_latents * vae.config.scaling_factor
    mean, std = statistics
    return (vae_latents - mean) * vae.config.scaling_factor / std


def to_vae_latents(vae: AutoencoderKL, latents: torch.Tensor) -> torch.Tensor:
    """The inverse of to_unet_latents: the UNet's latents (B, 4, h, w) as the VAE decodes them."""
    statistics = latent_statistics(vae, latents)
    if statistics is None:
        return latents / vae.config.scaling_factor
    mean, std = statistics
    return latents * std / vae.config.scaling_factor + mean


@contextmanager
def upcast(vae: AutoencoderKL) -> Iterator[None]:
    """The VAE in float32 for the block, back in its dtype after (fp16 overflows to NaN at times)."""
    dtype = vae.dtype
    vae.to(torch.float32)
    try:
        yield
    finally:
        vae.to(dtype)


def decode_chunk(vae: AutoencoderKL, latents: torch.Tensor) -> torch.Tensor:
    """VAE decode of latents (B, 4, h, w) in the VAE's dtype: images (B, 3, H, W) in [0, 1], float32."""
    images = vae.decode(to_vae_latents(vae, latents.to(vae.dtype)), return_dict=False)[0]
    return (images.float() / 2 + 0.5).clamp(0, 1)


def decode_chunk_in_float32(vae: AutoencoderKL, latents: torch.Tensor) -> torch.Tensor:
    """decode_chunk with the VAE upcast to float32 for the call (fp16 overflows to NaN at times)."""
    with upcast(vae):
        return decode_chunk(vae, latents.float())


def decode_latents(vae: AutoencoderKL, latents: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
    """Decode latents (B, 4, h, w) to images (B, 3, H, W) in [0, 1], float32, in chunks.

    A chunk whose reduced-precision decode contains NaN is decoded again in float32, so
    NaN never reaches the output; NaN even then (broken latents) raises RuntimeError.
    """
    if batch_size is None:
        batch_size = decode_batch_size(latents.device, latents, vae.dtype)
    chunks = []
    for start in range(0, latents.shape[0], batch_size):
        chunk = latents[start : start + batch_size]
        images = decode_chunk(vae, chunk)
        if torch.isnan(images).any() and vae.dtype != torch.float32:
            print(f"VAE decode in {vae.dtype} gave NaN; decoding again in float32", flush=True)
            images = decode_chunk_in_float32(vae, chunk)
        if torch.isnan(images).any():
            raise RuntimeError(
                "The VAE decoded NaN even in float32, so the denoised latents are broken: "
                "try another seed or fewer inference steps."
            )
        chunks.append(images)
    return torch.cat(chunks)
