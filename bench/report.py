"""The benchmark's table on stdout and its JSON record in bench/results/."""

import json
import os
import platform
import time
from pathlib import Path

import torch

from animate import Settings
from animate.progress import STAGES
from bench.measure import OUTSIDE
from bench.runner import Agreement, SideResult

RESULTS_DIR = Path(__file__).parent / "results"

STAGE_LABELS = {
    "text": "text encoding",
    "shared_denoise": "shared denoise",
    "keyframe_denoise": "keyframe denoise",
    "decode": "decode",
    "inbetweens": "in-betweens",
    "upscale": "upscale",
    "encode": "encode",
}


def describe_request(settings: Settings) -> str:
    return (
        f"{settings.width}x{settings.height}, {len(settings.prompts)} prompts, "
        f"{settings.num_animation_frames} keyframes per segment, {settings.num_inference_steps} steps, "
        f"prompt_strength {settings.prompt_strength}, guidance {settings.guidance_scale}, "
        f"{'FILM' if settings.film_interpolation else 'latent'} S={settings.num_interpolation_steps}, "
        f"{'ping-pong, ' if settings.ping_pong else ''}{settings.output_format}, seed {settings.seed}"
        f"{'' if settings.upscale == 'none' else f', upscale {settings.upscale}'}"
    )


def upscale_line(name: str, gflop_per_frame: float, frames: int, seconds: float, rest_seconds: float) -> str:
    """What upscaling cost in one run: its GFLOP (per frame and in all), its stage's time, and
    the time of the rest of the request, which the cost is weighed against."""
    total = gflop_per_frame * frames
    rate = f"{total / seconds / 1000:.2f} TFLOP/s" if seconds > 0 else "-"
    return (
        f"{name}: upscale stage {seconds:.2f} s for {frames} frames x {gflop_per_frame:,.1f} GFLOP = "
        f"{total:,.0f} GFLOP ({rate}); the rest of the request {rest_seconds:.2f} s"
    )


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (Linux), else what the platform module knows."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def describe_machine(device: torch.device, dtype: torch.dtype) -> str:
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    return (
        f"{device.type} ({where}; {os.cpu_count()} cores), {str(dtype).removeprefix('torch.')}, "
        f"{torch.get_num_threads()} torch threads, torch {torch.__version__}"
    )


def other_seconds(side: SideResult) -> float:
    """Time outside the named stages (plan, noise, safety check, copies, Python)."""
    return side.total_s - sum(side.stages.values())


def ratio(reference: float, pipeline: float) -> str:
    return f"{reference / pipeline:.2f}x" if pipeline > 0 else "-"


def load(side: SideResult) -> str:
    """The machine's 1-minute load average when the side started and ended: above the core
    count, other work competed for the CPU and the times are inflated."""
    return "{:.1f}/{:.1f}".format(*side.load_average)


def mib(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def comparison_table(reference: SideResult, pipeline: SideResult) -> str:
    """Per-stage seconds, totals, UNet work and memory, reference against pipeline."""
    rows = [("", "reference", "pipeline", "ref/pipe")]
    for stage in STAGES:
        ref_s, pipe_s = reference.stages.get(stage, 0.0), pipeline.stages.get(stage, 0.0)
        rows.append((f"{STAGE_LABELS[stage]} (s)", f"{ref_s:.2f}", f"{pipe_s:.2f}", ratio(ref_s, pipe_s)))
    rows.append(("other (s)", f"{other_seconds(reference):.2f}", f"{other_seconds(pipeline):.2f}", ""))
    rows.append(("TOTAL (s)", f"{reference.total_s:.2f}", f"{pipeline.total_s:.2f}", ratio(reference.total_s, pipeline.total_s)))
    rows.append(("CPU time, all threads (s)", f"{reference.cpu_s:.2f}", f"{pipeline.cpu_s:.2f}", ratio(reference.cpu_s, pipeline.cpu_s)))
    rows.append(("load average start/end", load(reference), load(pipeline), ""))
    rows.append(("UNet forward calls", str(reference.unet_calls), str(pipeline.unet_calls), ratio(reference.unet_calls, pipeline.unet_calls)))
    rows.append(("UNet samples", str(reference.unet_samples), str(pipeline.unet_samples), ""))
    rows.append(("peak host memory (MiB)", mib(reference.memory.host_peak_mib), mib(pipeline.memory.host_peak_mib), ""))
    rows.append(("  resident at start (MiB)", mib(reference.memory.host_start_mib), mib(pipeline.memory.host_start_mib), ""))
    rows.append(("peak GPU memory (MiB)", mib(reference.memory.gpu_peak_mib), mib(pipeline.memory.gpu_peak_mib), ""))
    rows += host_peak_rows([reference, pipeline], trailing=("",))
    return format_rows(rows)


def pipeline_table(results: list[SideResult]) -> str:
    """Per-stage seconds, total and memory of pipeline-only runs, one column per run."""
    rows = [("", *(result.name for result in results))]
    for stage in STAGES:
        rows.append((f"{STAGE_LABELS[stage]} (s)", *(f"{result.stages.get(stage, 0.0):.2f}" for result in results)))
    rows.append(("other (s)", *(f"{other_seconds(result):.2f}" for result in results)))
    rows.append(("TOTAL (s)", *(f"{result.total_s:.2f}" for result in results)))
    rows.append(("CPU time, all threads (s)", *(f"{result.cpu_s:.2f}" for result in results)))
    rows.append(("load average start/end", *(load(result) for result in results)))
    rows.append(("UNet forward calls", *(str(result.unet_calls) for result in results)))
    rows.append(("peak host memory (MiB)", *(mib(result.memory.host_peak_mib) for result in results)))
    rows.append(("  resident at start (MiB)", *(mib(result.memory.host_start_mib) for result in results)))
    rows.append(("peak GPU memory (MiB)", *(mib(result.memory.gpu_peak_mib) for result in results)))
    rows.append(("largest ffmpeg so far (MiB)", *(mib(result.memory.children_peak_mib) for result in results)))
    rows += host_peak_rows(results, trailing=())
    rows.append(("file size (bytes)", *(str(result.animation_size or "-") for result in results)))
    return format_rows(rows)


def host_peak_rows(sides: list[SideResult], trailing: tuple[str, ...]) -> list[tuple[str, ...]]:
    """Peak host memory within each stage (MiB), one row per stage, a column per side."""
    rows = [("peak host memory within:", *("" for _ in sides), *trailing)]
    for stage in (*STAGES, OUTSIDE):
        label = f"  {STAGE_LABELS.get(stage, stage)} (MiB)"
        rows.append((label, *(mib(side.memory.host.by_stage.get(stage)) for side in sides), *trailing))
    return rows


def format_rows(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [cell.rjust(width) for cell, width in zip(row[1:], widths[1:])]
        lines.append("  ".join(cells))
    return "\n".join(lines)


# Agreement.same_animation_file, in the verdict's words.
FILE_AGREEMENT = {True: "identical", False: "not byte-identical", None: "not encoded"}


def verdict(agreement: Agreement) -> str:
    word = "AGREE" if agreement.agree else "DIFFER"
    return (
        f"keyframes {word}: max |reference - pipeline| = {agreement.max_image_difference:.2e} "
        f"(mean {agreement.mean_image_difference:.2e}, tolerance {agreement.tolerance:.0e}, images in [0, 1]); "
        f"latents differ by at most {agreement.max_latent_difference:.2e} of their largest value; "
        f"animation files {FILE_AGREEMENT[agreement.same_animation_file]}"
    )


def side_record(side: SideResult) -> dict:
    return {
        "total_s": side.total_s,
        "cpu_s": side.cpu_s,
        "load_average_start_end": side.load_average,
        "stages_s": side.stages,
        "other_s": other_seconds(side),
        "unet_calls": side.unet_calls,
        "unet_samples": side.unet_samples,
        "host_peak_mib": side.memory.host_peak_mib,
        "host_start_mib": side.memory.host_start_mib,
        "host_peak_by_stage_mib": side.memory.host.by_stage,
        "gpu_peak_mib": side.memory.gpu_peak_mib,
        "children_peak_mib": side.memory.children_peak_mib,
        "animation_size": side.animation_size,
        "animation_sha256": side.animation_sha256,
    }


def write_results(preset_name: str, record: dict) -> Path:
    """bench/results/<preset>.json (git-ignored), with when and where it was measured."""
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{preset_name}.json"
    record = {"preset": preset_name, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **record}
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path


def comparison_record(
    settings: Settings, machine: str, setup_s: float, reference: SideResult, pipeline: SideResult, agreement: Agreement
) -> dict:
    return {
        "request": describe_request(settings),
        "machine": machine,
        "setup_s": setup_s,
        "reference": side_record(reference),
        "pipeline": side_record(pipeline),
        "speedup": reference.total_s / pipeline.total_s,
        "keyframes": {
            "agree": agreement.agree,
            "max_image_difference": agreement.max_image_difference,
            "mean_image_difference": agreement.mean_image_difference,
            "max_latent_difference_relative": agreement.max_latent_difference,
            "tolerance": agreement.tolerance,
            "same_animation_file": agreement.same_animation_file,
        },
    }


def pipeline_record(settings: Settings, machine: str, setup_s: float, results: list[SideResult]) -> dict:
    return {
        "request": describe_request(settings),
        "machine": machine,
        "setup_s": setup_s,
        "runs": {result.name: side_record(result) for result in results},
    }
