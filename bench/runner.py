"""One benchmark: the reference and the pipeline on the same request and seed, in one process.

Each side runs under the same measurements (stage clock, UNet forward counter, peak host
and GPU memory); then their keyframes are compared, so a speed-up that changed the
pictures does not pass for one. The pipeline reports its stages and keyframes itself, to
a BenchProgress.
"""

import dataclasses
import gc
import hashlib
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from animate import Components, Settings, animate
from animate.progress import Progress
from bench.measure import MemoryPeaks, StageClock, UNetCounter, measuring_memory, synchronize
from bench.reference import original_form, run_reference

# Largest |reference - pipeline| allowed between decoded keyframes (values in [0, 1]).
# float32 differs only by the order of summation in batched kernels; half precision
# rounds every activation, and 40 guided steps amplify that.
KEYFRAME_TOLERANCE = {torch.float32: 1e-3, torch.float16: 3e-2, torch.bfloat16: 6e-2}

# Few enough steps to be quick, enough that the shared start and the keyframes both run
# (int(6 * (1 - 0.8)) = 1 shared step; with 5 it would be int(0.999...) = 0): a warm-up
# only has to load the kernels of every shape once.
WARMUP_STEPS = 6


@dataclass
class SideResult:
    """One side's measurements. keyframes (K, 3, H, W) and keyframe_latents (K, 4, h, w) are
    float32 on the CPU (not written to the JSON)."""

    name: str
    total_s: float
    cpu_s: float  # CPU time of this process (all threads) during the run
    load_average: tuple[float, float]  # the machine's 1-minute load average at start and end
    stages: dict[str, float]
    unet_calls: int
    unet_samples: int
    memory: MemoryPeaks
    keyframes: torch.Tensor | None
    keyframe_latents: torch.Tensor | None
    animation_size: int | None  # None: not encoded
    animation_sha256: str | None


@dataclass
class Agreement:
    """How close the two sides' keyframes are."""

    max_image_difference: float
    mean_image_difference: float
    max_latent_difference: float  # relative to the largest |latent| of the reference
    tolerance: float
    same_animation_file: bool | None  # None: not encoded

    @property
    def agree(self) -> bool:
        return self.max_image_difference < self.tolerance


# A side: (components, settings, output_dir, clock, encode) -> (keyframe latents, keyframes,
# animation path, None when not encoded)
Side = Callable[[Components, Settings, Path, StageClock, bool], tuple[torch.Tensor, torch.Tensor, Path | None]]


def reference_side(components: Components, settings: Settings, output_dir: Path, clock: StageClock, encode: bool):
    with original_form(components):
        output = run_reference(components, settings, output_dir, clock, encode)
    return output.keyframe_latents, output.keyframes, output.animation


class BenchProgress(Progress):
    """The walk's progress, logged as usual and measured into `clock`: each stage's time,
    with GPU work waited for at its edges (like StageClock.stage), and its peak host
    memory. With keep_keyframes, each decoded keyframe batch is kept, float32 on the CPU."""

    def __init__(self, clock: StageClock, keep_keyframes: bool):
        super().__init__()
        self.clock = clock
        self.seconds = clock.seconds  # the stage times go straight into the clock
        self.keep_keyframes = keep_keyframes
        self.keyframe_latents: list[torch.Tensor] = []  # (B, 4, h, w) per batch
        self.keyframes: list[torch.Tensor] = []  # (B, 3, H, W) per batch

    def now(self) -> float:
        synchronize(self.clock.device)
        return super().now()

    @contextmanager
    def stage(self, name: str, detail: str = "") -> Iterator[None]:
        with self.clock.memory_of(name), super().stage(name, detail):
            yield

    def keyframes_decoded(self, start: int, latents: torch.Tensor, images: torch.Tensor, total: int) -> None:
        super().keyframes_decoded(start, latents, images, total)
        if self.keep_keyframes:
            self.keyframe_latents.append(latents.float().cpu())
            self.keyframes.append(images.float().cpu())


def pipeline_side(components: Components, settings: Settings, output_dir: Path, clock: StageClock, encode: bool):
    progress = BenchProgress(clock, keep_keyframes=True)
    files = list(animate(components, settings, output_dir, progress=progress, encode=encode))
    return torch.cat(progress.keyframe_latents), torch.cat(progress.keyframes), files[-1] if encode else None


def pipeline_only_side(
    components: Components, settings: Settings, output_dir: Path, clock: StageClock, encode: bool
):
    """The pipeline without keeping its keyframes, so the memory measured is its own."""
    progress = BenchProgress(clock, keep_keyframes=False)
    files = list(animate(components, settings, output_dir, progress=progress, encode=encode))
    return None, None, files[-1] if encode else None


def free_memory(device: torch.device) -> None:
    """Drop what the previous run left, so each side starts from the same state."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def measure_side(name: str, side: Side, components: Components, settings: Settings, encode: bool) -> SideResult:
    """Run one side once, measured; its animation goes to a temporary directory."""
    free_memory(components.device)
    counter = UNetCounter()
    print(f"--- {name} ---", flush=True)
    with tempfile.TemporaryDirectory() as output_dir:
        with measuring_memory(components.device) as memory, counter.counting(components.unet):
            clock = StageClock(components.device, memory.host)
            synchronize(components.device)
            load_at_start = os.getloadavg()[0]
            started, cpu_started = time.perf_counter(), time.process_time()
            latents, keyframes, animation = side(components, settings, Path(output_dir), clock, encode)
            synchronize(components.device)
            total, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        animation_size = None if animation is None else animation.stat().st_size
        animation_sha256 = None if animation is None else file_sha256(animation)
    print(f"--- {name}: {total:.2f}s ---", flush=True)
    return SideResult(
        name=name,
        total_s=total,
        cpu_s=cpu,
        load_average=(load_at_start, os.getloadavg()[0]),
        stages=dict(clock.seconds),
        unet_calls=counter.calls,
        unet_samples=counter.samples,
        memory=memory,
        keyframes=keyframes,
        keyframe_latents=latents,
        animation_size=animation_size,
        animation_sha256=animation_sha256,
    )


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def warm_up(components: Components, settings: Settings, encode: bool) -> None:
    """Run both sides once on the same shapes with few steps, untimed: CUDA loads kernels,
    creates library handles and grows its memory pool on first use."""
    few_steps = dataclasses.replace(settings, num_inference_steps=WARMUP_STEPS)
    for side in (reference_side, pipeline_side):
        with tempfile.TemporaryDirectory() as output_dir:
            side(components, few_steps, Path(output_dir), StageClock(components.device), encode)
    synchronize(components.device)


def compare_keyframes(reference: SideResult, pipeline: SideResult, dtype: torch.dtype) -> Agreement:
    if reference.keyframes.shape != pipeline.keyframes.shape:
        raise RuntimeError(
            f"The reference made keyframes {tuple(reference.keyframes.shape)} but the pipeline "
            f"{tuple(pipeline.keyframes.shape)}: they do not run the same walk."
        )
    image_difference = (reference.keyframes - pipeline.keyframes).abs()
    latent_scale = reference.keyframe_latents.abs().max().clamp_min(1e-12)
    latent_difference = (reference.keyframe_latents - pipeline.keyframe_latents).abs().max() / latent_scale
    return Agreement(
        max_image_difference=image_difference.max().item(),
        mean_image_difference=image_difference.mean().item(),
        max_latent_difference=latent_difference.item(),
        tolerance=KEYFRAME_TOLERANCE[dtype],
        same_animation_file=None if reference.animation_sha256 is None else (
            reference.animation_sha256 == pipeline.animation_sha256
        ),
    )


def run_comparison(
    components: Components, settings: Settings, warmup: bool, encode: bool = True
) -> tuple[SideResult, SideResult, Agreement]:
    """(a) the reference, then (b) the pipeline, measured; their keyframes compared. With
    encode=False neither side encodes its frames (a machine without ffmpeg)."""
    if warmup:
        print(f"Warm-up: both sides with {WARMUP_STEPS} steps, not timed", flush=True)
        warm_up(components, settings, encode)
    reference = measure_side("reference", reference_side, components, settings, encode)
    pipeline = measure_side("pipeline", pipeline_side, components, settings, encode)
    return reference, pipeline, compare_keyframes(reference, pipeline, components.dtype)


def run_pipeline_only(components: Components, settings: Settings, encode: bool = True) -> SideResult:
    """The pipeline alone, measured (for requests too large for the reference)."""
    return measure_side(f"pipeline ({settings.output_format})", pipeline_only_side, components, settings, encode)
