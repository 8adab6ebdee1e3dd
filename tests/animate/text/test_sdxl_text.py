"""animate.text.sdxl against diffusers' own StableDiffusionXLPipeline.encode_prompt, on the tiny SDXL.

Both compute the same thing with the same float32 models; they differ only in how the
texts are batched through the encoders (all at once here, prompts and negatives apart in
diffusers), which moves results by float rounding: hence a tolerance of 1e-5.
"""

import pytest
import torch
from diffusers import StableDiffusionXLPipeline

from animate.text.sdxl import add_time_ids, encode_sdxl_prompts
from animate.tiny import write_tiny_sdxl_weights
from animate.weights import load_components

PROMPTS = ["a red apple on a table", "a green pear", "Café ☕ at night " * 12]  # the last one is cut
TOLERANCE = dict(atol=1e-5, rtol=1e-5)


@pytest.fixture(scope="module")
def sdxl(tmp_path_factory):
    return load_components(write_tiny_sdxl_weights(tmp_path_factory.mktemp("sdxl")), "cpu", torch.float32)


def diffusers_pipeline(components, force_zeros_for_empty_prompt: bool = True) -> StableDiffusionXLPipeline:
    return StableDiffusionXLPipeline(
        vae=components.vae,
        text_encoder=components.text_encoder,
        text_encoder_2=components.text_encoder_2,
        tokenizer=components.tokenizer,
        tokenizer_2=components.tokenizer_2,
        unet=components.unet,
        scheduler=components.scheduler,
        force_zeros_for_empty_prompt=force_zeros_for_empty_prompt,
        add_watermarker=False,
    )


def diffusers_encoding(components, negative_prompt, force_zeros_for_empty_prompt=True):
    """(embeddings, negative embeddings, pooled, negative pooled), each (P, ...)."""
    with torch.inference_mode():
        return diffusers_pipeline(components, force_zeros_for_empty_prompt).encode_prompt(
            prompt=PROMPTS,
            device=torch.device("cpu"),
            num_images_per_prompt=1,
            do_classifier_free_guidance=True,
            negative_prompt=negative_prompt,
        )


def ours(components, negative_prompt):
    with torch.inference_mode():
        return encode_sdxl_prompts(components, PROMPTS, negative_prompt)


def test_prompt_embeddings_are_diffusers(sdxl):
    text = ours(sdxl, "")
    embeddings, _, pooled, _ = diffusers_encoding(sdxl, None)
    width = sdxl.text_encoder.config.hidden_size + sdxl.text_encoder_2.config.hidden_size
    assert text.embeddings.shape == (len(PROMPTS), 77, width) == embeddings.shape
    assert text.pooled.shape == (len(PROMPTS), sdxl.text_encoder_2.config.projection_dim) == pooled.shape
    torch.testing.assert_close(text.embeddings, embeddings, **TOLERANCE)
    torch.testing.assert_close(text.pooled, pooled, **TOLERANCE)


def test_an_empty_negative_prompt_is_zeros_as_in_diffusers(sdxl):
    """SDXL base's force_zeros_for_empty_prompt: the request's empty negative prompt is
    diffusers' negative_prompt=None."""
    text = ours(sdxl, "")
    _, negative, _, negative_pooled = diffusers_encoding(sdxl, None)
    assert text.negative_embeddings.shape == (1, *negative.shape[1:])
    assert text.negative_pooled.shape == (1, negative_pooled.shape[1])
    assert not text.negative_embeddings.any() and not text.negative_pooled.any()
    torch.testing.assert_close(text.negative_embeddings.expand_as(negative), negative)
    torch.testing.assert_close(text.negative_pooled.expand_as(negative_pooled), negative_pooled)


def test_a_negative_prompt_is_encoded_as_in_diffusers(sdxl):
    text = ours(sdxl, "blurry, text")
    _, negative, _, negative_pooled = diffusers_encoding(sdxl, ["blurry, text"] * len(PROMPTS))
    torch.testing.assert_close(text.negative_embeddings.expand_as(negative), negative, **TOLERANCE)
    torch.testing.assert_close(text.negative_pooled.expand_as(negative_pooled), negative_pooled, **TOLERANCE)
    assert text.negative_embeddings.abs().sum() > 0
    # The prompts' embeddings do not depend on the negative prompt in the same batch.
    torch.testing.assert_close(text.embeddings, ours(sdxl, "").embeddings, **TOLERANCE)


def test_without_forced_zeros_an_empty_negative_prompt_is_encoded(sdxl):
    from dataclasses import replace

    unforced = replace(sdxl, force_zeros_for_empty_prompt=False)
    text = ours(unforced, "")
    _, negative, _, negative_pooled = diffusers_encoding(sdxl, None, force_zeros_for_empty_prompt=False)
    torch.testing.assert_close(text.negative_embeddings.expand_as(negative), negative, **TOLERANCE)
    torch.testing.assert_close(text.negative_pooled.expand_as(negative_pooled), negative_pooled, **TOLERANCE)
    assert text.negative_embeddings.abs().sum() > 0


def test_a_cut_prompt_is_reported_once(sdxl, capsys):
    ours(sdxl, "blurry " * 100)
    lines = [line for line in capsys.readouterr().out.splitlines() if "tokens were cut" in line]
    assert len(lines) == 2
    assert lines[0].startswith("Prompt 3 is ") and lines[1].startswith("The negative prompt is ")


@pytest.mark.parametrize("height, width", [(512, 768), (1024, 1024)])
def test_add_time_ids_are_diffusers(sdxl, height, width):
    pipeline = diffusers_pipeline(sdxl)
    expected = pipeline._get_add_time_ids(
        (height, width), (0, 0), (height, width), dtype=torch.float32,
        text_encoder_projection_dim=sdxl.text_encoder_2.config.projection_dim,
    )
    ids = add_time_ids(height, width, torch.float32)
    assert ids.shape == (1, 6) and ids.dtype == torch.float32
    assert torch.equal(ids, expected)
