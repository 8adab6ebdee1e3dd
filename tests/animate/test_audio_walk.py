"""A walk with a sound track, through animate(): the MP4 carries the sound over its whole
length, and a sound that cannot be used fails before any model runs."""

import hashlib

import imageio_ffmpeg
import pytest

from animate import InputError, animate
from animate.inputs.audio import SAMPLE_RATE
from animate.output.mp4 import AUDIO_RATE
from tests.animate.output.test_mp4 import streams
from tests.animate.test_pipeline import model_calls, settings
from tests.audio import clicks, decoded_audio_samples, tone, wav
from tests.server.media import top_level_boxes


def sound_file(tmp_path, samples, rate=SAMPLE_RATE, name="sound.wav"):
    path = tmp_path / name
    path.write_bytes(wav(samples, rate))
    return path


@pytest.mark.parametrize("seconds", [1.0, 3.0])
def test_the_animation_lasts_as_long_as_the_sound_and_the_mp4_carries_it(components, tmp_path, capsys, seconds):
    # 3 prompts, 2 keyframes each: K = 3; the sound sets F = round(seconds * 10) frames at 10 fps.
    walk = settings(output_format="mp4", audio=sound_file(tmp_path, clicks(seconds, bpm=240)))
    [path] = animate(components, walk, tmp_path / "out")
    assert streams(path) == ["Video: h264", "Audio: aac"]
    frames, video_seconds = imageio_ffmpeg.count_frames_and_secs(str(path))
    assert frames == round(seconds * 10)
    assert decoded_audio_samples(path) == frames * AUDIO_RATE // 10  # cut or padded to exactly the video
    boxes = top_level_boxes(path.read_bytes())
    assert boxes.index("moov") < boxes.index("mdat")  # faststart, as without sound
    log = capsys.readouterr().out
    gaps = round(seconds * 10) - 1
    assert f"audio: {seconds:.2f} s, {gaps + 1} frames at 10 fps; the music (audio_pace_strength 0.5) gives the 2 gaps" in log


def test_a_loop_with_a_sound_lasts_as_long_as_the_sound(components, tmp_path, capsys):
    # 3 prompts, 2 keyframes each, as a loop: K = 3 gaps share all round(2.0 * 10) frames.
    walk = settings(output_format="mp4", loop=True, audio=sound_file(tmp_path, clicks(2.0, bpm=240)))
    [path] = animate(components, walk, tmp_path / "out")
    frames, _ = imageio_ffmpeg.count_frames_and_secs(str(path))
    assert frames == 20
    assert decoded_audio_samples(path) == 20 * AUDIO_RATE // 10
    assert "the music (audio_pace_strength 0.5) gives the 3 gaps" in capsys.readouterr().out


def test_with_a_sound_the_music_paces_the_walk_and_even_pacing_is_not_used(components, tmp_path, capsys):
    sound = sound_file(tmp_path, clicks(1.5, bpm=240))
    linear = next(iter(animate(components, settings(output_format="mp4", audio=sound), tmp_path / "linear")))
    capsys.readouterr()
    even = next(iter(animate(components, settings(output_format="mp4", audio=sound, pacing="even"), tmp_path / "even")))
    log = capsys.readouterr().out
    assert "audio: the music sets the frames, so num_interpolation_steps and pacing are not used" in log
    assert "pacing: even" not in log
    assert even.read_bytes() == linear.read_bytes()


def test_the_same_seed_and_sound_give_the_same_bytes(components, tmp_path):
    sound = sound_file(tmp_path, tone(1.0, 44100, channels=2), rate=44100)
    made = [
        hashlib.sha256(next(iter(animate(components, settings(output_format="mp4", audio=sound), tmp_path / name))).read_bytes()).hexdigest()
        for name in ("first", "second")
    ]
    assert made[0] == made[1]


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(output_format="gif"), "audio needs output_format mp4, not gif: a GIF has no sound, so ask for an MP4."),
        (dict(output_format="mp4", gif_ping_pong=True),
         "audio cannot be used with gif_ping_pong: the animation follows the sound track, which does not play "
         "backwards, so set gif_ping_pong to false."),
    ],
    ids=["gif", "ping-pong"],
)
def test_audio_with_a_gif_or_ping_pong_is_refused_with_the_settings(tmp_path, overrides, message):
    with pytest.raises(InputError) as error:
        settings(audio=tmp_path / "never-read.mp3", **overrides)
    assert str(error.value) == message


@pytest.mark.parametrize(
    "data, message",
    [
        (b"ID3 but then just text", r"^audio is a 22-byte file that ffmpeg cannot read as sound"),
        (wav(tone(0.2), SAMPLE_RATE), r"^audio is 0\.20 s long, 2 frames at 10 fps, fewer than the 3 keyframes"),
    ],
    ids=["not-sound", "shorter-than-the-keyframes"],
)
def test_a_sound_that_cannot_be_used_fails_the_walk_before_any_model_runs(components, tmp_path, data, message):
    sound = tmp_path / "sound.mp3"
    sound.write_bytes(data)
    output_dir = tmp_path / "out"
    with model_calls(components) as calls:
        with pytest.raises(InputError, match=message):
            list(animate(components, settings(output_format="mp4", audio=sound), output_dir))
    assert calls == []
    assert list(output_dir.iterdir()) == []
