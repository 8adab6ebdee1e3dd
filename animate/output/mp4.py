"""The MP4 encoder: H.264 through one ffmpeg that reads the frames from its stdin."""

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from animate.frames.host import first_and_rest
from animate.output.ffmpeg import rawvideo_input, run_ffmpeg
from animate.output.files import write_atomically

# libx264 output depends on its thread count; fixing it makes the file the same bytes on
# any machine, at a small cost in speed on machines with many cores.
X264_THREADS = 4
X264_CRF = 18  # visually lossless for these animations, still small


def encode_mp4(frames: Iterable[np.ndarray], path: Path, fps: int) -> int:
    """Write an H.264 (yuv420p) MP4 of uint8 (H, W, 3) frames at exactly fps, moov atom
    first, atomically (see write_atomically); returns the frame count.

    Frames stream to ffmpeg one by one, so memory does not grow with their number. Same
    frames, same bytes: the encoder's thread count is fixed and no metadata (dates,
    versions) is written. See docs/behaviour.md, "Encoding".
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
