"""The one prepared GPU check (docs/memory.md, "The GPU check"), what `make gpu-check` runs.

On a CUDA machine, within a time budget (8 minutes by default), it runs these parts in turn:
  half-precision  the half-precision suite (tests/animate/test_half_precision.py) on CUDA
  sd15-default    the benchmark preset: one untimed warm-up, then one timed run of the
                  reference and of the pipeline (python -m bench --preset sd15-default)
  out-of-memory   most of the card filled, then the default request, with the walk blind to
                  the filling, so that its batches do not fit: it must succeed by splitting
  sdxl            the benchmark preset, as sd15-default
then writes one JSON file and prints a table: the card, driver, torch, the seconds of every
stage, peak GPU memory, the ratio to the reference. A part that no longer fits in what is
left of the budget is skipped, and says so. Before any of it, packages PyTorch's machine
lacks are installed from gpu-wheels/ (make gpu-wheels), without network. Without ffmpeg
there (the wheels carry none: docs/memory.md says why) the frames are made, not encoded.
On a machine without CUDA it says so in one sentence and exits with status 1.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

# Only the standard library up here: this module starts on a machine where the packages of
# gpu-wheels/ are not installed yet (main installs them, then starts it again).

REPO_ROOT = Path(__file__).resolve().parent.parent
WHEEL_DIR = REPO_ROOT / "gpu-wheels"
SITE_DIR = REPO_ROOT / ".gpu-check" / "site"
DEFAULT_OUT = REPO_ROOT / "bench" / "results" / "gpu-check.json"
NO_CUDA = (
    "The GPU check needs an NVIDIA GPU that PyTorch can use and PyTorch sees none here: "
    "run `make gpu-check` on a CUDA machine."
)
PARTS = ("half-precision", "sd15-default", "out-of-memory", "sdxl")
# Seconds each part is expected to take at most on a large GPU, model building included:
# a part starts only when this much of the budget is left.
EXPECTED_S = {"half-precision": 90, "sd15-default": 120, "out-of-memory": 60, "sdxl": 240}
# What the out-of-memory trial leaves free on the card by default: room for a batch of one
# in every stage of the default request, not for the batches the walk sizes for an empty card.
TRIAL_FREE_GIB = 3.0


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="script/gpu-check", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the JSON file to write (default: %(default)s)")
    parser.add_argument("--budget", type=float, default=480, help="seconds the whole check may take (default: 480)")
    parser.add_argument(
        "--parts", type=parts_list, default=PARTS, help=f"comma-separated parts to run, in order (default: {','.join(PARTS)})"
    )
    parser.add_argument(
        "--trial-free-gib", type=float, default=TRIAL_FREE_GIB,
        help="GiB the out-of-memory trial leaves free on the card (default: %(default)s)",
    )
    return parser.parse_args(argv)


def parts_list(text: str) -> tuple[str, ...]:
    """--parts: names of PARTS, comma-separated."""
    parts = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [part for part in parts if part not in PARTS]
    if unknown or not parts:
        raise argparse.ArgumentTypeError(f"parts are among {', '.join(PARTS)}, not {', '.join(unknown) or 'none'}")
    return parts


def cuda_available() -> bool:
    """Whether PyTorch is installed and sees a CUDA GPU."""
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def install_wheels(wheel_dir: Path, site: Path) -> None:
    """pip-install every wheel of wheel_dir into `site`, without network or dependency
    resolution (the folder holds them all); nothing when `site` holds these wheels already."""
    wheels = sorted(wheel_dir.glob("*.whl"))
    if not wheels:
        raise SystemExit(f"No wheels in {wheel_dir}: run `make gpu-wheels` where the package registry is reachable.")
    manifest = "\n".join(wheel.name for wheel in wheels)
    marker = site / ".installed-wheels"
    if marker.exists() and marker.read_text() == manifest:
        return
    shutil.rmtree(site, ignore_errors=True)
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--target", str(site)]
    installed = subprocess.run([*command, *map(str, wheels)])
    if installed.returncode != 0:
        raise SystemExit(
            f"Installing the wheels of {wheel_dir} failed (pip exited with {installed.returncode}, above): "
            f"make them again with `make gpu-wheels` where the package registry is reachable."
        )
    marker.write_text(manifest)


def with_packages(argv: list[str]) -> None:
    """Start this check again with the wheels' packages importable first, ahead of older
    versions the machine may have (PYTHONPATH comes before site-packages)."""
    install_wheels(WHEEL_DIR, SITE_DIR)
    paths = [str(SITE_DIR), str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(path for path in paths if path), GPU_CHECK_PACKAGES="1")
    os.execve(sys.executable, [sys.executable, "-m", "bench.gpu_check", *argv], env)


def check_age() -> float:
    """Seconds since the check started, its installation of the wheels included (the time
    is handed on in GPU_CHECK_STARTED when the check starts itself again)."""
    return time.time() - float(os.environ.setdefault("GPU_CHECK_STARTED", str(time.time())))


def main(argv: list[str]) -> int:
    arguments = parse_arguments(argv)
    check_age()  # the budget counts from here
    if not cuda_available():
        print(NO_CUDA, file=sys.stderr)
        return 1
    if not os.environ.get("GPU_CHECK_PACKAGES") and (WHEEL_DIR.exists() or not packages_importable()):
        with_packages(argv)  # does not return
    from bench.gpu_run import run_check

    return run_check(arguments)


def packages_importable() -> bool:
    """Whether the walk's packages import here already (a machine set up by hand)."""
    import importlib.util

    return all(importlib.util.find_spec(name) is not None for name in ("diffusers", "transformers", "imageio_ffmpeg"))


def machine_text(machine: dict) -> str:
    """One line of what ran the check: card, memory, driver, CUDA, torch, Python, ffmpeg."""
    ffmpeg = "yes" if machine.get("ffmpeg") else "no (frames made, not encoded)"
    return (
        f"{machine.get('card')}, {machine.get('memory_gib', 0):.1f} GiB, driver {machine.get('driver')}, "
        f"CUDA {machine.get('cuda')}, torch {machine.get('torch')}, Python {machine.get('python')}; ffmpeg: {ffmpeg}"
    )


STAGE_ROWS = (
    ("text", "text encoding (s)"),
    ("shared_denoise", "shared denoise (s)"),
    ("keyframe_denoise", "keyframe denoise (s)"),
    ("decode", "decode (s)"),
    ("inbetweens", "in-betweens (s)"),
    ("encode", "encode (s)"),
)


def number(value, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def preset_columns(parts: dict) -> list[tuple[str, dict | None]]:
    """(column title, a side's record or None) for the reference and pipeline of each preset run."""
    columns = []
    for name in ("sd15-default", "sdxl"):
        comparison = parts.get(name, {}).get("comparison")
        if comparison is not None:
            columns += [(f"{name} reference", comparison["reference"]), (f"{name} pipeline", comparison["pipeline"])]
    return columns


def table(result: dict) -> str:
    """The printed summary of a check's JSON record: the machine, a table of the presets'
    stages (reference and pipeline side by side), then one line per part."""
    parts = result["parts"]
    lines = [f"GPU check: {machine_text(result['machine'])}"]
    columns = preset_columns(parts)
    if columns:
        rows = [("", *(title for title, _ in columns))]
        for stage, label in STAGE_ROWS:
            rows.append((label, *(number(side["stages_s"].get(stage)) for _, side in columns)))
        rows.append(("TOTAL (s)", *(number(side["total_s"]) for _, side in columns)))
        rows.append(("peak GPU memory (MiB)", *(number(side["gpu_peak_mib"], 0) for _, side in columns)))
        ratios = []
        for name in ("sd15-default", "sdxl"):
            comparison = parts.get(name, {}).get("comparison")
            if comparison is not None:
                ratios += ["", f"{comparison['speedup']:.2f}x"]
        rows.append(("ratio to the reference", *ratios))
        widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
        lines.append("")
        lines += ["  ".join([row[0].ljust(widths[0])] + [cell.rjust(width) for cell, width in zip(row[1:], widths[1:])])
                  for row in rows]
    lines.append("")
    for name, part in parts.items():
        lines.append(f"{name}: {part['status']} ({number(part.get('seconds'), 1)} s) {part.get('summary', '')}".rstrip())
    lines.append(f"whole check: {number(result.get('seconds'), 1)} s of a budget of {result.get('budget_s'):.0f} s")
    return "\n".join(lines)


def write_result(result: dict, path: Path) -> None:
    """The check's record as JSON at `path` (written whole, then renamed into place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(result, indent=2) + "\n")
    partial.replace(path)


def new_result(budget_s: float, machine: dict) -> dict:
    """The check's record before any part ran."""
    return {
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "budget_s": budget_s,
        "machine": machine,
        "parts": {},
    }


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
