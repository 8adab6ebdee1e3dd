"""Batch sizes of the stages (animate.memory)."""

import torch

from animate import memory


def test_batch_sizes_fit_usable_cuda_memory(monkeypatch):
    cuda = torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 0)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 0)
    latents = torch.zeros(1, 4, 64, 64, dtype=torch.float16)
    per_keyframe = memory.UNET_BYTES_PER_LATENT_PIXEL * 64 * 64 * 2
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (per_keyframe * 6, 80 << 30))
    assert memory.keyframe_batch_size(cuda, latents, guided=True) == 3  # half of free memory
    assert memory.keyframe_batch_size(cuda, latents, guided=False) == 6
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (1 << 20, 80 << 30))
    assert memory.keyframe_batch_size(cuda, latents, guided=True) == 1
    assert memory.decode_batch_size(cuda, latents) == 1
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (1 << 40, 80 << 30))
    assert memory.keyframe_batch_size(cuda, latents, guided=True) == memory.MAX_KEYFRAME_BATCH
    assert memory.decode_batch_size(cuda, latents) == memory.MAX_DECODE_BATCH
    cpu_latents = latents.float()
    assert memory.keyframe_batch_size(torch.device("cpu"), cpu_latents, True) == memory.CPU_KEYFRAME_BATCH


def test_cuda_batch_size_does_not_change_when_the_allocator_cache_grows(monkeypatch):
    """A second prediction sees less free memory (PyTorch keeps its cache) but the same
    batch size, so the same seed gives the same bytes."""
    cuda = torch.device("cuda")
    latents = torch.zeros(1, 4, 64, 64, dtype=torch.float16)
    per_keyframe = memory.UNET_BYTES_PER_LATENT_PIXEL * 64 * 64 * 2
    allocated = 5 << 30
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: allocated)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (per_keyframe * 10, 80 << 30))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: allocated)
    first = memory.keyframe_batch_size(cuda, latents, guided=True)
    cache = per_keyframe * 4  # kept by the allocator after the first prediction
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (per_keyframe * 10 - cache, 80 << 30))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: allocated + cache)
    assert memory.keyframe_batch_size(cuda, latents, guided=True) == first == 5


def test_film_batch_is_one_pair_on_cpu_and_budgets_the_held_pyramids_on_cuda(monkeypatch):
    keyframes = torch.zeros(2, 3, 64, 96, dtype=torch.float16)
    assert memory.film_batch_size(keyframes, 50) == memory.FILM_CPU_BATCH == 1
    budgets = []
    monkeypatch.setattr(memory, "batch_size_for", lambda device, per_pair, cpu, most: budgets.append(per_pair) or most)
    memory.film_batch_size(keyframes, 5)
    memory.film_batch_size(keyframes, 50)
    memory.film_batch_size(keyframes.float(), 50)
    # Deeper bisection holds more pyramids per pair (depth 3, then 6); float32 costs twice fp16.
    per_pixel = [6 * 328 + 2700, 9 * 328 + 2700]
    assert budgets == [per_pixel[0] * 64 * 96, per_pixel[1] * 64 * 96, 2 * per_pixel[1] * 64 * 96]


def test_upscaler_pixels_per_call_fit_usable_cuda_memory(monkeypatch):
    cuda = torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 0)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 0)
    free = memory.UPSCALER_BYTES_PER_INPUT_PIXEL * 512 * 512 * 2  # two 512x512 frames in fp16
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free, 80 << 30))
    assert memory.upscale_pixels_per_call(cuda, torch.float16) == 512 * 512  # half of it
    assert memory.upscale_pixels_per_call(cuda, torch.float32) == 512 * 512 // 2
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (1 << 40, 80 << 30))
    assert memory.upscale_pixels_per_call(cuda, torch.float16) == memory.MAX_UPSCALE_PIXELS
    assert memory.upscale_pixels_per_call(torch.device("cpu"), torch.float32) == memory.CPU_UPSCALE_PIXELS
