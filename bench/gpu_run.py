"""The parts of the GPU check (bench.gpu_check, which starts them once the packages import):
the half-precision suite, the benchmark presets and the out-of-memory trial, each recorded
as a dict of the check's JSON record, within a time budget.
"""

import argparse
import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from animate import Components, Settings, animate
from animate.memory import DeviceMemory
from animate.progress import Progress
from bench.gpu_check import EXPECTED_S, REPO_ROOT, check_age, new_result, table, write_result
from bench.memory import chosen_batches
from bench.presets import DEFAULT_REQUEST, PRESETS, Preset, build_components
from bench.report import comparison_record, describe_machine, verdict
from bench.runner import KEYFRAME_TOLERANCE, SideResult, run_comparison

GIB = 1 << 30
HALF_PRECISION_TESTS = "tests/animate/test_half_precision.py"


class OutOfTime(Exception):
    """A part ran past the end of the check's budget."""


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Raise OutOfTime in the block once `seconds` have passed (SIGALRM: between two Python
    bytecodes, so a GPU kernel in flight finishes first)."""

    def expire(signum, frame):
        raise OutOfTime(f"stopped at the end of the budget, after {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.001))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def driver_version() -> str:
    """The NVIDIA driver's version, from nvidia-smi or the kernel module; "unknown" without either."""
    try:
        output = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20, check=True,
        ).stdout
        return output.splitlines()[0].strip()
    except (OSError, subprocess.SubprocessError, IndexError):
        pass
    try:
        return Path("/proc/driver/nvidia/version").read_text().split("Kernel Module", 1)[1].split()[0]
    except (OSError, IndexError):
        return "unknown"


def ffmpeg_available() -> bool:
    """Whether imageio-ffmpeg finds an ffmpeg binary (its own, or IMAGEIO_FFMPEG_EXE's)."""
    import imageio_ffmpeg

    try:
        imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError:
        return False
    return True


def machine_record(device: torch.device) -> dict:
    properties = torch.cuda.get_device_properties(device)
    return {
        "card": properties.name,
        "memory_gib": properties.total_memory / GIB,
        "driver": driver_version(),
        "cuda": torch.version.cuda,
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "ffmpeg": ffmpeg_available(),
    }


def half_precision_part(device: str, timeout_s: float, selection: tuple[str, ...] = ()) -> dict:
    """The half-precision suite on `device`, in a pytest of its own; `selection`: pytest's
    arguments to run part of it (the tests of this module run one test)."""
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", HALF_PRECISION_TESTS, *selection]
    env = dict(os.environ, ANIMATE_TEST_DEVICE=device)
    try:
        finished = subprocess.run(
            command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=max(timeout_s, 1)
        )
    except subprocess.TimeoutExpired:
        return {"status": "failed", "summary": f"stopped at the end of the budget, after {timeout_s:.0f} s"}
    lines = [line for line in finished.stdout.splitlines() if line.strip()]
    summary = lines[-1].strip("= ") if lines else finished.stderr.strip()[-300:]
    record = {"status": "passed" if finished.returncode == 0 else "failed", "summary": summary,
              "exit_code": finished.returncode}
    if finished.returncode != 0:
        record["output_tail"] = finished.stdout[-4000:] + finished.stderr[-2000:]
    return record


def batch_sizes(components: Components, settings: Settings) -> dict:
    """The usable bytes the walk sees now and the batches it would size from them for
    `settings` (to set beside docs/memory.md's modelled table)."""
    usable = components.memory.usable_bytes()
    element_sizes = {
        "keyframes": components.dtype.itemsize,
        "decode": components.vae.dtype.itemsize,
        "FILM": next(components.film.parameters()).dtype.itemsize,
    }
    return {"usable_bytes": usable, **chosen_batches(usable, usable, settings, element_sizes)}


def preset_part(
    preset: Preset, encode: bool, components: Components | None = None
) -> tuple[dict, Components, SideResult]:
    """One benchmark preset: a warm-up, then the reference and the pipeline timed once each,
    on `components` (by default the preset's, built now). Returns (its record, the
    components, the pipeline's SideResult)."""
    started = time.perf_counter()
    components = build_components(preset) if components is None else components
    setup_s = time.perf_counter() - started
    sizes = batch_sizes(components, preset.settings)
    reference, pipeline, agreement = run_comparison(components, preset.settings, warmup=True, encode=encode)
    machine = describe_machine(components.device, components.dtype)
    record = {
        "status": "passed" if agreement.agree else "failed",
        "summary": f"{reference.total_s / pipeline.total_s:.2f}x the reference; {verdict(agreement)}",
        "batches_after_setup": sizes,
        "comparison": comparison_record(preset.settings, machine, setup_s, reference, pipeline, agreement),
    }
    return record, components, pipeline


class BlindMemory(DeviceMemory):
    """The device's real memory, except that usable_bytes counts `hidden` bytes more than
    there are (the memory the trial filled): the walk sizes its batches as for an empty card,
    as an estimate that is too high would, and they do not fit."""

    def __init__(self, device: torch.device, hidden: int):
        super().__init__(device)
        self.hidden = hidden

    def usable_bytes(self) -> int | None:
        return super().usable_bytes() + self.hidden


class TrialProgress(Progress):
    """The walk's progress, logged as usual; keeps the split lines and the keyframes (float32, CPU)."""

    def __init__(self):
        super().__init__()
        self.splits: list[str] = []
        self.keyframes: list[torch.Tensor] = []

    def log(self, subject: str, detail: str) -> None:
        super().log(subject, detail)
        if "out of GPU memory" in detail:
            self.splits.append(f"{subject}: {detail}")

    def keyframes_decoded(self, start, latents, images, total) -> None:
        super().keyframes_decoded(start, latents, images, total)
        self.keyframes.append(images.float().cpu())


def trial_walk(
    components: Components, memory: DeviceMemory, settings: Settings, encode: bool, expected: torch.Tensor | None
) -> dict:
    """The default request on `components` with `memory` as its accelerator: it must succeed,
    and by splitting at least one batch; its keyframes are compared with `expected`, the
    same request's keyframes (K, 3, H, W) from a walk that did not split."""
    progress = TrialProgress()
    trial = dataclasses.replace(components, memory=memory)
    if components.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(components.device)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as output_dir:
        list(animate(trial, settings, output_dir, progress=progress, encode=encode))
    record = {
        "seconds_walk": time.perf_counter() - started,
        "splits": progress.splits,
        "stages_s": dict(progress.seconds),
    }
    if components.device.type == "cuda":
        record["gpu_peak_mib"] = torch.cuda.max_memory_allocated(components.device) / 2**20
    passed = bool(progress.splits)
    if expected is not None:
        difference = (torch.cat(progress.keyframes) - expected).abs().max().item()
        record["max_keyframe_difference"] = difference
        passed = passed and difference < KEYFRAME_TOLERANCE[components.dtype]
    record["status"] = "passed" if passed else "failed"
    record["summary"] = (
        f"{len(progress.splits)} split(s): " + "; ".join(progress.splits) if progress.splits else "no batch split"
    ) + (f"; keyframes within {record['max_keyframe_difference']:.1e} of the walk that did not split"
         if expected is not None else "")
    return record


def out_of_memory_part(components: Components, encode: bool, free_gib: float, expected: torch.Tensor | None) -> dict:
    """Fill the card but for `free_gib`, then run the default request with the walk blind to
    the filling (BlindMemory), so the batches it sizes run out of memory."""
    device = components.device
    torch.cuda.empty_cache()
    free, _ = torch.cuda.mem_get_info(device)
    filler_bytes = max(0, free - int(free_gib * GIB))
    filler = torch.empty(filler_bytes, dtype=torch.uint8, device=device)
    try:
        record = trial_walk(components, BlindMemory(device, filler_bytes), DEFAULT_REQUEST, encode, expected)
    finally:
        del filler
        torch.cuda.empty_cache()
    record["filled_bytes"] = filler_bytes
    record["free_bytes_left"] = free - filler_bytes
    return record


def timed(run: Callable[[], dict], seconds_left: float) -> dict:
    """run() under the deadline; its record with "seconds", or a failed record saying why."""
    started = time.perf_counter()
    try:
        with deadline(seconds_left):
            record = run()
    except Exception as error:  # a part's failure is recorded, and the next part runs
        record = {"status": "failed", "summary": f"{type(error).__name__}: {error}"[:2000]}
    record["seconds"] = time.perf_counter() - started
    return record


def run_check(arguments: argparse.Namespace) -> int:
    """Run the parts asked for within the budget; write the JSON after each; print the table.
    Exit status 0 when every part asked for ran and passed."""
    started = time.perf_counter() - check_age()
    device = torch.device("cuda")
    encode = ffmpeg_available()
    result = new_result(arguments.budget, machine_record(device))
    parts = result["parts"]
    sd15 = {}  # the sd15-default part's components and pipeline keyframes, for the trial

    def left() -> float:
        return arguments.budget - (time.perf_counter() - started)

    def sd15_default() -> dict:
        record, sd15["components"], pipeline = preset_part(PRESETS["sd15-default"], encode)
        sd15["keyframes"] = pipeline.keyframes
        return record

    def out_of_memory() -> dict:
        components = sd15.get("components") or build_components(PRESETS["sd15-default"])
        return out_of_memory_part(components, encode, arguments.trial_free_gib, sd15.get("keyframes"))

    def sdxl() -> dict:
        sd15.clear()  # SD 1.5's models leave the GPU first
        torch.cuda.empty_cache()
        return preset_part(PRESETS["sdxl"], encode)[0]

    runs = {
        "half-precision": lambda: half_precision_part("cuda", left()),
        "sd15-default": sd15_default,
        "out-of-memory": out_of_memory,
        "sdxl": sdxl,
    }
    for name in arguments.parts:
        if left() < EXPECTED_S[name]:
            parts[name] = {"status": "skipped", "summary": f"{left():.0f} s of the budget left, {EXPECTED_S[name]} s needed"}
        else:
            print(f"--- {name} ---", flush=True)
            parts[name] = timed(runs[name], left())
        result["seconds"] = time.perf_counter() - started
        write_result(result, arguments.out)
    print("\n" + table(result), flush=True)
    print(f"Results written to {arguments.out}", flush=True)
    return 0 if all(part["status"] == "passed" for part in parts.values()) else 1
