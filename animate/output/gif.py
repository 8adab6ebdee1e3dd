"""The GIF encoder: one palette, then runs of frames encoded by several ffmpeg processes at once."""

import collections
import math
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from animate.frames.host import checked_frames, first_and_rest
from animate.output.encoder_thread import STOP_LOCK
from animate.output.ffmpeg import EncodeError, Ffmpeg, rawvideo_input, run_ffmpeg
from animate.output.files import reporting_full_disk, write_atomically
from animate.output.gif_join import GifJoiner

# palettegen counts every colour it is given, which is slow (ten 512x512 keyframes: 6.1 s
# of the GIF's time); every third or fourth pixel each way has the same colour statistics
# (every fourth: 0.25 s), so the palette is made from about this many sampled pixels.
PALETTE_SAMPLE_PIXELS = 256 * 1024
# ffmpeg turns frames into GIF (paletteuse, then LZW) on one core, about 0.1 s per 512x512
# frame: more than the GPU takes to make them. So runs of frames go to separate ffmpeg
# processes, up to MAX_GIF_ENCODERS at once, and their GIFs are joined. A run holds about
# GIF_CHUNK_PIXELS (8 frames at 512x512, 2 at 1024x768, 128 at 128x128), so the 40 ms
# it takes to start ffmpeg stays a small part of its work; it depends on the frame size
# only, not on the core count, so the same frames give the same bytes on any machine.
GIF_CHUNK_PIXELS = 8 * 512 * 512
MAX_GIF_ENCODERS = 8


def gif_time_after_frame(index: int, fps: int) -> int:
    """Hundredths of a second from the start to the end of frame `index` (0-based).

    round(100 * (index + 1) / fps) with halves rounded up, in exact integer arithmetic.
    """
    return (200 * (index + 1) + fps) // (2 * fps)


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
    """Write an endlessly looping GIF of num_frames uint8 (H, W, 3) frames, atomically (see
    write_atomically); returns num_frames.

    The palette comes from palette_frames (the keyframes) before the frames stream. Runs
    of frames are encoded by up to `encoders` ffmpeg processes at once (see GifChunkEncoder)
    and joined in order, so the frames look as if one ffmpeg had encoded
    them all. Frame i ends round(100 (i+1) / fps) hundredths of a second after the start,
    exactly, without drift. See docs/behaviour.md, "Encoding".
    """
    first, frames = first_and_rest(frames)
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        palette_path = scratch / "palette.png"
        make_gif_palette(palette_frames, palette_path)
        chunk_encoder = GifChunkEncoder(first.shape, fps, num_frames, encoders, palette_path, scratch, path.name)

        def write(partial: Path) -> int:
            with reporting_full_disk(path.name, EncodeError), open(partial, "wb") as output:
                return chunk_encoder.encode(checked_frames(frames, first.shape), output)

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


class GifChunkEncoder:
    """Encodes a GIF's frames in chunks, several at a time, joining the chunks' GIFs in order.

    Frames go to a short spool file per chunk, which that chunk's ffmpeg reads, so memory
    does not grow with their number."""

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

    def append(self, chunk: GifChunk, joiner: GifJoiner) -> None:
        """Wait for the chunk's ffmpeg, add its GIF to the joined one, delete its files."""
        chunk.ffmpeg.finish(self.what)
        joiner.add(chunk.gif_path.read_bytes())
        chunk.spool_path.unlink()
        chunk.gif_path.unlink()
