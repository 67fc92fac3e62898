"""automatic1111 API client (``/sdapi/v1``): txt2img in batches with seeds checked.

Failures are typed for the render loop: a dead machine (connection dropped, refused, timed out)
is :class:`RendererUnavailable` and gets the machine replaced at once; an out-of-memory answer
is :class:`RendererOutOfMemory` and gets the batch split; any other 5xx is retried a few times;
a 4xx is our bug and is not retried.

A machine is a stranger's computer: its URL must name a public address (``render.address``,
checked on every connection) and no answer is read past a cap derived from the request
(:class:`RendererAnswerTooLarge`), so a hostile host can neither point the render step at our
network nor fill its memory.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from dataclasses import dataclass
from typing import Any

import httpx

from subconscious.errors import (
    BadImage,
    RendererAnswerTooLarge,
    RendererError,
    RendererOutOfMemory,
    RendererUnavailable,
    UnsafeMachineAddress,
)
from subconscious.models import RenderTask
from subconscious.render.address import check_machine_url, guarded_transport
from subconscious.render.png import check_png

_RETRIES_ON_5XX = 2
TXT2IMG_ATTEMPTS = _RETRIES_ON_5XX + 1  # the render loop sizes its time budget from this

# What one answer may hold; the render Lambda has 256 MB.
SMALL_ANSWER_BYTES = 1 << 20  # sd-models, progress, options, error bodies
# A PNG holds at most 4 bytes a pixel (RGBA at 8 bits, incompressible; automatic1111 sends RGB
# and real renders compress well below that), a filter byte a row, its chunks and embedded
# generation parameters. A grid image in front (a server set to return one) holds about as many
# pixels as the batch: at real PNG density images and grid still fit.
_PNG_BYTES_PER_PIXEL = 4
_PNG_OVERHEAD_BYTES = 64 * 1024
# ``info`` repeats the prompts per image (all_prompts, all_negative_prompts, infotexts), each
# character at most 16 bytes once JSON-escaped twice (an emoji as two \uXXXX escapes).
_INFO_BYTES = 1 << 20
_ESCAPED_CHAR_BYTES = 16
_IDENTITY = {"Accept-Encoding": "identity"}  # a compressed answer could expand past any cap


def txt2img_answer_cap(payload: dict[str, Any]) -> int:
    """The most bytes an honest answer to this txt2img request can hold: base64 PNGs + info."""
    images = max(1, int(payload.get("batch_size", 1))) * max(1, int(payload.get("n_iter", 1)))
    width, height = int(payload["width"]), int(payload["height"])
    png = width * height * _PNG_BYTES_PER_PIXEL + height + _PNG_OVERHEAD_BYTES
    base64_png = (png + 2) // 3 * 4 + 4  # and its quotes and comma
    text = len(str(payload.get("prompt", ""))) + len(str(payload.get("negative_prompt", "")))
    info = _INFO_BYTES + _ESCAPED_CHAR_BYTES * text * (3 * images + 2)
    return images * base64_png + info


class _ServerError(RendererError):
    """A plain 5xx: worth retrying on the same machine (unlike 4xx, out-of-memory or silence)."""


@dataclass(frozen=True)
class RenderedImage:
    seed: int
    png: bytes


class A1111Client:
    def __init__(
        self,
        base_url: str,
        *,
        auth: tuple[str, str] | None,
        timeout_s: float,
        http: httpx.Client | None = None,
        allow_private: bool = False,
    ) -> None:
        """``allow_private``: the machine may be on a private or loopback address (the local
        stack's processes, the operator's own static servers); never for a rented machine."""
        check_machine_url(base_url, allow_private=allow_private)
        self._http = http or httpx.Client(
            base_url=base_url,
            auth=auth,
            timeout=httpx.Timeout(timeout_s, connect=5.0),
            transport=guarded_transport(allow_private=allow_private, retries=1),
        )

    def close(self) -> None:
        self._http.close()

    def models(self) -> list[dict[str, Any]]:
        """``GET /sdapi/v1/sd-models``. automatic1111 answers HTTP before its checkpoint loads,
        so an answer here is necessary but not sufficient for ready (see :meth:`is_ready`)."""
        response = self._request("GET", "/sdapi/v1/sd-models")
        models = _json(response)
        if not isinstance(models, list):
            raise RendererError("sd-models did not answer a list")
        return models

    def is_ready(self) -> bool:
        """Ready = the model list answers and one tiny txt2img succeeds."""
        try:
            if not self.models():
                return False
            self._post_txt2img(
                {
                    "prompt": "warm-up",
                    "seed": 1,
                    "steps": 1,
                    "width": 64,
                    "height": 64,
                    "batch_size": 1,
                    "n_iter": 1,
                    "save_images": False,
                    "send_images": True,
                }
            )
        except (UnsafeMachineAddress, RendererAnswerTooLarge):
            raise  # not "not ready yet": this machine must not be polled again
        except (RendererUnavailable, RendererError):
            return False
        return True

    def txt2img(self, task: RenderTask) -> list[RenderedImage]:
        payload = {
            "prompt": task.prompt,
            "negative_prompt": task.negative_prompt,
            "seed": task.seed,
            "subseed": -1,
            "sampler_name": task.sampler.value,
            "steps": task.steps,
            "cfg_scale": float(task.cfg_scale),  # the wire format is a JSON number
            "width": task.width,
            "height": task.height,
            "batch_size": task.batch_size,
            "n_iter": 1,
            "save_images": False,  # no tenant's image stays on a stranger's disk
            "send_images": True,
        }
        body = self._post_txt2img(payload)
        return _images(body, task)

    def _post_txt2img(self, payload: dict[str, Any]) -> dict[str, Any]:
        for attempt in range(_RETRIES_ON_5XX + 1):
            try:
                response = self._request(
                    "POST", "/sdapi/v1/txt2img", cap=txt2img_answer_cap(payload), json=payload
                )
            except _ServerError as error:
                if attempt == _RETRIES_ON_5XX:  # the state machine sees RendererError
                    raise RendererError(str(error)) from error
                time.sleep(0.2 * 2**attempt)
                continue
            body = _json(response)
            if not isinstance(body, dict):
                raise RendererError("txt2img did not answer an object")
            return body
        raise AssertionError("unreachable")  # pragma: no cover

    def _request(
        self, method: str, path: str, *, cap: int = SMALL_ANSWER_BYTES, **kwargs: Any
    ) -> httpx.Response:
        try:
            with self._http.stream(method, path, headers=_IDENTITY, **kwargs) as streamed:
                body = _read_capped(streamed, cap, f"{method} {path}")
        except httpx.TransportError as error:
            raise RendererUnavailable(f"{method} {path}: {type(error).__name__}") from error
        response = httpx.Response(
            streamed.status_code, headers=streamed.headers, content=body, request=streamed.request
        )
        if response.status_code >= 500:
            error_name, detail = _error_of(response)
            if error_name == "OutOfMemoryError" or "out of memory" in detail.lower():
                raise RendererOutOfMemory(f"{method} {path}: out of memory")
            if response.status_code in (502, 503, 504, 524):
                raise RendererUnavailable(f"{method} {path}: HTTP {response.status_code}")
            raise _ServerError(f"{method} {path}: HTTP {response.status_code} {error_name}")
        if response.status_code == 401:
            raise RendererError(f"{method} {path}: the machine refused our credential")
        if response.is_error:
            raise RendererError(f"{method} {path}: HTTP {response.status_code}")
        return response


def _read_capped(response: httpx.Response, cap: int, where: str) -> bytes:
    """The body, read until ``cap`` bytes at most; past it, reading stops and leaving the
    ``stream`` block closes the connection."""
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise RendererError(f"{where}: answer encoded as {encoding!r}, identity was asked")
    declared = response.headers.get("content-length", "").strip()
    if declared.isascii() and declared.isdigit() and int(declared) > cap:
        raise RendererAnswerTooLarge(f"{where}: answer of {declared} bytes, cap {cap}")
    body = bytearray()
    # iter_bytes, not iter_raw: the same bytes (identity), and a transport that hands back an
    # already-read answer (httpx.MockTransport) still works
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) > cap:
            raise RendererAnswerTooLarge(f"{where}: answer over {cap} bytes, reading stopped")
    return bytes(body)


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError as error:  # a proxy's HTML page, a truncated body
        raise RendererError(f"{response.request.url.path}: answer is not JSON") from error


def _error_of(response: httpx.Response) -> tuple[str, str]:
    """automatic1111's error body is ``{"error": <class>, "detail", "body", "errors": <str>}``."""
    try:
        body = response.json()
    except ValueError:
        return "", response.text[:200]
    if not isinstance(body, dict):
        return "", ""
    return str(body.get("error", "")), str(body.get("errors", "")) + str(body.get("detail", ""))


def _images(body: dict[str, Any], task: RenderTask) -> list[RenderedImage]:
    try:
        info = json.loads(body.get("info") or "{}")
        encoded = list(body["images"])
        # A grid image (when the server is set to make one) comes first: skip it.
        encoded = encoded[int(info.get("index_of_first_image", 0)) :]
        seeds = [int(s) for s in info.get("all_seeds", [])][: len(encoded)]
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise BadImage("txt2img answer without well-formed images or info") from error
    if seeds != task.seeds or len(encoded) != task.batch_size:
        raise BadImage(f"asked for seeds {task.seeds}, got {seeds} ({len(encoded)} images)")
    images = []
    for seed, data in zip(seeds, encoded, strict=True):
        try:
            png = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError, TypeError) as error:
            raise BadImage(f"image for seed {seed} is not base64") from error
        check_png(png, task.width, task.height)
        images.append(RenderedImage(seed=seed, png=png))
    return images
