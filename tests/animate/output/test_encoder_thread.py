import threading

import pytest

from animate.output.encoder_thread import encode_in_background
from tests.animate.output.encoding import Canceled, numbered, raise_in_thread


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
            threading.Timer(0.2, lambda: raise_in_thread(main, Canceled)).start()
            encode_in_background(encode, frames())
    assert cleaned_up == [True]
    assert time.perf_counter() - started < 2
