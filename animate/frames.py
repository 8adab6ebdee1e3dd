"""Frames between the stages: float images on the device -> uint8 on the host -> files."""

import contextlib
import ctypes
import errno
import os
import queue
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image


# Frames waiting between the thread that makes them and the encoder thread: a few, enough
# to keep making frames while a write to ffmpeg blocks, with host memory still flat.
HANDOFF_FRAMES = 4
# How long one wait of either thread blocks; exceptions raised asynchronously in a thread
# (how cog cancels a prediction) arrive between waits.
WAIT_SLICE_S = 0.1
END_OF_FRAMES = object()
STOP = object()
# stop_encoder raises EncoderStopped in the encoder thread between any two bytecodes. Work
# that must not be cut there (starting ffmpeg and keeping its handle: a process started
# whose handle is lost cannot be killed) holds this lock, and stop_encoder takes it to raise.
STOP_LOCK = threading.Lock()

# What the operating system says when a write does not fit: the disk or the user's quota is
# full, or the file is over the process's size limit.
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


class DiskFullError(OSError):
    """A file of the prediction did not fit on the disk; the message says what to do."""


class BrokenFrameError(RuntimeError):
    """A frame holds NaN; the message says what to try."""


def disk_full_message(what: str, reason: str) -> str:
    """The one sentence a user sees when `what` could not be written for lack of space."""
    return (
        f"The disk is full, so {what} could not be written ({reason}): free disk space where "
        f"the server writes its outputs (its TMPDIR), or ask for fewer frames or a smaller size."
    )


@contextlib.contextmanager
def reporting_full_disk(what: str, error_type: type[Exception] = DiskFullError) -> Iterator[None]:
    """Turn an OSError from a full disk inside the block into an error_type naming `what`."""
    try:
        yield
    except OSError as error:
        if error.errno not in DISK_FULL_ERRNOS:
            raise
        raise error_type(disk_full_message(what, os.strerror(error.errno))) from error


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Images (B, 3, H, W) or one (3, H, W) in [0, 1] -> uint8 (B, H, W, 3) or (H, W, 3) on the host.

    Rounds like diffusers' numpy_to_pil (x * 255, rounded). Raises BrokenFrameError for
    NaN, which would otherwise turn into black pixels in the animation without a word.
    """
    if torch.isnan(images).any():
        raise BrokenFrameError(
            "A frame came out as NaN (not a number), which would show as black: "
            "try another seed, or film_interpolation=false."
        )
    scaled = (images.float() * 255).round().clamp(0, 255).to(torch.uint8)
    return scaled.movedim(-3, -1).cpu().numpy()


def write_png(image: np.ndarray, path: Path) -> Path:
    """Write a uint8 (H, W, 3) image as PNG under a temporary name, then rename it into place,
    so a reader never sees half a file."""
    partial = path.with_name(f".{path.name}.partial")
    try:
        with reporting_full_disk(path.name):
            Image.fromarray(image).save(partial, format="PNG")
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def ping_pong(frames: Iterable[np.ndarray], spool_dir: Path | None = None) -> Iterator[np.ndarray]:
    """frames + reversed(frames[1:-1]) for uint8 (H, W, 3) frames, with flat host memory.

    The forward frames are yielded as they come and also written to a raw temporary file,
    which is then read back from the end, one frame at a time. Nothing is rendered twice.
    """
    with tempfile.TemporaryFile(dir=spool_dir) as spool:
        shape = None
        count = 0
        for frame in frames:
            shape = frame.shape if shape is None else shape
            if frame.shape != shape or frame.dtype != np.uint8:
                raise ValueError(f"frames must all be uint8 {shape}, got {frame.dtype} {frame.shape}")
            with reporting_full_disk("the ping-pong frames"):
                spool.write(np.ascontiguousarray(frame).tobytes())
            count += 1
            yield frame
        if count < 3:
            return
        with reporting_full_disk("the ping-pong frames"):
            spool.flush()  # a buffered write that does not fit fails here
        frame_bytes = int(np.prod(shape))
        for index in range(count - 2, 0, -1):
            spool.seek(index * frame_bytes)
            yield np.frombuffer(spool.read(frame_bytes), dtype=np.uint8).reshape(shape)


class EncoderStopped(BaseException):
    """Raised in the encoder thread to stop it (and with it ffmpeg) because the thread making
    the frames failed or was cancelled. A BaseException, so no handler for errors eats it."""


def encode_in_background(encode: Callable[[Iterable[np.ndarray]], None], frames: Iterable[np.ndarray]) -> None:
    """encode(frames), with `encode` running in a background thread while this thread makes the
    frames, handed over through a queue of HANDOFF_FRAMES: the GPU keeps computing while a
    write to ffmpeg blocks.

    An exception in `encode` (an EncodeError, say) stops the frames and is raised here as it
    was. Any exception here (cancellation included) stops the encoder at once, which kills
    ffmpeg and removes its partial file, before it propagates.
    """
    handoff: queue.Queue = queue.Queue(maxsize=HANDOFF_FRAMES)
    finished = threading.Event()
    failure: list[BaseException] = []

    def queued_frames() -> Iterator[np.ndarray]:
        while (frame := handoff.get()) is not END_OF_FRAMES:
            if frame is STOP:
                raise EncoderStopped
            yield frame

    def run() -> None:
        try:
            encode(queued_frames())
        except EncoderStopped:
            pass
        except BaseException as error:
            failure.append(error)
        finally:
            finished.set()

    encoder = threading.Thread(target=run, name="encoder", daemon=True)
    encoder.start()
    try:
        for frame in frames:
            if not hand_over(handoff, frame, finished):
                break  # the encoder failed: its error is raised below
        hand_over(handoff, END_OF_FRAMES, finished)
        while not finished.wait(WAIT_SLICE_S):
            pass
    except BaseException:
        stop_encoder(encoder, handoff)
        raise
    encoder.join()
    if failure:
        raise failure[0]


def hand_over(handoff: queue.Queue, item: object, finished: threading.Event) -> bool:
    """Put item in the queue, waiting while it is full; False if the encoder has finished
    (it failed, so nobody will take the item)."""
    while not finished.is_set():
        try:
            handoff.put(item, timeout=WAIT_SLICE_S)
            return True
        except queue.Full:
            continue
    return False


def stop_encoder(encoder: threading.Thread, handoff: queue.Queue) -> None:
    """Stop the encoder thread wherever it is and wait for it to clean up (kill ffmpeg).

    EncoderStopped is raised in it asynchronously, the way cog cancels a prediction: it
    arrives at the thread's next bytecode, wherever it is (writing frames, or between the
    slices of its wait for ffmpeg to finish). A thread waiting for a frame runs no
    bytecode until the STOP item, put afterwards, wakes it, and then gets the exception.
    In that order the thread gets one exception, never a second one in the middle of
    cleaning up after the first (which could leave an ffmpeg running).
    """
    with STOP_LOCK:
        if encoder.is_alive():
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(encoder.ident), ctypes.py_object(EncoderStopped))
    with contextlib.suppress(queue.Empty):
        while True:
            handoff.get_nowait()
    handoff.put_nowait(STOP)
    encoder.join()
