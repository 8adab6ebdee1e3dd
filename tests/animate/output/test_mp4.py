import re
import subprocess

import imageio_ffmpeg
import pytest

from animate.output.mp4 import AUDIO_RATE, encode_mp4
from tests.animate.output.encoding import HEIGHT, WIDTH, frames, streamed
from tests.audio import converted, decoded_audio_samples, tone, video, wav
from tests.server.media import top_level_boxes


def ffmpeg_info(path):
    """What `ffmpeg -i` says about the file (there is no ffprobe here)."""
    result = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True
    )
    return result.stderr


def test_mp4_is_h264_yuv420p_at_exact_fps_with_moov_first(tmp_path):
    path = tmp_path / "a.mp4"
    assert encode_mp4(streamed(frames(17)), path, 7) == 17
    info = ffmpeg_info(path)
    assert re.search(r"Video: h264 \(High\)", info), info
    assert "yuv420p" in info
    assert re.search(rf"\b{WIDTH}x{HEIGHT}\b", info)
    assert re.search(r"\b7 fps\b", info)
    frame_count, seconds = imageio_ffmpeg.count_frames_and_secs(str(path))
    assert frame_count == 17
    assert seconds == pytest.approx(17 / 7, abs=0.01)
    boxes = top_level_boxes(path.read_bytes())
    assert boxes.index("moov") < boxes.index("mdat"), boxes
    assert not list(tmp_path.glob(".*partial"))



def streams(path) -> list[str]:
    """The kinds and codecs of the file's streams, e.g. "Audio: aac", from `ffmpeg -i`."""
    return re.findall(r"Stream #0:\d+.*?: (\w+: \w+)", ffmpeg_info(path))


# (sound file name, its bytes, frames, fps): sounds shorter and longer than the video, mono to 6 channels.
SOUNDS = [
    ("mono-8khz.wav", lambda: wav(tone(2.0, 8000), 8000), 17, 7),
    ("6-channels-96khz.wav", lambda: wav(tone(1.0, 96000, channels=6), 96000), 30, 20),
    ("stereo-44khz.mp3", lambda: converted(wav(tone(1.0, 44100, channels=2), 44100), ".mp3"), 9, 50),
    ("video-with-sound.mp4", lambda: video(1.0, with_sound=True), 12, 10),
]


@pytest.mark.parametrize("name, make, count, fps", SOUNDS, ids=[case[0] for case in SOUNDS])
def test_an_mp4_with_sound_has_stereo_aac_exactly_as_long_as_the_video(tmp_path, name, make, count, fps):
    sound = tmp_path / name
    sound.write_bytes(make())
    path = tmp_path / "a.mp4"
    assert encode_mp4(streamed(frames(count)), path, fps, audio=sound, num_frames=count) == count
    assert streams(path) == ["Video: h264", "Audio: aac"]
    assert re.search(rf"Audio: aac .*, {AUDIO_RATE} Hz, stereo", ffmpeg_info(path))
    assert imageio_ffmpeg.count_frames_and_secs(str(path))[0] == count
    assert decoded_audio_samples(path) == round(count * AUDIO_RATE / fps)
    boxes = top_level_boxes(path.read_bytes())
    assert boxes.index("moov") < boxes.index("mdat"), boxes


def test_the_same_frames_and_sound_give_the_same_bytes(tmp_path):
    sound = tmp_path / "tone.wav"
    sound.write_bytes(wav(tone(1.0, 44100, channels=2), 44100))
    for name in ("a.mp4", "b.mp4"):
        encode_mp4(streamed(frames(10)), tmp_path / name, 10, audio=sound, num_frames=10)
    assert (tmp_path / "a.mp4").read_bytes() == (tmp_path / "b.mp4").read_bytes()


def test_without_sound_the_mp4_has_no_audio_stream(tmp_path):
    encode_mp4(streamed(frames(5)), tmp_path / "a.mp4", 10)
    assert streams(tmp_path / "a.mp4") == ["Video: h264"]
