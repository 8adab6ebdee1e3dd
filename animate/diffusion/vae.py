"""The VAE's side of the walk: pictures to latents (init_image) and latents to pictures.

Latents are scaled (and, for VAEs whose config gives per-channel statistics, standardised)
between the VAE's own and the UNet's, as diffusers' pipelines do. A half-precision encode
or decode that gives NaN is done again in float32.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import torch
from diffusers import AutoencoderKL

if TYPE_CHECKING:  # animate.memory imports this module (for VAE_SCALE)
    from animate.memory import StageBatches

LATENT_CHANNELS = 4
VAE_SCALE = 8  # the VAE turns an (H, W) image into (H/8, W/8) latents


def encode_image(vae: AutoencoderKL, pixels: torch.Tensor) -> torch.Tensor:
    """VAE encode of pixels (1, 3, H, W) in [-1, 1]: latents (1, 4, H/8, W/8) in the VAE's
    dtype: the posterior's mean scaled by to_unet_latents (no sampling: the same picture
    always gives the same latents).

    A reduced-precision encode that gives NaN is done again in float32, as in decode_latents.
    """
    latents = posterior_mean(vae, pixels)
    if torch.isnan(latents).any() and vae.dtype != torch.float32:
        print(f"VAE encode in {vae.dtype} gave NaN; encoding again in float32", flush=True)
        with upcast(vae):
            latents = posterior_mean(vae, pixels)
        latents = latents.to(vae.dtype)
    return latents


def posterior_mean(vae: AutoencoderKL, pixels: torch.Tensor) -> torch.Tensor:
    """encode_image in the VAE's current dtype, without the NaN check."""
    posterior = vae.encode(pixels.to(vae.device, vae.dtype)).latent_dist
    return to_unet_latents(vae, posterior.mean)


def latent_statistics(vae: AutoencoderKL, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The per-channel mean and standard deviation (1, 4, 1, 1) of the VAE's latents, as
    `like`'s device and dtype, when its config gives both (SD's and SDXL base's VAEs give
    neither; some SDXL-architecture checkpoints do), else None."""
    mean = getattr(vae.config, "latents_mean", None)
    std = getattr(vae.config, "latents_std", None)
    if mean is None or std is None:
        return None
    return torch.tensor(mean).view(1, -1, 1, 1).to(like), torch.tensor(std).view(1, -1, 1, 1).to(like)


def to_unet_latents(vae: AutoencoderKL, vae_latents: torch.Tensor) -> torch.Tensor:
    """The VAE's latents (B, 4, h, w) scaled to the UNet's, as diffusers' SDXL img2img
    pipeline does: times the scaling factor, standardised first when the config says how."""
    statistics = latent_statistics(vae, vae_latents)
    if statistics is None:
        return vae_latents * vae.config.scaling_factor
    mean, std = statistics
    return (vae_latents - mean) * vae.config.scaling_factor / std


def to_vae_latents(vae: AutoencoderKL, latents: torch.Tensor) -> torch.Tensor:
    """The inverse of to_unet_latents: the UNet's latents (B, 4, h, w) as the VAE decodes them."""
    statistics = latent_statistics(vae, latents)
    if statistics is None:
        return latents / vae.config.scaling_factor
    mean, std = statistics
    return latents * std / vae.config.scaling_factor + mean


@contextmanager
def upcast(vae: AutoencoderKL) -> Iterator[None]:
    """The VAE in float32 for the block, back in its dtype after (fp16 overflows to NaN at times)."""
    dtype = vae.dtype
    vae.to(torch.float32)
    try:
        yield
    finally:
        vae.to(dtype)


def decode_chunk(vae: AutoencoderKL, latents: torch.Tensor) -> torch.Tensor:
    """VAE decode of latents (B, 4, h, w) in the VAE's dtype: images (B, 3, H, W) in [0, 1], float32."""
    images = vae.decode(to_vae_latents(vae, latents.to(vae.dtype)), return_dict=False)[0]
    return (images.float() / 2 + 0.5).clamp(0, 1)


def decode_chunk_in_float32(vae: AutoencoderKL, latents: torch.Tensor) -> torch.Tensor:
    """decode_chunk with the VAE upcast to float32 for the call (fp16 overflows to NaN at times)."""
    with upcast(vae):
        return decode_chunk(vae, latents.float())


def decode_checked(vae: AutoencoderKL, latents: torch.Tensor) -> torch.Tensor:
    """decode_chunk of latents (B, 4, h, w), done again in float32 when a reduced-precision
    decode contains NaN, so NaN never reaches the output; NaN even then (broken latents)
    raises RuntimeError."""
    images = decode_chunk(vae, latents)
    if torch.isnan(images).any() and vae.dtype != torch.float32:
        print(f"VAE decode in {vae.dtype} gave NaN; decoding again in float32", flush=True)
        images = decode_chunk_in_float32(vae, latents)
    if torch.isnan(images).any():
        raise RuntimeError(
            "The VAE decoded NaN even in float32, so the denoised latents are broken: "
            "try another seed or fewer inference steps."
        )
    return images


def decode_latents(vae: AutoencoderKL, latents: torch.Tensor, batches: "StageBatches") -> torch.Tensor:
    """Decode latents (B, 4, h, w) to images (B, 3, H, W) in [0, 1], float32, in the batches
    of `batches` (stage "decode"; sized by animate.memory.decode_batch_size), each through
    decode_checked."""
    chunks = batches.over(latents.shape[0], lambda start, stop: decode_checked(vae, latents[start:stop]))
    return torch.cat([images for _, _, images in chunks])
