"""GIF and MP4 encoders that stream frames to ffmpeg (SPEC.md section 2, item 8).

Frames are uint8 (H, W, 3) arrays written one by one as raw RGB, to ffmpeg's stdin (MP4)
or to short spool files that several ffmpeg processes encode at once (GIF), so memory
does not grow with the number of frames. The file is written under a temporary name and
renamed only once it is complete; on any exception (cancellation included) ffmpeg is
killed and the partial file removed.
"""

import collections
import itertools
import math
import os
import signal
import subprocess
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import imageio_ffmpeg
import numpy as np

from animate.frames import STOP_LOCK, disk_full_message, reporting_full_disk

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
# ffmpeg turns frames into GIF (paletteuse, then LZW) on one core, about 0.1 s per 512x512
# frame: more than the GPU takes to make them. So runs of frames go to separate ffmpeg
# processes, up to MAX_GIF_ENCODERS at once, and their GIFs are joined. A run holds about
# GIF_CHUNK_PIXELS (8 frames at 512x512, 2 at 1024x768, 128 at 128x128), so the 40 ms
# it takes to start ffmpeg stays a small part of its work; it depends on the frame size
# only, not on the core count, so the same frames give the same bytes on any machine.
GIF_CHUNK_PIXELS = 8 * 512 * 512
MAX_GIF_ENCODERS = 8
# GIF blocks (GIF89a specification): introducers, extension labels, the trailer.
GIF_EXTENSION, GIF_IMAGE, GIF_TRAILER = 0x21, 0x2C, 0x3B
GIF_GRAPHIC_CONTROL = 0xF9
GIF_SCREEN_END = 13  # "GIF89a" and the logical screen descriptor
GIF_IMAGE_DESCRIPTOR = 10  # introducer, position, size, packed fields


class EncodeError(RuntimeError):
    """ffmpeg failed; the message carries the end of what it said."""


def gif_time_after_frame(index: int, fps: int) -> int:
    """Hundredths of a second from the start to the end of frame `index` (0-based).

    round(100 * (index + 1) / fps) with halves rounded up, in exact integer arithmetic.
    """
    return (200 * (index + 1) + fps) // (2 * fps)


def rawvideo_input(width: int, height: int, fps: int, source: str = "pipe:0") -> list[str]:
    """ffmpeg options for raw RGB frames of one size at fps frames per second, from stdin
    or from the file `source`."""
    return [
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}",
        "-framerate", str(fps), "-i", source,
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


@dataclass
class Ffmpeg:
    """A running ffmpeg, with the file its stderr goes to (a pipe nobody reads could fill
    and block it)."""

    process: subprocess.Popen
    stderr_file: BinaryIO

    @classmethod
    def start(cls, options: list[str], stdin=subprocess.DEVNULL) -> "Ffmpeg":
        command = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostats", "-loglevel", "error", *options]
        stderr_file = tempfile.TemporaryFile()
        try:
            process = subprocess.Popen(command, stdin=stdin, stdout=subprocess.DEVNULL, stderr=stderr_file)
        except BaseException:
            stderr_file.close()
            raise
        return cls(process, stderr_file)

    def finish(self, what: str) -> None:
        """Wait for ffmpeg to exit; EncodeError with its last words if it failed."""
        try:
            returncode = wait_interruptibly(self.process)
            if returncode != 0:
                raise ffmpeg_error(what, returncode, stderr_tail(self.stderr_file))
        finally:
            self.stop()

    def stop(self) -> None:
        """Kill ffmpeg if it still runs and close what was opened for it."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if self.process.stdin and not self.process.stdin.closed:
            try:
                self.process.stdin.close()
            except BrokenPipeError:
                pass
        self.stderr_file.close()


def checked_frames(frames: Iterable[np.ndarray], shape: tuple[int, ...]) -> Iterator[np.ndarray]:
    """The frames, each checked to be uint8 of `shape` (ValueError otherwise)."""
    for frame in frames:
        if frame.shape != shape or frame.dtype != np.uint8:
            raise ValueError(f"frames must all be uint8 {shape}, got {frame.dtype} {frame.shape}")
        yield frame


def run_ffmpeg(options: list[str], frames: Iterable[np.ndarray], shape: tuple[int, ...], what: str) -> int:
    """Run ffmpeg with `options`, streaming uint8 frames of `shape` to its stdin.

    Returns the number of frames written. Raises EncodeError with ffmpeg's last words if
    it fails; kills it if anything (cancellation included) interrupts the stream.
    """
    count = 0
    ffmpeg = None
    try:
        with STOP_LOCK:  # so that `ffmpeg` is set once the process runs
            ffmpeg = Ffmpeg.start(options, stdin=subprocess.PIPE)
        try:
            for frame in checked_frames(frames, shape):
                ffmpeg.process.stdin.write(np.ascontiguousarray(frame).tobytes())
                count += 1
            ffmpeg.process.stdin.close()
        except BrokenPipeError:
            pass  # ffmpeg stopped reading: its exit status and stderr say why
        ffmpeg.finish(what)
    finally:
        if ffmpeg is not None:
            ffmpeg.stop()
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
    encoders: int = 1,
) -> int:
    """Write an endlessly looping GIF of num_frames uint8 (H, W, 3) frames; returns num_frames.

    The palette comes from palette_frames (the keyframes) before the frames stream. Runs
    of frames are encoded by up to `encoders` ffmpeg processes at once (see GifChunks)
    and joined in order, so the frames look as if one ffmpeg had encoded
    them all. Frame i ends round(100 (i+1) / fps) hundredths of a second after the start,
    exactly, without drift.
    """
    first, frames = first_and_rest(frames)
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        palette_path = scratch / "palette.png"
        make_gif_palette(palette_frames, palette_path)
        chunks = GifChunks(first.shape, fps, num_frames, encoders, palette_path, scratch, path.name)

        def write(partial: Path) -> int:
            with reporting_full_disk(path.name, EncodeError), open(partial, "wb") as output:
                return chunks.encode(checked_frames(frames, first.shape), output)

        return write_atomically(path, write)


def gif_encoder_count() -> int:
    """ffmpeg processes to encode GIF chunks with when the cores are free: one per core this
    process may use, at most MAX_GIF_ENCODERS."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(MAX_GIF_ENCODERS, cores))


@dataclass
class GifChunk:
    """One ffmpeg encoding one run of frames from a spool file into a GIF of its own."""

    ffmpeg: Ffmpeg
    spool_path: Path
    gif_path: Path


class GifChunks:
    """Encodes a GIF's frames in chunks, several at a time, joining the chunks' GIFs in order."""

    def __init__(
        self, shape: tuple[int, ...], fps: int, num_frames: int, encoders: int, palette_path: Path, scratch: Path, what: str
    ):
        self.shape, self.fps, self.num_frames, self.encoders = shape, fps, num_frames, encoders
        self.chunk_frames = max(1, GIF_CHUNK_PIXELS // (shape[0] * shape[1]))
        self.palette_path, self.scratch, self.what = palette_path, scratch, what

    def encode(self, frames: Iterable[np.ndarray], output: BinaryIO) -> int:
        """Write the frames' GIF to `output`; returns the number of frames, which must be
        num_frames (ValueError otherwise). Frames go to a spool file per chunk; a full
        chunk starts its ffmpeg, after the oldest running one has finished and been
        appended to the output when `encoders` are running."""
        running: collections.deque[GifChunk] = collections.deque()
        joiner = GifJoiner(output)
        count = 0
        spool = None
        try:
            for frame in frames:
                if count == self.num_frames:
                    raise ValueError(f"encode_gif was told {self.num_frames} frames but got more")
                if count % self.chunk_frames == 0:
                    chunk_start = count
                    spool = open(self.scratch / f"frames-{chunk_start}.raw", "wb")
                spool.write(np.ascontiguousarray(frame).tobytes())
                count += 1
                if count % self.chunk_frames == 0 or count == self.num_frames:
                    spool.close()
                    if len(running) == self.encoders:
                        self.append(running[0], joiner)
                        running.popleft()  # only now: until it is appended, `finally` stops it
                    with STOP_LOCK:  # so that a chunk that runs is in `running`
                        running.append(self.start_chunk(Path(spool.name), chunk_start, count - chunk_start))
            if count != self.num_frames:
                raise ValueError(f"encode_gif was told {self.num_frames} frames but got {count}")
            while running:
                self.append(running[0], joiner)
                running.popleft()
            joiner.finish()
        finally:
            if spool is not None:
                spool.close()
            for chunk in running:
                chunk.ffmpeg.stop()
        return count

    def start_chunk(self, spool_path: Path, start: int, count: int) -> GifChunk:
        """Start ffmpeg on frames start .. start + count - 1 of the animation, read from
        spool_path, with their place in the animation's timing.

        Frame N of the chunk starts gif_time_after_frame(start + N - 1) hundredths of a
        second into the animation. GIF stores a delay per frame and ffmpeg takes each from
        the next frame's start; the chunk's last frame has no next one there, so its delay
        is passed up front (-final_delay).
        """
        height, width, _ = self.shape
        end = start + count
        start_times = f"floor((200*(N+{start})+{self.fps})/{2 * self.fps})"
        final_delay = gif_time_after_frame(end - 1, self.fps) - gif_time_after_frame(end - 2, self.fps)
        gif_path = spool_path.with_suffix(".gif")
        options = [
            *rawvideo_input(width, height, self.fps, str(spool_path)),
            "-i", str(self.palette_path),
            "-filter_complex", f"[0:v]settb=1/100,setpts={start_times}[timed];[timed][1:v]paletteuse",
            "-fps_mode", "passthrough",
            "-loop", "0",
            "-final_delay", str(final_delay),
            "-fflags", "+bitexact",
            "-f", "gif", "-y", str(gif_path),
        ]
        return GifChunk(Ffmpeg.start(options), spool_path, gif_path)

    def append(self, chunk: GifChunk, joiner: "GifJoiner") -> None:
        """Wait for the chunk's ffmpeg, add its GIF to the joined one, delete its files."""
        chunk.ffmpeg.finish(self.what)
        joiner.add(chunk.gif_path.read_bytes())
        chunk.spool_path.unlink()
        chunk.gif_path.unlink()


def colour_table_size(packed: int) -> int:
    """Bytes of the colour table a screen or image descriptor's packed byte announces."""
    return 3 << ((packed & 7) + 1) if packed & 0x80 else 0


def skip_sub_blocks(data: bytes, offset: int) -> int:
    """The offset after the data sub-blocks starting at `offset` (ended by an empty one)."""
    while data[offset]:
        offset += data[offset] + 1
    return offset + 1


def gif_frame_blocks(data: bytes) -> Iterator[tuple[int, int]]:
    """(start, end) of each graphic control extension and image of a GIF file, in order.

    Other extensions (the loop count, comments) are skipped."""
    offset = GIF_SCREEN_END + colour_table_size(data[10])
    while data[offset] != GIF_TRAILER:
        start = offset
        if data[offset] == GIF_EXTENSION:
            offset = skip_sub_blocks(data, offset + 2)
            if data[start + 1] != GIF_GRAPHIC_CONTROL:
                continue
        elif data[offset] == GIF_IMAGE:
            offset += GIF_IMAGE_DESCRIPTOR + colour_table_size(data[start + 9])
            offset = skip_sub_blocks(data, offset + 1)  # after the LZW minimum code size
        else:
            raise EncodeError(f"ffmpeg wrote a GIF block this encoder does not know (0x{data[offset]:02x}).")
        yield start, offset


class GifJoiner:
    """Writes GIF files, one after another, to `output` as one GIF: the first one's header,
    screen, colour table and loop count, then every file's frames, then the trailer."""

    def __init__(self, output: BinaryIO):
        self.output = output
        self.global_table: bytes | None = None

    def add(self, data: bytes) -> None:
        """Append the frames of the GIF file `data`. A file whose global colour table is not
        the first file's gets it as each frame's local table, so its colours stay right."""
        table = data[GIF_SCREEN_END : GIF_SCREEN_END + colour_table_size(data[10])]
        blocks = list(gif_frame_blocks(data))
        if self.global_table is None:
            self.global_table = table
            self.output.write(data[: blocks[0][0]])
        for start, end in blocks:
            block = data[start:end]
            if block[0] == GIF_IMAGE and table != self.global_table and not block[9] & 0x80:
                packed = (block[9] & 0xF8) | 0x80 | (data[10] & 7)  # flag and size of a local table
                block = block[:9] + bytes([packed]) + table + block[GIF_IMAGE_DESCRIPTOR:]
            self.output.write(block)

    def finish(self) -> None:
        self.output.write(bytes([GIF_TRAILER]))


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
