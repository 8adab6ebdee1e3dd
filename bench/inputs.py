"""What each of the extra inputs costs: one small request with and without each.

python -m bench.inputs [--repeats N] [--threads N]

Runs the tiny weights on the CPU through animate.animate (no server), one request per row:
the defaults, then each extra input on its own (negative_prompt, init_image as a small photo
and as a 40-megapixel one, each scheduler, disable_safety_checker, the MP4 without and with
a 10 s and a 300 s sound track, loop, pacing=even, upscale 2x and 4x), all rows once per
round. Prints a table of the median seconds per request, the process's peak resident
memory (VmHWM, reset before each request), how far that peak rose above the resident
memory at the request's start, and the UNet samples (batch items of every UNet call);
then, for the upscale rows, the upscale stage's median time and its GFLOP. The
40-megapixel picture is a noisy colour gradient JPEG (8000x5000, exactly the limit), the
sound tracks are stereo 192 kbit/s MP3s of a beat at 120 bpm, all made before the timing.

A second table compares the pacings on the default request's keyframes and steps (two
prompts, N = 10, S = 5, 50 steps; 128x128 to be quick, which changes no UNet count), with
FILM, with latent in-betweens, and with latent in-betweens and loop. It adds how evenly
the picture changes from frame to frame (animate.frames.pacing: the CV of the changes d,
and the largest d over the median), and prints even's UNet samples over linear's.

A third table times what a sound track costs by itself, at each length: reading and
analysing it (animate.inputs.audio), the frames per gap it asks for, and an MP4 of that
many frames (64x64, the picture not mattering here) with the sound: the part of an audio
request whose memory could grow with the sound's length.
"""

import argparse
import contextlib
import io
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
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

from animate import KeyframePlan, animate, settings_from_inputs  # noqa: E402
from animate.diffusion.schedulers import SCHEDULER_NAMES  # noqa: E402
from animate.frames.pacing import ChangeMeter, Unevenness  # noqa: E402
from animate.inputs.audio import MAX_AUDIO_SECONDS, audio_frame_count, read_audio  # noqa: E402
from animate.inputs.init_image import MAX_INIT_IMAGE_PIXELS  # noqa: E402
from animate.inputs.music_pace import audio_gap_frames  # noqa: E402
from animate.inputs.settings import INPUT_DEFAULTS  # noqa: E402
from animate.output.ffmpeg import Ffmpeg  # noqa: E402
from animate.output.mp4 import encode_mp4  # noqa: E402
from animate.progress import Progress  # noqa: E402
from bench.measure import UNetCounter, host_memory_kib, reset_peak_host_memory, upscaler_gflop  # noqa: E402
from bench.presets import tiny_components  # noqa: E402
from bench.report import upscale_line  # noqa: E402

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
# The default request's walk, small: what the pacing table runs.
PACING_REQUEST = {
    **INPUT_DEFAULTS, "prompt_start": SMALL_REQUEST["prompt_start"], "prompt_end": SMALL_REQUEST["prompt_end"],
    "width": 128, "height": 128, "seed": 42,
}
LARGE_PHOTO_SIZE = (8000, 5000)  # 40,000,000 pixels: the largest init_image accepted
SMALL_PHOTO_SIZE = (1024, 768)
SOUND_SECONDS = (10, MAX_AUDIO_SECONDS)  # a short clip, and the longest sound track accepted
# A beat at 120 bpm: a 1 kHz ping decaying over each half second, over a quiet 220 Hz hum
# (the comma escaped, as a filter graph wants).
BEAT = "0.6*sin(2*PI*1000*t)*exp(-30*mod(t\\,0.5))+0.1*sin(2*PI*220*t)"


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


def beat_mp3(path: Path, seconds: int) -> Path:
    """seconds of BEAT as a stereo 44.1 kHz MP3 at 192 kbit/s, made by the shipped ffmpeg."""
    ffmpeg = Ffmpeg.start([
        "-f", "lavfi", "-i", f"aevalsrc={BEAT}|{BEAT}:s=44100:d={seconds}",
        "-c:a", "libmp3lame", "-b:a", "192k", "-y", str(path),
    ])
    ffmpeg.finish(path.name)
    return path


def rows(photos: dict[str, Path], sounds: dict[int, Path]) -> list[tuple[str, dict]]:
    """(row name, the inputs it adds to SMALL_REQUEST), the defaults first."""
    return [
        ("defaults", {}),
        ("negative_prompt", {"negative_prompt": "blurry, dark, text"}),
        (f"init_image {SMALL_PHOTO_SIZE[0]}x{SMALL_PHOTO_SIZE[1]} JPEG", {"init_image": photos["small"]}),
        (f"init_image {LARGE_PHOTO_SIZE[0]}x{LARGE_PHOTO_SIZE[1]} JPEG (40 MP)", {"init_image": photos["large"]}),
        *[(f"scheduler={name}", {"scheduler": name}) for name in SCHEDULER_NAMES if name != "default"],
        ("disable_safety_checker", {"disable_safety_checker": True}),
        ("output_format=mp4", {"output_format": "mp4"}),
        *[(f"audio {seconds} s MP3, mp4", {"output_format": "mp4", "audio": sound}) for seconds, sound in sounds.items()],
        ("loop", {"loop": True}),
        ("pacing=even", {"pacing": "even"}),
        ("upscale=2x", {"upscale": "2x"}),
        ("upscale=4x", {"upscale": "4x"}),
    ]


def pacing_rows() -> list[tuple[str, dict]]:
    """(row name, the inputs it adds to PACING_REQUEST): each pacing with FILM, with latent
    in-betweens, and with latent in-betweens and loop."""
    ways = [("FILM", {}), ("latent", {"film_interpolation": False}), ("latent, loop", {"film_interpolation": False, "loop": True})]
    return [
        (f"{name}, pacing={pacing}", {**inputs, "pacing": pacing})
        for name, inputs in ways
        for pacing in ("linear", "even")
    ]


class FrameChanges(Progress):
    """The walk's progress, not printed; measures the change between the animation's frames."""

    def __init__(self):
        super().__init__()
        self.meter = ChangeMeter()

    def print_line(self, text: str) -> None:
        pass

    def frames_made(self, pictures: np.ndarray) -> None:
        self.meter.add(pictures)


@dataclass(frozen=True)
class Run:
    """One request, measured: seconds, peak RSS and the peak above the RSS at its start
    (MiB), UNet samples, how evenly its frames change, and the seconds of its upscale stage."""

    seconds: float
    peak_mib: float
    above_start_mib: float
    unet_samples: int
    unevenness: Unevenness
    upscale_seconds: float


def run_once(components, inputs: dict, output_dir: Path) -> Run:
    """One request (all of its inputs), measured."""
    progress = FrameChanges()
    reset_peak_host_memory()
    start_rss = host_memory_kib("VmRSS") / 1024
    with contextlib.redirect_stdout(io.StringIO()), UNetCounter().counting(components.unet) as unet:
        settings = settings_from_inputs(**inputs)  # it prints the seed
        started = time.perf_counter()
        for _ in animate(components, settings, output_dir, progress=progress):
            pass
        seconds = time.perf_counter() - started
    peak = host_memory_kib("VmHWM") / 1024
    return Run(
        seconds, peak, peak - start_rss, unet.samples, Unevenness.of(progress.meter.changes),
        progress.seconds.get("upscale", 0.0),
    )


def print_table(title: str, runs: dict[str, list[Run]], with_changes: bool) -> None:
    """One row per request: the median seconds, the largest peaks, its UNet samples and
    (with_changes) how evenly its frames change."""
    changes = " CV | largest jump |" if with_changes else ""
    print(f"| {title} | seconds | peak RSS | above start | UNet samples |{changes}")
    print("| --- | --- | --- | --- | --- |" + " --- | --- |" * with_changes)
    for name, measured in runs.items():
        seconds = statistics.median(run.seconds for run in measured)
        peak = max(run.peak_mib for run in measured)
        above = max(run.above_start_mib for run in measured)
        last = measured[-1]  # the same seed each round: the same frames and UNet samples
        unevenness = last.unevenness
        changes = f" {unevenness.cv:.3f} | {unevenness.largest_jump:.2f} |" if with_changes else ""
        print(f"| {name} | {seconds:.2f} | {peak:,.0f} MiB | {above:+,.0f} MiB | {last.unet_samples:,} |{changes}")


def run_rows(components, table: list[tuple[str, dict]], base: dict, repeats: int, output_dir: Path) -> dict[str, list[Run]]:
    """Every row of `table` (inputs added to `base`) `repeats` times, round-robin: every row
    once per round, so a change in the machine's load (other work on the same cores)
    spreads over all rows instead of landing on one."""
    runs = {name: [] for name, _ in table}
    for _ in range(repeats):
        for name, inputs in table:
            runs[name].append(run_once(components, {**base, **inputs}, output_dir))
    return runs


def sound_alone_once(sound: Path, output_dir: Path) -> tuple[float, float, float]:
    """(seconds, peak RSS MiB, peak above the RSS at the start MiB) of reading and pacing
    the sound and writing an MP4 of as many frames as it asks for, with it."""
    reset_peak_host_memory()
    start_rss = host_memory_kib("VmRSS") / 1024
    started = time.perf_counter()
    track = read_audio(sound)
    fps = SMALL_REQUEST["gif_frames_per_second"]
    audio_gap_frames(track, 3, fps, 0.5)
    num_frames = audio_frame_count(track.seconds, fps)
    frame = np.zeros((64, 64, 3), dtype=np.uint8)
    encode_mp4((frame for _ in range(num_frames)), output_dir / "sound.mp4", fps, sound, num_frames)
    seconds = time.perf_counter() - started
    peak = host_memory_kib("VmHWM") / 1024
    return seconds, peak, peak - start_rss


def upscale_costs(components, table: list[tuple[str, dict]], runs: dict[str, list[Run]]) -> list[str]:
    """upscale_line of each upscale row, from its median times: the upscaler's GFLOP per
    frame at the request's size, times the frames of the animation."""
    frames = KeyframePlan(
        num_prompts=2, keyframes_per_segment=SMALL_REQUEST["num_animation_frames"],
        interpolation_steps=SMALL_REQUEST["num_interpolation_steps"],
    ).num_frames
    gflop = upscaler_gflop(components.upscaler, SMALL_REQUEST["height"], SMALL_REQUEST["width"])
    lines = []
    for name, inputs in table:
        if "upscale" in inputs:
            seconds = statistics.median(run.seconds for run in runs[name])
            upscale_seconds = statistics.median(run.upscale_seconds for run in runs[name])
            lines.append(upscale_line(name, gflop, frames, upscale_seconds, seconds - upscale_seconds))
    return lines


def print_sound_table(title: str, runs: dict[str, list[tuple[float, float, float]]]) -> None:
    """One row per sound track: the median seconds, the largest peak, the largest rise above start."""
    print(f"| {title} | seconds | peak RSS | above start |")
    print("| --- | --- | --- | --- |")
    for name, measured in runs.items():
        seconds = statistics.median(run[0] for run in measured)
        peak = max(run[1] for run in measured)
        above = max(run[2] for run in measured)
        print(f"| {name} | {seconds:.2f} | {peak:,.0f} MiB | +{above:,.0f} MiB |")


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
        sounds = {seconds: beat_mp3(directory / f"beat-{seconds}s.mp3", seconds) for seconds in SOUND_SECONDS}
        print(f"40 MP photo: {photos['large'].stat().st_size / 2**20:.1f} MiB JPEG; "
              f"{torch.get_num_threads()} torch threads; median of {arguments.repeats} runs", flush=True)
        # One untimed run first, so the first row does not pay for first-use allocations.
        run_once(components, SMALL_REQUEST, directory / "out")
        table = rows(photos, sounds)
        runs = run_rows(components, table, SMALL_REQUEST, arguments.repeats, directory / "out")
        alone = {f"{seconds} s MP3 ({audio_frame_count(seconds, SMALL_REQUEST['gif_frames_per_second'])} frames)": []
                 for seconds in sounds}
        for _ in range(arguments.repeats):
            for (name, measured), sound in zip(alone.items(), sounds.values()):
                measured.append(sound_alone_once(sound, directory))
        # Tiny FILM's in-betweens are far from both keyframes (random weights), so how evenly
        # these frames change says nothing: see the pacing table's latent rows.
        print_table("request (256x256, 10 steps, 3 keyframes, S=2, FILM, GIF unless mp4)", runs, with_changes=False)
        print("\n".join(upscale_costs(components, table, runs)))
        print()
        pacing = run_rows(components, pacing_rows(), PACING_REQUEST, arguments.repeats, directory / "out")
        print_table("default request's walk (128x128, 50 steps, 10 keyframes, S=5, GIF)", pacing, with_changes=True)
        linear, even = pacing["FILM, pacing=linear"][-1].unet_samples, pacing["FILM, pacing=even"][-1].unet_samples
        print(f"\nUNet samples of the default request's walk: even {even:,} / linear {linear:,} = {even / linear:.3f}")
        print()
        print_sound_table("sound track alone: read, analyse, pace, MP4 of its frames at 64x64", alone)

if __name__ == "__main__":
    main()
