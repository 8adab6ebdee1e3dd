"""GIF and MP4 encoders that stream frames to ffmpeg (SPEC.md section 2, item 8).

Frames are uint8 (H, W, 3) arrays written one by one to ffmpeg's stdin as raw RGB, so
memory does not grow with the number of frames. The file is written under a temporary
name and renamed only once ffmpeg has finished it; on any exception (cancellation
included) ffmpeg is killed and the partial file removed.
"""

import itertools
import math
import os
import signal
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import imageio_ffmpeg
import numpy as np

from animate.frames import disk_full_message

# libx264 output depends on its thread count; fixing it makes the file the same bytes on
# any machine, at a small cost in speed on machines with many cores.
X264_THREADS = 4
X264_CRF = 18  # visually lossless for these animations, still small
STDERR_TAIL_CHARS = 300
# How long one wait for ffmpeg blocks this thread; see wait_interruptibly.
WAIT_SLICE_S = 0.1
# palettegen counts every colour it is given, which is slow (ten 512x512 keyframes: 6.1 s
# of the GIF's time); every third or fourth pixel each way has the same colour statistics
# (every fourth: 0.25 s), so the palette is made from about this many sampled pixels.
PALETTE_SAMPLE_PIXELS = 256 * 1024
# What ffmpeg prints when its output does not fit (strerror of ENOSPC, EDQUOT, EFBIG).
DISK_FULL_SIGNS = ("No space left on device", "Disk quota exceeded", "File too large")


class EncodeError(RuntimeError):
    """ffmpeg failed; the message carries the end of what it said."""


def gif_time_after_frame(index: int, fps: int) -> int:
    """Hundredths of a second from the start to the end of frame `index` (0-based).

    round(100 * (index + 1) / fps) with halves rounded up, in exact integer arithmetic.
    """
    return (200 * (index + 1) + fps) // (2 * fps)


def rawvideo_input(width: int, height: int, fps: int) -> list[str]:
    """ffmpeg options for raw RGB frames of one size on stdin at fps frames per second."""
    return [
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}",
        "-framerate", str(fps), "-i", "pipe:0",
    ]


def first_and_rest(frames: Iterable[np.ndarray]) -> tuple[np.ndarray, Iterable[np.ndarray]]:
    """Peek the first frame (to learn the size) and give back the whole sequence."""
    iterator = iter(frames)
    try:
        first = next(iterator)
    except StopIteration:
        raise ValueError("cannot encode an animation without frames") from None
    return first, itertools.chain([first], iterator)


def stderr_tail(stderr_file) -> str:
    stderr_file.seek(0)
    text = stderr_file.read().decode("utf-8", "replace").strip()
    return " ".join(text.split())[-STDERR_TAIL_CHARS:] or "no message"


def wait_interruptibly(process: subprocess.Popen) -> int:
    """process.wait() in slices of WAIT_SLICE_S, returning the exit status.

    A plain wait() blocks in one system call until ffmpeg exits (seconds, when x264 flushes
    a large video), and an exception raised asynchronously in this thread (how cog cancels
    a prediction) only arrives after it; between slices it arrives at once.
    """
    while True:
        try:
            return process.wait(timeout=WAIT_SLICE_S)
        except subprocess.TimeoutExpired:
            continue


def ffmpeg_error(what: str, returncode: int, stderr: str) -> "EncodeError":
    """The one-sentence error for a failed ffmpeg run; a full disk says so and what to do."""
    if returncode == -signal.SIGXFSZ:
        return EncodeError(disk_full_message(what, "the file size limit was reached"))
    for sign in DISK_FULL_SIGNS:
        if sign in stderr:
            return EncodeError(disk_full_message(what, sign))
    return EncodeError(
        f"ffmpeg failed while writing {what} (exit status {returncode}: "
        f"{stderr}); check free disk space and the output directory."
    )


def run_ffmpeg(options: list[str], frames: Iterable[np.ndarray], shape: tuple[int, ...], what: str) -> int:
    """Run ffmpeg with `options`, streaming uint8 frames of `shape` to its stdin.

    Returns the number of frames written. Raises EncodeError with ffmpeg's last words if
    it fails; kills it if anything (cancellation included) interrupts the stream.
    """
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostats", "-loglevel", "error", *options]
    count = 0
    # stderr goes to a file, not a pipe: a pipe nobody reads could fill and block ffmpeg.
    with tempfile.TemporaryFile() as stderr_file:
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=stderr_file)
        try:
            try:
                for frame in frames:
                    if frame.shape != shape or frame.dtype != np.uint8:
                        raise ValueError(f"frames must all be uint8 {shape}, got {frame.dtype} {frame.shape}")
                    process.stdin.write(np.ascontiguousarray(frame).tobytes())
                    count += 1
                process.stdin.close()
            except BrokenPipeError:
                pass  # ffmpeg stopped reading: its exit status and stderr say why
            returncode = wait_interruptibly(process)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            if process.stdin and not process.stdin.closed:
                try:
                    process.stdin.close()
                except BrokenPipeError:
                    pass
        if returncode != 0:
            raise ffmpeg_error(what, returncode, stderr_tail(stderr_file))
    return count


def write_atomically(path: Path, write) -> int:
    """Call write(partial_path), then rename the partial file to path; remove it on failure."""
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")
    try:
        result = write(partial)
        os.replace(partial, path)
        return result
    finally:
        partial.unlink(missing_ok=True)


def palette_sample(frames: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Every s-th pixel of each uint8 (H, W, 3) frame, in both directions, with s chosen so
    that all of them together give about PALETTE_SAMPLE_PIXELS (s = 1 for fewer pixels)."""
    pixels = sum(frame.shape[0] * frame.shape[1] for frame in frames)
    stride = max(1, math.isqrt(pixels // PALETTE_SAMPLE_PIXELS))
    return [frame[::stride, ::stride] for frame in frames]


def make_gif_palette(palette_frames: Sequence[np.ndarray], palette_path: Path) -> None:
    """One 256-colour palette (a PNG) for the whole animation, from a regular sample of the
    given frames' pixels."""
    first, frames = first_and_rest(palette_sample(palette_frames))
    height, width, _ = first.shape
    options = [*rawvideo_input(width, height, 1), "-vf", "palettegen", "-y", str(palette_path)]
    run_ffmpeg(options, frames, first.shape, "the GIF palette")


def encode_gif(
    frames: Iterable[np.ndarray],
    path: Path,
    fps: int,
    palette_frames: Sequence[np.ndarray],
    num_frames: int,
) -> int:
    """Write an endlessly looping GIF of num_frames uint8 (H, W, 3) frames; returns num_frames.

    The palette comes from palette_frames (the keyframes) before the frames stream.
    Frame i starts at gif_time_after_frame(i - 1) hundredths of a second, so the time
    after frame i is round(100 (i+1) / fps) exactly, without drift. GIF stores a delay per
    frame and ffmpeg takes each from the next frame's start; the last one has no next
    frame, so it is passed up front (-final_delay), which is why num_frames is needed.
    """
    first, frames = first_and_rest(frames)
    height, width, _ = first.shape
    start_times = f"floor((200*N+{fps})/{2 * fps})"  # = gif_time_after_frame(N - 1)
    final_delay = gif_time_after_frame(num_frames - 1, fps) - gif_time_after_frame(num_frames - 2, fps)
    with tempfile.TemporaryDirectory() as scratch:
        palette_path = Path(scratch) / "palette.png"
        make_gif_palette(palette_frames, palette_path)

        def write(partial: Path) -> int:
            options = [
                *rawvideo_input(width, height, fps),
                "-i", str(palette_path),
                "-filter_complex", f"[0:v]settb=1/100,setpts={start_times}[timed];[timed][1:v]paletteuse",
                "-fps_mode", "passthrough",
                "-loop", "0",
                "-final_delay", str(final_delay),
                "-fflags", "+bitexact",
                "-f", "gif", "-y", str(partial),
            ]
            count = run_ffmpeg(options, frames, first.shape, path.name)
            if count != num_frames:
                raise ValueError(f"encode_gif was told {num_frames} frames but got {count}")
            return count

        return write_atomically(path, write)


def encode_mp4(frames: Iterable[np.ndarray], path: Path, fps: int) -> int:
    """Write an H.264 (yuv420p) MP4 at exactly fps, moov atom first; returns the frame count.

    Same frames, same bytes: the encoder's thread count is fixed and no metadata (dates,
    versions) is written.
    """
    first, frames = first_and_rest(frames)
    height, width, _ = first.shape

    def write(partial: Path) -> int:
        options = [
            *rawvideo_input(width, height, fps),
            "-an",
            "-c:v", "libx264", "-preset", "medium", "-crf", str(X264_CRF),
            "-pix_fmt", "yuv420p", "-r", str(fps),
            "-threads", str(X264_THREADS),
            "-movflags", "+faststart",
            "-map_metadata", "-1",
            "-fflags", "+bitexact", "-flags:v", "+bitexact",
            "-f", "mp4", "-y", str(partial),
        ]
        return run_ffmpeg(options, frames, first.shape, path.name)

    return write_atomically(path, write)
