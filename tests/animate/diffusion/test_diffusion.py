import copy
import dataclasses

import numpy as np
import pytest
import torch
from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    LMSDiscreteScheduler,
    PNDMScheduler,
    StableDiffusionImg2ImgPipeline,
    StableDiffusionPipeline,
)
from diffusers.pipelines.stable_diffusion import pipeline_stable_diffusion_img2img
from PIL import Image

from animate import KeyframePlan, memory
from animate.memory import StageBatches
from animate.diffusion.denoise import (
    denoise,
    denoise_keyframes,
    initial_noise,
    shared_denoise,
    shared_step_count,
    steps_done,
)
from animate.diffusion.schedulers import SCHEDULER_NAMES
from animate.diffusion.vae import decode_latents, encode_image
from animate.inputs.init_image import load_init_image
from animate.inputs.settings import settings_from_inputs
from animate.pipeline import DiffusionRenderer, keyframe_embeddings, walk_embedding
from animate.progress import Progress
from animate.text.clip import encode_prompts
from animate.text.conditioning import Conditioning

SIZE = 64
STEPS = 6
GUIDANCE = 7.5


def settings(prompt_start, prompt_end, prompt_strength, frames=2, **new_inputs):
    """A small walk; new_inputs: negative_prompt, init_image, scheduler, disable_safety_checker."""
    return settings_from_inputs(
        prompt_start=prompt_start,
        prompt_end=prompt_end,
        width=SIZE,
        height=SIZE,
        num_inference_steps=STEPS,
        prompt_strength=prompt_strength,
        num_animation_frames=frames,
        num_interpolation_steps=1,
        guidance_scale=GUIDANCE,
        gif_frames_per_second=10,
        gif_ping_pong=False,
        film_interpolation=False,
        intermediate_output=False,
        seed=1234,
        output_format="gif",
        **new_inputs,
    )


def walk_latents(components, walk_settings):
    """The keyframe latents (K, 4, h, w) exactly as pipeline.animate computes them."""
    plan = KeyframePlan(len(walk_settings.prompts), walk_settings.num_animation_frames, 1)
    embeddings, uncond = encode_prompts(
        components.tokenizer, components.text_encoder, list(walk_settings.prompts), walk_settings.negative_prompt
    )
    init_pixels = None
    if walk_settings.init_image is not None:
        init_pixels = load_init_image(walk_settings.init_image, walk_settings.width, walk_settings.height)
    render = DiffusionRenderer(components, walk_settings, plan, Progress(), init_pixels)
    return torch.cat([latents for latents, _ in render(plan.keyframe_times())]), embeddings, uncond


# What the `scheduler` choices are in diffusers (Replicate's names), written out here so
# that the tests check animate.diffusion.schedulers' table rather than reuse it.
DIFFUSERS_SCHEDULERS = {
    "DDIM": DDIMScheduler,
    "DPMSolverMultistep": DPMSolverMultistepScheduler,
    "K_EULER": EulerDiscreteScheduler,
    "K_EULER_ANCESTRAL": EulerAncestralDiscreteScheduler,
    "KLMS": LMSDiscreteScheduler,
    "PNDM": PNDMScheduler,
}


def diffusers_scheduler(components, name):
    """A fresh diffusers scheduler for choice `name`, from the weights' scheduler config."""
    if name == "default":
        return copy.deepcopy(components.scheduler)
    return DIFFUSERS_SCHEDULERS[name].from_config(components.scheduler.config)


def diffusers_pipeline(pipeline_class, components, scheduler):
    pipe = pipeline_class(
        vae=components.vae,
        text_encoder=components.text_encoder,
        tokenizer=components.tokenizer,
        unet=components.unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def picture_file(path):
    """A SIZE x SIZE PNG with shapes and texture, so the VAE sees some structure."""
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    pixels = np.stack([x * 4, y * 4, (x + y) * 2], axis=-1) + rng.integers(0, 40, (SIZE, SIZE, 3))
    pixels[16:40, 20:44] = (230, 40, 30)
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path)
    return path


def posterior_mode(encoder_output, generator=None, sample_mode="sample"):
    """diffusers' retrieve_latents made to take the VAE posterior's mode (for its diagonal
    Gaussian, the mean), as the walk does, instead of sampling it."""
    return encoder_output.latent_dist.mode()


def max_difference(keyframes, expected):
    return (keyframes - expected).abs().max().item()


@torch.inference_mode()
def test_one_prompt_walk_equals_diffusers_stable_diffusion_pipeline(components):
    walk = settings("a red house", "a red house", prompt_strength=1.0)
    latents, embeddings, uncond = walk_latents(components, walk)
    pipe = StableDiffusionPipeline(
        vae=components.vae,
        text_encoder=components.text_encoder,
        tokenizer=components.tokenizer,
        unet=components.unet,
        scheduler=copy.deepcopy(components.scheduler),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    expected = pipe(
        prompt_embeds=embeddings[:1],
        negative_prompt_embeds=uncond,
        latents=initial_noise(walk.seed, SIZE, SIZE, torch.device("cpu"), torch.float32),
        guidance_scale=GUIDANCE,
        num_inference_steps=STEPS,
        height=SIZE,
        width=SIZE,
        output_type="latent",
    ).images
    assert latents.shape == (2, 4, SIZE // 8, SIZE // 8)
    # Tolerance: float32 rounding of a UNet batch of 4 against one of 2; the latents are
    # of order 10, so 1e-4 relative is far below any visible change.
    for keyframe in latents:
        torch.testing.assert_close(keyframe[None], expected, rtol=1e-4, atol=1e-4)


@torch.inference_mode()
def test_one_prompt_walk_with_a_negative_prompt_equals_diffusers_negative_prompt(components):
    """The negative prompt is the unconditional half of guidance at every step, as
    diffusers' negative_prompt; the pipeline encodes both texts itself here."""
    walk = settings("a red house", "a red house", prompt_strength=1.0, negative_prompt="a blue boat, blurry")
    latents, _, _ = walk_latents(components, walk)
    pipe = diffusers_pipeline(StableDiffusionPipeline, components, copy.deepcopy(components.scheduler))
    expected = pipe(
        prompt="a red house",
        negative_prompt="a blue boat, blurry",
        latents=initial_noise(walk.seed, SIZE, SIZE, torch.device("cpu"), torch.float32),
        guidance_scale=GUIDANCE,
        num_inference_steps=STEPS,
        height=SIZE,
        width=SIZE,
        output_type="latent",
    ).images
    without, _, _ = walk_latents(components, settings("a red house", "a red house", prompt_strength=1.0))
    assert max_difference(without, expected) > 1e-2  # the negative prompt matters
    # Tolerance as in the test above: float32 rounding of a UNet batch of 4 (and a first
    # step of 1 + 2) against batches of 2; measured 2.4e-5 on latents up to about 21.
    for keyframe in latents:
        torch.testing.assert_close(keyframe[None], expected, rtol=1e-4, atol=1e-4)


@torch.inference_mode()
@pytest.mark.parametrize("name", SCHEDULER_NAMES)
def test_one_prompt_walk_with_each_scheduler_equals_diffusers_pipeline_with_it(components, name):
    """Every choice, with a shared start (3 of 6 steps), so the scheduler's state after the
    shared steps (step index, DPM-Solver's and LMS's model output history, PNDM's warm-up)
    carries into each keyframe. The pipeline draws x_T and any step noise (Euler ancestral)
    from a generator seeded with the seed, as the walk does."""
    walk = settings("a red house", "a red house", prompt_strength=0.5, scheduler=name)
    latents, _, _ = walk_latents(components, walk)
    pipe = diffusers_pipeline(StableDiffusionPipeline, components, diffusers_scheduler(components, name))
    expected = pipe(
        prompt="a red house",
        generator=torch.Generator("cpu").manual_seed(walk.seed),
        guidance_scale=GUIDANCE,
        num_inference_steps=STEPS,
        height=SIZE,
        width=SIZE,
        output_type="latent",
    ).images
    # Tolerance: float32 rounding of different UNet batch sizes, as above; measured at
    # most 6.2e-6 (PNDM) on latents up to about 30 (the tiny models' are large).
    for keyframe in latents:
        torch.testing.assert_close(keyframe[None], expected, rtol=1e-4, atol=1e-4)


@torch.inference_mode()
@pytest.mark.parametrize("name", SCHEDULER_NAMES)
def test_one_prompt_walk_from_an_init_image_equals_diffusers_img2img(components, tmp_path, monkeypatch, name):
    """The walk from an init image starts where StableDiffusionImg2ImgPipeline starts with
    strength 0.5: both skip int(6 * (1 - 0.5)) = 3 steps and noise the picture's latents to
    the 4th timestep with x_T.

    Both sides get the same PNG and preprocess it the same way (at the walk's size nothing
    is resized). diffusers samples the VAE posterior with the generator by default; the
    walk takes its mean, so diffusers' retrieve_latents is made to take the mode (for the
    VAE's diagonal Gaussian, the mean), the one change on its side. Its generator is then
    first used for the noise, so with the seed's generator it draws x_T, and then any step
    noise (Euler ancestral), as the walk does.
    """
    monkeypatch.setattr(pipeline_stable_diffusion_img2img, "retrieve_latents", posterior_mode)
    picture = picture_file(tmp_path / "start.png")
    walk = settings("a red house", "a red house", prompt_strength=0.5, scheduler=name, init_image=picture)
    latents, _, _ = walk_latents(components, walk)
    pipe = diffusers_pipeline(StableDiffusionImg2ImgPipeline, components, diffusers_scheduler(components, name))
    expected = pipe(
        prompt="a red house",
        image=Image.open(picture).convert("RGB"),
        strength=0.5,
        generator=torch.Generator("cpu").manual_seed(walk.seed),
        guidance_scale=GUIDANCE,
        num_inference_steps=STEPS,
        output_type="latent",
    ).images
    # The picture shows through: closer to its own latents than a walk from noise is.
    pixels = load_init_image(picture, SIZE, SIZE)
    picture_latents = encode_image(components.vae, pixels)
    from_noise, _, _ = walk_latents(components, settings("a red house", "a red house", 0.5, scheduler=name))
    assert max_difference(latents[:1], picture_latents) < max_difference(from_noise[:1], picture_latents)
    # Tolerance as above: float32 rounding of different UNet batch sizes (and of the VAE
    # encode); measured at most 1.1e-5 (KLMS) on latents up to about 5.
    for keyframe in latents:
        torch.testing.assert_close(keyframe[None], expected, rtol=1e-4, atol=1e-4)


@torch.inference_mode()
@pytest.mark.parametrize("name", ["default", "K_EULER"])
def test_prompt_strength_0_from_an_init_image_gives_the_encoded_picture(components, tmp_path, name):
    picture = picture_file(tmp_path / "start.png")
    walk = settings("a cat", "a dog", prompt_strength=0.0, frames=3, scheduler=name, init_image=picture)
    unet_calls = []
    hook = components.unet.register_forward_pre_hook(lambda module, args: unet_calls.append(1))
    try:
        latents, _, _ = walk_latents(components, walk)
    finally:
        hook.remove()
    expected = encode_image(components.vae, load_init_image(picture, SIZE, SIZE))
    assert unet_calls == [] and latents.shape[0] == 3
    torch.testing.assert_close(latents, expected.expand(3, -1, -1, -1), rtol=0, atol=0)


@torch.inference_mode()
@pytest.mark.parametrize("name", ["default", "DDIM", "K_EULER_ANCESTRAL"])
def test_prompt_strength_0_from_noise_gives_one_picture_for_every_keyframe(components, name):
    """Every step is shared, also PNDM's extra one (T + 1 timesteps for T steps)."""
    walk = settings("a cat", "a dog", prompt_strength=0.0, frames=3, scheduler=name)
    latents, _, _ = walk_latents(components, walk)
    assert latents.shape[0] == 3
    torch.testing.assert_close(latents, latents[:1].expand(3, -1, -1, -1), rtol=0, atol=0)
    # Those steps ran: the picture is not the noise it started from.
    assert max_difference(latents[:1], initial_noise(walk.seed, SIZE, SIZE, components.device, latents.dtype)) > 0.1


@torch.inference_mode()
@pytest.mark.parametrize(
    "new_inputs",
    [
        dict(negative_prompt="blurry, dark"),
        dict(init_image="picture"),  # "picture": the test's PNG, made in tmp_path
        dict(scheduler="K_EULER_ANCESTRAL"),
        dict(scheduler="K_EULER_ANCESTRAL", init_image="picture", negative_prompt="blurry"),
    ],
    ids=["negative-prompt", "init-image", "euler-ancestral", "all-three"],
)
def test_batched_keyframes_equal_keyframes_one_at_a_time_with_the_new_inputs(
    components, tmp_path, monkeypatch, new_inputs
):
    if new_inputs.get("init_image"):
        new_inputs = dict(new_inputs, init_image=picture_file(tmp_path / "start.png"))
    walk = settings("a cat", "a dog | a bird", prompt_strength=0.5, frames=3, **new_inputs)  # 5 keyframes

    def keyframes(batch_size):
        monkeypatch.setattr(memory, "CPU_KEYFRAME_BATCH", batch_size)
        return walk_latents(components, walk)[0]

    one_at_a_time = keyframes(1)
    # Tolerance as in test_batched_keyframes_equal_keyframes_one_at_a_time: float32
    # rounding of a UNet batch against batch 1; measured at most 1.1e-5.
    torch.testing.assert_close(keyframes(5), one_at_a_time, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(keyframes(2), one_at_a_time, rtol=1e-4, atol=1e-4)
    assert max_difference(one_at_a_time[0], one_at_a_time[-1]) > 1e-2  # different prompts


@torch.inference_mode()
def test_a_stochastic_scheduler_gives_every_keyframe_the_same_step_noise(components):
    """Euler ancestral draws fresh noise at every step. Keyframes of one prompt differ only
    if their noise does: they come out the same, with or without a shared start."""
    for prompt_strength in (1.0, 0.5):
        walk = settings("a red house", "a red house", prompt_strength, frames=4, scheduler="K_EULER_ANCESTRAL")
        latents, _, _ = walk_latents(components, walk)
        # Tolerance: the embeddings differ by rounding (slerp of the prompt with itself at
        # t = 1/3, 2/3) and the unconditional half of the first step runs at batch 1, so
        # float32 rounding again; measured about 3e-5, where other noise changes 1e-1.
        for keyframe in latents[1:]:
            torch.testing.assert_close(keyframe, latents[0], rtol=1e-4, atol=1e-4)
    other_seed = dataclasses.replace(walk, seed=walk.seed + 1)
    assert max_difference(walk_latents(components, other_seed)[0], latents) > 1e-2


@torch.inference_mode()
def test_init_image_encode_in_reduced_precision_that_gives_nan_is_done_again_in_float32(components, monkeypatch):
    vae = copy.deepcopy(components.vae).to(torch.bfloat16)
    pixels = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    reference = encode_image(copy.deepcopy(vae).to(torch.float32), pixels)  # the same bf16-rounded weights
    real_encode = type(vae).encode
    calls = []

    def overflowing_encode(self, x, *args, **kwargs):
        calls.append(self.dtype)
        output = real_encode(self, x, *args, **kwargs)
        if self.dtype != torch.float32:  # what fp16 overflow looks like
            output.latent_dist.mean.fill_(float("nan"))
        return output

    monkeypatch.setattr(type(vae), "encode", overflowing_encode)
    latents = encode_image(vae, pixels)
    assert calls == [torch.bfloat16, torch.float32]
    assert latents.dtype == torch.bfloat16 and vae.dtype == torch.bfloat16
    torch.testing.assert_close(latents, reference.to(torch.bfloat16), rtol=0, atol=0)


@torch.inference_mode()
@pytest.mark.parametrize("prompt_strength", [1.0, 0.5])
def test_batched_keyframes_equal_keyframes_one_at_a_time(components, prompt_strength):
    plan = KeyframePlan(3, 3, 1)  # 5 keyframes over two segments
    embeddings, uncond_embedding = encode_prompts(components.tokenizer, components.text_encoder, ["a cat", "a dog", "a bird"])
    uncond = Conditioning(uncond_embedding)
    noise = initial_noise(7, SIZE, SIZE, torch.device("cpu"), torch.float32)
    shared, scheduler, remaining = shared_denoise(
        components.unet, components.scheduler, noise, STEPS, prompt_strength,
        Conditioning(walk_embedding(plan, embeddings, 0.5)), uncond, GUIDANCE, Progress(),
    )
    assert len(scheduler.timesteps) - len(remaining) == shared_step_count(STEPS, prompt_strength)
    per_keyframe = Conditioning(keyframe_embeddings(plan.keyframe_times(), embeddings))

    def run(batch_size):
        batches = denoise_keyframes(
            components.unet, scheduler, shared, remaining, per_keyframe, uncond, GUIDANCE,
            StageBatches("keyframes", batch_size), Progress(),
        )
        return [(start, latents) for start, latents in batches]

    together = run(5)
    uneven = run(3)
    alone = run(1)
    assert [start for start, _ in together] == [0]
    assert [start for start, _ in uneven] == [0, 3]
    assert [start for start, _ in alone] == [0, 1, 2, 3, 4]
    one_at_a_time = torch.cat([latents for _, latents in alone])
    torch.testing.assert_close(together[0][1], one_at_a_time, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(torch.cat([latents for _, latents in uneven]), one_at_a_time, rtol=1e-4, atol=1e-4)
    # Different prompts give different keyframes; the shared scheduler was not advanced.
    assert (one_at_a_time[0] - one_at_a_time[-1]).abs().max() > 1e-2
    again = run(5)
    torch.testing.assert_close(again[0][1], together[0][1], rtol=0, atol=0)


@torch.inference_mode()
def test_first_keyframe_step_runs_the_unconditional_half_once(components):
    plan = KeyframePlan(2, 4, 1)  # 4 keyframes
    embeddings, uncond_embedding = encode_prompts(components.tokenizer, components.text_encoder, ["a cat", "a dog"])
    uncond = Conditioning(uncond_embedding)
    noise = initial_noise(7, SIZE, SIZE, torch.device("cpu"), torch.float32)
    shared, scheduler, remaining = shared_denoise(
        components.unet, components.scheduler, noise, STEPS, 0.5, Conditioning(walk_embedding(plan, embeddings, 0.5)),
        uncond, GUIDANCE, Progress(),
    )
    per_keyframe = Conditioning(keyframe_embeddings(plan.keyframe_times(), embeddings))
    samples = []
    hook = components.unet.register_forward_pre_hook(lambda module, args: samples.append(args[0].shape[0]))
    try:
        batches = denoise_keyframes(
            components.unet, scheduler, shared, remaining, per_keyframe, uncond, GUIDANCE, StageBatches("keyframes", 3),
            Progress(),
        )
        latents = torch.cat([latents for _, latents in batches])
    finally:
        hook.remove()

    # Batches of 3 and 1: one shared unconditional sample, then each batch's first step
    # conditional only, then both halves.
    steps = len(remaining)
    assert samples == [1, 3] + [6] * (steps - 1) + [1] + [2] * (steps - 1)
    # The same keyframes as full guidance at every step, keyframe by keyframe.
    for index in range(len(per_keyframe)):
        alone = denoise(
            components.unet, copy.deepcopy(scheduler), shared.clone(), remaining, per_keyframe[index : index + 1], uncond,
            GUIDANCE, Progress(), "keyframe_denoise", len(scheduler.timesteps) - steps,
        )
        torch.testing.assert_close(latents[index : index + 1], alone, rtol=1e-4, atol=1e-4)


@torch.inference_mode()
def test_shared_start_shares_the_image_more_at_lower_prompt_strength(components):
    def spread(prompt_strength):
        latents, _, _ = walk_latents(components, settings("a cat", "a dog", prompt_strength, frames=2))
        return (latents[0] - latents[1]).abs().mean()

    assert spread(0.3) < spread(1.0)
    # int(T * (1 - prompt_strength)), float rounding included, as the hosted model:
    # 1 - 0.8 is 0.19999999999999996, so the defaults share 9 of 50 steps, not 10.
    assert shared_step_count(50, 0.8) == 9
    assert shared_step_count(50, 0.5) == 25
    assert shared_step_count(50, 1.0) == 0
    assert shared_step_count(50, 0.0) == 50


def test_steps_are_counted_in_the_users_steps(components):
    pndm = PNDMScheduler.from_config(components.scheduler.config)  # SD 1.5's scheduler
    pndm.set_timesteps(50)
    assert len(pndm.timesteps) == 51  # PLMS's warm-up repeats the first step's timestep
    counts = [steps_done(pndm, calls) for calls in range(52)]
    assert counts[:3] == [0, 0, 1] and counts[-1] == 50
    assert [later - earlier for earlier, later in zip(counts[1:], counts[2:])] == [1] * 50
    # The defaults' 9 shared timesteps: the first step's two calls, then 7 more steps.
    assert steps_done(pndm, shared_step_count(50, 0.8)) == 8
    ddim = DDIMScheduler.from_config(components.scheduler.config)  # one call per step
    ddim.set_timesteps(6)
    assert [steps_done(ddim, calls) for calls in range(7)] == [0, 1, 2, 3, 4, 5, 6]


class StepLog(Progress):
    """Records the steps reported, instead of printing them."""

    def __init__(self):
        super().__init__()
        self.steps = []

    def step(self, name, done, total, detail=""):
        self.steps.append((name, done, total, detail))


@torch.inference_mode()
def test_each_denoising_step_is_reported_before_it_runs_and_the_last_reads_t_of_t(components):
    plan = KeyframePlan(2, 3, 1)  # 3 keyframes
    embeddings, uncond_embedding = encode_prompts(components.tokenizer, components.text_encoder, ["a cat", "a dog"])
    uncond = Conditioning(uncond_embedding)
    noise = initial_noise(7, SIZE, SIZE, torch.device("cpu"), torch.float32)
    progress = StepLog()
    calls = []
    hook = components.unet.register_forward_pre_hook(lambda module, args: calls.append(len(progress.steps)))
    try:
        shared, scheduler, remaining = shared_denoise(
            components.unet, components.scheduler, noise, STEPS, 0.5,
            Conditioning(walk_embedding(plan, embeddings, 0.5)), uncond, GUIDANCE, progress,
        )
        batches = list(denoise_keyframes(
            components.unet, scheduler, shared, remaining, Conditioning(keyframe_embeddings(plan.keyframe_times(), embeddings)),
            uncond, GUIDANCE, StageBatches("keyframes", 2), progress,
        ))
    finally:
        hook.remove()

    # PNDM: 7 timesteps for 6 steps, 3 of them shared; batches of 2 and 1 keyframes.
    shared_steps = [("shared_denoise", done, STEPS, "") for done in (0, 0, 1, 2)]
    first = [("keyframe_denoise", done, STEPS, "keyframes 1-2 of 3") for done in (2, 3, 4, 5, 6)]
    second = [("keyframe_denoise", done, STEPS, "keyframes 3-3 of 3") for done in (2, 3, 4, 5, 6)]
    assert progress.steps == shared_steps + first + second
    assert set(progress.seconds) == {"shared_denoise", "keyframe_denoise"}
    # Reports seen by each UNet call: each step's call comes right after a report (the
    # unconditional half shared by the keyframes, 4th, right after the shared start's last).
    assert len(batches) == 2
    assert calls == [1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13]


def test_initial_noise_comes_from_the_seed_on_the_cpu():
    a = initial_noise(5, 128, 64, torch.device("cpu"), torch.float32)
    assert a.shape == (1, 4, 16, 8)
    torch.testing.assert_close(a, initial_noise(5, 128, 64, torch.device("cpu"), torch.float32), rtol=0, atol=0)
    assert not torch.equal(a, initial_noise(6, 128, 64, torch.device("cpu"), torch.float32))
    expected = torch.randn((1, 4, 16, 8), generator=torch.Generator("cpu").manual_seed(5))
    torch.testing.assert_close(a, expected, rtol=0, atol=0)
    half = initial_noise(5, 128, 64, torch.device("cpu"), torch.float16)
    assert half.dtype == torch.float16 and torch.equal(half, a.half())


@torch.inference_mode()
def test_decode_gives_images_in_unit_range_in_chunks(components):
    latents = initial_noise(1, SIZE, SIZE, torch.device("cpu"), torch.float32).repeat(3, 1, 1, 1) * 5
    latents[1] *= -1
    images = decode_latents(components.vae, latents, StageBatches("decode", 2))
    assert images.shape == (3, 3, SIZE, SIZE) and images.dtype == torch.float32
    assert images.min() >= 0 and images.max() <= 1
    assert images.std() > 0.05  # tiny weights still give an image, not flat gray
    whole = decode_latents(components.vae, latents, StageBatches("decode", 3))
    torch.testing.assert_close(images, whole, rtol=1e-4, atol=1e-5)


@torch.inference_mode()
def test_nan_from_reduced_precision_decode_is_decoded_again_in_float32(components, monkeypatch):
    vae = copy.deepcopy(components.vae).to(torch.bfloat16)
    latents = initial_noise(2, 32, 32, torch.device("cpu"), torch.float32).repeat(3, 1, 1, 1)
    # The re-decode runs the same (bf16-rounded) weights in float32.
    reference = decode_latents(copy.deepcopy(vae).to(torch.float32), latents, StageBatches("decode", 2))
    real_decode = type(vae).decode
    calls = []

    def overflowing_decode(self, z, *args, **kwargs):
        calls.append(self.dtype)
        output = real_decode(self, z, *args, **kwargs)
        if self.dtype != torch.float32:  # what fp16 overflow looks like
            output[0].fill_(float("nan"))
        return output

    monkeypatch.setattr(type(vae), "decode", overflowing_decode)
    images = decode_latents(vae, latents, StageBatches("decode", 2))
    assert not torch.isnan(images).any()
    torch.testing.assert_close(images, reference, rtol=1e-4, atol=1e-5)
    assert calls == [torch.bfloat16, torch.float32, torch.bfloat16, torch.float32]
    assert vae.dtype == torch.bfloat16  # upcast only for the re-decode


@torch.inference_mode()
def test_nan_even_in_float32_is_an_error_not_an_image(components, monkeypatch):
    vae = copy.deepcopy(components.vae)
    latents = torch.full((1, 4, 8, 8), float("nan"))
    with pytest.raises(RuntimeError, match="NaN"):
        decode_latents(vae, latents, StageBatches("decode", 1))
