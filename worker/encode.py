"""Turning pixels into the base64 images automatic1111 answers with, off the GPU's path.

Measured on the H100 machine (``h100-sd-worker-ceiling.jsonl``): a 512² PNG at the default
level takes 66 ms on one core; 16 of them one after another cost as much as a third of the
GPU's time for the batch. Pillow releases the GIL while it compresses, so a pool of threads
encodes them in parallel (8.6 ms per image with 8 threads) while the GPU renders the next batch.
"""

from __future__ import annotations

import base64
import io
import os
from concurrent.futures import Future, ThreadPoolExecutor

from PIL import Image, PngImagePlugin

from worker.engine import Pixels
from worker.protocol import FORMATS, ImageFormat

__all__ = ["FORMATS", "EncoderPool", "ImageFormat", "encode", "encode_b64"]
PNG_COMPRESS_LEVEL = 6  # Pillow's default, which automatic1111 uses


def encode(
    pixels: Pixels,
    fmt: ImageFormat = "png",
    *,
    infotext: str = "",
    quality: int = 80,
    png_compress_level: int = PNG_COMPRESS_LEVEL,
) -> bytes:
    """One image (height, width, 3) as PNG (infotext in a "parameters" text chunk, where
    automatic1111 puts it), JPEG or WebP (``quality`` as automatic1111's jpeg_quality)."""
    image = Image.fromarray(pixels, mode="RGB")
    out = io.BytesIO()
    if fmt == "png":
        info = PngImagePlugin.PngInfo()
        if infotext:
            info.add_text("parameters", infotext)
        image.save(out, format="PNG", pnginfo=info, compress_level=png_compress_level)
    elif fmt == "jpg":
        image.save(out, format="JPEG", quality=quality)
    else:
        image.save(out, format="WEBP", quality=quality)
    return out.getvalue()


def encode_b64(
    pixels: Pixels,
    fmt: ImageFormat = "png",
    *,
    infotext: str = "",
    quality: int = 80,
    png_compress_level: int = PNG_COMPRESS_LEVEL,
) -> str:
    data = encode(
        pixels, fmt, infotext=infotext, quality=quality, png_compress_level=png_compress_level
    )
    return base64.b64encode(data).decode("ascii")


def default_threads() -> int:
    return max(1, min(8, os.cpu_count() or 1))


class EncoderPool:
    """A fixed pool of encoding threads shared by every request of the process."""

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads or default_threads()
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="encode")

    def submit(
        self,
        pixels: Pixels,
        fmt: ImageFormat = "png",
        *,
        infotext: str = "",
        quality: int = 80,
        png_compress_level: int = PNG_COMPRESS_LEVEL,
    ) -> Future[str]:
        return self._pool.submit(
            encode_b64,
            pixels,
            fmt,
            infotext=infotext,
            quality=quality,
            png_compress_level=png_compress_level,
        )

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
