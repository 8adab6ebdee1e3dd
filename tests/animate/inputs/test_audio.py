"""animate.inputs.audio: every format the shipped ffmpeg decodes, the length that decodes,
the onset strength (librosa's, block by block), and one sentence for each file that
cannot be used."""

import numpy as np
import pytest

from animate import InputError
from animate.inputs import audio
from animate.inputs.audio import HOP_SAMPLES, SAMPLE_RATE, OnsetStrength, audio_frame_count, read_audio
from tests.audio import clicks, converted, float_wav, lying_wav, tone, video, wav


def written(tmp_path, name: str, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def refusal(path) -> str:
    with pytest.raises(InputError) as error:
        read_audio(path)
    message = str(error.value)
    assert message.endswith(".") and ". " not in message and "\n" not in message, message
    return message


# (name, file bytes, seconds it holds): the formats of the issue, mono to 6 channels, 8 to 96 kHz.
FORMATS = [
    ("mono-8khz.wav", lambda: wav(tone(2.0, 8000), 8000), 2.0),
    ("stereo-44khz.mp3", lambda: converted(wav(tone(2.0, 44100, channels=2), 44100), ".mp3"), 2.0),
    ("6-channels-96khz.wav", lambda: wav(tone(1.0, 96000, channels=6), 96000), 1.0),
    ("stereo-48khz.flac", lambda: converted(wav(tone(2.0, 48000, channels=2), 48000), ".flac"), 2.0),
    ("mono-22khz.ogg", lambda: converted(wav(tone(2.0, 22050), 22050), ".ogg"), 2.0),
    ("stereo-48khz.opus", lambda: converted(wav(tone(2.0, 48000, channels=2), 48000), ".opus"), 2.0),
    ("stereo-44khz.m4a", lambda: converted(wav(tone(2.0, 44100, channels=2), 44100), ".m4a"), 2.0),
    ("video-with-sound.mp4", lambda: video(2.0, with_sound=True), 2.0),
]


@pytest.mark.parametrize("name, make, seconds", FORMATS, ids=[case[0] for case in FORMATS])
def test_every_format_decodes_to_its_length(tmp_path, name, make, seconds):
    track = read_audio(written(tmp_path, name, make()))
    # Lossy codecs may add up to one frame of padding (MP3 1152, AAC 1024 samples).
    assert track.seconds == pytest.approx(seconds, abs=0.03)
    assert track.intensity.shape == (1 + round(track.seconds * SAMPLE_RATE) // HOP_SAMPLES,)
    assert track.intensity.dtype == np.float32


def test_the_length_is_what_decodes_not_what_the_header_claims(tmp_path):
    track = read_audio(written(tmp_path, "liar.wav", lying_wav(seconds=1.0)))
    assert track.seconds == 1.0


def test_a_truncated_mp3_gives_the_sound_before_the_cut(tmp_path):
    whole = converted(wav(tone(4.0, 44100), 44100), ".mp3")
    track = read_audio(written(tmp_path, "cut.mp3", whole[: len(whole) // 2]))
    assert 1.5 < track.seconds < 2.5


def test_silence_has_no_intensity(tmp_path):
    track = read_audio(written(tmp_path, "silence.wav", wav(np.zeros((SAMPLE_RATE * 3, 2)), SAMPLE_RATE)))
    assert track.seconds == 3.0
    assert not track.intensity.any()


def test_nan_and_infinity_in_a_float_wav_are_silence(tmp_path):
    samples = np.full(SAMPLE_RATE, np.nan, dtype=np.float32)
    samples[::3] = np.inf
    track = read_audio(written(tmp_path, "nan.wav", float_wav(samples, SAMPLE_RATE)))
    assert track.seconds == 1.0
    assert np.isfinite(track.intensity).all() and not track.intensity.any()


def test_clicks_at_120_bpm_peak_every_half_second(tmp_path):
    track = read_audio(written(tmp_path, "clicks.wav", wav(clicks(10.0), SAMPLE_RATE)))
    hops_per_second = SAMPLE_RATE / HOP_SAMPLES
    peaks = np.flatnonzero(track.intensity > track.intensity.max() / 2)
    onsets = peaks[np.diff(peaks, prepend=-100) > 2]  # the first value of each peak
    # The click at 0 s is in the first window already, with nothing before it to rise from.
    assert len(onsets) == 19
    assert onsets[0] / hops_per_second == pytest.approx(0.5, abs=2 / hops_per_second)
    assert np.diff(onsets / hops_per_second) == pytest.approx(0.5, abs=1.5 / hops_per_second)


def noisy_bursts(seconds: float) -> np.ndarray:
    """float32 (n,): noise at -40 dB with a loud decaying burst every half second: every mel
    band stays within 80 dB of the loudest, so librosa's floor and ours agree."""
    rng = np.random.default_rng(0)
    samples = rng.normal(0, 0.01, round(seconds * SAMPLE_RATE)).astype(np.float32)
    for start in range(0, samples.size - 2000, SAMPLE_RATE // 2):
        samples[start : start + 2000] += (rng.normal(0, 0.5, 2000) * np.exp(-np.arange(2000) / 300)).astype(np.float32)
    return samples


@pytest.mark.parametrize("block", [None, SAMPLE_RATE * 10, 777], ids=["whole", "10-s-blocks", "777-sample-blocks"])
def test_onset_strength_is_librosas_in_any_blocks(block):
    import librosa  # a test requirement only; its first import compiles for seconds

    samples = noisy_bursts(12.3)
    onsets = OnsetStrength()
    block = block or samples.size
    for start in range(0, samples.size, block):
        onsets.add(samples[start : start + block])
    ours = onsets.finish()
    theirs = librosa.onset.onset_strength(y=samples, sr=SAMPLE_RATE)
    assert ours.shape == theirs.shape
    # librosa centres the values two hops later; the first value of ours is 0 (nothing before it).
    assert ours[0] == 0
    np.testing.assert_allclose(ours[:-2], theirs[2:], atol=1e-4 * theirs.max())


def test_an_empty_file_is_refused(tmp_path):
    assert refusal(written(tmp_path, "empty.mp3", b"")) == (
        "audio is an empty file (0 bytes): upload the sound file again."
    )


def test_text_named_mp3_is_refused(tmp_path):
    assert refusal(written(tmp_path, "notes.mp3", b"just some text\n")).startswith(
        "audio is a 15-byte file that ffmpeg cannot read as sound: upload an MP3, WAV"
    )


def test_a_video_without_sound_is_refused(tmp_path):
    assert refusal(written(tmp_path, "silent-film.mp4", video(1.0, with_sound=False))).startswith(
        "audio has no sound in it (it is a video without an audio track, or a picture)"
    )


def test_a_header_with_no_samples_is_refused(tmp_path):
    assert refusal(written(tmp_path, "header-only.wav", wav(np.zeros((0, 1)), 8000))).startswith(
        "audio is a 44-byte file with no sound in it (0 seconds decoded)"
    )


def test_301_seconds_are_refused_saying_the_length_and_the_limit(tmp_path):
    path = written(tmp_path, "long.wav", wav(np.zeros((301 * 8000, 1)), 8000))
    assert refusal(path) == "audio is 301.0 s long, over the limit of 300 s: cut it to at most 300 s."


def test_300_seconds_are_accepted(tmp_path):
    track = read_audio(written(tmp_path, "five-minutes.wav", wav(np.zeros((300 * 8000, 1)), 8000)))
    assert track.seconds == 300.0


def test_decoding_stops_at_the_read_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(audio, "READ_LIMIT_SECONDS", 2)
    monkeypatch.setattr(audio, "MAX_AUDIO_SECONDS", 1)
    path = written(tmp_path, "long.wav", wav(np.zeros((5 * 8000, 1)), 8000))
    assert refusal(path) == "audio is more than 2 s long, over the limit of 1 s: cut it to at most 1 s."


@pytest.mark.parametrize("seconds, fps, frames", [(20.0, 20, 400), (0.2, 20, 4), (1.025, 20, 21), (1.0249, 20, 20), (2.5, 1, 3)])
def test_the_animation_has_round_seconds_times_fps_frames(seconds, fps, frames):
    assert audio_frame_count(seconds, fps) == frames
