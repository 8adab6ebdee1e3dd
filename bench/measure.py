"""What the benchmark measures: stage times, UNet forward passes, peak host and GPU memory."""

import re
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

# The stages of SPEC.md section 2, in the order the table prints them.
STAGES = ("text", "shared_denoise", "keyframe_denoise", "decode", "inbetweens", "encode")


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so a wall-clock reading covers it (no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class StageClock:
    """Seconds spent per stage, summed over every time the stage was entered."""

    device: torch.device
    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str):
        """Time the block as part of stage `name`; GPU work is synchronized at both ends."""
        synchronize(self.device)
        start = time.perf_counter()
        try:
            yield
        finally:
            synchronize(self.device)
            self.add(name, time.perf_counter() - start)

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds


@dataclass
class UNetCounter:
    """Counts UNet forward calls and the samples they carried (batch items summed)."""

    calls: int = 0
    samples: int = 0

    @contextmanager
    def counting(self, unet: torch.nn.Module):
        """Count every forward of `unet` inside the block, via a forward pre-hook."""

        def count(module, args, kwargs):
            sample = args[0] if args else kwargs["sample"]
            self.calls += 1
            self.samples += sample.shape[0]

        handle = unet.register_forward_pre_hook(count, with_kwargs=True)
        try:
            yield self
        finally:
            handle.remove()


def host_memory_kib(field_name: str) -> int:
    """A memory field of /proc/self/status in KiB, e.g. VmRSS (now) or VmHWM (peak)."""
    with open("/proc/self/status") as status:
        match = re.search(rf"^{field_name}:\s+(\d+) kB", status.read(), re.MULTILINE)
    return int(match.group(1))


def reset_peak_host_memory() -> None:
    """Make VmHWM start again from the current resident size (Linux: clear_refs mode 5)."""
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")


@dataclass
class MemoryPeaks:
    """Peak host resident memory and peak GPU allocation over one measured run, in MiB.

    host_start_mib is the resident size when the run began (mostly the loaded weights),
    so host_peak_mib - host_start_mib is what the run itself added.
    """

    host_start_mib: float = 0.0
    host_peak_mib: float = 0.0
    gpu_peak_mib: float | None = None


@contextmanager
def measuring_memory(device: torch.device):
    """Yield a MemoryPeaks that is filled in when the block ends."""
    peaks = MemoryPeaks()
    reset_peak_host_memory()
    peaks.host_start_mib = host_memory_kib("VmRSS") / 1024
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    try:
        yield peaks
    finally:
        peaks.host_peak_mib = host_memory_kib("VmHWM") / 1024
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            peaks.gpu_peak_mib = torch.cuda.max_memory_allocated(device) / 2**20
