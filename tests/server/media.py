"""Read back what the server returned: GIF with Pillow, MP4 with the ffmpeg of imageio-ffmpeg
(there is no ffprobe here), PNG with Pillow."""

import io
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import imageio_ffmpeg
from PIL import Image


@dataclass(frozen=True)
class GifInfo:
    frames: int
    size: tuple[int, int]
    durations_ms: list[int]
    loop: int | None


@dataclass(frozen=True)
class Mp4Info:
    frames: int
    codec: str
    pix_fmt: str
    size: tuple[int, int]
    fps: float
    moov_before_mdat: bool


def gif_info(data: bytes) -> GifInfo:
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "GIF", image.format
        durations = []
        for index in range(image.n_frames):
            image.seek(index)
            durations.append(image.info.get("duration", 0))
        return GifInfo(image.n_frames, image.size, durations, image.info.get("loop"))


def png_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG", image.format
        return image.size


def mp4_info(data: bytes, scratch_dir: Path) -> Mp4Info:
    """Decode the whole video with ffmpeg: the frame count it reports, and its stream line."""
    path = scratch_dir / "probe.mp4"
    path.write_bytes(data)
    result = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostats", "-i", str(path),
         "-map", "0:v:0", "-f", "null", "-progress", "pipe:1", "-"],
        capture_output=True,
        text=True,
        check=True,
    )
    stream = re.search(r"Stream #0:\d+.*?: Video: (\w+).*?, (\w+)\(.*?, (\d+)x(\d+).*?, ([\d.]+) fps", result.stderr)
    assert stream, f"no video stream in ffmpeg's report:\n{result.stderr}"
    frames = int(re.findall(r"^frame=(\d+)$", result.stdout, re.M)[-1])
    boxes = top_level_boxes(data)
    return Mp4Info(
        frames=frames,
        codec=stream.group(1),
        pix_fmt=stream.group(2),
        size=(int(stream.group(3)), int(stream.group(4))),
        fps=float(stream.group(5)),
        moov_before_mdat="moov" in boxes and "mdat" in boxes and boxes.index("moov") < boxes.index("mdat"),
    )


def top_level_boxes(data: bytes) -> list[str]:
    """Types of the top-level MP4 boxes in file order (faststart puts moov before mdat)."""
    boxes, offset = [], 0
    while offset + 8 <= len(data):
        size = int.from_bytes(data[offset : offset + 4], "big")
        boxes.append(data[offset + 4 : offset + 8].decode("latin-1"))
        if size == 1:  # 64-bit size follows the type
            size = int.from_bytes(data[offset + 8 : offset + 16], "big")
        if size < 8:
            break
        offset += size
    return boxes
