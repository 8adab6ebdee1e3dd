"""Batches on the accelerator: how many items each stage puts in one, and what happens when
a batch does not fit after all (docs/memory.md).

Sizes: on CPU the batches are small fixed numbers; on CUDA each is what fits in half the
memory this process can use, by an estimate of what one item of the stage takes, and at
most a stage's maximum. The size functions are pure (usable bytes in, batch size out), so
the table in docs/memory.md (bench.memory) is computed by the very functions the walk uses.

Out of memory: every batched model call of the walk runs through a StageBatches. When a
batch raises torch.cuda.OutOfMemoryError, it gives the allocator's cache back, halves the
batch, logs one line and does the same work again; only a batch of one that still does not
fit ends the walk, with GpuMemoryError. The accelerator is seen through one object,
DeviceMemory (Components.memory): tests give the walk a subclass that reports fixed usable
bytes and fails batches above a chosen size (tests/fake_memory.py).
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

import torch

from animate.diffusion.vae import VAE_SCALE
from animate.progress import Progress
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
# Stages whose work is not split by an estimate (the text encoders, the safety check, the
# one picture of init_image, the one latent of the shared start) start with every item in
# one batch: this many, more than a request can have (101 texts at most).
WHOLE = 1 << 16
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


def batch_size_for(usable_bytes: int | None, bytes_per_item: int, cpu_batch: int, max_batch: int) -> int:
    """Items per batch: cpu_batch on CPU (usable_bytes None); on CUDA what fits in half the
    usable bytes, at least 1 and at most max_batch."""
    if usable_bytes is None:
        return cpu_batch
    return max(1, min(max_batch, usable_bytes // 2 // bytes_per_item))


def keyframe_bytes(height: int, width: int, guided: bool, element_size: int) -> int:
    """Estimated peak bytes of one keyframe in a UNet call at height x width, with both
    halves of guidance when guided, for a UNet of element_size bytes per value."""
    latent_pixels = (height // VAE_SCALE) * (width // VAE_SCALE)
    samples_per_keyframe = 2 if guided else 1
    return UNET_BYTES_PER_LATENT_PIXEL * latent_pixels * samples_per_keyframe * element_size // 2


def keyframe_batch_size(usable_bytes: int | None, height: int, width: int, guided: bool, element_size: int) -> int:
    """How many keyframes to denoise per UNet call."""
    per_keyframe = keyframe_bytes(height, width, guided, element_size)
    return batch_size_for(usable_bytes, per_keyframe, CPU_KEYFRAME_BATCH, MAX_KEYFRAME_BATCH)


def decode_bytes(height: int, width: int, element_size: int) -> int:
    """Estimated peak bytes of decoding one height x width image with a VAE of element_size
    bytes per value (an SDXL VAE that must upcast runs in float32, see animate.weights.vae_dtype)."""
    return VAE_BYTES_PER_IMAGE_PIXEL * height * width * element_size // 2


def decode_batch_size(usable_bytes: int | None, height: int, width: int, element_size: int) -> int:
    """How many latents to decode per VAE call (keyframes, and latent in-betweens)."""
    return batch_size_for(usable_bytes, decode_bytes(height, width, element_size), CPU_DECODE_BATCH, MAX_DECODE_BATCH)


def film_bytes(height: int, width: int, steps: int, element_size: int) -> int:
    """Estimated peak bytes of one pair of height x width frames in a FILM call, with `steps`
    frames per gap (the bisection depth sets how many pyramids are held), for a FILM of
    element_size bytes per value."""
    pyramids_per_pair = bisection_depth(steps) + 3  # (d + 2) * B + 1 <= (d + 3) * B
    per_pixel = pyramids_per_pair * FILM_PYRAMID_BYTES_PER_PIXEL + FILM_ACTIVATION_BYTES_PER_PIXEL
    return per_pixel * height * width * element_size // 2


def film_batch_size(usable_bytes: int | None, height: int, width: int, steps: int, element_size: int) -> int:
    """FILM pairs per call."""
    return batch_size_for(usable_bytes, film_bytes(height, width, steps, element_size), FILM_CPU_BATCH, MAX_FILM_BATCH)


def upscale_pixels_per_call(usable_bytes: int | None, element_size: int) -> int:
    """Input pixels per upscaler call with an upscaler of element_size bytes per value (a
    batch of frames, or a tile of one, see animate.frames.upscale): CPU_UPSCALE_PIXELS on
    CPU (usable_bytes None), sized from the usable bytes on CUDA."""
    per_pixel = UPSCALER_BYTES_PER_INPUT_PIXEL * element_size // 2
    return batch_size_for(usable_bytes, per_pixel, CPU_UPSCALE_PIXELS, MAX_UPSCALE_PIXELS)


def usable_cuda_bytes(free: int, reserved: int, allocated: int) -> int:
    """What DeviceMemory.usable_bytes counts: the device's free bytes, plus the bytes PyTorch's
    allocator has reserved but not allocated (its cache, which it reuses before asking the
    device for more)."""
    return free + reserved - allocated


class DeviceMemory:
    """The accelerator's memory as the walk sees it, and the one place to fake it.

    usable_bytes sizes the batches; before_batch is called before every batched model call
    (the real accelerator raises torch.cuda.OutOfMemoryError by itself, inside the call);
    release runs after a batch ran out of memory, before the smaller retry.
    """

    def __init__(self, device: torch.device):
        self.device = device

    def usable_bytes(self) -> int | None:
        """Bytes this process can use on the GPU: free memory plus what PyTorch's allocator
        holds in its cache without using it; None on CPU (its batches are fixed sizes).

        Counting the cache keeps the answer the same from one prediction to the next (the
        cache grows after the first), so batch sizes, and with them the output bytes, repeat.
        """
        if self.device.type != "cuda":
            return None
        free_bytes, _ = torch.cuda.mem_get_info(self.device)
        reserved, allocated = torch.cuda.memory_reserved(self.device), torch.cuda.memory_allocated(self.device)
        return usable_cuda_bytes(free_bytes, reserved, allocated)

    def before_batch(self, stage: str, size: int) -> None:
        """A batch of `size` items of `stage` (a key of BATCHED_STAGES) is about to run."""

    def release(self) -> None:
        """Give the blocks PyTorch's allocator caches back to the device, after a batch ran
        out of memory: what the failed attempt held is free again once its exception is gone."""
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


@dataclass(frozen=True)
class BatchedStage:
    """What the log and the error say of a batched stage: what it does (after "ran out of
    memory"), the unit of its batches (singular, plural) and what the user can lower."""

    doing: str
    unit: str
    units: str
    remedy: str


SMALLER_FRAMES = "lower width and height, or use a checkpoint that needs less memory"
BATCHED_STAGES = {
    "text": BatchedStage(
        "encoding the prompts", "prompt", "prompts", "use a checkpoint with smaller text encoders"
    ),
    "init_image": BatchedStage("encoding init_image", "picture", "pictures", SMALLER_FRAMES),
    "shared start": BatchedStage("denoising the shared start", "keyframe", "keyframes", SMALLER_FRAMES),
    "keyframes": BatchedStage("denoising keyframes", "keyframe", "keyframes", SMALLER_FRAMES),
    "decode": BatchedStage("decoding keyframes", "keyframe", "keyframes", SMALLER_FRAMES),
    "safety check": BatchedStage(
        "checking keyframes for safety", "keyframe", "keyframes", "set disable_safety_checker to true"
    ),
    "in-betweens": BatchedStage("decoding in-betweens", "frame", "frames", SMALLER_FRAMES),
    "FILM": BatchedStage(
        "making in-betweens with FILM", "pair of frames", "pairs of frames",
        "lower width and height, or set film_interpolation to false",
    ),
    # Its batches are counted in input pixels: whole frames, or tiles of one (animate.frames.upscale).
    "upscale": BatchedStage(
        "upscaling frames", "input pixel", "input pixels", "choose a smaller upscale, or lower width and height"
    ),
}


class GpuMemoryError(RuntimeError):
    """A batch of one did not fit in the accelerator's memory; the message names the stage
    and what to lower. Not a torch.cuda.OutOfMemoryError, so no enclosing stage retries it."""


Result = TypeVar("Result")


@dataclass
class StageBatches:
    """The batches of one stage of one walk: `size` items each, halved for the rest of the
    walk when one runs out of memory (docs/memory.md, "Out of memory").

    stage: a key of BATCHED_STAGES, also the subject of the log line. By default the CPU's
    memory (which never fails a batch) and a Progress of its own, for callers outside a walk.
    """

    stage: str
    size: int
    memory: DeviceMemory = field(default_factory=lambda: DeviceMemory(torch.device("cpu")))
    progress: Progress = field(default_factory=Progress)

    def run(self, start: int, count: int, work: Callable[[int, int], Result]) -> tuple[int, Result]:
        """work(start, stop) on the next batch of the items start .. count - 1, and `stop`.

        A batch that raises torch.cuda.OutOfMemoryError is done again, halved, until one
        fits (see shrink); `work` must start from scratch each time, as it is called again
        with the same start and a nearer stop.
        """
        while True:
            stop = min(start + self.size, count)
            try:
                self.memory.before_batch(self.stage, stop - start)
                return stop, work(start, stop)
            except torch.cuda.OutOfMemoryError:
                pass  # out of the except block first: its traceback holds the failed attempt's tensors
            self.shrink(stop - start)

    def sized(self, work: Callable[[int], Result], smallest: int = 1) -> Result:
        """work(size) with the stage's batch size, for work that splits itself by that size
        (the upscaler: input pixels per call); done again with half the size each time it
        runs out of memory, down to `smallest`, below which a smaller size would change
        nothing; failing at `smallest` raises GpuMemoryError (see shrink)."""
        while True:
            size = self.size
            try:
                self.memory.before_batch(self.stage, size)
                return work(size)
            except torch.cuda.OutOfMemoryError:
                pass  # out of the except block first: its traceback holds the failed attempt's tensors
            self.shrink(size, smallest)

    def over(self, count: int, work: Callable[[int, int], Result]) -> Iterator[tuple[int, int, Result]]:
        """(start, stop, work(start, stop)) for consecutive batches covering items 0 .. count - 1."""
        start = 0
        while start < count:
            stop, result = self.run(start, count, work)
            yield start, stop, result
            start = stop

    def shrink(self, failed: int, smallest: int = 1) -> int:
        """After a batch of `failed` items ran out of memory: free the allocator's cache,
        halve the batch for the rest of the walk (not below `smallest`), log it, and return
        the new size. A batch of `smallest` cannot be halved: GpuMemoryError, in one sentence."""
        self.memory.release()
        stage = BATCHED_STAGES[self.stage]
        if failed <= smallest:
            least = f"one {stage.unit}" if smallest == 1 else f"{smallest:,} {stage.units}"
            raise GpuMemoryError(
                f"The GPU ran out of memory {stage.doing}, even at {least} per batch: {stage.remedy}."
            )
        self.size = max(smallest, failed // 2)
        self.progress.log(
            self.stage, f"out of GPU memory at {failed} {stage.units} per batch; trying again at {self.size}"
        )
        return self.size
