"""Pictures for init_image tests, made with Pillow and zlib: bombs, cut files, odd modes.

tests/animate/inputs/test_init_image.py reads them with animate.inputs.init_image directly;
tests/server/test_new_inputs.py sends them to the real server.
"""

import io
import struct
import zlib

import numpy as np
from PIL import ExifTags, Image, ImageCms

RED, GREEN, BLUE, BLACK, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (0, 0, 0), (255, 255, 255)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def one_bit_png(width: int, height: int, idat: bytes) -> bytes:
    """A 1-bit greyscale PNG with this header and this (compressed) pixel data."""
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


def black_rows(width: int, height: int) -> bytes:
    """The zlib stream of a black 1-bit picture, compressed row by row: a real bomb of a
    few hundred kilobytes, never held whole in memory."""
    compressor = zlib.compressobj(9)
    row = bytes(1 + (width + 7) // 8)  # filter byte 0, then the row's bits
    return b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()


def saved(image: Image.Image, path, **options):
    image.save(path, **options)
    return path


def encoded(image: Image.Image, kind: str, **options) -> bytes:
    """image saved in format `kind` (PNG, JPEG, GIF, ...), as the file's bytes."""
    buffer = io.BytesIO()
    image.save(buffer, kind, **options)
    return buffer.getvalue()


def cut_short(kind: str) -> bytes:
    """The first half of a 64x64 noise picture saved as `kind` (PNG or JPEG)."""
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    whole = encoded(Image.fromarray(noise), kind)
    return whole[: len(whole) // 2]


def exif_rotated_jpeg(orientation: int) -> bytes:
    """A 40x20 blue JPEG with a red 10x10 square at its stored top-left, and this EXIF
    orientation (6: shown turned 90 degrees clockwise; 8: anticlockwise)."""
    stored = Image.new("RGB", (40, 20), BLUE)
    stored.paste(RED, (0, 0, 10, 10))
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    return encoded(stored, "JPEG", exif=exif, quality=95)


def red_green_swapped_profile() -> bytes:
    """An ICC profile of an RGB colour space whose red and green primaries are sRGB's the
    other way round: converting a picture in it to sRGB swaps its red and green channels,
    a change no rounding can fake. Made from Pillow's own sRGB profile by exchanging the
    offsets of its rXYZ and gXYZ tags in the tag table (12-byte entries after byte 132:
    signature, offset, size)."""
    profile = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    (count,) = struct.unpack(">I", profile[128:132])
    entries = {bytes(profile[at : at + 4]): at for at in range(132, 132 + 12 * count, 12)}
    red, green = entries[b"rXYZ"], entries[b"gXYZ"]
    profile[red + 4 : red + 12], profile[green + 4 : green + 12] = profile[green + 4 : green + 12], profile[red + 4 : red + 12]
    return bytes(profile)
