"""The full SDXL base 1.0 architecture with random weights, for timing.

As bench/sd15.py for SD 1.5: a random network of the real shape does the work of the real
one, so nothing is downloaded. The configs below are SDXL base 1.0's published ones
(stabilityai/stable-diffusion-xl-base-1.0, subfolders unet/, vae/, text_encoder/,
text_encoder_2/, scheduler/), written out so nothing is fetched. The VAE is configured as
the fp16-safe SDXL VAE that script/download-weights fetches (madebyollin/sdxl-vae-fp16-fix:
SDXL's VAE architecture, without force_upcast), so that it runs in the model's dtype.
"""

import torch
from diffusers import AutoencoderKL, EulerDiscreteScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from animate.tiny import SDXL_SCHEDULER
from bench import sd15

UNET_CONFIG = dict(
    sample_size=128,
    in_channels=4,
    out_channels=4,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    block_out_channels=(320, 640, 1280),
    layers_per_block=2,
    transformer_layers_per_block=(1, 2, 10),
    downsample_padding=1,
    mid_block_scale_factor=1,
    act_fn="silu",
    norm_num_groups=32,
    norm_eps=1e-5,
    # Both encoders' states side by side: 768 + 1280.
    cross_attention_dim=2048,
    # diffusers' name for what is the number of heads here (5, 10, 20 heads of 64 channels).
    attention_head_dim=(5, 10, 20),
    use_linear_projection=True,
    flip_sin_to_cos=True,
    freq_shift=0,
    center_input_sample=False,
    # The pooled text embedding (1280) and 6 size numbers (256 channels each) are embedded
    # and added to the timestep embedding.
    addition_embed_type="text_time",
    addition_embed_type_num_heads=64,
    addition_time_embed_dim=256,
    projection_class_embeddings_input_dim=2816,
)

# SD 1.5's VAE architecture, with SDXL's latent scale; force_upcast off as in the fp16-fix VAE.
VAE_CONFIG = dict(sd15.VAE_CONFIG, sample_size=1024, scaling_factor=0.13025, force_upcast=False)

# OpenCLIP ViT-bigG/14's text tower, with its projection (the pooled embedding).
TEXT_ENCODER_2_CONFIG = dict(
    vocab_size=49408,
    hidden_size=1280,
    intermediate_size=5120,
    projection_dim=1280,
    num_hidden_layers=32,
    num_attention_heads=20,
    max_position_embeddings=77,
    hidden_act="gelu",
    layer_norm_eps=1e-5,
)

# Fixed so two builds of the random network are the same network (apart from SD 1.5's).
WEIGHTS_SEED = 2345


def random_unet() -> UNet2DConditionModel:
    """SDXL base's UNet (about 2.6B parameters), random weights, fp32, eval mode."""
    torch.manual_seed(WEIGHTS_SEED)
    return UNet2DConditionModel(**UNET_CONFIG).eval()


def random_vae() -> AutoencoderKL:
    """SDXL's VAE (about 84M parameters, SD 1.5's architecture), random weights, fp32, eval mode."""
    torch.manual_seed(WEIGHTS_SEED + 1)
    return AutoencoderKL(**VAE_CONFIG).eval()


def random_text_encoder(bos_token_id: int, eos_token_id: int, pad_token_id: int) -> CLIPTextModel:
    """SDXL's first text encoder: SD 1.5's (CLIP ViT-L/14's text tower), random weights, fp32."""
    return sd15.random_text_encoder(bos_token_id, eos_token_id, pad_token_id)


def random_text_encoder_2(bos_token_id: int, eos_token_id: int, pad_token_id: int) -> CLIPTextModelWithProjection:
    """SDXL's second text encoder (about 695M parameters), random weights, fp32.

    eos_token_id picks the token whose state is projected into the pooled embedding.
    """
    torch.manual_seed(WEIGHTS_SEED + 3)
    config = CLIPTextConfig(
        **TEXT_ENCODER_2_CONFIG, bos_token_id=bos_token_id, eos_token_id=eos_token_id, pad_token_id=pad_token_id
    )
    return CLIPTextModelWithProjection(config).eval()


def sdxl_scheduler() -> EulerDiscreteScheduler:
    """The Euler scheduler with SDXL base's configuration ("leading" timesteps)."""
    return EulerDiscreteScheduler.from_config(SDXL_SCHEDULER)
