"""The MP4 encoder: H.264 through one ffmpeg that reads the frames from its stdin, with the
sound track (AAC) when the request has one."""

import math
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
# The sound: stereo AAC at 48 kHz, what every browser plays; 192 kbit/s is transparent for music.
AUDIO_RATE = 48000
AUDIO_BITRATE = "192k"


def encode_mp4(
    frames: Iterable[np.ndarray], path: Path, fps: int, audio: Path | None = None, num_frames: int | None = None
) -> int:
    """Write an H.264 (yuv420p) MP4 of uint8 (H, W, 3) frames at exactly fps, moov atom
    first, atomically (see write_atomically); returns the frame count.

    With `audio` (a file ffmpeg can decode, checked by animate.inputs.audio) the MP4 also
    carries its first audio stream as stereo AAC, cut or padded with silence to the video's
    num_frames / fps seconds, so both streams end together (sound_options).

    Frames stream to ffmpeg one by one, so memory does not grow with their number. Same
    frames and sound, same bytes: the encoder's thread count is fixed and no metadata
    (dates, versions) is written. See docs/behaviour.md, "Encoding".
    """
    if audio is not None and num_frames is None:
        raise ValueError("an MP4 with sound needs the number of frames, to end the sound with them")
    first, frames = first_and_rest(frames)
    height, width, _ = first.shape
    sound = ["-an"] if audio is None else sound_options(audio, num_frames, fps)

    def write(partial: Path) -> int:
        options = [
            *rawvideo_input(width, height, fps),
            *sound,
            "-c:v", "libx264", "-preset", "medium", "-crf", str(X264_CRF),
            "-pix_fmt", "yuv420p", "-r", str(fps),
            "-threads", str(X264_THREADS),
            "-movflags", "+faststart",
            "-map_metadata", "-1", "-map_chapters", "-1",
            "-fflags", "+bitexact", "-flags:v", "+bitexact",
            "-f", "mp4", "-y", str(partial),
        ]
        return run_ffmpeg(options, frames, first.shape, path.name)

    return write_atomically(path, write)


def sound_options(audio: Path, num_frames: int, fps: int) -> list[str]:
    """ffmpeg options that add audio's first audio stream as the second input and encode it
    as stereo AAC of exactly round(num_frames / fps * AUDIO_RATE) samples: the sound is
    resampled, downmixed or upmixed to stereo, padded with silence and cut to that length."""
    samples = math.floor(num_frames * AUDIO_RATE / fps + 0.5)
    to_length = f"aresample={AUDIO_RATE},aformat=channel_layouts=stereo,apad=whole_len={samples},atrim=end_sample={samples}"
    return [
        "-i", str(audio),
        "-map", "0:v", "-map", "1:a:0",
        "-filter:a", to_length,
        "-c:a", "aac", "-b:a", AUDIO_BITRATE, "-flags:a", "+bitexact",
    ]
