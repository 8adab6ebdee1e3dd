"""The full Stable Diffusion 1.5 architecture with random weights, for timing.

A random network of the real shape does exactly the work of the real one (the same
FLOPs and memory traffic), so the benchmark needs no downloaded weights. The configs
below are SD 1.5's published ones (stable-diffusion-v1-5, subfolders unet/, vae/,
text_encoder/, scheduler/), written out so nothing is fetched.
"""

import torch
from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

from animate.tiny import SD15_SCHEDULER

UNET_CONFIG = dict(
    sample_size=64,
    in_channels=4,
    out_channels=4,
    down_block_types=(
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    ),
    up_block_types=(
        "UpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
    ),
    block_out_channels=(320, 640, 1280, 1280),
    layers_per_block=2,
    downsample_padding=1,
    mid_block_scale_factor=1,
    act_fn="silu",
    norm_num_groups=32,
    norm_eps=1e-5,
    cross_attention_dim=768,
    attention_head_dim=8,
    flip_sin_to_cos=True,
    freq_shift=0,
    center_input_sample=False,
)

VAE_CONFIG = dict(
    sample_size=512,
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(128, 256, 512, 512),
    layers_per_block=2,
    act_fn="silu",
    latent_channels=4,
    norm_num_groups=32,
    scaling_factor=0.18215,
)

# CLIP ViT-L/14's text tower, as SD 1.5 uses it (only the hidden states feed the UNet).
TEXT_ENCODER_CONFIG = dict(
    vocab_size=49408,
    hidden_size=768,
    intermediate_size=3072,
    projection_dim=768,
    num_hidden_layers=12,
    num_attention_heads=12,
    max_position_embeddings=77,
    hidden_act="quick_gelu",
    layer_norm_eps=1e-5,
)

# Fixed so two builds of the random network are the same network.
WEIGHTS_SEED = 1234


def random_unet() -> UNet2DConditionModel:
    """SD 1.5's UNet (about 860M parameters), random weights, fp32 on the CPU, eval mode."""
    torch.manual_seed(WEIGHTS_SEED)
    return UNet2DConditionModel(**UNET_CONFIG).eval()


def random_vae() -> AutoencoderKL:
    """SD 1.5's VAE (about 84M parameters), random weights, fp32 on the CPU, eval mode."""
    torch.manual_seed(WEIGHTS_SEED + 1)
    return AutoencoderKL(**VAE_CONFIG).eval()


def random_text_encoder(bos_token_id: int, eos_token_id: int, pad_token_id: int) -> CLIPTextModel:
    """SD 1.5's CLIP text encoder (about 123M parameters), random weights, fp32 on the CPU.

    The special-token ids come from the tokenizer that feeds it (they only choose the pooled
    output, which SD does not use).
    """
    torch.manual_seed(WEIGHTS_SEED + 2)
    config = CLIPTextConfig(
        **TEXT_ENCODER_CONFIG,
        bos_token_id=bos_token_id,
        eos_token_id=eos_token_id,
        pad_token_id=pad_token_id,
    )
    return CLIPTextModel(config).eval()


def sd15_scheduler() -> PNDMScheduler:
    """The PNDM scheduler with SD 1.5's configuration (PLMS steps, no Runge-Kutta warm-up)."""
    return PNDMScheduler(**SD15_SCHEDULER)
