"""What each of the four extra inputs costs: one small request with and without each.

python -m bench.inputs [--repeats N] [--threads N]

Runs the tiny weights on the CPU through animate.animate (no server), one request per row:
the defaults, then each extra input on its own (negative_prompt, init_image as a small photo
and as a 40-megapixel one, each scheduler, disable_safety_checker), all rows once per round.
Prints a table of the median seconds per request, the process's peak resident memory
(VmHWM, reset before each request), and how far that peak rose above the resident memory
at the request's start. The 40-megapixel picture is a noisy colour gradient JPEG
(8000x5000, exactly the limit), made before the timing starts.
"""

import argparse
import contextlib
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.inputs", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=5, help="rounds; the table shows each row's median (default 5)")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    # Answer --help and wrong arguments before the imports below, which take seconds.
    parse_arguments(sys.argv[1:])

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from animate import animate, settings_from_inputs  # noqa: E402
from animate.diffusion.schedulers import SCHEDULER_NAMES  # noqa: E402
from animate.inputs.init_image import MAX_INIT_IMAGE_PIXELS  # noqa: E402
from bench.measure import host_memory_kib, reset_peak_host_memory  # noqa: E402
from bench.presets import tiny_components  # noqa: E402

# A small request: 256x256, 10 steps, 3 keyframes, one in-between per gap, FILM, GIF.
SMALL_REQUEST = dict(
    prompt_start="a red apple on a wooden table",
    prompt_end="a green pear on a wooden table",
    width=256,
    height=256,
    num_inference_steps=10,
    prompt_strength=0.8,
    num_animation_frames=3,
    num_interpolation_steps=2,
    guidance_scale=7.5,
    gif_frames_per_second=20,
    gif_ping_pong=False,
    film_interpolation=True,
    intermediate_output=False,
    seed=42,
    output_format="gif",
)
LARGE_PHOTO_SIZE = (8000, 5000)  # 40,000,000 pixels: the largest init_image accepted
SMALL_PHOTO_SIZE = (1024, 768)


def photo_like_jpeg(path: Path, size: tuple[int, int]) -> Path:
    """A colour gradient with noise, like a photo's detail, saved as a quality-90 JPEG."""
    width, height = size
    rng = np.random.default_rng(0)
    pixels = np.empty((height, width, 3), dtype=np.uint8)
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    all_y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    for top in range(0, height, 500):  # bands of rows, so the float copies stay small
        y = all_y[top : top + 500]
        band = np.stack(np.broadcast_arrays(x, y, 255 - (x + y) / 2), axis=-1)
        band = band + rng.normal(0, 12, band.shape).astype(np.float32)
        pixels[top : top + 500] = np.clip(band, 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path, "JPEG", quality=90)
    return path


def rows(photos: dict[str, Path]) -> list[tuple[str, dict]]:
    """(row name, the inputs it adds to SMALL_REQUEST), the defaults first."""
    return [
        ("defaults", {}),
        ("negative_prompt", {"negative_prompt": "blurry, dark, text"}),
        (f"init_image {SMALL_PHOTO_SIZE[0]}x{SMALL_PHOTO_SIZE[1]} JPEG", {"init_image": photos["small"]}),
        (f"init_image {LARGE_PHOTO_SIZE[0]}x{LARGE_PHOTO_SIZE[1]} JPEG (40 MP)", {"init_image": photos["large"]}),
        *[(f"scheduler={name}", {"scheduler": name}) for name in SCHEDULER_NAMES if name != "default"],
        ("disable_safety_checker", {"disable_safety_checker": True}),
    ]


def run_once(components, inputs: dict, output_dir: Path) -> tuple[float, float, float]:
    """(seconds, peak RSS MiB, peak above the RSS at the start MiB) of one request."""
    reset_peak_host_memory()
    start_rss = host_memory_kib("VmRSS") / 1024
    with contextlib.redirect_stdout(io.StringIO()):  # the walk's progress log
        settings = settings_from_inputs(**{**SMALL_REQUEST, **inputs})
        started = time.perf_counter()
        for _ in animate(components, settings, output_dir):
            pass
        seconds = time.perf_counter() - started
    peak = host_memory_kib("VmHWM") / 1024
    return seconds, peak, peak - start_rss


def main(argv: list[str] | None = None) -> None:
    arguments = parse_arguments(argv)
    if arguments.threads:
        torch.set_num_threads(arguments.threads)
    assert LARGE_PHOTO_SIZE[0] * LARGE_PHOTO_SIZE[1] <= MAX_INIT_IMAGE_PIXELS
    components = tiny_components("cpu", torch.float32)
    with tempfile.TemporaryDirectory() as directory:
        directory = Path(directory)
        photos = {
            "small": photo_like_jpeg(directory / "small.jpg", SMALL_PHOTO_SIZE),
            "large": photo_like_jpeg(directory / "large.jpg", LARGE_PHOTO_SIZE),
        }
        print(f"40 MP photo: {photos['large'].stat().st_size / 2**20:.1f} MiB JPEG; "
              f"{torch.get_num_threads()} torch threads; median of {arguments.repeats} runs", flush=True)
        # One untimed run first, so the first row does not pay for first-use allocations.
        run_once(components, {}, directory / "out")
        # Round-robin: every row once per round, so a change in the machine's load (other
        # work on the same cores) spreads over all rows instead of landing on one.
        table = rows(photos)
        runs = {name: [] for name, _ in table}
        for _ in range(arguments.repeats):
            for name, inputs in table:
                runs[name].append(run_once(components, inputs, directory / "out"))
        print("| request (256x256, 10 steps, 3 keyframes, S=2, FILM, GIF) | seconds | peak RSS | above start |")
        print("| --- | --- | --- | --- |")
        for name, measured in runs.items():
            seconds = statistics.median(run[0] for run in measured)
            peak = max(run[1] for run in measured)
            above = max(run[2] for run in measured)
            print(f"| {name} | {seconds:.2f} | {peak:,.0f} MiB | +{above:,.0f} MiB |")

if __name__ == "__main__":
    main()
