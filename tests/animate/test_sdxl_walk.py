"""The walk on the other checkpoint kinds: SDXL (pooled embedding and size conditioning) and
SD 2.x (v-prediction), each on its tiny weights, against diffusers' own pipelines.

Tolerances are those of tests/animate/diffusion/test_diffusion.py: float32 rounding of UNet batches
of different sizes (and of texts encoded in other batches), 1e-4 on latents of order 10.
"""

import copy
import dataclasses
import json
import shutil

import pytest
import torch
from diffusers import (
    DDIMScheduler,
    StableDiffusionPipeline,
    StableDiffusionXLImg2ImgPipeline,
    StableDiffusionXLPipeline,
)
from diffusers.pipelines.stable_diffusion_xl import pipeline_stable_diffusion_xl_img2img
from PIL import Image

from animate import Settings, animate, memory
from animate.slerp import slerp
from animate.diffusion.denoise import initial_noise
from animate.diffusion.schedulers import SCHEDULER_NAMES, chosen_scheduler
from animate.diffusion.vae import decode_latents, encode_image
from animate.memory import StageBatches
from animate.inputs.init_image import load_init_image
from animate.pipeline import (
    DiffusionRenderer,
    keyframe_conditioning,
    plan_for,
    text_conditioning,
    walk_conditioning,
)
from animate.progress import Progress
from animate.tiny import (
    SDXL_VAE_SCALING_FACTOR,
    write_tiny_sd2_weights,
    write_tiny_sdxl_weights,
)
from animate.weights import load_components
from tests.animate.diffusion.test_diffusion import (
    diffusers_pipeline,
    diffusers_scheduler,
    max_difference,
    picture_file,
    posterior_mode,
)
from tests.server.media import gif_info

SIZE = 64
STEPS = 6
GUIDANCE = 7.5
TOLERANCE = dict(rtol=1e-4, atol=1e-4)

@pytest.fixture(scope="module")
def sdxl_weights(tmp_path_factory):
    return write_tiny_sdxl_weights(tmp_path_factory.mktemp("weights") / "tiny-sdxl")


@pytest.fixture(scope="module")
def sdxl(sdxl_weights):
    return load_components(sdxl_weights, "cpu", torch.float32)


@pytest.fixture(scope="module")
def sd2(tmp_path_factory):
    return load_components(write_tiny_sd2_weights(tmp_path_factory.mktemp("weights") / "tiny-sd2"), "cpu", torch.float32)


def settings(prompts, prompt_strength, frames=2, **inputs):
    """A small walk: `prompts` (a tuple), 64x64, 6 steps, latent in-betweens."""
    return Settings(
        prompts=prompts, seed=1234, width=SIZE, height=SIZE, num_inference_steps=STEPS,
        prompt_strength=prompt_strength, num_animation_frames=frames, num_interpolation_steps=1,
        guidance_scale=GUIDANCE, film_interpolation=False, **inputs,
    )


def walk_latents(components, walk):
    """The keyframe latents (K, 4, h, w) exactly as animate.animate computes them, and the
    conditioning of the prompts and of the negative prompt."""
    plan = plan_for(walk)
    prompts, uncond = text_conditioning(components, walk)
    init_pixels = None if walk.init_image is None else load_init_image(walk.init_image, walk.width, walk.height)
    render = DiffusionRenderer(components, walk, plan, Progress(), init_pixels)
    return torch.cat([latents for latents, _ in render(plan.keyframe_times())]), prompts, uncond


def sdxl_pipeline(pipeline_class, components, scheduler):
    pipe = pipeline_class(
        vae=components.vae,
        text_encoder=components.text_encoder,
        text_encoder_2=components.text_encoder_2,
        tokenizer=components.tokenizer,
        tokenizer_2=components.tokenizer_2,
        unet=components.unet,
        scheduler=scheduler,
        force_zeros_for_empty_prompt=components.force_zeros_for_empty_prompt,
        add_watermarker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def sdxl_img2img(components, walk, monkeypatch, output_type):
    """StableDiffusionXLImg2ImgPipeline on walk's first prompt, init image, prompt strength
    and seed, taking the VAE posterior's mode as the walk does; its `images` output."""
    monkeypatch.setattr(pipeline_stable_diffusion_xl_img2img, "retrieve_latents", posterior_mode)
    pipe = sdxl_pipeline(StableDiffusionXLImg2ImgPipeline, components, copy.deepcopy(components.scheduler))
    return pipe(
        prompt=walk.prompts[0],
        image=Image.open(walk.init_image).convert("RGB"),
        strength=walk.prompt_strength,
        generator=torch.Generator("cpu").manual_seed(walk.seed),
        guidance_scale=GUIDANCE,
        num_inference_steps=STEPS,
        output_type=output_type,
    ).images


def noise_for(walk):
    return initial_noise(walk.seed, SIZE, SIZE, torch.device("cpu"), torch.float32)


# --- SDXL ---


@torch.inference_mode()
def test_one_prompt_sdxl_walk_equals_diffusers_sdxl_pipeline(sdxl):
    """The same x_T, embeddings (per-token and pooled, both sides) and scheduler: the
    pipeline adds the size conditioning (original = target = 64x64, crop (0, 0)) itself."""
    walk = settings(("a red house", "a red house"), prompt_strength=1.0)
    latents, prompts, uncond = walk_latents(sdxl, walk)
    expected = sdxl_pipeline(StableDiffusionXLPipeline, sdxl, copy.deepcopy(sdxl.scheduler))(
        prompt_embeds=prompts.embeddings[:1],
        pooled_prompt_embeds=prompts.pooled[:1],
        negative_prompt_embeds=uncond.embeddings,
        negative_pooled_prompt_embeds=uncond.pooled,
        latents=noise_for(walk),
        guidance_scale=GUIDANCE,
        num_inference_steps=STEPS,
        height=SIZE,
        width=SIZE,
        output_type="latent",
    ).images
    assert latents.shape == (2, 4, SIZE // 8, SIZE // 8)
    for keyframe in latents:
        torch.testing.assert_close(keyframe[None], expected, **TOLERANCE)


@torch.inference_mode()
@pytest.mark.parametrize("name", SCHEDULER_NAMES)
@pytest.mark.parametrize("negative_prompt", ["", "a blue boat, blurry"])
def test_sdxl_walk_with_each_scheduler_equals_diffusers_sdxl_pipeline(sdxl, name, negative_prompt):
    """The pipeline encodes the prompt and the negative prompt itself (an empty one is its
    negative_prompt=None: zeros, as SDXL base's force_zeros_for_empty_prompt says), and
    draws x_T and any step noise from the seed's generator, as the walk does. A shared
    start of 3 of 6 steps carries each scheduler's state into the keyframes."""
    walk = settings(("a red house", "a red house"), 0.5, scheduler=name, negative_prompt=negative_prompt)
    latents, _, _ = walk_latents(sdxl, walk)
    expected = sdxl_pipeline(StableDiffusionXLPipeline, sdxl, diffusers_scheduler(sdxl, name))(
        prompt="a red house",
        negative_prompt=negative_prompt or None,
        generator=torch.Generator("cpu").manual_seed(walk.seed),
        guidance_scale=GUIDANCE,
        num_inference_steps=STEPS,
        height=SIZE,
        width=SIZE,
        output_type="latent",
    ).images
    for keyframe in latents:
        torch.testing.assert_close(keyframe[None], expected, **TOLERANCE)


@torch.inference_mode()
def test_sdxl_keyframes_slerp_both_embeddings_and_share_the_size_conditioning(sdxl):
    walk = settings(("a cat", "a dog", "a bird"), 0.5, frames=3)  # 5 keyframes, 2 segments
    plan = plan_for(walk)
    prompts, uncond = text_conditioning(sdxl, walk)
    keyframes = keyframe_conditioning(plan.keyframe_times(), prompts)
    middle = walk_conditioning(plan, prompts, 0.5)

    assert len(keyframes) == 5 and keyframes.pooled.shape == (5, sdxl.text_encoder_2.config.projection_dim)
    for field in ("embeddings", "pooled"):
        prompt_rows, keyframe_rows = getattr(prompts, field), getattr(keyframes, field)
        assert torch.equal(keyframe_rows[0], prompt_rows[0]) and torch.equal(keyframe_rows[-1], prompt_rows[-1])
        assert torch.equal(keyframe_rows[2], prompt_rows[1])  # the segments meet at the middle prompt
        halfway = slerp(0.5, prompt_rows[0:1], prompt_rows[1:2])
        torch.testing.assert_close(keyframe_rows[1:2], halfway, rtol=0, atol=0)
        assert torch.equal(getattr(middle, field), prompt_rows[1:2])  # position 0.5 of 3 prompts
    expected_ids = torch.tensor([[SIZE, SIZE, 0, 0, SIZE, SIZE]], dtype=torch.float32)
    for conditioning in (prompts, uncond, keyframes, middle):
        assert torch.equal(conditioning.time_ids, expected_ids)
    assert not uncond.embeddings.any() and not uncond.pooled.any()  # force_zeros_for_empty_prompt

    # Every UNet call gets the pooled embeddings and one row of size numbers per sample.
    calls = []

    def record(module, args, kwargs):
        added = kwargs["added_cond_kwargs"]
        calls.append((args[0].shape[0], added["text_embeds"].shape[0], added["time_ids"]))

    hook = sdxl.unet.register_forward_pre_hook(record, with_kwargs=True)
    try:
        walk_latents(sdxl, walk)
    finally:
        hook.remove()
    assert calls and all(samples == pooled == len(ids) for samples, pooled, ids in calls)
    assert all(torch.equal(ids, expected_ids.expand(len(ids), -1)) for _, _, ids in calls)


@torch.inference_mode()
@pytest.mark.parametrize("negative_prompt", ["", "blurry, dark"])
def test_batched_sdxl_keyframes_equal_keyframes_one_at_a_time(sdxl, monkeypatch, negative_prompt):
    walk = settings(("a cat", "a dog", "a bird"), 0.5, frames=3, negative_prompt=negative_prompt)  # 5 keyframes
    samples = []
    hook = sdxl.unet.register_forward_pre_hook(lambda module, args: samples.append(args[0].shape[0]))

    def keyframes(batch_size):
        monkeypatch.setattr(memory, "CPU_KEYFRAME_BATCH", batch_size)
        samples.clear()
        return walk_latents(sdxl, walk)[0]

    try:
        one_at_a_time = keyframes(1)
        together = keyframes(5)
    finally:
        hook.remove()
    # 3 shared steps at batch 2, one shared unconditional sample, the first keyframe step
    # conditional only, then both halves of the 2 other steps, all 5 keyframes in one call.
    assert samples == [2, 2, 2, 1, 5, 10, 10]
    torch.testing.assert_close(together, one_at_a_time, **TOLERANCE)
    torch.testing.assert_close(keyframes(2), one_at_a_time, **TOLERANCE)
    assert max_difference(one_at_a_time[0], one_at_a_time[-1]) > 1e-2  # different prompts


@torch.inference_mode()
def test_sdxl_walk_from_an_init_image_equals_diffusers_sdxl_img2img(sdxl, tmp_path, monkeypatch):
    """As test_diffusion's img2img test: diffusers made to take the posterior's mode."""
    walk = settings(("a red house", "a red house"), 0.5, init_image=picture_file(tmp_path / "start.png"))
    latents, _, _ = walk_latents(sdxl, walk)
    expected = sdxl_img2img(sdxl, walk, monkeypatch, output_type="latent")
    for keyframe in latents:
        torch.testing.assert_close(keyframe[None], expected, **TOLERANCE)


@torch.inference_mode()
def test_sdxl_init_image_at_prompt_strength_0_is_the_picture_scaled_by_sdxls_factor(sdxl, tmp_path):
    picture = picture_file(tmp_path / "start.png")
    latents, _, _ = walk_latents(sdxl, settings(("a cat", "a dog"), 0.0, frames=3, init_image=picture))
    pixels = load_init_image(picture, SIZE, SIZE)
    mean = sdxl.vae.encode(pixels).latent_dist.mean
    assert sdxl.vae.config.scaling_factor == SDXL_VAE_SCALING_FACTOR
    torch.testing.assert_close(latents, (mean * SDXL_VAE_SCALING_FACTOR).expand(3, -1, -1, -1), rtol=0, atol=0)


@torch.inference_mode()
def test_sdxl_in_half_precision_runs_a_vae_that_asks_for_float32_in_float32(sdxl_weights, tmp_path):
    """SDXL's own VAE overflows in fp16 and says force_upcast: it is loaded in float32 while
    the rest runs in fp16, and the walk encodes (init_image) and decodes with it."""
    weights = shutil.copytree(sdxl_weights, tmp_path / "weights")
    vae_config = weights / "stable-diffusion" / "vae" / "config.json"
    vae_config.write_text(json.dumps({**json.loads(vae_config.read_text()), "force_upcast": True}))
    half = load_components(weights, "cpu", torch.float16)
    assert half.unet.dtype == torch.float16 and half.vae.dtype == torch.float32

    picture = picture_file(tmp_path / "start.png")
    walk = settings(("a cat", "a dog"), 0.0, frames=2, init_image=picture)
    latents, _, _ = walk_latents(half, walk)
    expected = encode_image(half.vae, load_init_image(picture, SIZE, SIZE))
    assert latents.dtype == torch.float16 and expected.dtype == torch.float32
    torch.testing.assert_close(latents, expected.half().expand(2, -1, -1, -1), rtol=0, atol=0)

    files = list(animate(half, dataclasses.replace(walk, prompt_strength=0.5, num_interpolation_steps=2), tmp_path / "out"))
    assert [path.name for path in files] == ["animation.gif"]
    assert gif_info(files[0].read_bytes()).frames == 3


# Per-channel statistics of the VAE's latents, as some SDXL-architecture checkpoints give
# them in vae/config.json; distinct per channel, so a swap or a wrong order shows.
LATENTS_MEAN = [-0.6, 0.9, -0.3, 1.2]
LATENTS_STD = [2.5, 1.5, 3.0, 2.0]


@pytest.fixture(scope="module")
def sdxl_with_latent_statistics(sdxl_weights, tmp_path_factory):
    weights = shutil.copytree(sdxl_weights, tmp_path_factory.mktemp("weights") / "tiny-sdxl-statistics")
    vae_config = weights / "stable-diffusion" / "vae" / "config.json"
    config = {**json.loads(vae_config.read_text()), "latents_mean": LATENTS_MEAN, "latents_std": LATENTS_STD}
    vae_config.write_text(json.dumps(config))
    return load_components(weights, "cpu", torch.float32)


@torch.inference_mode()
def test_a_vae_with_latent_statistics_encodes_and_decodes_as_diffusers_sdxl_pipelines(
    sdxl_with_latent_statistics, tmp_path, monkeypatch
):
    """A VAE config with latents_mean and latents_std: the init image's latents are
    standardised before scaling (as StableDiffusionXLImg2ImgPipeline does) and keyframes
    are unstandardised before decoding (as StableDiffusionXLPipeline does)."""
    components = sdxl_with_latent_statistics
    assert list(components.vae.config.latents_mean) == LATENTS_MEAN
    walk = settings(("a red house", "a red house"), 0.5, init_image=picture_file(tmp_path / "start.png"))
    latents, _, _ = walk_latents(components, walk)
    expected = sdxl_img2img(components, walk, monkeypatch, output_type="pt")
    assert expected.shape == (1, 3, SIZE, SIZE)
    torch.testing.assert_close(decode_latents(components.vae, latents[:1], StageBatches("decode", 1)), expected, **TOLERANCE)


def test_sdxl_animation_with_film_and_keyframe_pngs(sdxl, tmp_path):
    walk = Settings(
        prompts=("a cat", "a dog", "a bird"), seed=3, width=SIZE, height=SIZE, num_inference_steps=4,
        num_animation_frames=2, num_interpolation_steps=3, intermediate_output=True,
    )
    plan = plan_for(walk)  # K = 3, F = 7
    files = list(animate(sdxl, walk, tmp_path))
    assert [path.name for path in files] == [f"keyframe-{index:03d}.png" for index in range(3)] + ["animation.gif"]
    gif = gif_info(files[-1].read_bytes())
    assert gif.frames == plan.num_frames == 7 and gif.size == (SIZE, SIZE)


# --- SD 2.x: v-prediction ---


def test_every_scheduler_keeps_the_weights_v_prediction(sd2):
    assert sd2.scheduler.config.prediction_type == "v_prediction"
    for name in SCHEDULER_NAMES:
        assert chosen_scheduler(name, sd2.scheduler).config.prediction_type == "v_prediction", name


@torch.inference_mode()
def test_one_prompt_sd2_walk_equals_diffusers_v_prediction_pipeline(sd2):
    walk = settings(("a red house", "a red house"), prompt_strength=1.0)
    latents, prompts, uncond = walk_latents(sd2, walk)
    expected = diffusers_pipeline(StableDiffusionPipeline, sd2, copy.deepcopy(sd2.scheduler))(
        prompt_embeds=prompts.embeddings[:1],
        negative_prompt_embeds=uncond.embeddings,
        latents=noise_for(walk),
        guidance_scale=GUIDANCE,
        num_inference_steps=STEPS,
        height=SIZE,
        width=SIZE,
        output_type="latent",
    ).images
    for keyframe in latents:
        torch.testing.assert_close(keyframe[None], expected, **TOLERANCE)
    # The same walk read as noise prediction is another walk: v-prediction is in effect.
    epsilon = dataclasses.replace(sd2, scheduler=DDIMScheduler.from_config(sd2.scheduler.config, prediction_type="epsilon"))
    assert max_difference(walk_latents(epsilon, walk)[0], latents) > 1e-2


@torch.inference_mode()
@pytest.mark.parametrize("name", SCHEDULER_NAMES)
def test_sd2_walk_with_each_scheduler_equals_diffusers_pipeline_with_it(sd2, name):
    walk = settings(("a red house", "a red house"), 0.5, scheduler=name, negative_prompt="blurry")
    latents, _, _ = walk_latents(sd2, walk)
    expected = diffusers_pipeline(StableDiffusionPipeline, sd2, diffusers_scheduler(sd2, name))(
        prompt="a red house",
        negative_prompt="blurry",
        generator=torch.Generator("cpu").manual_seed(walk.seed),
        guidance_scale=GUIDANCE,
        num_inference_steps=STEPS,
        height=SIZE,
        width=SIZE,
        output_type="latent",
    ).images
    for keyframe in latents:
        torch.testing.assert_close(keyframe[None], expected, **TOLERANCE)


def test_sd2_animation_with_latent_inbetweens_and_ping_pong(sd2, tmp_path):
    walk = Settings(
        prompts=("a cat", "a dog"), seed=3, width=SIZE, height=SIZE, num_inference_steps=4,
        num_animation_frames=3, num_interpolation_steps=3, film_interpolation=False, ping_pong=True,
    )
    plan = plan_for(walk)  # K = 3, F = 7, 2F - 2 = 12 with ping-pong
    files = list(animate(sd2, walk, tmp_path))
    assert [path.name for path in files] == ["animation.gif"]
    gif = gif_info(files[0].read_bytes())
    assert gif.frames == plan.num_output_frames == 12 and gif.size == (SIZE, SIZE)
