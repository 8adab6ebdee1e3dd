"""Tiny random-weight models in the real weights layout, for tests and the demo.

`python -m animate.tiny [--kind sd|sd2|sdxl] [OUT_DIR]` writes, in seconds and the same
bytes every time:

    OUT_DIR/stable-diffusion/   diffusers layout of a tiny Stable Diffusion (UNet, VAE with
                                the real 8x downsampling and 4 latent channels, CLIP text
                                encoder, byte-level CLIP tokenizer), of the kind asked for:
                                  sd    like SD 1.5, its scheduler (the default; OUT_DIR
                                        weights/tiny unless given)
                                  sd2   like SD 2.1: v-prediction, its DDIM scheduler, a
                                        tokenizer that pads with "!", a GELU text encoder
                                        (weights/tiny-sd2)
                                  sdxl  like SDXL base: two text encoders (the second with
                                        a projection) and tokenizers, a UNet conditioned on
                                        both and on the pooled embedding and image sizes,
                                        SDXL's Euler scheduler (weights/tiny-sdxl)
    OUT_DIR/film_net/film_net_style.safetensors   a tiny FILM (film_net.TINY_OPTIONS)
                                whose in-betweens blend their two keyframes (blend_frames)
    OUT_DIR/upscaler/realesr-general-x4v3.pth      a tiny upscaler of the real one's
                                architecture (Real-ESRGAN's SRVGGNetCompact, 4x), with
                                8 features and 2 convolutions instead of 64 and 32, saved
                                as its release file is (a PyTorch checkpoint, {"params": ...})

They load through animate.load_components exactly like the real weights. There is no
safety checker: real weights bring their own.
"""

import argparse
import json
import sys
from pathlib import Path

# Where `python -m animate.tiny --kind KIND` writes without an OUT_DIR.
DEFAULT_OUT_DIRS = {"sd": "weights/tiny", "sd2": "weights/tiny-sd2", "sdxl": "weights/tiny-sdxl"}


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m animate.tiny", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "out_dir", nargs="?", default=None, metavar="OUT_DIR",
        help="folder to write the tiny weights into (default: weights/tiny, weights/tiny-sd2 or weights/tiny-sdxl)",
    )
    parser.add_argument(
        "--kind", choices=list(DEFAULT_OUT_DIRS), default="sd",
        help="which kind of Stable Diffusion: sd (SD 1.x, the default), sd2 (v-prediction) or sdxl",
    )
    return parser


if __name__ == "__main__":
    # Answer --help and wrong arguments before the imports below, which take seconds.
    argument_parser().parse_args(sys.argv[1:])

# First: importing animate.weights turns the Hugging Face libraries offline and quiet before
# diffusers and transformers load (see go_offline there).
from animate.weights import FILM_FILE, STABLE_DIFFUSION_DIR, UPSCALER_FILE, spandrel  # noqa: E402

import torch  # noqa: E402
from diffusers import (  # noqa: E402
    AutoencoderKL,
    DDIMScheduler,
    EulerDiscreteScheduler,
    PNDMScheduler,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from torch import nn  # noqa: E402
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer  # noqa: E402

import film_net  # noqa: E402
from film_net.feature_extractor import IMAGE_CHANNELS, feature_channels  # noqa: E402

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

# The Stable Diffusion 2.1 (768x768, v-prediction) and SDXL base 1.0 scheduler
# configurations, as their scheduler_config.json files have them (for DDIMScheduler and
# EulerDiscreteScheduler). Built with from_config, which keeps the keys the class does not
# take in its config, for the schedulers built from it (PNDM needs skip_prk_steps, DDIM
# set_alpha_to_one and clip_sample).
SD21_SCHEDULER = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    trained_betas=None,
    clip_sample=False,
    set_alpha_to_one=False,
    skip_prk_steps=True,
    steps_offset=1,
    prediction_type="v_prediction",
)
SDXL_SCHEDULER = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    trained_betas=None,
    clip_sample=False,
    sample_max_value=1.0,
    set_alpha_to_one=False,
    skip_prk_steps=True,
    steps_offset=1,
    prediction_type="epsilon",
    interpolation_type="linear",
    use_karras_sigmas=False,
    timestep_spacing="leading",
)

# The tiny SDXL's second text encoder: wider than the first, with a projection of another
# width, so that a mix-up of the two (or of hidden size and projection) changes a shape.
TEXT_WIDTH_2 = 48
POOLED_WIDTH = 40
# SDXL's UNet embeds each of its 6 size numbers (original size, crop corner, target size)
# in this many channels (256 in SDXL).
TIME_EMBED_WIDTH = 8
SDXL_VAE_SCALING_FACTOR = 0.13025
# Seeds of the models that only the other kinds have (SEED..SEED + 3 are taken).
SEED_TEXT_ENCODER_2 = SEED + 4


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


def write_tokenizer(directory: Path, pad_token: str = "<|endoftext|>") -> CLIPTokenizer:
    """Write vocab.json + merges.txt (no merges) like the real SD tokenizer folder; load it back.

    pad_token: SD 1.x pads with the end-of-text token; SD 2.x and SDXL's second tokenizer
    (OpenCLIP's) pad with "!".
    """
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
                "pad_token": pad_token,
                "unk_token": "<|endoftext|>",
                "do_lower_case": True,
            },
            indent=2,
        )
    )
    return CLIPTokenizer.from_pretrained(directory, local_files_only=True)


def tiny_text_config(
    tokenizer: CLIPTokenizer,
    width: int = TEXT_WIDTH,
    projection_width: int = TEXT_WIDTH,
    hidden_act: str = "quick_gelu",
) -> CLIPTextConfig:
    """A 2-layer CLIP text encoder of `width` over the tiny vocabulary (quick_gelu as
    OpenAI's CLIP, gelu as OpenCLIP's in SD 2.x and SDXL's second encoder)."""
    return CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=width,
        intermediate_size=2 * width,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=MAX_TOKENS,
        hidden_act=hidden_act,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        projection_dim=projection_width,
    )


def tiny_text_encoder(tokenizer: CLIPTokenizer, hidden_act: str = "quick_gelu") -> CLIPTextModel:
    """A 2-layer CLIP text encoder of width TEXT_WIDTH over the tiny vocabulary."""
    torch.manual_seed(SEED)
    return CLIPTextModel(tiny_text_config(tokenizer, hidden_act=hidden_act)).eval()


def tiny_text_encoder_with_projection(tokenizer: CLIPTokenizer) -> CLIPTextModelWithProjection:
    """SDXL's second encoder at toy size: width TEXT_WIDTH_2, GELU, and a projection of the
    end-of-text token's state to POOLED_WIDTH (the pooled embedding)."""
    torch.manual_seed(SEED_TEXT_ENCODER_2)
    config = tiny_text_config(tokenizer, TEXT_WIDTH_2, POOLED_WIDTH, hidden_act="gelu")
    return CLIPTextModelWithProjection(config).eval()


def tiny_unet(cross_attention_dim: int = TEXT_WIDTH, **sdxl_conditioning) -> UNet2DConditionModel:
    """A three-level UNet conditioned on text embeddings `cross_attention_dim` wide
    (sdxl_conditioning: the extra arguments of SDXL's UNet, see tiny_sdxl_unet).

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
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=8,
        norm_num_groups=16,
        **sdxl_conditioning,
    ).eval()
    with torch.no_grad():
        for name, module in unet.named_modules():
            if name.endswith("attn2.to_out.0"):  # attn2 is the cross-attention to the text
                module.weight.mul_(CROSS_ATTENTION_GAIN)
    return unet


def tiny_sdxl_unet() -> UNet2DConditionModel:
    """The tiny UNet with SDXL's conditioning: cross-attention to both encoders' states side
    by side, and ("text_time") an embedding of the pooled text embedding with the 6 size
    numbers added to the timestep embedding."""
    return tiny_unet(
        cross_attention_dim=TEXT_WIDTH + TEXT_WIDTH_2,
        addition_embed_type="text_time",
        addition_time_embed_dim=TIME_EMBED_WIDTH,
        projection_class_embeddings_input_dim=6 * TIME_EMBED_WIDTH + POOLED_WIDTH,
    )


def tiny_vae(**sdxl_config) -> AutoencoderKL:
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
        **sdxl_config,
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
        # SD 1.5's scheduler_config.json also sets clip_sample, which PNDM does not take but
        # from_config keeps, for the schedulers built from it (DDIM would clip otherwise).
        scheduler=PNDMScheduler.from_config(dict(SD15_SCHEDULER, clip_sample=False)),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.save_pretrained(directory, safe_serialization=True)


def write_tiny_stable_diffusion_2(directory: Path) -> None:
    """The tiny SD with what SD 2.1 changes: v-prediction (its DDIM scheduler), padding
    with "!", a GELU text encoder."""
    tokenizer = write_tokenizer(directory / "tokenizer", pad_token="!")
    pipeline = StableDiffusionPipeline(
        vae=tiny_vae(),
        text_encoder=tiny_text_encoder(tokenizer, hidden_act="gelu"),
        tokenizer=tokenizer,
        unet=tiny_unet(),
        scheduler=DDIMScheduler.from_config(SD21_SCHEDULER),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.save_pretrained(directory, safe_serialization=True)


def write_tiny_stable_diffusion_xl(directory: Path) -> None:
    """The tiny SDXL in diffusers layout, as SDXL base ships it: no safety checker, and an
    empty negative prompt means zero embeddings (force_zeros_for_empty_prompt). Its VAE is
    configured like the fp16-safe SDXL VAE that script/download-weights fetches (no
    force_upcast)."""
    tokenizer = write_tokenizer(directory / "tokenizer")
    tokenizer_2 = write_tokenizer(directory / "tokenizer_2", pad_token="!")
    pipeline = StableDiffusionXLPipeline(
        vae=tiny_vae(scaling_factor=SDXL_VAE_SCALING_FACTOR, force_upcast=False),
        text_encoder=tiny_text_encoder(tokenizer),
        text_encoder_2=tiny_text_encoder_with_projection(tokenizer_2),
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        unet=tiny_sdxl_unet(),
        scheduler=EulerDiscreteScheduler.from_config(SDXL_SCHEDULER),
        force_zeros_for_empty_prompt=True,
        add_watermarker=False,
    )
    pipeline.save_pretrained(directory, safe_serialization=True)


def blend_frames(film: film_net.FilmNet) -> film_net.FilmNet:
    """Make a FILM give the average of its two frames as their midpoint, so that its
    in-betweens blend their keyframes; returns `film`, changed in place.

    With random weights throughout, the tiny FILM made nearly uniform dark frames between
    colourful keyframes, and the demo's video flashed four times a second. Here the last
    conv of every flow predictor is zero, so every flow is zero and nothing is warped, and
    the fusion decoder's last three convs (finest level) pass the two images' average
    through with centre taps and no bias; the images are in [0, 1], which leaky ReLU
    leaves as they are. The other weights stay random and still run.
    """
    flow = film.predict_flow
    for predictor in [*flow.flow_predictors, flow.flow_predictor_shared]:
        nn.init.zeros_(predictor.convs[-1].weight)
        nn.init.zeros_(predictor.convs[-1].bias)
    # The finest level of the fusion input: frame 0's image and features, frame 1's, flows.
    image_1 = IMAGE_CHANNELS + feature_channels(film.options, 0)
    mix, keep = film.fusion.convs[0][1], film.fusion.convs[0][2]
    centre = mix.kernel_size[0] // 2
    for conv in (mix, keep, film.fusion.output_conv):
        nn.init.zeros_(conv.weight)
        nn.init.zeros_(conv.bias)
    with torch.no_grad():
        for channel in range(IMAGE_CHANNELS):
            mix.weight[channel, channel, centre, centre] = 0.5
            mix.weight[channel, image_1 + channel, centre, centre] = 0.5
            keep.weight[channel, channel, centre, centre] = 1.0
            film.fusion.output_conv.weight[channel, channel, 0, 0] = 1.0
    return film


def write_tiny_film(path: Path) -> None:
    """A tiny FILM whose midpoint is the average of its two frames (blend_frames), with
    seeded random weights elsewhere; options stored in the file's metadata."""
    torch.manual_seed(SEED + 3)
    path.parent.mkdir(parents=True, exist_ok=True)
    film_net.save(blend_frames(film_net.FilmNet(film_net.TINY_OPTIONS).eval()), path)


# The tiny upscaler: realesr-general-x4v3 has 64 features and 32 body convolutions.
UPSCALER_FEATURES = 8
UPSCALER_CONVOLUTIONS = 2


def tiny_upscaler() -> torch.nn.Module:
    """Real-ESRGAN's SRVGGNetCompact at toy size, 4x, seeded; spandrel's own class of it
    (animate.weights imports spandrel, which torchvision's absence needs)."""
    torch.manual_seed(SEED + 4)
    return spandrel.architectures.Compact.Compact(
        num_in_ch=3, num_out_ch=3, num_feat=UPSCALER_FEATURES, num_conv=UPSCALER_CONVOLUTIONS, upscale=4
    ).eval()


def write_tiny_upscaler(path: Path) -> None:
    """The tiny upscaler's weights as Real-ESRGAN's release files hold them: {"params": state dict}."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"params": tiny_upscaler().state_dict()}, path)


def write_weights_directory(out_dir: str | Path, write_stable_diffusion) -> Path:
    """out_dir/stable-diffusion by write_stable_diffusion, the tiny FILM and the tiny
    upscaler; returns out_dir."""
    out_dir = Path(out_dir)
    write_stable_diffusion(out_dir / STABLE_DIFFUSION_DIR)
    write_tiny_film(out_dir / FILM_FILE)
    write_tiny_upscaler(out_dir / UPSCALER_FILE)
    return out_dir


def write_tiny_weights(out_dir: str | Path) -> Path:
    """Write the whole tiny weights directory, SD 1.x kind (see the module docstring); returns it."""
    return write_weights_directory(out_dir, write_tiny_stable_diffusion)


def write_tiny_sd2_weights(out_dir: str | Path) -> Path:
    """The tiny weights directory of the SD 2.x kind (v-prediction); returns it."""
    return write_weights_directory(out_dir, write_tiny_stable_diffusion_2)


def write_tiny_sdxl_weights(out_dir: str | Path) -> Path:
    """The tiny weights directory of the SDXL kind; returns it."""
    return write_weights_directory(out_dir, write_tiny_stable_diffusion_xl)


def main(argv: list[str]) -> int:
    arguments = argument_parser().parse_args(argv)
    # Looked up here, not at import, so that a test can replace a writer.
    writers = {"sd": write_tiny_weights, "sd2": write_tiny_sd2_weights, "sdxl": write_tiny_sdxl_weights}
    out_dir = writers[arguments.kind](arguments.out_dir or DEFAULT_OUT_DIRS[arguments.kind])
    print(f"Wrote tiny weights to {out_dir}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
