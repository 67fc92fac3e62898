"""The automatic1111 client against mocked HTTP (shapes from AUTOMATIC1111 modules/api)."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import respx

from subconscious.errors import (
    BadImage,
    RendererAnswerTooLarge,
    RendererError,
    RendererOutOfMemory,
    RendererUnavailable,
)
from subconscious.models import RenderTask, Sampler
from subconscious.render.a1111 import (
    SMALL_ANSWER_BYTES,
    A1111Client,
    RenderedImage,
    txt2img_answer_cap,
)
from tests import builders
from tests.unit.render.pngs import b64_png, make_png

BASE = "http://gpu.test:7860"
TXT2IMG = "/sdapi/v1/txt2img"
MODELS = "/sdapi/v1/sd-models"
OOM_BODY = {
    "error": "OutOfMemoryError",
    "detail": "",
    "body": "",
    "errors": "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 23.65 GiB total capacity)",
}


def task(seed: int = 1000, batch_size: int = 2, width: int = 512, height: int = 512) -> RenderTask:
    return builders.render_task(
        seed,
        batch_size,
        width=width,
        height=height,
        prompt="a red fox in snow",
        negative_prompt="blurry",
        steps=25,
        cfg_scale=Decimal("7.5"),
        sampler=Sampler.DPM_2M_KARRAS,
    )


def answer(
    seeds: list[int],
    *,
    width: int = 512,
    height: int = 512,
    grid: bool = False,
    images: list[str] | None = None,
) -> dict[str, Any]:
    encoded = images if images is not None else [b64_png(width, height) for _ in seeds]
    info: dict[str, Any] = {
        "prompt": "a red fox in snow",
        "seed": seeds[0] if seeds else -1,
        "all_seeds": seeds,
        "index_of_first_image": 0,
        "width": width,
        "height": height,
    }
    if grid:
        encoded = [b64_png(width * 2, height), *encoded]
        info["index_of_first_image"] = 1
    return {"images": encoded, "parameters": {}, "info": json.dumps(info)}


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Back-off sleeps are recorded, not slept."""
    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)
    return slept


@pytest.fixture
def renderer(sleeps: list[float]) -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        yield router


@pytest.fixture
def client() -> Iterator[A1111Client]:
    c = A1111Client(BASE, auth=("subc", "s3cret-pass"), timeout_s=5.0)
    yield c
    c.close()


def sent(route: respx.Route, index: int = -1) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(route.calls[index].request.content)
    return body


# --- txt2img request ---
def test_txt2img_sends_the_task(renderer: respx.MockRouter, client: A1111Client) -> None:
    route = renderer.post(TXT2IMG).mock(return_value=httpx.Response(200, json=answer([1000, 1001])))
    client.txt2img(task(1000, 2))
    payload = sent(route)
    assert payload == {
        "prompt": "a red fox in snow",
        "negative_prompt": "blurry",
        "seed": 1000,
        "subseed": -1,
        "sampler_name": "DPM++ 2M Karras",
        "steps": 25,
        "cfg_scale": 7.5,
        "width": 512,
        "height": 512,
        "batch_size": 2,
        "n_iter": 1,
        "save_images": False,
        "send_images": True,
    }
    assert type(payload["cfg_scale"]) is float  # a JSON number, not the string "7.5"
    assert payload["save_images"] is False
    assert route.call_count == 1


def test_basic_auth_header_is_sent(renderer: respx.MockRouter, client: A1111Client) -> None:
    route = renderer.post(TXT2IMG).mock(return_value=httpx.Response(200, json=answer([1000, 1001])))
    client.txt2img(task())
    expected = "Basic " + base64.b64encode(b"subc:s3cret-pass").decode()
    assert route.calls.last.request.headers["authorization"] == expected


# --- txt2img answer ---
def test_txt2img_returns_one_image_per_seed(
    renderer: respx.MockRouter, client: A1111Client
) -> None:
    renderer.post(TXT2IMG).mock(
        return_value=httpx.Response(200, json=answer([7, 8, 9, 10], width=576, height=640))
    )
    images = client.txt2img(task(7, 4, width=576, height=640))
    assert [i.seed for i in images] == [7, 8, 9, 10]
    assert all(i.png == make_png(576, 640) for i in images)
    assert all(isinstance(i, RenderedImage) for i in images)


def test_grid_image_first_is_skipped(renderer: respx.MockRouter, client: A1111Client) -> None:
    renderer.post(TXT2IMG).mock(return_value=httpx.Response(200, json=answer([50, 51], grid=True)))
    images = client.txt2img(task(50, 2))
    assert [(i.seed, i.png) for i in images] == [(50, make_png(512, 512)), (51, make_png(512, 512))]


@pytest.mark.parametrize(
    "seeds",
    [[1001, 1002], [1000, 1000], [1001, 1000], [1000], []],
)
def test_wrong_seeds_are_a_bad_image(
    renderer: respx.MockRouter, client: A1111Client, seeds: list[int]
) -> None:
    body = answer(seeds, images=[b64_png(512, 512)] * 2)
    renderer.post(TXT2IMG).mock(return_value=httpx.Response(200, json=body))
    with pytest.raises(BadImage, match=r"asked for seeds \[1000, 1001\]"):
        client.txt2img(task(1000, 2))


def test_too_few_images_is_a_bad_image(renderer: respx.MockRouter, client: A1111Client) -> None:
    body = answer([1000, 1001], images=[b64_png(512, 512)])
    renderer.post(TXT2IMG).mock(return_value=httpx.Response(200, json=body))
    with pytest.raises(BadImage, match=r"\(1 images\)"):
        client.txt2img(task(1000, 2))


def test_non_base64_image_is_a_bad_image(renderer: respx.MockRouter, client: A1111Client) -> None:
    body = answer([1000, 1001], images=[b64_png(512, 512), "not base64 at all!"])
    renderer.post(TXT2IMG).mock(return_value=httpx.Response(200, json=body))
    with pytest.raises(BadImage, match="image for seed 1001 is not base64"):
        client.txt2img(task(1000, 2))


def test_wrong_size_png_is_a_bad_image(renderer: respx.MockRouter, client: A1111Client) -> None:
    renderer.post(TXT2IMG).mock(
        return_value=httpx.Response(200, json=answer([1000, 1001], width=512, height=768))
    )
    with pytest.raises(BadImage, match="PNG is 512x768, asked for 512x512"):
        client.txt2img(task(1000, 2))


def test_jpeg_instead_of_png_is_a_bad_image(
    renderer: respx.MockRouter, client: A1111Client
) -> None:
    fake_jpeg = base64.b64encode(b"\xff\xd8\xff\xe0" + b"\x00" * 64).decode()
    renderer.post(TXT2IMG).mock(
        return_value=httpx.Response(200, json=answer([1000], images=[fake_jpeg]))
    )
    with pytest.raises(BadImage, match="not a PNG"):
        client.txt2img(task(1000, 1))


@pytest.mark.parametrize(
    "body",
    [
        {"info": json.dumps({"all_seeds": [1000]})},  # no images
        {"images": [], "info": "{not json"},
        {"images": None, "info": json.dumps({"all_seeds": [1000]})},
    ],
)
def test_answer_without_images_or_info_is_a_bad_image(
    renderer: respx.MockRouter, client: A1111Client, body: dict[str, Any]
) -> None:
    renderer.post(TXT2IMG).mock(return_value=httpx.Response(200, json=body))
    with pytest.raises(BadImage):
        client.txt2img(task(1000, 1))


def test_answer_that_is_not_an_object_is_a_renderer_error(
    renderer: respx.MockRouter, client: A1111Client
) -> None:
    renderer.post(TXT2IMG).mock(return_value=httpx.Response(200, json=["x"]))
    with pytest.raises(RendererError, match="did not answer an object") as excinfo:
        client.txt2img(task())
    assert type(excinfo.value) is RendererError


# --- failures ---
def test_out_of_memory_is_not_retried(
    renderer: respx.MockRouter, client: A1111Client, sleeps: list[float]
) -> None:
    route = renderer.post(TXT2IMG).mock(return_value=httpx.Response(500, json=OOM_BODY))
    with pytest.raises(RendererOutOfMemory):
        client.txt2img(task(1000, 8))
    assert route.call_count == 1
    assert sleeps == []


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(
            500,
            json={
                "error": "RuntimeError",
                "detail": "",
                "body": "",
                "errors": "CUDA out of memory.",
            },
        ),
        httpx.Response(500, text="torch.cuda.OutOfMemoryError: CUDA out of memory"),
        httpx.Response(503, json=OOM_BODY),
    ],
)
def test_out_of_memory_is_recognised_by_its_message(
    renderer: respx.MockRouter, client: A1111Client, response: httpx.Response
) -> None:
    route = renderer.post(TXT2IMG).mock(return_value=response)
    with pytest.raises(RendererOutOfMemory):
        client.txt2img(task())
    assert route.call_count == 1


def test_other_500_is_retried_then_renderer_error(
    renderer: respx.MockRouter, client: A1111Client, sleeps: list[float]
) -> None:
    body = {"error": "RuntimeError", "detail": "", "body": "", "errors": "something broke"}
    route = renderer.post(TXT2IMG).mock(return_value=httpx.Response(500, json=body))
    with pytest.raises(RendererError, match="HTTP 500 RuntimeError") as excinfo:
        client.txt2img(task())
    assert type(excinfo.value) is RendererError
    assert route.call_count == 3
    assert sleeps == [0.2, 0.4]


def test_500_then_success_returns_the_images(
    renderer: respx.MockRouter, client: A1111Client, sleeps: list[float]
) -> None:
    route = renderer.post(TXT2IMG).mock(
        side_effect=[
            httpx.Response(500, json={"error": "RuntimeError", "errors": "flaky"}),
            httpx.Response(500, text="Internal Server Error"),
            httpx.Response(200, json=answer([1000, 1001])),
        ]
    )
    images = client.txt2img(task(1000, 2))
    assert [i.seed for i in images] == [1000, 1001]
    assert route.call_count == 3
    assert sleeps == [0.2, 0.4]


@pytest.mark.parametrize(
    "error",
    [
        httpx.ConnectError("refused"),
        httpx.RemoteProtocolError("peer closed"),
        httpx.ReadTimeout("slow"),
    ],
)
def test_transport_errors_are_renderer_unavailable(
    renderer: respx.MockRouter, client: A1111Client, error: Exception
) -> None:
    renderer.post(TXT2IMG).mock(side_effect=error)
    with pytest.raises(RendererUnavailable, match=type(error).__name__):
        client.txt2img(task())


@pytest.mark.parametrize("status", [502, 503, 504, 524])
def test_gateway_statuses_are_renderer_unavailable(
    renderer: respx.MockRouter, client: A1111Client, status: int
) -> None:
    renderer.post(TXT2IMG).mock(return_value=httpx.Response(status, text="upstream gone"))
    with pytest.raises(RendererUnavailable, match=f"HTTP {status}"):
        client.txt2img(task())


def test_500_with_a_non_object_body_is_a_renderer_error(
    renderer: respx.MockRouter, client: A1111Client
) -> None:
    route = renderer.post(TXT2IMG).mock(return_value=httpx.Response(500, json=["oops"]))
    with pytest.raises(RendererError, match=r"HTTP 500 $") as excinfo:
        client.txt2img(task())
    assert type(excinfo.value) is RendererError
    assert route.call_count == 3


def test_401_is_a_renderer_error(renderer: respx.MockRouter, client: A1111Client) -> None:
    renderer.post(TXT2IMG).mock(
        return_value=httpx.Response(401, json={"detail": "Incorrect username or password"})
    )
    with pytest.raises(RendererError, match="refused our credential") as excinfo:
        client.txt2img(task())
    assert type(excinfo.value) is RendererError


def test_422_is_a_renderer_error(renderer: respx.MockRouter, client: A1111Client) -> None:
    renderer.post(TXT2IMG).mock(return_value=httpx.Response(422, json={"detail": []}))
    with pytest.raises(RendererError, match="HTTP 422") as excinfo:
        client.txt2img(task())
    assert type(excinfo.value) is RendererError


# --- models and readiness ---
def test_models_lists_checkpoints(renderer: respx.MockRouter, client: A1111Client) -> None:
    listing = [{"title": "sd15.safetensors [abc]", "model_name": "sd15", "hash": "abc"}]
    renderer.get(MODELS).mock(return_value=httpx.Response(200, json=listing))
    assert client.models() == listing


def test_models_must_be_a_list(renderer: respx.MockRouter, client: A1111Client) -> None:
    renderer.get(MODELS).mock(return_value=httpx.Response(200, json={"models": []}))
    with pytest.raises(RendererError, match="did not answer a list"):
        client.models()


def test_ready_when_models_and_warm_up_succeed(
    renderer: respx.MockRouter, client: A1111Client
) -> None:
    renderer.get(MODELS).mock(return_value=httpx.Response(200, json=[{"title": "sd15"}]))
    warm_up = renderer.post(TXT2IMG).mock(
        return_value=httpx.Response(200, json=answer([1], width=64, height=64))
    )
    assert client.is_ready() is True
    payload = sent(warm_up)
    assert (payload["steps"], payload["width"], payload["height"], payload["batch_size"]) == (
        1,
        64,
        64,
        1,
    )
    assert payload["save_images"] is False


def test_not_ready_when_models_answer_503(renderer: respx.MockRouter, client: A1111Client) -> None:
    renderer.get(MODELS).mock(return_value=httpx.Response(503))
    warm_up = renderer.post(TXT2IMG).mock(return_value=httpx.Response(200, json=answer([1])))
    assert client.is_ready() is False
    assert warm_up.call_count == 0


def test_not_ready_when_no_model_is_listed(renderer: respx.MockRouter, client: A1111Client) -> None:
    renderer.get(MODELS).mock(return_value=httpx.Response(200, json=[]))
    warm_up = renderer.post(TXT2IMG).mock(return_value=httpx.Response(200, json=answer([1])))
    assert client.is_ready() is False
    assert warm_up.call_count == 0


def test_not_ready_when_models_unreachable(renderer: respx.MockRouter, client: A1111Client) -> None:
    renderer.get(MODELS).mock(side_effect=httpx.ConnectError("refused"))
    assert client.is_ready() is False


@pytest.mark.parametrize(
    "failure",
    [
        httpx.Response(500, json={"error": "RuntimeError", "errors": "model not loaded"}),
        httpx.Response(503),
        httpx.ConnectError("refused"),
        httpx.Response(200, json=["not", "an", "object"]),
    ],
)
def test_not_ready_when_warm_up_fails(
    renderer: respx.MockRouter, client: A1111Client, failure: httpx.Response | Exception
) -> None:
    renderer.get(MODELS).mock(return_value=httpx.Response(200, json=[{"title": "sd15"}]))
    route = renderer.post(TXT2IMG)
    if isinstance(failure, Exception):
        route.mock(side_effect=failure)
    else:
        route.mock(return_value=failure)
    assert client.is_ready() is False


def test_not_ready_when_warm_up_runs_out_of_memory(
    renderer: respx.MockRouter, client: A1111Client
) -> None:
    renderer.get(MODELS).mock(return_value=httpx.Response(200, json=[{"title": "sd15"}]))
    renderer.post(TXT2IMG).mock(return_value=httpx.Response(500, json=OOM_BODY))
    assert client.is_ready() is False


def test_an_injected_http_client_is_used() -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(200, json=[{"title": "x"}])

    http = httpx.Client(base_url="http://other.test", transport=httpx.MockTransport(handler))
    client = A1111Client("http://ignored.test", auth=None, timeout_s=1.0, http=http)
    assert client.models() == [{"title": "x"}]
    client.close()
    assert [str(r.url) for r in calls] == ["http://other.test/sdapi/v1/sd-models"]
    assert "authorization" not in calls[0].headers
    assert http.is_closed


@pytest.mark.parametrize("status", [401, 422])
def test_client_errors_are_not_retried(
    renderer: respx.MockRouter, client: A1111Client, sleeps: list[float], status: int
) -> None:
    route = renderer.post(TXT2IMG).mock(return_value=httpx.Response(status, json={"detail": "no"}))
    with pytest.raises(RendererError):
        client.txt2img(task())
    assert route.call_count == 1
    assert sleeps == []


@pytest.mark.parametrize(
    "body",
    [
        {"images": [b64_png(512, 512)], "info": json.dumps("plain text")},
        {"images": [b64_png(512, 512)], "info": json.dumps([1000])},
        {"images": [b64_png(512, 512)], "info": json.dumps({"all_seeds": ["x"]})},
        {
            "images": [b64_png(512, 512)],
            "info": json.dumps({"all_seeds": [1000], "index_of_first_image": None}),
        },
        {"images": [None], "info": json.dumps({"all_seeds": [1000]})},
    ],
)
def test_malformed_answers_are_bad_images(
    renderer: respx.MockRouter, client: A1111Client, body: dict[str, Any]
) -> None:
    renderer.post(TXT2IMG).mock(return_value=httpx.Response(200, json=body))
    with pytest.raises(BadImage):
        client.txt2img(task(1000, 1))


def test_not_ready_when_models_answer_is_not_json(
    renderer: respx.MockRouter, client: A1111Client
) -> None:
    renderer.get(MODELS).mock(return_value=httpx.Response(200, text="<html>loading</html>"))
    assert client.is_ready() is False


# --- answer size caps ---
class _Counted(httpx.SyncByteStream):
    """A body of ``total`` bytes in 64 KiB chunks that counts what the client pulled."""

    def __init__(self, total: int, first: bytes = b"") -> None:
        self.total = total
        self.first = first
        self.pulled = 0
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        chunk = 64 * 1024
        sent = 0
        if self.first:
            self.pulled += len(self.first)
            sent += len(self.first)
            yield self.first
        while sent < self.total:
            part = b" " * min(chunk, self.total - sent)
            sent += len(part)
            self.pulled += len(part)
            yield part

    def close(self) -> None:
        self.closed = True


def _streaming_client(
    body: _Counted, status: int = 200, headers: dict[str, str] | None = None
) -> tuple[A1111Client, list[httpx.Request]]:
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(status, headers=headers, stream=body)

    http = httpx.Client(base_url=BASE, transport=httpx.MockTransport(handler))
    return A1111Client(BASE, auth=None, timeout_s=1.0, http=http), requests


def test_an_oversized_answer_is_cut_at_the_cap(sleeps: list[float]) -> None:
    body = _Counted(64 * 1024 * 1024, first=b"[")
    client, requests = _streaming_client(body)
    with pytest.raises(RendererAnswerTooLarge, match="reading stopped"):
        client.models()
    assert SMALL_ANSWER_BYTES < body.pulled <= SMALL_ANSWER_BYTES + 64 * 1024 + 1
    assert body.closed  # the connection is dropped, not drained
    assert requests[0].headers["accept-encoding"] == "identity"
    with pytest.raises(RendererAnswerTooLarge):  # a flood is not "not ready yet"
        client.is_ready()


def test_a_declared_oversized_answer_is_not_read_at_all() -> None:
    body = _Counted(10 * SMALL_ANSWER_BYTES)
    client, _ = _streaming_client(body, headers={"Content-Length": str(10 * SMALL_ANSWER_BYTES)})
    with pytest.raises(RendererAnswerTooLarge, match=f"answer of {10 * SMALL_ANSWER_BYTES} bytes"):
        client.models()
    assert body.pulled == 0


def test_an_oversized_error_body_is_cut_too() -> None:
    body = _Counted(4 * SMALL_ANSWER_BYTES)
    client, _ = _streaming_client(body, status=500)
    with pytest.raises(RendererAnswerTooLarge):
        client.models()
    assert body.pulled <= SMALL_ANSWER_BYTES + 64 * 1024


def test_an_oversized_txt2img_answer_is_not_retried(sleeps: list[float]) -> None:
    cap = txt2img_answer_cap({"width": 512, "height": 512, "batch_size": 2, "prompt": "x"})
    body = _Counted(cap * 4)
    client, requests = _streaming_client(body)
    with pytest.raises(RendererAnswerTooLarge):
        client.txt2img(task(1000, 2))
    assert len(requests) == 1 and sleeps == []
    assert cap < body.pulled <= cap + 64 * 1024


def test_a_compressed_answer_is_refused() -> None:
    body = _Counted(100)
    client, _ = _streaming_client(body, headers={"Content-Encoding": "gzip"})
    with pytest.raises(RendererError, match="encoded as 'gzip'"):
        client.models()
    assert body.pulled == 0


def test_the_txt2img_cap_holds_honest_answers() -> None:
    payload = {
        "width": 512,
        "height": 512,
        "batch_size": 8,
        "n_iter": 1,
        "prompt": "🦊" * 2000,
        "negative_prompt": "ü" * 2000,
    }
    cap = txt2img_answer_cap(payload)
    # eight 512x512 RGBA PNGs that do not compress at all, base64, with a grid-sized info
    worst_png = 512 * 512 * 4 + 512
    assert cap > 8 * worst_png * 4 // 3
    # an info with the prompts repeated per image, escaped twice
    info = {"all_prompts": [payload["prompt"]] * 8, "all_negative_prompts": ["ü" * 2000] * 8}
    info["infotexts"] = [str(payload["prompt"]) + "ü" * 2000] * 8
    assert len(json.dumps({"info": json.dumps(info)})) < cap - 8 * worst_png * 4 // 3
    # and stays well inside the render Lambda's 256 MB at the largest sizes
    sdxl = txt2img_answer_cap({"width": 1024, "height": 1024, "batch_size": 8, "prompt": "x"})
    assert sdxl < 48 * 1024 * 1024
    assert txt2img_answer_cap({"width": 64, "height": 64}) < 2 * 1024 * 1024


def test_an_answer_within_the_cap_is_read_whole(renderer: respx.MockRouter) -> None:
    renderer.post(TXT2IMG).mock(return_value=httpx.Response(200, json=answer([1000, 1001])))
    client = A1111Client(BASE, auth=None, timeout_s=5.0)
    try:
        assert [i.seed for i in client.txt2img(task(1000, 2))] == [1000, 1001]
    finally:
        client.close()


def test_a_real_flood_is_cut_and_the_connection_closed() -> None:
    """A loopback server streams 256 MB; the client stops near the cap and hangs up."""
    total = 256 * 1024 * 1024
    sent: list[int] = []
    done = threading.Event()

    class Flood(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()  # no length: the body runs until the connection closes
            written = 0
            chunk = b"[" + b" " * (64 * 1024 - 1)
            try:
                while written < total:
                    self.wfile.write(chunk)
                    written += len(chunk)
            except OSError:  # the client hung up
                pass
            finally:
                sent.append(written)
                done.set()
                self.close_connection = True

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Flood)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    client = A1111Client(url, auth=None, timeout_s=10.0, allow_private=True)
    try:
        with pytest.raises(RendererAnswerTooLarge):
            client.models()
        assert done.wait(10)
    finally:
        client.close()
        server.shutdown()
        server.server_close()
    # what the server got out before the hang-up: the cap plus socket buffers, not 256 MB
    assert sent[0] < 32 * 1024 * 1024
