"""The image a messaging app shows beside a survey link's preview (Open Graph `og:image`):
1200 x 630 pixels, the size those apps crop to, drawn once per process as a PNG (a text bubble
on the pages' blue), so no binary file ships and nothing is read from disk per request."""

from __future__ import annotations

import struct
import zlib
from functools import cache

WIDTH, HEIGHT = 1200, 630
BLUE, WHITE = b"\x0b\x57\xd0", b"\xff\xff\xff"
# the bubble: a rectangle with a tail below its left side
BUBBLE = (300, 150, 900, 420)  # left, top, right, bottom
TAIL = (380, 420, 480)  # its left edge, top and bottom: a right triangle under the bubble


def _row(y: int) -> bytes:
    left, top, right, bottom = BUBBLE
    if top <= y < bottom:
        start, end = left, right
    elif TAIL[1] <= y < TAIL[2]:
        start, end = TAIL[0], TAIL[0] + (TAIL[2] - y)  # narrows towards its tip
    else:
        return b"\x00" + BLUE * WIDTH
    return b"\x00" + BLUE * start + WHITE * (end - start) + BLUE * (WIDTH - end)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@cache
def png() -> bytes:
    header = struct.pack(">IIBBBBB", WIDTH, HEIGHT, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    pixels = zlib.compress(b"".join(_row(y) for y in range(HEIGHT)), 9)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", pixels) + _chunk(b"IEND", b"")
