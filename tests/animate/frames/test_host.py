import numpy as np
import pytest
import torch

from animate import ping_pong_order
from animate.frames import host as frames_module
from animate.frames.host import BrokenFrameError, ping_pong, to_uint8
from animate.output.files import DiskFullError
from tests.animate.output.encoding import numbered


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


def test_ping_pong_on_a_full_disk_fails_in_one_sentence(tmp_path, monkeypatch):
    """The spool of forward frames lives on disk; /dev/full fails every write with ENOSPC."""
    monkeypatch.setattr(frames_module.tempfile, "TemporaryFile", lambda dir=None: open("/dev/full", "w+b", buffering=0))
    with pytest.raises(DiskFullError) as caught:
        list(ping_pong(iter(numbered(4)), tmp_path))
    message = str(caught.value)
    assert message.startswith("The disk is full, so the ping-pong frames could not be written (No space left on device)")
    assert "\n" not in message and message.endswith(".")


def test_to_uint8_rounds_like_diffusers():
    images = torch.tensor([0.0, 0.5, 1.0, 0.2, 1.3, -0.1]).reshape(1, 3, 1, 2)
    out = to_uint8(images)
    assert out.shape == (1, 1, 2, 3) and out.dtype == np.uint8
    expected = np.clip((images.numpy() * 255).round(), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
    assert np.array_equal(out, expected)
    assert to_uint8(images[0]).shape == (1, 2, 3)


def test_nan_frame_is_refused_instead_of_turning_black():
    image = torch.rand(3, 4, 4)
    image[1, 2, 2] = float("nan")
    with pytest.raises(BrokenFrameError, match="NaN"):
        to_uint8(image)
