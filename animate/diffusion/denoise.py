"""The denoising part of the walk: noise, shared start (or the init image, noised), batched keyframes.

See docs/behaviour.md, "The walk". The denoising loop follows diffusers'
StableDiffusionPipeline and StableDiffusionXLPipeline step for step (scale_model_input, one
UNet call for both guidance halves, scheduler.step), so one keyframe equals what that
pipeline gives for the same inputs; a walk from an init image starts as
StableDiffusionImg2ImgPipeline does. The text side is a Conditioning
(animate.text.conditioning), so SD 1.x/2.x and SDXL take the same path.
"""

import copy
import inspect
from collections.abc import Iterator

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from animate.diffusion.vae import LATENT_CHANNELS, VAE_SCALE, encode_image
from animate.memory import StageBatches
from animate.progress import STAGE_WORDS, Progress
from animate.text.conditioning import Conditioning, cat


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


def shared_timestep_count(scheduler: SchedulerMixin, num_inference_steps: int, prompt_strength: float) -> int:
    """How many of `scheduler`'s timesteps (it has been set to num_inference_steps) run once
    for all keyframes: n_shared, or every one when n_shared is all the steps (prompt_strength
    0), so that every keyframe is the same picture. PNDM has T + 1 timesteps, so T of them
    would leave the last to each keyframe, with its own text."""
    n_shared = shared_step_count(num_inference_steps, prompt_strength)
    return len(scheduler.timesteps) if n_shared >= num_inference_steps else n_shared


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
        n_shared = shared_timestep_count(scheduler, num_inference_steps, prompt_strength)
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
    batches: StageBatches,
) -> tuple[torch.Tensor, SchedulerMixin, torch.Tensor]:
    """The start the keyframes share when the walk starts from a picture, as stage
    "shared_denoise" of `progress`: the picture's latents, noised as if the first n_shared
    timesteps had run, as StableDiffusionImg2ImgPipeline does with a strength whose start
    step is n_shared. No steps run.

    pixels (1, 3, H, W) in [-1, 1] (animate.inputs.init_image); noise: x_T (1, 4, h, w).
    The picture is encoded through `batches` (stage "init_image", one picture).
    Returns what shared_denoise returns: (latent (1, 4, h, w), the scheduler set to start
    at timestep n_shared, the timesteps still to run). `scheduler` itself is not changed.
    """
    with progress.stage("shared_denoise"):
        scheduler = copy.deepcopy(scheduler)
        scheduler.set_timesteps(num_inference_steps, device=noise.device)
        n_shared = shared_step_count(num_inference_steps, prompt_strength)
        # At prompt_strength 0 nothing is left to run: every keyframe is the picture.
        remaining = scheduler.timesteps[shared_timestep_count(scheduler, num_inference_steps, prompt_strength) :]
        if hasattr(scheduler, "set_begin_index"):
            # As diffusers' img2img: schedulers that count their steps (Euler, LMS,
            # DPM-Solver) count from n_shared, and add_noise takes that step's sigma.
            scheduler.set_begin_index(n_shared)
        _, latents = batches.run(0, 1, lambda start, stop: encode_image(vae, pixels))
        latents = latents.to(noise.dtype)
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
    batches: StageBatches,
    progress: Progress,
    generator: torch.Generator | None = None,
) -> Iterator[tuple[int, torch.Tensor]]:
    """Finish every keyframe from the shared latent, in the batches of `batches` (stage
    "keyframes"; sized by animate.memory.keyframe_batch_size), one UNet call per step and
    batch, each batch as an entry of stage "keyframe_denoise" of `progress`.

    shared_latent (1, 4, h, w); keyframes: the conditioning of the K keyframes, one sample
    each; `scheduler` is in its state after the shared steps and is deep-copied per batch,
    so each batch (and each keyframe within it) continues from exactly that state. Yields
    (index of the batch's first keyframe, latents (B, 4, h, w)) as each batch is done.

    A stochastic scheduler draws each keyframe's step noise from its own copy of
    `generator` as it is now: every keyframe gets the same noise at the same step, as one
    denoised alone after the shared start would, however the keyframes are batched. So a
    batch that ran out of memory is simply done again, halved, from the same state.

    At the first of the remaining steps every keyframe's latent is still the shared one, so
    the unconditional half of guidance is the same for all of them: with more than one
    keyframe it runs once, at batch 1, and each batch's first step runs only its
    conditional half (K - 1 UNet samples fewer; the same keyframes).
    """
    count = len(keyframes)
    calls_done = len(scheduler.timesteps) - len(remaining_timesteps)
    generator_state = None if generator is None else generator.get_state()
    first_uncond_noise = None

    def denoise_batch(start: int, stop: int) -> torch.Tensor:
        """Keyframes start .. stop - 1, from the shared latent and the scheduler's state."""
        nonlocal first_uncond_noise
        which = f"keyframes {start + 1}-{stop} of {count}"
        with progress.stage("keyframe_denoise", which):
            if start == 0:
                first_uncond_noise = shared_uncond_noise(
                    unet, scheduler, shared_latent, remaining_timesteps, uncond, guidance_scale, count
                )
            generators = None if generator_state is None else [
                generator_at(generator_state) for _ in range(start, stop)
            ]
            latents = shared_latent.expand(stop - start, -1, -1, -1).clone()
            return denoise(
                unet, copy.deepcopy(scheduler), latents, remaining_timesteps, keyframes[start:stop],
                uncond, guidance_scale, progress, "keyframe_denoise", calls_done, which, first_uncond_noise,
                generators,
            )

    for start, _, latents in batches.over(count, denoise_batch):
        yield start, latents


def generator_at(state: torch.Tensor) -> torch.Generator:
    """A new CPU generator in `state` (from Generator.get_state)."""
    generator = torch.Generator("cpu")
    generator.set_state(state)
    return generator
