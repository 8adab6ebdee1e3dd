"""Smoke test of the benchmark harness on tiny weights: both sides run, every stage is
timed, and the reference and the pipeline make the same keyframes. Nothing is timed-asserted."""

import dataclasses
import threading

import numpy as np
import pytest
import torch
from diffusers.models.attention_processor import AttnProcessor

from bench import sd15
from bench.measure import OUTSIDE, HostPeaks, upscaler_gflop
from bench.presets import PRESETS, build_components, random_upscaler, tiny_components
from bench.reference import original_form
from bench.report import comparison_table, upscale_line, verdict
from bench.runner import run_comparison, run_pipeline_only
from tests.animate.test_pipeline import WALK_STAGES

# The tiny models gain nothing from intra-op threads, and spinning threads on a shared
# 2-core machine make every op slower.
torch.set_num_threads(1)

# Small enough to take seconds: 3 prompts and 3 keyframes per segment give K = 5 keyframes,
# more than one CPU keyframe batch; S = 3 needs blended FILM frames. T = 6: PNDM runs 7
# timesteps, n_shared = int(6 * (1 - 0.8)) = 1 of them shared, 6 per keyframe.
SMALL_REQUEST = dataclasses.replace(
    PRESETS["tiny"].settings, width=64, height=64, num_inference_steps=6,
    num_animation_frames=3, num_interpolation_steps=3,
)
# The reference runs both guidance halves of every step: the shared one once, the other 6
# for each keyframe. The pipeline runs the unconditional half of the first keyframe step
# once for all 5 keyframes, since they all start from the shared latent.
REFERENCE_UNET_SAMPLES = 2 * (1 + 5 * 6)
PIPELINE_UNET_SAMPLES = REFERENCE_UNET_SAMPLES - (5 - 1)


@pytest.fixture(scope="module")
def components():
    return tiny_components("cpu", torch.float32)


@pytest.mark.parametrize(
    "settings",
    [
        SMALL_REQUEST,
        dataclasses.replace(SMALL_REQUEST, film_interpolation=False, ping_pong=True, output_format="mp4"),
    ],
    ids=["film-gif", "latent-pingpong-mp4"],
)
def test_reference_and_pipeline_make_the_same_keyframes(components, settings):
    reference, pipeline, agreement = run_comparison(components, settings, warmup=False)

    assert agreement.agree, verdict(agreement)
    assert agreement.max_latent_difference < 1e-4
    assert reference.keyframes.shape == (5, 3, 64, 64)
    # The reference one sample per call, the pipeline batched and with less to do.
    assert reference.unet_samples == reference.unet_calls == REFERENCE_UNET_SAMPLES
    assert pipeline.unet_samples == PIPELINE_UNET_SAMPLES
    assert pipeline.unet_calls < PIPELINE_UNET_SAMPLES
    for side in (reference, pipeline):
        assert set(side.stages) == WALK_STAGES, side.name
        assert all(seconds > 0 for seconds in side.stages.values()), side.stages
        assert side.total_s >= sum(side.stages.values()) * 0.999
        assert side.memory.host_peak_mib >= side.memory.host_start_mib > 0
        assert WALK_STAGES <= set(side.memory.host.by_stage)
        assert side.memory.host_peak_mib == max(side.memory.host.by_stage.values())
        assert side.animation_size > 0
    assert "TOTAL (s)" in comparison_table(reference, pipeline)


def test_reference_and_pipeline_make_the_same_sdxl_keyframes():
    """The tiny SDXL (preset tiny-sdxl): the reference encodes each prompt alone and runs the
    pooled embedding and size conditioning at batch 1. Euler runs 6 timesteps, 1 shared."""
    components = build_components(PRESETS["tiny-sdxl"])
    assert components.kind == "sdxl"
    reference, pipeline, agreement = run_comparison(components, SMALL_REQUEST, warmup=False)

    assert agreement.agree, verdict(agreement)
    assert agreement.max_latent_difference < 1e-4
    assert reference.unet_samples == reference.unet_calls == 2 * (1 + 5 * 5)
    assert pipeline.unet_samples == reference.unet_samples - (5 - 1)


def test_without_encoding_both_sides_make_every_frame_and_write_no_file(components):
    """--no-encode, for a GPU machine without ffmpeg: everything but the encode stage."""
    reference, pipeline, agreement = run_comparison(components, SMALL_REQUEST, warmup=False, encode=False)
    assert agreement.agree and agreement.same_animation_file is None
    assert verdict(agreement).endswith("animation files not encoded")
    for side in (reference, pipeline):
        assert set(side.stages) == WALK_STAGES - {"encode"}, side.name
        assert side.stages["inbetweens"] > 0
        assert side.animation_size is None and side.animation_sha256 is None


def test_pipeline_only_does_not_keep_keyframes(components):
    result = run_pipeline_only(components, SMALL_REQUEST)

    assert result.keyframes is None
    assert set(result.stages) == WALK_STAGES
    assert result.unet_samples == PIPELINE_UNET_SAMPLES


def test_reference_runs_the_models_in_the_original_form_and_gives_them_back():
    components = tiny_components("cpu", torch.float32)
    components.film.half()  # as on CUDA, where the pipeline runs FILM in half precision
    pipeline_attention = {model: model.attn_processors for model in (components.unet, components.vae)}
    conv_weight = components.vae.decoder.conv_in.weight.clone()

    def vae_is_channels_last():
        return components.vae.decoder.conv_in.weight.is_contiguous(memory_format=torch.channels_last)

    assert vae_is_channels_last()
    with original_form(components):
        assert components.unet.attn_processors  # the tiny VAE has no attention layer
        for model in (components.unet, components.vae):
            assert all(type(processor) is AttnProcessor for processor in model.attn_processors.values())
        assert not vae_is_channels_last()
        assert next(components.film.parameters()).dtype == torch.float32
    for model, processors in pipeline_attention.items():
        assert model.attn_processors == processors
    assert AttnProcessor not in {type(processor) for processor in components.unet.attn_processors.values()}
    assert vae_is_channels_last()
    torch.testing.assert_close(components.vae.decoder.conv_in.weight, conv_weight, rtol=0, atol=0)
    assert next(components.film.parameters()).dtype == torch.float16


def test_sd15_configs_have_sd15_parameter_counts():
    # Built on the meta device: the shapes without the memory or the time.
    with torch.device("meta"):
        counts = {
            "unet": sum(p.numel() for p in sd15.random_unet().parameters()),
            "vae": sum(p.numel() for p in sd15.random_vae().parameters()),
            "text_encoder": sum(p.numel() for p in sd15.random_text_encoder(0, 2, 1).parameters()),
        }
    # Stable Diffusion 1.5 (stable-diffusion-v1-5): 859.5M UNet, 83.7M VAE, 123.1M CLIP text.
    assert counts == {"unet": 859_520_964, "vae": 83_653_863, "text_encoder": 123_060_480}


def test_sd15_scheduler_runs_sd15_timesteps():
    scheduler = sd15.sd15_scheduler()
    scheduler.set_timesteps(50)
    # PLMS without Runge-Kutta warm-up repeats the first timestep; steps_offset 1 ends at 1.
    assert scheduler.timesteps[:3].tolist() == [981, 961, 961]
    assert scheduler.timesteps[-1].item() == 1


def test_host_peaks_book_a_peak_to_the_stages_running_in_every_thread():
    peaks = HostPeaks()
    peaks.checkpoint()  # the interval before any stage goes to OUTSIDE
    allocated_mib = 64

    def encode():
        with peaks.within("encode"):
            block = np.ones(allocated_mib << 17)  # float64: allocated_mib MiB, written, so resident
            del block

    with peaks.within("inbetweens"):
        encoder = threading.Thread(target=encode)
        encoder.start()
        encoder.join()

    before = peaks.by_stage[OUTSIDE]
    assert peaks.by_stage["encode"] >= before + allocated_mib * 0.9
    assert peaks.by_stage["inbetweens"] >= before + allocated_mib * 0.9
    assert peaks.overall == max(peaks.by_stage.values())


def test_host_peaks_book_a_peak_to_every_open_stage_of_a_thread():
    peaks = HostPeaks()
    peaks.checkpoint()
    allocated_mib = 64
    with peaks.within("encode"):  # as the pipeline makes its frames inside "encode"
        with peaks.within("inbetweens"):
            block = np.ones(allocated_mib << 17)
            del block
    before = peaks.by_stage[OUTSIDE]
    assert peaks.by_stage["inbetweens"] >= before + allocated_mib * 0.9
    assert peaks.by_stage["encode"] >= before + allocated_mib * 0.9


def test_the_upscale_presets_upscaler_is_realesr_general_x4v3s_architecture_and_its_gflop_counted():
    """1,213,296 parameters as the real file holds (64 features, 32 convolutions); per input
    pixel 3*64*9 + 32*64*64*9 + 64*48*9 multiply-adds, two FLOP each."""
    upscaler = random_upscaler("cpu", torch.float32)
    assert (upscaler.architecture.name, upscaler.scale) == ("RealESRGAN Compact", 4)
    assert sum(parameter.numel() for parameter in upscaler.model.parameters()) == 1_213_296
    multiply_adds = 3 * 64 * 9 + 32 * 64 * 64 * 9 + 64 * 48 * 9
    assert upscaler_gflop(upscaler, 512, 512) == pytest.approx(2 * multiply_adds * 512 * 512 / 1e9)
    assert PRESETS["sd15-upscale"].settings.upscale == "4x"
    line = upscale_line("pipeline (gif)", 633.9, 46, 0.5, 3.0)
    assert line == (
        "pipeline (gif): upscale stage 0.50 s for 46 frames x 633.9 GFLOP = 29,159 GFLOP (58.32 TFLOP/s); "
        "the rest of the request 3.00 s"
    )
