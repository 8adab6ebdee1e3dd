"""What the benchmark measures: stage times, UNet forward passes, peak host and GPU memory.

The stages are the walk's, animate.progress.STAGES, in the order the table prints them.
"""

import copy
import re
import resource
import threading
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field

import torch
from torch.utils.flop_counter import FlopCounterMode

# Where time or memory outside every stage is booked.
OUTSIDE = "other"


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so a wall-clock reading covers it (no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def host_memory_kib(field_name: str) -> int:
    """A memory field of /proc/self/status in KiB, e.g. VmRSS (now) or VmHWM (peak)."""
    with open("/proc/self/status") as status:
        match = re.search(rf"^{field_name}:\s+(\d+) kB", status.read(), re.MULTILINE)
    return int(match.group(1))


def upscaler_gflop(upscaler, height: int, width: int) -> float:
    """GFLOP of the upscaler's model on one (3, height, width) frame, as torch's FlopCounterMode
    counts them (two per multiply-add of the convolutions). The model is copied onto the meta
    device, so nothing is computed."""
    model = copy.deepcopy(upscaler.model).to("meta")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.empty(1, upscaler.input_channels, height, width, device="meta"))
    return counter.get_total_flops() / 1e9


def reset_peak_host_memory() -> None:
    """Make VmHWM start again from the current resident size (Linux: clear_refs mode 5)."""
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")


@dataclass
class HostPeaks:
    """Peak resident memory (MiB) per stage, from VmHWM read and reset at every stage edge.

    Each thread has its own stack of open stages (the pipeline makes its frames inside its
    "encode" stage, whose encoder runs in a thread alongside). The peak since the last edge
    is booked to every open stage of every thread, since they all ran during it; with no
    stage open anywhere it goes to OUTSIDE. The largest of them is the peak of the whole run.
    """

    by_stage: dict[str, float] = field(default_factory=dict)
    open_stages: dict[int, list[str]] = field(default_factory=dict)  # thread id -> stack
    lock: threading.Lock = field(default_factory=threading.Lock)

    def checkpoint(self) -> None:
        """Book the peak since the last edge to the running stages; start a new interval."""
        with self.lock:
            self._checkpoint()

    def _checkpoint(self) -> None:
        running = [stage for stack in self.open_stages.values() for stage in stack] or [OUTSIDE]
        peak = host_memory_kib("VmHWM") / 1024
        for stage in running:
            self.by_stage[stage] = max(self.by_stage.get(stage, 0.0), peak)
        reset_peak_host_memory()

    @contextmanager
    def within(self, stage: str):
        """Book the memory peak of the block to `stage` (in the calling thread)."""
        with self.lock:
            self._checkpoint()
            stack = self.open_stages.setdefault(threading.get_ident(), [])
            stack.append(stage)
        try:
            yield
        finally:
            with self.lock:
                self._checkpoint()
                stack.pop()

    @property
    def overall(self) -> float:
        return max(self.by_stage.values(), default=0.0)


@dataclass
class StageClock:
    """Seconds spent per stage, summed over every time the stage was entered; with
    host_peaks, each stage's peak host memory too."""

    device: torch.device
    host_peaks: HostPeaks | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str):
        """Time the block as part of stage `name`; GPU work is synchronized at both ends."""
        with self.memory_of(name):
            synchronize(self.device)
            start = time.perf_counter()
            try:
                yield
            finally:
                synchronize(self.device)
                self.add(name, time.perf_counter() - start)

    def memory_of(self, name: str):
        """Book the block's peak host memory to stage `name`, without timing it."""
        return self.host_peaks.within(name) if self.host_peaks is not None else nullcontext()

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


@dataclass
class MemoryPeaks:
    """Peak host resident memory and peak GPU allocation over one measured run, in MiB.

    host_start_mib is the resident size when the run began (mostly the loaded weights),
    so host_peak_mib - host_start_mib is what the run itself added; host.by_stage splits
    the peak by stage. The encoders run ffmpeg as child processes, whose memory is not in
    VmHWM; children_peak_mib is the peak resident size of the largest child this process
    has waited for, ever (Linux keeps no per-run figure), so it bounds ffmpeg's use from above.
    """

    host: HostPeaks = field(default_factory=HostPeaks)
    host_start_mib: float = 0.0
    host_peak_mib: float = 0.0
    gpu_peak_mib: float | None = None
    children_peak_mib: float = 0.0


@contextmanager
def measuring_memory(device: torch.device):
    """Yield a MemoryPeaks that is filled in when the block ends; give its `host` to the
    StageClock to split the host peak by stage."""
    peaks = MemoryPeaks()
    reset_peak_host_memory()
    peaks.host_start_mib = host_memory_kib("VmRSS") / 1024
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    try:
        yield peaks
    finally:
        peaks.host.checkpoint()
        peaks.host_peak_mib = peaks.host.overall
        peaks.children_peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            peaks.gpu_peak_mib = torch.cuda.max_memory_allocated(device) / 2**20
