"""Batch sizes of the stages (animate.memory): pure functions of the usable bytes."""

from animate import memory

MIB = 1 << 20
GIB = 1 << 30


def test_batch_sizes_fit_half_the_usable_memory():
    # 64x64 pixels: 8x8 latent pixels; fp16 (2 bytes).
    per_keyframe = memory.UNET_BYTES_PER_LATENT_PIXEL * 8 * 8 * 2
    assert memory.keyframe_bytes(64, 64, guided=True, element_size=2) == per_keyframe
    assert memory.keyframe_batch_size(per_keyframe * 6, 64, 64, guided=True, element_size=2) == 3
    assert memory.keyframe_batch_size(per_keyframe * 6, 64, 64, guided=False, element_size=2) == 6
    assert memory.keyframe_batch_size(per_keyframe * 6, 64, 64, guided=True, element_size=4) == 1  # float32: twice
    assert memory.keyframe_batch_size(MIB, 64, 64, guided=True, element_size=2) == 1  # never below one
    assert memory.decode_batch_size(MIB, 64, 64, element_size=2) == 1
    assert memory.keyframe_batch_size(1 << 40, 64, 64, guided=True, element_size=2) == memory.MAX_KEYFRAME_BATCH
    assert memory.decode_batch_size(1 << 40, 64, 64, element_size=2) == memory.MAX_DECODE_BATCH
    assert memory.film_batch_size(1 << 40, 64, 64, 5, element_size=2) == memory.MAX_FILM_BATCH


def test_on_cpu_the_batches_are_fixed_whatever_the_request():
    for size in [(128, 128), (1024, 768)]:
        assert memory.keyframe_batch_size(None, *size, guided=True, element_size=4) == memory.CPU_KEYFRAME_BATCH
        assert memory.decode_batch_size(None, *size, element_size=4) == memory.CPU_DECODE_BATCH
        assert memory.film_batch_size(None, *size, 50, element_size=4) == memory.FILM_CPU_BATCH == 1


def test_the_default_request_on_a_card_with_12_gib_usable():
    """512x512 in fp16: 512 MiB per guided keyframe, 384 MiB per decoded image, and FILM at
    S=5 (depth 3) 6 pyramids and the activations per pair, 1.1 GiB."""
    assert memory.keyframe_bytes(512, 512, guided=True, element_size=2) == 512 * MIB
    assert memory.decode_bytes(512, 512, element_size=2) == 384 * MIB
    assert memory.film_bytes(512, 512, 5, element_size=2) == (6 * 328 + 2700) * 512 * 512
    usable = 12 * GIB
    assert memory.keyframe_batch_size(usable, 512, 512, guided=True, element_size=2) == 12
    assert memory.decode_batch_size(usable, 512, 512, element_size=2) == 8  # 16 fit; at most 8
    assert memory.film_batch_size(usable, 512, 512, 5, element_size=2) == 5


def test_film_budgets_the_pyramids_its_bisection_holds():
    # Deeper bisection holds more pyramids per pair (depth 3, then 6); float32 costs twice fp16.
    per_pixel = [6 * 328 + 2700, 9 * 328 + 2700]
    assert memory.film_bytes(64, 96, 5, element_size=2) == per_pixel[0] * 64 * 96
    assert memory.film_bytes(64, 96, 50, element_size=2) == per_pixel[1] * 64 * 96
    assert memory.film_bytes(64, 96, 50, element_size=4) == 2 * per_pixel[1] * 64 * 96


def test_usable_cuda_memory_does_not_change_when_the_allocator_cache_grows():
    """A second prediction sees less free memory (PyTorch keeps its cache) but the same
    usable bytes, so the same batch sizes, and the same seed gives the same bytes."""
    allocated = 5 * GIB  # the weights
    first = memory.usable_cuda_bytes(free=60 * GIB, reserved=allocated, allocated=allocated)
    cache = 7 * GIB  # kept by the allocator after the first prediction
    second = memory.usable_cuda_bytes(free=60 * GIB - cache, reserved=allocated + cache, allocated=allocated)
    assert first == second == 60 * GIB


def test_upscaler_pixels_per_call_fit_usable_cuda_memory():
    usable = memory.UPSCALER_BYTES_PER_INPUT_PIXEL * 512 * 512 * 2  # two 512x512 frames in fp16
    assert memory.upscale_pixels_per_call(usable, element_size=2) == 512 * 512  # half of it
    assert memory.upscale_pixels_per_call(usable, element_size=4) == 512 * 512 // 2
    assert memory.upscale_pixels_per_call(1 << 40, element_size=2) == memory.MAX_UPSCALE_PIXELS
    assert memory.upscale_pixels_per_call(None, element_size=4) == memory.CPU_UPSCALE_PIXELS
