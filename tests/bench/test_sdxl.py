"""bench/sdxl.py: the full SDXL base architecture, built without its memory (parameters on the
meta device: 2.6B of them would take 10 GB and minutes here), checked against the published
sizes of SDXL base 1.0."""

import pytest
import torch
from accelerate import init_empty_weights

from animate.tiny import SDXL_SCHEDULER
from bench import sd15, sdxl
from bench.presets import sdxl_components


def parameter_count(model: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


@pytest.mark.parametrize(
    "build, count",
    [
        (sdxl.random_unet, 2_567_463_684),
        (sdxl.random_vae, 83_653_863),
        (lambda: sdxl.random_text_encoder(49406, 49407, 49407), 123_060_480),
        (lambda: sdxl.random_text_encoder_2(49406, 49407, 0), 694_659_840),
    ],
    ids=["unet", "vae", "text_encoder", "text_encoder_2"],
)
def test_each_model_has_sdxl_bases_parameter_count(build, count):
    with torch.device("meta"):
        model = build()
    assert parameter_count(model) == count


def test_the_unet_takes_what_the_encoders_give():
    with torch.device("meta"):
        unet = sdxl.random_unet()
    token_width = sd15.TEXT_ENCODER_CONFIG["hidden_size"] + sdxl.TEXT_ENCODER_2_CONFIG["hidden_size"]
    assert unet.config.cross_attention_dim == token_width == 2048
    pooled_width = sdxl.TEXT_ENCODER_2_CONFIG["projection_dim"]
    assert unet.add_embedding.linear_1.in_features == 6 * unet.config.addition_time_embed_dim + pooled_width == 2816


def test_sdxl_components_are_the_sdxl_kind():
    """Parameters on the meta device (init_empty_weights keeps the scheduler's tensors real)."""
    with init_empty_weights():
        components = sdxl_components("meta", torch.float16)
    assert components.kind == "sdxl" and components.force_zeros_for_empty_prompt
    assert components.safety_checker is None and components.feature_extractor is None
    assert components.tokenizer.pad_token == "<|endoftext|>" and components.tokenizer_2.pad_token == "!"
    for model in (components.text_encoder, components.text_encoder_2, components.unet, components.vae, components.film):
        parameter = next(model.parameters())
        assert parameter.device.type == "meta" and parameter.dtype == torch.float16
    assert components.text_encoder_2.config.eos_token_id == components.tokenizer_2.eos_token_id
    assert {key: components.scheduler.config[key] for key in SDXL_SCHEDULER} == SDXL_SCHEDULER
    assert not components.vae.config.force_upcast  # the fp16-safe VAE's configuration
