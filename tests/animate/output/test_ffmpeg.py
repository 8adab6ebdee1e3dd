"""The ffmpeg behind both encoders: same bytes for the same frames, and stopped, killed and
cleaned up on every failure, in one sentence."""

import hashlib
import os
import subprocess

import numpy as np
import pytest

from animate.output.ffmpeg import EncodeError
from animate.output.gif import encode_gif
from animate.output.mp4 import encode_mp4
from tests.animate.output.encoding import (
    HEIGHT,
    WIDTH,
    Canceled,
    frames,
    raise_in_thread,
    streamed,
)


def test_same_frames_give_byte_identical_files(tmp_path):
    for name in ("a", "b"):
        encode_mp4(streamed(frames(6)), tmp_path / f"{name}.mp4", 12)
        encode_gif(streamed(frames(6)), tmp_path / f"{name}.gif", 12, frames(6)[::2], 6)
    for suffix in ("mp4", "gif"):
        digest = [hashlib.sha256((tmp_path / f"{name}.{suffix}").read_bytes()).digest() for name in "ab"]
        assert digest[0] == digest[1]
    encode_mp4(streamed(frames(6, seed=1)), tmp_path / "c.mp4", 12)
    assert (tmp_path / "c.mp4").read_bytes() != (tmp_path / "a.mp4").read_bytes()


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
    monkeypatch.setattr("animate.output.ffmpeg.imageio_ffmpeg.get_ffmpeg_exe", lambda: str(fake_ffmpeg))
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
    assert raise_in_thread(thread.ident, Canceled) == 1
    thread.join(timeout=30)
    latency = time.monotonic() - canceled_at
    print(f"cancel while waiting for ffmpeg: stopped after {latency * 1000:.0f} ms")
    assert outcome == ["canceled"]
    assert latency < 5, f"the encoder waited {latency:.1f} s for ffmpeg after the cancel"
    assert started and all(process.poll() is not None for process in started), "ffmpeg was left running"
    assert list(out_dir.iterdir()) == []


def partial_path_on_a_full_disk(path):
    """Make the encoder's temporary file (see write_atomically) a link to /dev/full, where
    every write fails with ENOSPC, as on a full disk."""
    partial = path.with_name(f".{path.name}.partial")
    os.symlink("/dev/full", partial)
    return partial


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
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

    monkeypatch.setattr("animate.output.ffmpeg.subprocess.Popen", limited_popen)
    path = tmp_path / "animation.gif"
    with pytest.raises(EncodeError, match=r"^The disk is full, so animation.gif could not be written \(the file size limit"):
        encode_gif(streamed(frames(40)), path, 10, frames(2), 40)
    assert list(tmp_path.iterdir()) == []
