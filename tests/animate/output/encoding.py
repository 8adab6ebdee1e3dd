"""What the encoder tests share: moving frames, GIF readers, a stand-in for cog's cancellation."""

import ctypes

import numpy as np
from PIL import Image

HEIGHT, WIDTH = 48, 64


class Canceled(BaseException):
    """Stands in for cog.CancelationException, a BaseException."""


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


def numbered(count):
    """uint8 frames whose pixels all hold their index."""
    return [np.full((4, 6, 3), index, np.uint8) for index in range(count)]


def streamed(items):
    """A one-pass iterator, like the pipeline's frames."""
    yield from items


def raise_in_thread(thread_id, exception_type):
    """Raise exception_type in the thread `thread_id` at its next Python bytecode, as cog
    does to cancel; returns how many threads it was raised in (1, or 0 for a thread gone)."""
    return ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(exception_type))


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


def decoded_gif(path):
    """Every frame of a GIF as shown (RGB, after transparency and disposal), its delays, its loop."""
    with Image.open(path) as image:
        pictures, durations = [], []
        for index in range(image.n_frames):
            image.seek(index)
            pictures.append(np.asarray(image.convert("RGB")))
            durations.append(image.info.get("duration"))
        return pictures, durations, image.info.get("loop")
