"""Joining GIF files into one GIF, block by block (GIF89a specification)."""

from collections.abc import Iterator
from typing import BinaryIO

from animate.output.ffmpeg import EncodeError

# GIF blocks: introducers, extension labels, the trailer.
GIF_EXTENSION, GIF_IMAGE, GIF_TRAILER = 0x21, 0x2C, 0x3B
GIF_GRAPHIC_CONTROL = 0xF9
GIF_SCREEN_END = 13  # "GIF89a" and the logical screen descriptor
GIF_IMAGE_DESCRIPTOR = 10  # introducer, position, size, packed fields


def colour_table_size(packed: int) -> int:
    """Bytes of the colour table a screen or image descriptor's packed byte announces."""
    return 3 << ((packed & 7) + 1) if packed & 0x80 else 0


def skip_sub_blocks(data: bytes, offset: int) -> int:
    """The offset after the data sub-blocks starting at `offset` (ended by an empty one)."""
    while data[offset]:
        offset += data[offset] + 1
    return offset + 1


def gif_frame_blocks(data: bytes) -> Iterator[tuple[int, int]]:
    """(start, end) of each graphic control extension and image of a GIF file, in order.

    Other extensions (the loop count, comments) are skipped."""
    offset = GIF_SCREEN_END + colour_table_size(data[10])
    while data[offset] != GIF_TRAILER:
        start = offset
        if data[offset] == GIF_EXTENSION:
            offset = skip_sub_blocks(data, offset + 2)
            if data[start + 1] != GIF_GRAPHIC_CONTROL:
                continue
        elif data[offset] == GIF_IMAGE:
            offset += GIF_IMAGE_DESCRIPTOR + colour_table_size(data[start + 9])
            offset = skip_sub_blocks(data, offset + 1)  # after the LZW minimum code size
        else:
            raise EncodeError(f"ffmpeg wrote a GIF block this encoder does not know (0x{data[offset]:02x}).")
        yield start, offset


class GifJoiner:
    """Writes GIF files, one after another, to `output` as one GIF: the first one's header,
    screen, colour table and loop count, then every file's frames, then the trailer."""

    def __init__(self, output: BinaryIO):
        self.output = output
        self.global_table: bytes | None = None

    def add(self, data: bytes) -> None:
        """Append the frames of the GIF file `data`. A file whose global colour table is not
        the first file's gets it as each frame's local table, so its colours stay right."""
        table = data[GIF_SCREEN_END : GIF_SCREEN_END + colour_table_size(data[10])]
        blocks = list(gif_frame_blocks(data))
        if self.global_table is None:
            self.global_table = table
            self.output.write(data[: blocks[0][0]])
        for start, end in blocks:
            block = data[start:end]
            if block[0] == GIF_IMAGE and table != self.global_table and not block[9] & 0x80:
                packed = (block[9] & 0xF8) | 0x80 | (data[10] & 7)  # flag and size of a local table
                block = block[:9] + bytes([packed]) + table + block[GIF_IMAGE_DESCRIPTOR:]
            self.output.write(block)

    def finish(self) -> None:
        self.output.write(bytes([GIF_TRAILER]))
