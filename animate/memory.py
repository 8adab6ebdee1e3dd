"""How many items each stage puts in one batch on the accelerator (docs/behaviour.md, "The walk").

On CPU the batches are small fixed numbers; on CUDA each is what fits in half the memory
this process can use, by an estimate of what one item of the stage takes, and at most a
stage's maximum.
"""

import torch

from animate.diffusion.vae import VAE_SCALE
from film_net.recursive import bisection_depth

# Batch sizes on CPU: larger batches do not run faster there and cost memory.
CPU_KEYFRAME_BATCH = 4
CPU_DECODE_BATCH = 2
# On CUDA the batch is what fits in half the usable memory, by these estimates of peak
# activation memory, and at most MAX_*: bigger batches stop paying. The estimates are
# worked out from SD 1.5's tensor sizes, not measured on a GPU: the UNet's is dominated
# by one 8-head 4096x4096 attention matrix per sample at 512x512 (if the math attention
# kernel runs; flash/memory-efficient kernels need far less), the VAE's by a few
# 128-channel full-resolution tensors per image. Both scale with dtype size from fp16.
# SDXL's UNet has no attention at full latent resolution (at 1024x768 its largest is
# 10 heads over 3072 tokens, about 190 MB per sample), so for it the figure is generous.
UNET_BYTES_PER_LATENT_PIXEL = 64 * 1024  # per UNet sample (one guidance half)
VAE_BYTES_PER_IMAGE_PIXEL = 1536  # per decoded image
MAX_KEYFRAME_BATCH = 16
MAX_DECODE_BATCH = 8
# FILM pairs per call on CPU: one, because batches run slower there, not faster (per pair,
# 2 threads: tiny FILM at 512x512 0.26 s at batch 1, 0.45 s at batch 4; the full FILM at
# 256x256 1.9 s and 2.3 s), and each pair in a call costs its activations (tiny FILM at
# 1024x768: about 0.6 GB per pair).
FILM_CPU_BATCH = 1
# FILM pairs per call on CUDA: what fits in half the usable memory, by this estimate of the
# peak per pair in fp16. film_net.interpolate holds at most (depth + 2) * batch + 1 frames'
# image and feature pyramids, 164 values per pixel each with the default FILM; one pair's
# flow and fusion activations took 5.4 KB per pixel on CPU in fp32 at 256x256, about half
# that in fp16 (not measured on a GPU). At most MAX_FILM_BATCH: bigger batches stop paying.
FILM_PYRAMID_BYTES_PER_PIXEL = 164 * 2
FILM_ACTIVATION_BYTES_PER_PIXEL = 2700
MAX_FILM_BATCH = 16
# The upscaler's input pixels per call. On CPU one 512x512 frame's worth (smaller frames go
# several to a call, larger ones in tiles): its activations then take about 200 MB.
CPU_UPSCALE_PIXELS = 512 * 512
# On CUDA, what fits in half the usable memory by this estimate of the peak per input pixel
# in fp16: realesr-general-x4v3 holds two 64-channel feature maps at the input's resolution
# while a convolution runs, then its 4x output (48 values per input pixel) and the
# nearest-upsampled input it adds. On CPU in float32 the process's peak rose by 796 bytes
# per input pixel (512x512, and 256x256 at batch 4), about half that in fp16 (not measured
# on a GPU); this leaves room for the 2x output and the copy of a batch into one tensor.
# At most MAX_UPSCALE_PIXELS (8 frames of 512x512) per call: bigger calls stop paying, and
# a cancel waits for the call in progress.
UPSCALER_BYTES_PER_INPUT_PIXEL = 512
MAX_UPSCALE_PIXELS = 8 * 512 * 512


def usable_cuda_memory(device: torch.device) -> int:
    """Bytes this process can use on the GPU: free memory plus what PyTorch's allocator
    holds in its cache without using it.

    Counting the cache keeps the answer the same from one prediction to the next (the
    cache grows after the first), so batch sizes, and with them the output bytes, repeat.
    """
    free_bytes, _ = torch.cuda.mem_get_info(device)
    cached_bytes = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    return free_bytes + cached_bytes


def batch_size_for(device: torch.device, bytes_per_item: int, cpu_batch: int, max_batch: int) -> int:
    """Items per batch: a fixed small number on CPU; on CUDA what fits in half the usable memory."""
    if device.type != "cuda":
        return cpu_batch
    return max(1, min(max_batch, usable_cuda_memory(device) // 2 // bytes_per_item))


def keyframe_batch_size(device: torch.device, latents: torch.Tensor, guided: bool) -> int:
    """How many keyframes to denoise per UNet call, from the latent size (1, 4, h, w)."""
    latent_pixels = latents.shape[-2] * latents.shape[-1]
    samples_per_keyframe = 2 if guided else 1
    per_keyframe = UNET_BYTES_PER_LATENT_PIXEL * latent_pixels * samples_per_keyframe
    per_keyframe = per_keyframe * latents.element_size() // 2
    return batch_size_for(device, per_keyframe, CPU_KEYFRAME_BATCH, MAX_KEYFRAME_BATCH)


def decode_batch_size(device: torch.device, latents: torch.Tensor, vae_dtype: torch.dtype | None = None) -> int:
    """How many latents (B, 4, h, w) to decode per VAE call with a VAE in vae_dtype (by
    default the latents' dtype; an SDXL VAE that must upcast runs in float32, see
    animate.weights.vae_dtype)."""
    image_pixels = latents.shape[-2] * latents.shape[-1] * VAE_SCALE * VAE_SCALE
    element_size = latents.element_size() if vae_dtype is None else vae_dtype.itemsize
    per_image = VAE_BYTES_PER_IMAGE_PIXEL * image_pixels * element_size // 2
    return batch_size_for(device, per_image, CPU_DECODE_BATCH, MAX_DECODE_BATCH)


def film_batch_size(keyframes: torch.Tensor, steps: int) -> int:
    """FILM pairs per call for keyframes (K, 3, H, W) in the model's dtype and device, with
    `steps` frames per gap: FILM_CPU_BATCH on CPU, sized from free memory on CUDA."""
    pyramids_per_pair = bisection_depth(steps) + 3  # (d + 2) * B + 1 <= (d + 3) * B
    per_pixel = pyramids_per_pair * FILM_PYRAMID_BYTES_PER_PIXEL + FILM_ACTIVATION_BYTES_PER_PIXEL
    per_pair = per_pixel * keyframes.shape[-2] * keyframes.shape[-1] * keyframes.element_size() // 2
    return batch_size_for(keyframes.device, per_pair, FILM_CPU_BATCH, MAX_FILM_BATCH)


def upscale_pixels_per_call(device: torch.device, dtype: torch.dtype) -> int:
    """Input pixels per upscaler call with the upscaler in dtype on device (a batch of frames,
    or a tile of one, see animate.frames.upscale): CPU_UPSCALE_PIXELS on CPU, sized from free
    memory on CUDA."""
    per_pixel = UPSCALER_BYTES_PER_INPUT_PIXEL * dtype.itemsize // 2
    return batch_size_for(device, per_pixel, CPU_UPSCALE_PIXELS, MAX_UPSCALE_PIXELS)
