"""Read a user's sound track (docs/behaviour.md, "Audio"): decode it through the shipped
ffmpeg, refuse what cannot be used in one sentence, and measure the music's intensity.

Uploads are whatever a phone, an editor or a script saved: MP3, WAV, FLAC, OGG/Opus,
M4A/AAC, a video with sound; mono to multichannel, 8 kHz to 96 kHz; cut short, with a
header that lies about the length, or not sound at all. ffmpeg decodes the first audio
stream to mono at SAMPLE_RATE, and the samples are analysed block by block as they
arrive, so memory does not grow with the length. The length is what decodes, never what
a header claims.

The intensity is librosa's onset strength (librosa.onset.onset_strength with its
defaults): the log-mel power spectrum's rise from one frame to the next, summed over the
bands where it rises and averaged over all bands. It is computed here with the mel filter
bank and spectrogram of transformers.audio_utils (already a dependency, and the same
filters as librosa's) instead of librosa itself, which would bring 17 packages, about
270 MB and a numba compile of 15 s at the first import in every new container for this
one function. The one difference: librosa floors each file 80 dB below its own loudest
band, which needs the whole file first; here the floor is 80 dB below a full-scale sine,
so each block is analysed on its own, and pure silence has no intensity at all.
"""

import math
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from transformers.audio_utils import mel_filter_bank, spectrogram, window_function

from animate.inputs.prompts import InputError
from animate.output.ffmpeg import Ffmpeg, stderr_tail, wait_interruptibly

# librosa's defaults for onset strength: 22050 Hz, 2048-sample windows every 512 samples
# (43 values a second), 128 mel bands up to half the sample rate.
SAMPLE_RATE = 22050
WINDOW_SAMPLES = 2048
HOP_SAMPLES = 512
MEL_BANDS = 128
MEL_FILTERS = mel_filter_bank(
    WINDOW_SAMPLES // 2 + 1, MEL_BANDS, 0.0, SAMPLE_RATE / 2, SAMPLE_RATE, norm="slaney", mel_scale="slaney"
)
WINDOW = window_function(WINDOW_SAMPLES, "hann")
# A full-scale sine gives about +40 dB in its mel band; 80 dB below that is the floor
# (librosa keeps 80 dB below a file's loudest band): quieter than 16-bit dither.
FLOOR_DB = -40.0
# The longest sound track taken: a music video's length, 6,000 frames at 20 fps.
MAX_AUDIO_SECONDS = 300
# Decoding stops here, so a file of hours is refused in seconds; its length is then "more than".
READ_LIMIT_SECONDS = 3600
# Samples decoded and analysed at a time: 10 s, 0.9 MB of float32.
BLOCK_SAMPLES = 10 * SAMPLE_RATE
# Formats an error message suggests: the ones phones, browsers and editors save.
SUGGESTED_FORMATS = "MP3, WAV, FLAC, OGG, M4A"


@dataclass(frozen=True)
class AudioTrack:
    """A sound track that can be used: its file, its decoded length, and its intensity,
    float32 (M,), one value every HOP_SAMPLES / SAMPLE_RATE seconds from the start, M = 1 +
    samples // HOP_SAMPLES (the first value is 0: nothing comes before it)."""

    path: Path
    seconds: float
    intensity: np.ndarray


def read_audio(path: str | Path) -> AudioTrack:
    """Decode the sound track at path and measure its intensity (the module's docstring).

    Refuses (InputError) an empty file, one ffmpeg cannot read, one with no audio stream,
    one that decodes to no sound, and one longer than MAX_AUDIO_SECONDS.
    """
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        raise InputError("audio is an empty file (0 bytes): upload the sound file again.")
    onsets = OnsetStrength()
    samples = 0
    for block in decoded_blocks(path, size):
        if samples < MAX_AUDIO_SECONDS * SAMPLE_RATE:
            onsets.add(block)
        samples += block.size  # past the limit, only counted, to say how long it is
    seconds = samples / SAMPLE_RATE
    if samples == 0:
        raise InputError(
            f"audio is a {size:,}-byte file with no sound in it (0 seconds decoded): "
            f"upload a file that plays, such as {SUGGESTED_FORMATS}."
        )
    if seconds >= READ_LIMIT_SECONDS:
        raise InputError(
            f"audio is more than {READ_LIMIT_SECONDS:,} s long, over the limit of {MAX_AUDIO_SECONDS} s: "
            f"cut it to at most {MAX_AUDIO_SECONDS} s."
        )
    if seconds > MAX_AUDIO_SECONDS:
        raise InputError(
            f"audio is {seconds:.1f} s long, over the limit of {MAX_AUDIO_SECONDS} s: "
            f"cut it to at most {MAX_AUDIO_SECONDS} s."
        )
    return AudioTrack(path, seconds, onsets.finish())


def decoded_blocks(path: Path, size: int) -> Iterator[np.ndarray]:
    """The first audio stream of path as mono float32 samples at SAMPLE_RATE, in blocks of
    BLOCK_SAMPLES (the last one shorter), as ffmpeg decodes them, up to READ_LIMIT_SECONDS.

    ffmpeg downmixes every channel to one and resamples; a file cut short gives what
    decodes before the cut. InputError when ffmpeg cannot read the file or it has no audio
    stream. ffmpeg is killed if the caller stops early or is cancelled.
    """
    options = [
        "-nostdin", "-t", str(READ_LIMIT_SECONDS), "-i", str(path),
        "-map", "0:a:0", "-ac", "1", "-ar", str(SAMPLE_RATE), "-f", "f32le", "pipe:1",
    ]
    ffmpeg = Ffmpeg.start(options, stdout=subprocess.PIPE)
    try:
        while data := ffmpeg.process.stdout.read(BLOCK_SAMPLES * 4):
            block = np.frombuffer(data[: len(data) // 4 * 4], dtype="<f4")
            # A float WAV may hold NaN or infinity: no sound to analyse, and silence to the ear.
            yield np.nan_to_num(block, nan=0.0, posinf=0.0, neginf=0.0)
        returncode = wait_interruptibly(ffmpeg.process)
        if returncode != 0:
            raise unreadable_audio(size, stderr_tail(ffmpeg.stderr_file))
    finally:
        ffmpeg.stop()


def unreadable_audio(size: int, stderr: str) -> InputError:
    """The one sentence for a file ffmpeg could not decode, from the end of what it said."""
    if "matches no streams" in stderr:
        return InputError(
            "audio has no sound in it (it is a video without an audio track, or a picture): "
            f"upload a file with sound, such as {SUGGESTED_FORMATS}."
        )
    return InputError(
        f"audio is a {size:,}-byte file that ffmpeg cannot read as sound: "
        f"upload an {SUGGESTED_FORMATS} file or a video with sound."
    )


class OnsetStrength:
    """librosa's onset strength of a stream of samples, fed block by block.

    The values are the same as for the whole signal at once: librosa centres its windows
    by putting half a window of silence before the first sample and after the last, and
    so does this; samples left over after a block's last whole window wait for the next
    block, and the last frame's log-mel spectrum is kept to compare the next one with.
    """

    def __init__(self) -> None:
        self.pending = np.zeros(WINDOW_SAMPLES // 2, dtype=np.float32)
        self.previous: np.ndarray | None = None  # the last frame's log-mel power, (MEL_BANDS, 1)
        self.values: list[np.ndarray] = []

    def add(self, samples: np.ndarray) -> None:
        """Analyse the windows that samples (float32 (n,)) complete."""
        buffer = np.concatenate([self.pending, samples])
        if buffer.size < WINDOW_SAMPLES:
            self.pending = buffer
            return
        frames = 1 + (buffer.size - WINDOW_SAMPLES) // HOP_SAMPLES
        used = (frames - 1) * HOP_SAMPLES + WINDOW_SAMPLES
        log_mel = spectrogram(
            buffer[:used], WINDOW, WINDOW_SAMPLES, HOP_SAMPLES, power=2.0, center=False,
            mel_filters=MEL_FILTERS, log_mel="dB",
        )  # (MEL_BANDS, frames)
        log_mel = np.maximum(log_mel, FLOOR_DB)
        self.pending = buffer[frames * HOP_SAMPLES :]
        before = log_mel[:, :1] if self.previous is None else self.previous
        rises = np.maximum(0.0, np.diff(np.concatenate([before, log_mel], axis=1), axis=1))
        self.values.append(rises.mean(axis=0, dtype=np.float32))
        self.previous = log_mel[:, -1:]

    def finish(self) -> np.ndarray:
        """The onset strength of everything added, float32 (1 + samples // HOP_SAMPLES,)."""
        self.add(np.zeros(WINDOW_SAMPLES // 2, dtype=np.float32))
        return np.concatenate(self.values)  # never empty: the half windows make one frame at least


def audio_frame_count(seconds: float, fps: int) -> int:
    """F = round(seconds * fps) frames, halves up: the animation lasts as long as the sound."""
    return math.floor(seconds * fps + 0.5)
