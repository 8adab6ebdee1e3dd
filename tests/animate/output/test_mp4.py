import re
import subprocess

import imageio_ffmpeg
import pytest

from animate.output.mp4 import encode_mp4
from tests.animate.output.encoding import HEIGHT, WIDTH, frames, streamed
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

