import ctypes
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from animate import ping_pong_order
from animate.frames import encode_in_background, ping_pong, to_uint8, write_png


def numbered(count):
    """uint8 frames whose pixels all hold their index."""
    return [np.full((4, 6, 3), index, np.uint8) for index in range(count)]


@pytest.mark.parametrize("count", [2, 3, 5, 10])
def test_ping_pong_plays_forward_then_back_without_repeating_ends(tmp_path, count):
    played = [int(frame[0, 0, 0]) for frame in ping_pong(iter(numbered(count)), tmp_path)]
    assert played == ping_pong_order(count)
    assert len(played) == 2 * count - 2
    assert list(tmp_path.iterdir()) == []  # the spool file is gone


def test_ping_pong_streams_forward_frames_before_the_input_ends(tmp_path):
    pulled = []

    def source():
        for frame in numbered(4):
            pulled.append(int(frame[0, 0, 0]))
            yield frame

    played = ping_pong(source(), tmp_path)
    assert int(next(played)[0, 0, 0]) == 0
    assert pulled == [0]  # nothing buffered in memory ahead of the consumer
    assert [int(f[0, 0, 0]) for f in played] == [1, 2, 3, 2, 1]


def test_to_uint8_rounds_like_diffusers():
    images = torch.tensor([0.0, 0.5, 1.0, 0.2, 1.3, -0.1]).reshape(1, 3, 1, 2)
    out = to_uint8(images)
    assert out.shape == (1, 1, 2, 3) and out.dtype == np.uint8
    expected = np.clip((images.numpy() * 255).round(), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
    assert np.array_equal(out, expected)
    assert to_uint8(images[0]).shape == (1, 2, 3)


def test_png_is_written_whole_under_its_name(tmp_path):
    image = np.random.default_rng(0).integers(0, 256, (8, 10, 3), dtype=np.uint8)
    path = write_png(image, tmp_path / "keyframe-000.png")
    assert path == tmp_path / "keyframe-000.png"
    assert [p.name for p in tmp_path.iterdir()] == ["keyframe-000.png"]
    assert np.array_equal(np.asarray(Image.open(path)), image)


def test_ping_pong_on_a_full_disk_fails_in_one_sentence(tmp_path, monkeypatch):
    """The spool of forward frames lives on disk; /dev/full fails every write with ENOSPC."""
    from animate import frames as frames_module
    from animate.frames import DiskFullError

    monkeypatch.setattr(frames_module.tempfile, "TemporaryFile", lambda dir=None: open("/dev/full", "w+b", buffering=0))
    with pytest.raises(DiskFullError) as caught:
        list(ping_pong(iter(numbered(4)), tmp_path))
    message = str(caught.value)
    assert message.startswith("The disk is full, so the ping-pong frames could not be written (No space left on device)")
    assert "\n" not in message and message.endswith(".")


def test_png_on_a_full_disk_fails_in_one_sentence_and_leaves_nothing(tmp_path):
    import os

    from animate.frames import DiskFullError

    os.symlink("/dev/full", tmp_path / ".keyframe-000.png.partial")
    with pytest.raises(DiskFullError, match=r"^The disk is full, so keyframe-000.png could not be written"):
        write_png(np.zeros((8, 8, 3), np.uint8), tmp_path / "keyframe-000.png")
    assert list(tmp_path.iterdir()) == []


def test_nan_frame_is_refused_instead_of_turning_black():
    from animate.frames import BrokenFrameError

    image = torch.rand(3, 4, 4)
    image[1, 2, 2] = float("nan")
    with pytest.raises(BrokenFrameError, match="NaN"):
        to_uint8(image)


class Canceled(BaseException):
    """Like cog.CancelationException: a BaseException."""


def test_background_encoder_gets_every_frame_in_order_and_its_error_surfaces():
    received = []
    encode_in_background(lambda frames: received.extend(int(f[0, 0, 0]) for f in frames), iter(numbered(20)))
    assert received == list(range(20))

    made = []

    def making():
        for frame in numbered(50):
            made.append(frame)
            yield frame

    def failing(frames):
        next(iter(frames))
        raise RuntimeError("ffmpeg failed")

    with pytest.raises(RuntimeError, match="ffmpeg failed"):
        encode_in_background(failing, making())
    assert len(made) < 50  # frames stop once the encoder has failed


@pytest.mark.parametrize("encoder_state", ["waiting for a frame", "busy after the last frame"])
def test_an_exception_in_the_frame_thread_stops_the_encoder_at_once(encoder_state):
    import time

    cleaned_up = []

    def encode(frames):
        try:
            for _ in frames:
                pass
            while True:  # like the slices of the wait for ffmpeg to finish
                time.sleep(0.05)
        finally:
            cleaned_up.append(True)

    def frames():
        yield from numbered(2)
        if encoder_state == "busy after the last frame":
            return
        time.sleep(0.2)
        raise Canceled

    started = time.perf_counter()
    with pytest.raises(Canceled):
        if encoder_state == "waiting for a frame":
            encode_in_background(encode, frames())
        else:
            # Cancel the main thread while it waits for the encoder, the way cog does.
            main = threading.get_ident()
            threading.Timer(
                0.2, lambda: ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(main), ctypes.py_object(Canceled))
            ).start()
            encode_in_background(encode, frames())
    assert cleaned_up == [True]
    assert time.perf_counter() - started < 2
