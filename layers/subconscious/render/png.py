"""Check that bytes are a PNG of the size we asked for, without decoding the pixels (no Pillow
in the Lambda layer: the header says enough)."""

from __future__ import annotations

import struct
import zlib

from subconscious.errors import BadImage

_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the IHDR chunk; BadImage if this is not a well-formed PNG start."""
    if len(data) < 33 or not data.startswith(_SIGNATURE):
        raise BadImage("not a PNG")
    length, kind = struct.unpack(">I4s", data[8:16])
    if kind != b"IHDR" or length != 13:
        raise BadImage("PNG without an IHDR chunk first")
    ihdr = data[16:29]
    (crc,) = struct.unpack(">I", data[29:33])
    if zlib.crc32(kind + ihdr) != crc:
        raise BadImage("PNG header checksum mismatch")
    width, height = struct.unpack(">II", ihdr[:8])
    if not data.rstrip(b"\x00").endswith(b"IEND\xaeB`\x82"):
        raise BadImage("truncated PNG (no IEND chunk)")
    return int(width), int(height)


def check_png(data: bytes, width: int, height: int) -> None:
    got = png_size(data)
    if got != (width, height):
        raise BadImage(f"PNG is {got[0]}x{got[1]}, asked for {width}x{height}")
