"""PNG header checks without decoding pixels."""

from __future__ import annotations

import io
import struct

import pytest
from PIL import Image

from subconscious.errors import BadImage
from subconscious.render.png import check_png, png_size
from tests.unit.render.pngs import SIGNATURE, chunk, make_png


@pytest.mark.parametrize(("width", "height"), [(1, 1), (64, 64), (512, 768), (1024, 512)])
def test_png_size_of_a_hand_made_png(width: int, height: int) -> None:
    assert png_size(make_png(width, height)) == (width, height)


def test_png_size_of_a_pillow_png() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (320, 192), (200, 10, 10)).save(buffer, format="PNG")
    assert png_size(buffer.getvalue()) == (320, 192)


def test_trailing_zero_padding_is_tolerated() -> None:
    assert png_size(make_png(8, 4) + b"\x00" * 16) == (8, 4)


def test_wrong_signature() -> None:
    data = b"\x89PNX\r\n\x1a\n" + make_png(8, 8)[8:]
    with pytest.raises(BadImage, match="not a PNG"):
        png_size(data)


def test_jpeg_is_not_a_png() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64)).save(buffer, format="JPEG")
    with pytest.raises(BadImage, match="not a PNG"):
        png_size(buffer.getvalue())


@pytest.mark.parametrize("data", [b"", SIGNATURE, make_png(8, 8)[:32]])
def test_too_short(data: bytes) -> None:
    with pytest.raises(BadImage, match="not a PNG"):
        png_size(data)


def test_bad_ihdr_crc() -> None:
    data = bytearray(make_png(64, 64))
    data[29] ^= 0xFF  # first CRC byte of IHDR
    with pytest.raises(BadImage, match="checksum mismatch"):
        png_size(bytes(data))


def test_tampered_size_fails_the_crc() -> None:
    data = bytearray(make_png(64, 64))
    data[16:20] = struct.pack(">I", 128)  # width changed, CRC left alone
    with pytest.raises(BadImage, match="checksum mismatch"):
        png_size(bytes(data))


def test_first_chunk_must_be_ihdr() -> None:
    data = SIGNATURE + chunk(b"tEXt", b"k\x00" + b"v" * 11) + make_png(8, 8)[8:]
    with pytest.raises(BadImage, match="without an IHDR chunk first"):
        png_size(data)


def test_ihdr_of_wrong_length() -> None:
    data = SIGNATURE + chunk(b"IHDR", b"\x00" * 14) + chunk(b"IEND", b"")
    with pytest.raises(BadImage, match="without an IHDR chunk first"):
        png_size(data)


@pytest.mark.parametrize("keep", [33, 40, -1, -12])
def test_truncated_without_iend(keep: int) -> None:
    data = make_png(64, 64)
    with pytest.raises(BadImage, match="truncated PNG"):
        png_size(data[:keep])


def test_check_png_accepts_the_asked_size() -> None:
    check_png(make_png(512, 768), 512, 768)


@pytest.mark.parametrize(("width", "height"), [(768, 512), (512, 512), (64, 768)])
def test_check_png_size_mismatch(width: int, height: int) -> None:
    with pytest.raises(BadImage, match=f"PNG is 512x768, asked for {width}x{height}"):
        check_png(make_png(512, 768), width, height)


def test_bad_image_is_a_renderer_error_with_its_code() -> None:
    with pytest.raises(BadImage) as excinfo:
        check_png(b"nope", 1, 1)
    assert excinfo.value.code == "bad_image"
