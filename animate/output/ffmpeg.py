"""The ffmpeg process: start it, feed it raw RGB frames, wait for it or kill it, say why it failed."""

import signal
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from typing import BinaryIO

import imageio_ffmpeg
import numpy as np

from animate.frames.host import checked_frames
from animate.output.encoder_thread import STOP_LOCK, WAIT_SLICE_S
from animate.output.files import disk_full_message

STDERR_TAIL_CHARS = 300
# What ffmpeg prints when its output does not fit (strerror of ENOSPC, EDQUOT, EFBIG).
DISK_FULL_SIGNS = ("No space left on device", "Disk quota exceeded", "File too large")


class EncodeError(RuntimeError):
    """ffmpeg failed; the message carries the end of what it said."""


def rawvideo_input(width: int, height: int, fps: int, source: str = "pipe:0") -> list[str]:
    """ffmpeg options for raw RGB frames of one size at fps frames per second, from stdin
    or from the file `source`."""
    return [
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}",
        "-framerate", str(fps), "-i", source,
    ]


def stderr_tail(stderr_file) -> str:
    stderr_file.seek(0)
    text = stderr_file.read().decode("utf-8", "replace").strip()
    return " ".join(text.split())[-STDERR_TAIL_CHARS:] or "no message"


def wait_interruptibly(process: subprocess.Popen) -> int:
    """process.wait() in slices of WAIT_SLICE_S, returning the exit status.

    A plain wait() blocks in one system call until ffmpeg exits (seconds, when x264 flushes
    a large video), and an exception raised asynchronously in this thread (how cog cancels
    a prediction) only arrives after it; between slices it arrives at once.
    """
    while True:
        try:
            return process.wait(timeout=WAIT_SLICE_S)
        except subprocess.TimeoutExpired:
            continue


def ffmpeg_error(what: str, returncode: int, stderr: str) -> EncodeError:
    """The one-sentence error for a failed ffmpeg run; a full disk says so and what to do."""
    if returncode == -signal.SIGXFSZ:
        return EncodeError(disk_full_message(what, "the file size limit was reached"))
    for sign in DISK_FULL_SIGNS:
        if sign in stderr:
            return EncodeError(disk_full_message(what, sign))
    return EncodeError(
        f"ffmpeg failed while writing {what} (exit status {returncode}: "
        f"{stderr}); check free disk space and the output directory."
    )


@dataclass
class Ffmpeg:
    """A running ffmpeg, with the file its stderr goes to (a pipe nobody reads could fill
    and block it)."""

    process: subprocess.Popen
    stderr_file: BinaryIO

    @classmethod
    def start(cls, options: list[str], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL) -> "Ffmpeg":
        command = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostats", "-loglevel", "error", *options]
        stderr_file = tempfile.TemporaryFile()
        try:
            process = subprocess.Popen(command, stdin=stdin, stdout=stdout, stderr=stderr_file)
        except BaseException:
            stderr_file.close()
            raise
        return cls(process, stderr_file)

    def finish(self, what: str) -> None:
        """Wait for ffmpeg to exit; EncodeError with its last words if it failed."""
        try:
            returncode = wait_interruptibly(self.process)
            if returncode != 0:
                raise ffmpeg_error(what, returncode, stderr_tail(self.stderr_file))
        finally:
            self.stop()

    def stop(self) -> None:
        """Kill ffmpeg if it still runs and close what was opened for it."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if self.process.stdin and not self.process.stdin.closed:
            try:
                self.process.stdin.close()
            except BrokenPipeError:
                pass
        if self.process.stdout:
            self.process.stdout.close()
        self.stderr_file.close()


def run_ffmpeg(options: list[str], frames: Iterable[np.ndarray], shape: tuple[int, ...], what: str) -> int:
    """Run ffmpeg with `options`, streaming uint8 frames of `shape` to its stdin.

    Returns the number of frames written. Raises EncodeError with ffmpeg's last words if
    it fails; kills it if anything (cancellation included) interrupts the stream.
    """
    count = 0
    ffmpeg = None
    try:
        with STOP_LOCK:  # so that `ffmpeg` is set once the process runs
            ffmpeg = Ffmpeg.start(options, stdin=subprocess.PIPE)
        try:
            for frame in checked_frames(frames, shape):
                ffmpeg.process.stdin.write(np.ascontiguousarray(frame).tobytes())
                count += 1
            ffmpeg.process.stdin.close()
        except BrokenPipeError:
            pass  # ffmpeg stopped reading: its exit status and stderr say why
        ffmpeg.finish(what)
    finally:
        if ffmpeg is not None:
            ffmpeg.stop()
    return count
