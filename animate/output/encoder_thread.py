"""The encoder thread: it encodes frames while this thread makes them, and stops when this one fails."""

import contextlib
import ctypes
import queue
import threading
from collections.abc import Callable, Iterable, Iterator

import numpy as np

# Frames waiting between the thread that makes them and the encoder thread: a few, enough
# to keep making frames while a write to ffmpeg blocks, with host memory still flat.
HANDOFF_FRAMES = 4
# How long one wait blocks (for a frame, for the encoder, for ffmpeg): exceptions raised
# asynchronously in a thread (how cog cancels a prediction, how stop_encoder stops the
# encoder) arrive between waits.
WAIT_SLICE_S = 0.1
END_OF_FRAMES = object()
STOP = object()
# stop_encoder raises EncoderStopped in the encoder thread between any two bytecodes. Work
# that must not be cut there (starting ffmpeg and keeping its handle: a process started
# whose handle is lost cannot be killed) holds this lock, and stop_encoder takes it to raise.
STOP_LOCK = threading.Lock()


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
