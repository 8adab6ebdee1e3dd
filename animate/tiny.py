"""Tiny random-weight models in the real weights layout, for tests and the demo.

`python -m animate.tiny [OUT_DIR]` (OUT_DIR: weights/tiny unless given) writes, in seconds
and the same bytes every time:

    OUT_DIR/stable-diffusion/   diffusers layout of a tiny Stable Diffusion (UNet, VAE with
                                the real 8x downsampling and 4 latent channels, CLIP text
                                encoder, byte-level CLIP tokenizer, the SD 1.5 scheduler)
    OUT_DIR/film_net/film_net_style.safetensors   a tiny FILM (film_net.TINY_OPTIONS)

They load through animate.load_components exactly like the real weights. There is no
safety checker: real weights bring their own.
"""

import argparse
import json
import sys
from pathlib import Path

import torch
from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

import film_net

SEED = 0
TEXT_WIDTH = 32  # hidden size of the text encoder = cross-attention width of the UNet
MAX_TOKENS = 77  # the real CLIP text encoder's context, so truncation behaves the same
# Random weights at their default scale give images that barely depend on the prompt and
# sit near mid-gray. Scaling the cross-attention outputs makes the text matter (keyframes of
# different prompts differ visibly) and scaling the decoder output spreads the colours.
CROSS_ATTENTION_GAIN = 10.0
VAE_OUTPUT_GAIN = 2.0

# The Stable Diffusion 1.5 scheduler configuration.
SD15_SCHEDULER = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    skip_prk_steps=True,
    set_alpha_to_one=False,
    steps_offset=1,
)


def byte_unicode_chars() -> list[str]:
    """The 256 printable characters byte-level BPE uses for the 256 byte values (GPT-2 table)."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            codes.append(256 + extra)
            extra += 1
    return [chr(code) for code in codes]


def tiny_tokenizer_vocab() -> dict[str, int]:
    """Byte characters, their end-of-word forms, then the two special tokens (514 ids)."""
    chars = byte_unicode_chars()
    tokens = chars + [char + "</w>" for char in chars] + ["<|startoftext|>", "<|endoftext|>"]
    return {token: index for index, token in enumerate(tokens)}


def write_tokenizer(directory: Path) -> CLIPTokenizer:
    """Write vocab.json + merges.txt (no merges) like the real SD tokenizer folder; load it back."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.json").write_text(json.dumps(tiny_tokenizer_vocab(), ensure_ascii=False))
    (directory / "merges.txt").write_text("#version: 0.2\n")
    (directory / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "CLIPTokenizer",
                "model_max_length": MAX_TOKENS,
                "bos_token": "<|startoftext|>",
                "eos_token": "<|endoftext|>",
                "pad_token": "<|endoftext|>",
                "unk_token": "<|endoftext|>",
                "do_lower_case": True,
            },
            indent=2,
        )
    )
    return CLIPTokenizer.from_pretrained(directory, local_files_only=True)


def tiny_text_encoder(tokenizer: CLIPTokenizer) -> CLIPTextModel:
    """A 2-layer CLIP text encoder of width TEXT_WIDTH over the tiny vocabulary."""
    torch.manual_seed(SEED)
    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=TEXT_WIDTH,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=MAX_TOKENS,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        projection_dim=TEXT_WIDTH,
    )
    return CLIPTextModel(config).eval()


def tiny_unet() -> UNet2DConditionModel:
    """A three-level UNet conditioned on TEXT_WIDTH-wide text embeddings.

    Attention only at the coarsest level (1/4 of the latent size): at full latent
    resolution a 512x512 image means 4096-token self-attention, which made the tiny model
    as slow per sample on a CPU as a much larger one.
    """
    torch.manual_seed(SEED + 1)
    unet = UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        block_out_channels=(16, 32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        cross_attention_dim=TEXT_WIDTH,
        attention_head_dim=8,
        norm_num_groups=16,
    ).eval()
    with torch.no_grad():
        for name, module in unet.named_modules():
            if name.endswith("attn2.to_out.0"):  # attn2 is the cross-attention to the text
                module.weight.mul_(CROSS_ATTENTION_GAIN)
    return unet


def tiny_vae() -> AutoencoderKL:
    """Four blocks, three downsamplings: latents are (4, H/8, W/8) like the real VAE.

    No mid-block attention: it would attend over every latent pixel, the slowest part of a
    decode at 512x512 on a CPU, and random weights gain nothing from it.
    """
    torch.manual_seed(SEED + 2)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 16, 16, 16),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=64,
        mid_block_add_attention=False,
    ).eval()
    with torch.no_grad():
        vae.decoder.conv_out.weight.mul_(VAE_OUTPUT_GAIN)
    return vae


def write_tiny_stable_diffusion(directory: Path) -> None:
    """The tiny SD in diffusers layout (model_index.json + one folder per component)."""
    tokenizer = write_tokenizer(directory / "tokenizer")
    pipeline = StableDiffusionPipeline(
        vae=tiny_vae(),
        text_encoder=tiny_text_encoder(tokenizer),
        tokenizer=tokenizer,
        unet=tiny_unet(),
        scheduler=PNDMScheduler(**SD15_SCHEDULER),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.save_pretrained(directory, safe_serialization=True)


def write_tiny_film(path: Path) -> None:
    """A tiny FILM with seeded random weights, options stored in the file's metadata."""
    torch.manual_seed(SEED + 3)
    path.parent.mkdir(parents=True, exist_ok=True)
    film_net.save(film_net.FilmNet(film_net.TINY_OPTIONS).eval(), path)


def write_tiny_weights(out_dir: str | Path) -> Path:
    """Write the whole tiny weights directory (see the module docstring); returns it."""
    out_dir = Path(out_dir)
    write_tiny_stable_diffusion(out_dir / "stable-diffusion")
    write_tiny_film(out_dir / "film_net" / "film_net_style.safetensors")
    return out_dir


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m animate.tiny", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "out_dir", nargs="?", default="weights/tiny", metavar="OUT_DIR",
        help="folder to write the tiny weights into (default: weights/tiny)",
    )
    arguments = parser.parse_args(argv)
    out_dir = write_tiny_weights(arguments.out_dir)
    print(f"Wrote tiny weights to {out_dir}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
