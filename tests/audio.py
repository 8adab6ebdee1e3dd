"""Sound files for the audio tests, made with numpy, the standard library's wave module and
the ffmpeg the project ships: clicks, silence, every format the issue names, and broken ones.

tests/animate/inputs/test_audio.py reads them with animate.inputs.audio directly;
tests/server/test_audio_server.py sends them to the real server.
"""

import io
import struct
import subprocess
import tempfile
import wave
from pathlib import Path

import imageio_ffmpeg
import numpy as np

# Encoder options by file name suffix: each gives the container and codec its name says.
ENCODERS = {
    ".mp3": ["-c:a", "libmp3lame", "-b:a", "64k"],
    ".flac": ["-c:a", "flac"],
    ".ogg": ["-c:a", "libvorbis"],
    ".opus": ["-c:a", "libopus", "-b:a", "48k"],
    ".m4a": ["-c:a", "aac", "-b:a", "96k"],
    ".wav": ["-c:a", "pcm_s16le"],
}


def clicks(seconds: float, rate: int = 22050, bpm: float = 120, channels: int = 1) -> np.ndarray:
    """float32 (n, channels): a 10 ms decaying noise burst on every beat at bpm, silence between."""
    samples = np.zeros((round(seconds * rate), channels), dtype=np.float32)
    burst_length = rate // 100
    burst = np.random.default_rng(0).uniform(-0.8, 0.8, burst_length) * np.exp(-np.arange(burst_length) / (burst_length / 4))
    for start in range(0, samples.shape[0], round(rate * 60 / bpm)):
        end = min(start + burst_length, samples.shape[0])
        samples[start:end] += burst[: end - start, None].astype(np.float32)
    return samples


def tone(seconds: float, rate: int = 22050, channels: int = 1, hz: float = 440.0) -> np.ndarray:
    """float32 (n, channels): a sine at half of full scale, the same in every channel."""
    t = np.arange(round(seconds * rate)) / rate
    return np.repeat((0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32)[:, None], channels, axis=1)


def wav(samples: np.ndarray, rate: int) -> bytes:
    """16-bit PCM WAV bytes of float samples (n, channels) in [-1, 1]."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as file:
        file.setnchannels(samples.shape[1])
        file.setsampwidth(2)
        file.setframerate(rate)
        file.writeframes((np.clip(samples, -1, 1) * 32767).round().astype("<i2").tobytes())
    return buffer.getvalue()


def float_wav(samples: np.ndarray, rate: int) -> bytes:
    """32-bit float WAV bytes (format 3) of samples (n,): NaN and infinity stay as they are."""
    body = samples.astype("<f4").tobytes()
    header = struct.pack("<HHIIHH", 3, 1, rate, rate * 4, 4, 32)
    return b"RIFF" + struct.pack("<I", 36 + len(body)) + b"WAVEfmt " + struct.pack("<I", 16) + header + b"data" + struct.pack("<I", len(body)) + body


def lying_wav(seconds: float = 1.0, rate: int = 8000) -> bytes:
    """A 16-bit mono WAV whose header claims 2 GB of samples (over 37 hours at this rate)
    while its body holds `seconds` of a tone."""
    data = wav(tone(seconds, rate), rate)
    claimed = 0x7FFFFFF0
    # The RIFF size (bytes 4-8) and the data chunk's size (bytes 40-44) of the plain header.
    return data[:4] + struct.pack("<I", 36 + claimed) + data[8:40] + struct.pack("<I", claimed) + data[44:]


def converted(data: bytes, suffix: str, *extra: str) -> bytes:
    """data (any file ffmpeg reads) re-encoded into a file named *suffix (ENCODERS), with
    extra ffmpeg output options."""
    return ffmpeg_output(["-i", "{input}", "-map", "0:a", *ENCODERS[suffix], *extra], suffix, data)


def video(seconds: float, with_sound: bool) -> bytes:
    """A 64x64 H.264 MP4 of a test pattern, with a 440 Hz AAC tone or without any audio stream."""
    options = ["-f", "lavfi", "-i", f"testsrc=duration={seconds}:size=64x64:rate=10"]
    if with_sound:
        options += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}", "-c:a", "aac"]
    return ffmpeg_output([*options, "-c:v", "libx264", "-pix_fmt", "yuv420p"], ".mp4")


def ffmpeg_output(options: list[str], suffix: str, data: bytes | None = None) -> bytes:
    """The file ffmpeg writes with options ("{input}" stands for a file holding data)."""
    with tempfile.TemporaryDirectory() as directory:
        source, target = Path(directory) / "input", Path(directory) / f"output{suffix}"
        if data is not None:
            source.write_bytes(data)
        options = [str(source) if option == "{input}" else option for option in options]
        subprocess.run(
            [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", *options, "-y", str(target)],
            check=True,
        )
        return target.read_bytes()


def decoded_audio_samples(path: Path) -> int:
    """How many samples the first audio stream of the file at path decodes to, at its own
    rate (ffmpeg applies the MP4 edit list that hides the AAC encoder's priming)."""
    result = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(path), "-map", "0:a:0", "-ac", "1", "-f", "s16le", "-"],
        capture_output=True, check=True,
    )
    return len(result.stdout) // 2
