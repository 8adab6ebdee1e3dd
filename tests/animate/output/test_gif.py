import subprocess

import numpy as np
import pytest
from PIL import Image

from animate.output import gif
from animate.output.encoder_thread import encode_in_background
from animate.output.gif import encode_gif, gif_time_after_frame
from tests.animate.output.encoding import (
    HEIGHT,
    WIDTH,
    Canceled,
    decoded_gif,
    frames,
    gif_images,
    streamed,
)


@pytest.mark.parametrize("fps, count", [(20, 9), (7, 13), (30, 5), (50, 2), (1, 3)])
def test_gif_has_every_frame_exact_cumulative_timing_and_loops_forever(tmp_path, fps, count):
    path = tmp_path / "a.gif"
    assert encode_gif(streamed(frames(count)), path, fps, frames(count)[::3], count) == count
    _, durations, loop = decoded_gif(path)
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


def test_gif_frame_count_must_match(tmp_path):
    with pytest.raises(ValueError, match="told 4 frames but got 3"):
        encode_gif(streamed(frames(3)), tmp_path / "a.gif", 10, frames(1), 4)
    with pytest.raises(ValueError, match="told 4 frames but got more"):
        encode_gif(streamed(frames(5)), tmp_path / "a.gif", 10, frames(1), 4)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("chunk_frames, encoders", [(3, 2), (4, 1), (1, 3)])
def test_gif_in_chunks_shows_what_one_ffmpeg_shows(tmp_path, monkeypatch, started, chunk_frames, encoders):
    source = frames(11)
    encode_gif(streamed(source), tmp_path / "whole.gif", 30, source[::5], 11)
    assert len(started) == 2  # the palette, then one ffmpeg for all frames
    monkeypatch.setattr(gif, "GIF_CHUNK_PIXELS", chunk_frames * HEIGHT * WIDTH)
    assert encode_gif(streamed(source), tmp_path / "chunked.gif", 30, source[::5], 11, encoders) == 11

    assert len(started) == 2 + 1 + -(-11 // chunk_frames)  # the palette, then one ffmpeg per chunk
    whole, chunked = decoded_gif(tmp_path / "whole.gif"), decoded_gif(tmp_path / "chunked.gif")
    assert len(chunked[0]) == 11
    for one, other in zip(whole[0], chunked[0], strict=True):
        np.testing.assert_array_equal(one, other)
    assert chunked[1:] == whole[1:]  # the same delays (30 fps: 30, 40, 30, 30, 40 ... ms), looping
    assert gif_images((tmp_path / "chunked.gif").read_bytes()) == (True, [False] * 11)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["chunked.gif", "whole.gif"]


def test_stopping_a_gif_midway_kills_every_chunk_encoder(tmp_path, monkeypatch, started):
    monkeypatch.setattr(gif, "GIF_CHUNK_PIXELS", 4 * HEIGHT * WIDTH)

    def interrupted():
        yield from frames(10)
        raise Canceled("stop")

    with pytest.raises(Canceled):
        encode_gif(interrupted(), tmp_path / "a.gif", 10, frames(2), 20, encoders=3)
    assert len(started) == 3  # the palette and two chunks of four frames
    assert all(process.poll() is not None for process in started)
    assert list(tmp_path.iterdir()) == []


def test_a_stop_while_a_chunk_encoder_starts_still_kills_it(tmp_path, monkeypatch):
    """The encoder thread is stopped by an exception raised in it between two bytecodes; one
    arriving just after ffmpeg started, before its handle was kept, would leave it running."""
    import threading
    import time

    monkeypatch.setattr(gif, "GIF_CHUNK_PIXELS", 4 * HEIGHT * WIDTH)
    spawning_chunk = threading.Event()
    started = []
    real_popen = subprocess.Popen

    def slow_popen(*args, **kwargs):
        started.append(real_popen(*args, **kwargs))
        if "frames-4.gif" in " ".join(args[0]):
            spawning_chunk.set()
            time.sleep(0.5)  # the handle is not kept yet: a stop must wait
        return started[-1]

    monkeypatch.setattr("animate.output.ffmpeg.subprocess.Popen", slow_popen)

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
    assert all(np.array_equal(sample, frame) for sample, frame in zip(gif.palette_sample(small), small, strict=True))
    large = [np.zeros((768, 1024, 3), np.uint8)] * 4  # 3.1 M pixels: every third pixel each way
    assert [sample.shape for sample in gif.palette_sample(large)] == [(256, 342, 3)] * 4


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
