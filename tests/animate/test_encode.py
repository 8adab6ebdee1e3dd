import hashlib
import re
import struct
import subprocess

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

from animate import encode
from animate.encode import EncodeError, encode_gif, encode_mp4, gif_time_after_frame

HEIGHT, WIDTH = 48, 64


@pytest.fixture
def started(monkeypatch):
    """Every process the encoders start, in order, recorded as it starts."""
    processes = []
    real_popen = subprocess.Popen

    def recording_popen(*args, **kwargs):
        processes.append(real_popen(*args, **kwargs))
        return processes[-1]

    monkeypatch.setattr(encode.subprocess, "Popen", recording_popen)
    return processes


def frames(count, seed=0):
    """Smoothly moving gradients: realistic for the encoders, different per frame."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    out = []
    for i in range(count):
        r = (x * 4 + i * 9) % 256
        g = (y * 5 + i * 5) % 256
        b = ((x + y) * 2 + seed * 40) % 256
        out.append(np.stack([r, g, b], axis=-1).astype(np.uint8))
    return out


def streamed(items):
    """A one-pass iterator, like the pipeline's frames."""
    yield from items


def gif_durations(path):
    with Image.open(path) as image:
        durations = []
        for index in range(image.n_frames):
            image.seek(index)
            durations.append(image.info["duration"])
        return durations, image.info.get("loop")


def ffmpeg_info(path):
    """What `ffmpeg -i` says about the file (there is no ffprobe here)."""
    result = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True
    )
    return result.stderr


def top_level_boxes(path):
    """Types of the top-level MP4 boxes, in file order."""
    data = path.read_bytes()
    boxes, offset = [], 0
    while offset < len(data):
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        if size == 1:
            size = struct.unpack(">Q", data[offset + 8 : offset + 16])[0]
        elif size == 0:
            size = len(data) - offset
        boxes.append(kind.decode("ascii"))
        offset += size
    return boxes


@pytest.mark.parametrize("fps, count", [(20, 9), (7, 13), (30, 5), (50, 2), (1, 3)])
def test_gif_has_every_frame_exact_cumulative_timing_and_loops_forever(tmp_path, fps, count):
    path = tmp_path / "a.gif"
    assert encode_gif(streamed(frames(count)), path, fps, frames(count)[::3], count) == count
    durations, loop = gif_durations(path)
    assert len(durations) == count
    assert loop == 0
    elapsed = np.cumsum(durations) // 10  # Pillow reports milliseconds, GIF stores 1/100 s
    assert list(elapsed) == [round_half_up(100 * (i + 1) / fps) for i in range(count)]
    assert not list(tmp_path.glob(".*partial"))


def round_half_up(x):
    return int(np.floor(x + 0.5))


def test_gif_timing_formula():
    assert [gif_time_after_frame(i, 30) for i in range(4)] == [3, 7, 10, 13]
    assert [gif_time_after_frame(i, 40) for i in range(3)] == [3, 5, 8]  # halves round up
    assert gif_time_after_frame(9, 20) == 50


def gif_images(data):
    """(has global colour table, [has local colour table] per image) of a GIF file."""
    def skip_sub_blocks(offset):
        while data[offset]:
            offset += data[offset] + 1
        return offset + 1

    packed = data[10]
    has_global = bool(packed & 0x80)
    offset = 13 + (3 << ((packed & 7) + 1) if has_global else 0)
    local_tables = []
    while data[offset] != 0x3B:  # trailer
        if data[offset] == 0x21:  # extension: label, then sub-blocks
            offset = skip_sub_blocks(offset + 2)
        elif data[offset] == 0x2C:  # image descriptor
            image_packed = data[offset + 9]
            local_tables.append(bool(image_packed & 0x80))
            offset += 10 + (3 << ((image_packed & 7) + 1) if image_packed & 0x80 else 0)
            offset = skip_sub_blocks(offset + 1)  # LZW minimum code size, then data
        else:
            raise AssertionError(f"unexpected GIF block 0x{data[offset]:02x} at {offset}")
    return has_global, local_tables


def test_gif_uses_one_palette_for_the_whole_animation(tmp_path):
    path = tmp_path / "a.gif"
    encode_gif(streamed(frames(9)), path, 10, frames(9)[::4], 9)
    has_global, local_tables = gif_images(path.read_bytes())
    assert has_global
    assert local_tables == [False] * 9


def test_gif_frames_resemble_the_input(tmp_path):
    path = tmp_path / "a.gif"
    source = frames(5)
    encode_gif(streamed(source), path, 10, source, 5)
    with Image.open(path) as image:
        for index in range(5):
            image.seek(index)
            decoded = np.asarray(image.convert("RGB"), dtype=float)
            assert np.abs(decoded - source[index]).mean() < 12


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
    boxes = top_level_boxes(path)
    assert boxes.index("moov") < boxes.index("mdat"), boxes
    assert not list(tmp_path.glob(".*partial"))


def test_same_frames_give_byte_identical_files(tmp_path):
    for name in ("a", "b"):
        encode_mp4(streamed(frames(6)), tmp_path / f"{name}.mp4", 12)
        encode_gif(streamed(frames(6)), tmp_path / f"{name}.gif", 12, frames(6)[::2], 6)
    for suffix in ("mp4", "gif"):
        digest = [hashlib.sha256((tmp_path / f"{name}.{suffix}").read_bytes()).digest() for name in "ab"]
        assert digest[0] == digest[1]
    encode_mp4(streamed(frames(6, seed=1)), tmp_path / "c.mp4", 12)
    assert (tmp_path / "c.mp4").read_bytes() != (tmp_path / "a.mp4").read_bytes()


class Canceled(BaseException):
    """Stands in for cog.CancelationException, a BaseException."""


@pytest.mark.parametrize("error", [Canceled, RuntimeError])
@pytest.mark.parametrize("fmt", ["gif", "mp4"])
def test_interrupted_stream_kills_ffmpeg_and_leaves_no_file(tmp_path, started, error, fmt):
    def interrupted():
        yield from frames(3)
        raise error("stop")

    path = tmp_path / f"a.{fmt}"
    with pytest.raises(error):
        if fmt == "gif":
            encode_gif(interrupted(), path, 10, frames(2), 5)
        else:
            encode_mp4(interrupted(), path, 10)
    assert started and all(process.poll() is not None for process in started)
    assert list(tmp_path.iterdir()) == []


def test_ffmpeg_failure_is_one_sentence_with_its_message(tmp_path):
    missing_dir = tmp_path / "no" / "such" / "dir"
    with pytest.raises(EncodeError) as caught:
        encode_mp4(streamed(frames(3)), missing_dir / "a.mp4", 10)
    message = str(caught.value)
    assert "a.mp4" in message and "No such file or directory" in message
    assert "check free disk space" in message
    assert message.count("\n") == 0


def test_frames_of_another_size_are_refused(tmp_path):
    mixed = frames(2) + [np.zeros((HEIGHT + 2, WIDTH, 3), np.uint8)]
    with pytest.raises(ValueError, match="uint8"):
        encode_mp4(streamed(mixed), tmp_path / "a.mp4", 10)
    assert list(tmp_path.iterdir()) == []


def test_gif_frame_count_must_match(tmp_path):
    with pytest.raises(ValueError, match="told 4 frames but got 3"):
        encode_gif(streamed(frames(3)), tmp_path / "a.gif", 10, frames(1), 4)
    with pytest.raises(ValueError, match="told 4 frames but got more"):
        encode_gif(streamed(frames(5)), tmp_path / "a.gif", 10, frames(1), 4)
    assert list(tmp_path.iterdir()) == []


def decoded_gif(path):
    """Every frame of a GIF as shown (RGB, after transparency and disposal), its delays, its loop."""
    with Image.open(path) as image:
        pictures, durations = [], []
        for index in range(image.n_frames):
            image.seek(index)
            pictures.append(np.asarray(image.convert("RGB")))
            durations.append(image.info.get("duration"))
        return pictures, durations, image.info.get("loop")


@pytest.mark.parametrize("chunk_frames, encoders", [(3, 2), (4, 1), (1, 3)])
def test_gif_in_chunks_shows_what_one_ffmpeg_shows(tmp_path, monkeypatch, started, chunk_frames, encoders):
    source = frames(11)
    encode_gif(streamed(source), tmp_path / "whole.gif", 30, source[::5], 11)
    assert len(started) == 2  # the palette, then one ffmpeg for all frames
    monkeypatch.setattr(encode, "GIF_CHUNK_PIXELS", chunk_frames * HEIGHT * WIDTH)
    assert encode_gif(streamed(source), tmp_path / "chunked.gif", 30, source[::5], 11, encoders) == 11

    assert len(started) == 2 + 1 + -(-11 // chunk_frames)  # the palette, then one ffmpeg per chunk
    whole, chunked = decoded_gif(tmp_path / "whole.gif"), decoded_gif(tmp_path / "chunked.gif")
    assert len(chunked[0]) == 11
    for one, other in zip(whole[0], chunked[0], strict=True):
        np.testing.assert_array_equal(one, other)
    assert chunked[1:] == whole[1:]  # the same delays (30 fps: 30, 40, 30, 30, 40 ... ms), looping
    assert gif_images((tmp_path / "chunked.gif").read_bytes()) == (True, [False] * 11)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["chunked.gif", "whole.gif"]


def test_joined_gif_keeps_the_colours_of_a_file_with_another_palette(tmp_path):
    def one_colour_gif(colour):
        picture = Image.new("P", (WIDTH, HEIGHT), 0)
        picture.putpalette(list(colour) + [0, 0, 0] * 255)
        path = tmp_path / f"{colour}.gif"
        picture.save(path)
        return path.read_bytes()

    with open(tmp_path / "joined.gif", "wb") as output:
        joiner = encode.GifJoiner(output)
        for colour in [(250, 0, 0), (0, 0, 250), (250, 0, 0)]:
            joiner.add(one_colour_gif(colour))
        joiner.finish()
    pictures, _, _ = decoded_gif(tmp_path / "joined.gif")
    assert [tuple(picture[0, 0]) for picture in pictures] == [(250, 0, 0), (0, 0, 250), (250, 0, 0)]
    # Only the file whose palette differs from the first one's carries a local table.
    assert gif_images((tmp_path / "joined.gif").read_bytes()) == (True, [False, True, False])


def test_stopping_a_gif_midway_kills_every_chunk_encoder(tmp_path, monkeypatch, started):
    monkeypatch.setattr(encode, "GIF_CHUNK_PIXELS", 4 * HEIGHT * WIDTH)

    def interrupted():
        yield from frames(10)
        raise Canceled("stop")

    with pytest.raises(Canceled):
        encode_gif(interrupted(), tmp_path / "a.gif", 10, frames(2), 20, encoders=3)
    assert len(started) == 3  # the palette and two chunks of four frames
    assert all(process.poll() is not None for process in started)
    assert list(tmp_path.iterdir()) == []


def test_gif_palette_comes_from_the_palette_frames(tmp_path):
    red = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    red[..., 0] = np.linspace(0, 255, WIDTH, dtype=np.uint8)
    green = np.zeros_like(red)
    green[..., 1] = 200
    encode_gif(streamed([green, green]), tmp_path / "a.gif", 10, [red], 2)
    with Image.open(tmp_path / "a.gif") as image:
        decoded = np.asarray(image.convert("RGB"))
    assert decoded[..., 1].max() < 50  # no green in a palette made of reds


def test_the_palette_is_made_from_a_regular_sample_of_large_keyframes():
    small = frames(3)
    assert all(np.array_equal(sample, frame) for sample, frame in zip(encode.palette_sample(small), small, strict=True))
    large = [np.zeros((768, 1024, 3), np.uint8)] * 4  # 3.1 M pixels: every third pixel each way
    assert [sample.shape for sample in encode.palette_sample(large)] == [(256, 342, 3)] * 4


def test_a_sampled_palette_still_holds_every_large_area_of_colour(tmp_path):
    # 1024x768 quadrants of four colours: sampled, each still fills a quarter of the sample.
    colours = np.array([[200, 30, 30], [30, 200, 30], [30, 30, 200], [220, 220, 40]], np.uint8)
    picture = np.empty((768, 1024, 3), np.uint8)
    for index, (rows, columns) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        picture[rows * 384 : (rows + 1) * 384, columns * 512 : (columns + 1) * 512] = colours[index]
    encode_gif(streamed([picture]), tmp_path / "a.gif", 10, [picture] * 4, 1)
    with Image.open(tmp_path / "a.gif") as image:
        decoded = np.asarray(image.convert("RGB")).astype(int)
    assert np.abs(decoded - picture).max() <= 4


def raise_in_thread(thread, exception_type):
    """Raise exception_type in `thread` at its next Python bytecode, as cog does to cancel."""
    import ctypes

    changed = ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), ctypes.py_object(exception_type))
    assert changed == 1


def test_cancel_while_ffmpeg_finishes_the_file_stops_at_once(tmp_path, monkeypatch, started):
    """After the last frame, the encoder waits for ffmpeg to finish the file (seconds for a
    large MP4); a cancel arriving then must not wait for it."""
    import threading
    import time

    consumed = tmp_path / "consumed"
    fake_ffmpeg = tmp_path / "slow-ffmpeg"
    # Reads every frame, then takes a minute to "finish the file".
    fake_ffmpeg.write_text(f"#!/bin/sh\ncat > /dev/null\ntouch {consumed}\nexec sleep 60\n")
    fake_ffmpeg.chmod(0o755)
    monkeypatch.setattr(encode.imageio_ffmpeg, "get_ffmpeg_exe", lambda: str(fake_ffmpeg))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    outcome = []

    def encode_in_thread():
        try:
            encode_mp4(streamed(frames(5)), out_dir / "a.mp4", 10)
            outcome.append("finished")
        except Canceled:
            outcome.append("canceled")

    thread = threading.Thread(target=encode_in_thread)
    thread.start()
    deadline = time.monotonic() + 30
    while not consumed.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert consumed.exists(), "the fake ffmpeg never got the frames"
    time.sleep(0.3)  # the encoder is now waiting for ffmpeg to exit
    canceled_at = time.monotonic()
    raise_in_thread(thread, Canceled)
    thread.join(timeout=30)
    latency = time.monotonic() - canceled_at
    print(f"cancel while waiting for ffmpeg: stopped after {latency * 1000:.0f} ms")
    assert outcome == ["canceled"]
    assert latency < 5, f"the encoder waited {latency:.1f} s for ffmpeg after the cancel"
    assert started and all(process.poll() is not None for process in started), "ffmpeg was left running"
    assert list(out_dir.iterdir()) == []


def test_a_stop_while_a_chunk_encoder_starts_still_kills_it(tmp_path, monkeypatch):
    """The encoder thread is stopped by an exception raised in it between two bytecodes; one
    arriving just after ffmpeg started, before its handle was kept, would leave it running."""
    import threading
    import time

    from animate.frames import encode_in_background

    monkeypatch.setattr(encode, "GIF_CHUNK_PIXELS", 4 * HEIGHT * WIDTH)
    spawning_chunk = threading.Event()
    started = []
    real_popen = subprocess.Popen

    def slow_popen(*args, **kwargs):
        started.append(real_popen(*args, **kwargs))
        if "frames-4.gif" in " ".join(args[0]):
            spawning_chunk.set()
            time.sleep(0.5)  # the handle is not kept yet: a stop must wait
        return started[-1]

    monkeypatch.setattr(encode.subprocess, "Popen", slow_popen)

    def canceled_while_the_second_chunk_starts():
        yield from frames(8)
        assert spawning_chunk.wait(10)
        raise Canceled("stop")

    with pytest.raises(Canceled):
        encode_in_background(
            lambda queued: encode_gif(queued, tmp_path / "a.gif", 10, frames(2), 20, encoders=2),
            canceled_while_the_second_chunk_starts(),
        )
    assert len(started) == 3  # the palette and two chunks
    assert all(process.poll() is not None for process in started), "an ffmpeg was left running"
    assert list(tmp_path.iterdir()) == []


def partial_path_on_a_full_disk(path):
    """Make the encoder's temporary file (see write_atomically) a link to /dev/full, where
    every write fails with ENOSPC, as on a full disk."""
    import os

    partial = path.with_name(f".{path.name}.partial")
    os.symlink("/dev/full", partial)
    return partial


@pytest.mark.skipif(not __import__("os").path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("fmt", ["gif", "mp4"])
def test_full_disk_fails_in_one_sentence_that_says_so(tmp_path, fmt):
    path = tmp_path / f"animation.{fmt}"
    partial = partial_path_on_a_full_disk(path)
    with pytest.raises(EncodeError) as caught:
        if fmt == "gif":
            encode_gif(streamed(frames(6)), path, 10, frames(2), 6)
        else:
            encode_mp4(streamed(frames(6)), path, 10)
    message = str(caught.value)
    assert message.startswith(f"The disk is full, so animation.{fmt} could not be written (No space left on device)")
    assert "free disk space" in message and "fewer frames or a smaller size" in message
    assert message.count(". ") == 0 and "\n" not in message
    assert not path.exists() and not partial.exists()


def test_file_size_limit_fails_like_a_full_disk(tmp_path, monkeypatch):
    """Under RLIMIT_FSIZE ffmpeg is killed by SIGXFSZ and says nothing: still one sentence."""
    import resource

    real_popen = subprocess.Popen

    def limited_popen(*args, **kwargs):
        kwargs["preexec_fn"] = lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))
        return real_popen(*args, **kwargs)

    monkeypatch.setattr(encode.subprocess, "Popen", limited_popen)
    path = tmp_path / "animation.gif"
    with pytest.raises(EncodeError, match=r"^The disk is full, so animation.gif could not be written \(the file size limit"):
        encode_gif(streamed(frames(40)), path, 10, frames(2), 40)
    assert list(tmp_path.iterdir()) == []
