"""The library: request shapes, retries under one idempotency key, paging, waiting, downloads."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from subconscious_cli.client import PNG_SIGNATURE, ApiError, Client
from tests.client.fakes import (
    API,
    KEY,
    ORDER_ID,
    PNG,
    STORAGE,
    error_json,
    image_json,
    order_json,
    quote_json,
)

ORDERS = f"{API}/v1/orders"
IMAGES = f"{API}/v1/orders/{ORDER_ID}/images"


def body_of(call: Any) -> Any:
    return json.loads(call.request.content)


def test_quote_posts_job_and_constraints_with_the_key(
    api: respx.MockRouter, client: Client
) -> None:
    route = api.post(f"{API}/v1/quotes").respond(201, json=quote_json())
    job = {"prompts": [{"text": "a fox", "count": 3}], "model_family": "sd15"}

    quote = client.quote(job, {"deadline": None, "max_price_per_image_usd": Decimal("0.030")})

    request = route.calls.last.request
    assert request.headers["x-api-key"] == KEY
    assert body_of(route.calls.last) == {
        "job": job,
        "constraints": {"deadline": None, "max_price_per_image_usd": "0.030"},
    }
    assert quote.quote_id == "q-1"
    assert quote.options[0].price_per_image_usd == Decimal("0.000123")
    assert quote["options"][0]["option_id"] == "opt-requested"  # reads like the JSON too


def test_fractional_json_numbers_become_decimals(api: respx.MockRouter, client: Client) -> None:
    body = json.dumps({**order_json("completed", 10), "charge_usd": "@"}).replace('"@"', "0.1")
    api.get(f"{ORDERS}/{ORDER_ID}").respond(200, content=body.encode())
    order = client.status(ORDER_ID)
    assert order.charge_usd == Decimal("0.1")
    assert isinstance(order.charge_usd, Decimal)


def test_an_answer_that_does_not_parse_is_a_clear_error(
    api: respx.MockRouter, client: Client
) -> None:
    broken = {**order_json(), "images_done": "many"}
    api.get(f"{ORDERS}/{ORDER_ID}").respond(200, json=broken)
    with pytest.raises(ApiError) as caught:
        client.status(ORDER_ID)
    assert caught.value.code == "bad_response"
    assert "images_done" in caught.value.message


def test_order_retries_a_503_under_the_same_idempotency_key(
    api: respx.MockRouter, client: Client
) -> None:
    route = api.post(ORDERS).mock(
        side_effect=[
            httpx.Response(503, json=error_json("no_capacity", "try again")),
            httpx.Response(201, json=order_json()),
        ]
    )

    order = client.order("q-1", "opt-requested")

    assert order.order_id == ORDER_ID
    keys = [call.request.headers["idempotency-key"] for call in route.calls]
    assert len(keys) == 2
    assert keys[0] == keys[1]
    assert 8 <= len(keys[0]) <= 128
    assert [body_of(call) for call in route.calls] == [
        {"quote_id": "q-1", "option_id": "opt-requested"}
    ] * 2


def test_order_retries_a_lost_connection_and_an_in_progress_conflict(
    api: respx.MockRouter, client: Client
) -> None:
    route = api.post(ORDERS).mock(
        side_effect=[
            httpx.ConnectError("connection reset"),
            httpx.Response(409, json=error_json("request_in_progress", "retry shortly")),
            httpx.Response(201, json=order_json()),
        ]
    )

    client.order("q-1", "opt-requested", idempotency_key="my-key-123")

    assert [c.request.headers["idempotency-key"] for c in route.calls] == ["my-key-123"] * 3


def test_each_order_call_gets_its_own_key(api: respx.MockRouter, client: Client) -> None:
    route = api.post(ORDERS).respond(201, json=order_json())
    client.order("q-1", "opt-requested")
    client.order("q-2", "opt-requested")
    first, second = (c.request.headers["idempotency-key"] for c in route.calls)
    assert first != second


def test_order_gives_up_after_three_retries(api: respx.MockRouter, client: Client) -> None:
    route = api.post(ORDERS).respond(503, json=error_json("no_capacity", "no machines"))
    with pytest.raises(ApiError) as caught:
        client.order("q-1", "opt-requested")
    assert route.call_count == 4
    assert (caught.value.status, caught.value.code) == (503, "no_capacity")


def test_order_does_not_retry_a_client_error(api: respx.MockRouter, client: Client) -> None:
    route = api.post(ORDERS).respond(410, json=error_json("quote_expired", "quote expired"))
    with pytest.raises(ApiError, match="quote_expired"):
        client.order("q-1", "opt-requested")
    assert route.call_count == 1


def test_api_error_carries_code_and_field_details(api: respx.MockRouter, client: Client) -> None:
    details = [
        {"field": "job.width", "message": "must be a multiple of 64"},
        {"field": "job.prompts.0.count", "message": "must be at least 1"},
    ]
    api.post(f"{API}/v1/quotes").respond(
        422, json=error_json("validation_error", "the request is invalid", details)
    )

    with pytest.raises(ApiError) as caught:
        client.quote({"prompts": []})

    error = caught.value
    assert error.status == 422
    assert error.code == "validation_error"
    assert error.message == "the request is invalid"
    assert error.details == details
    text = str(error)
    assert "validation_error" in text
    assert "the request is invalid" in text
    assert "job.width: must be a multiple of 64" in text
    assert "job.prompts.0.count" in text


def test_api_error_from_a_body_outside_the_envelope(api: respx.MockRouter, client: Client) -> None:
    api.delete(f"{ORDERS}/{ORDER_ID}").respond(403, json={"message": "Forbidden"})
    with pytest.raises(ApiError) as caught:
        client.cancel(ORDER_ID)
    assert (caught.value.status, caught.value.code) == (403, "http_403")
    # not our API's envelope: a proxy or a wrong URL answered, so the URL is named
    assert caught.value.message == f"Forbidden (from DELETE {ORDERS}/{ORDER_ID})"
    assert caught.value.url == f"{ORDERS}/{ORDER_ID}"


def test_connection_failure_is_an_api_error_without_status(
    api: respx.MockRouter, client: Client
) -> None:
    api.get(f"{ORDERS}/{ORDER_ID}").mock(side_effect=httpx.ConnectError("refused"))
    with pytest.raises(ApiError) as caught:
        client.status(ORDER_ID)
    assert caught.value.status is None
    assert caught.value.code == "connection_error"


def test_images_follows_next_token_across_pages(api: respx.MockRouter, client: Client) -> None:
    pages = {
        None: ([image_json(0, 10), image_json(0, 11)], "t1"),
        "t1": ([image_json(1, 20), image_json(1, 21)], "t2"),
        "t2": ([image_json(2, 30)], None),
    }

    def page(request: httpx.Request) -> httpx.Response:
        assert request.url.params["limit"] == "2"
        images, token = pages[request.url.params.get("next_token")]
        return httpx.Response(
            200, json={"order_id": ORDER_ID, "images": images, "next_token": token}
        )

    route = api.get(IMAGES).mock(side_effect=page)

    seeds = [image.seed for image in client.images(ORDER_ID, page_size=2)]

    assert seeds == [10, 11, 20, 21, 30]
    assert route.call_count == 3


def test_images_refuses_a_repeated_token(api: respx.MockRouter, client: Client) -> None:
    api.get(IMAGES).respond(
        200, json={"order_id": ORDER_ID, "images": [image_json(0, 1)], "next_token": "same"}
    )
    with pytest.raises(ApiError, match="next_token"):
        list(client.images(ORDER_ID))


def test_wait_returns_the_completed_order_and_reports_each_poll(
    api: respx.MockRouter, client: Client
) -> None:
    api.get(f"{ORDERS}/{ORDER_ID}").mock(
        side_effect=[
            httpx.Response(200, json=order_json("accepted")),
            httpx.Response(200, json=order_json("rendering", done=40)),
            httpx.Response(200, json=order_json("completed", done=100)),
        ]
    )
    seen: list[str] = []

    order = client.wait(ORDER_ID, timeout_s=5, poll_s=0, on_progress=lambda o: seen.append(o.state))

    assert order.state == "completed"
    assert seen == ["accepted", "rendering", "completed"]


def test_wait_survives_a_transient_5xx(api: respx.MockRouter, client: Client) -> None:
    api.get(f"{ORDERS}/{ORDER_ID}").mock(
        side_effect=[
            httpx.Response(502, text="Bad Gateway"),
            httpx.Response(200, json=order_json("partially_completed", done=90)),
        ]
    )
    assert client.wait(ORDER_ID, timeout_s=5, poll_s=0).state == "partially_completed"


def test_wait_raises_timeout_error(api: respx.MockRouter, client: Client) -> None:
    api.get(f"{ORDERS}/{ORDER_ID}").respond(200, json=order_json("rendering", done=1))
    with pytest.raises(TimeoutError, match="rendering"):
        client.wait(ORDER_ID, timeout_s=0.05, poll_s=0.01)


def mock_listing(api: respx.MockRouter, images: list[dict[str, Any]]) -> None:
    api.get(IMAGES).respond(200, json={"order_id": ORDER_ID, "images": images, "next_token": None})


def test_download_names_files_by_prompt_and_seed_and_keeps_the_key_off_storage(
    api: respx.MockRouter, client: Client, tmp_path: Path
) -> None:
    images = [image_json(1, 7), image_json(0, 42), image_json(12, 3)]
    mock_listing(api, images)
    storage = api.get(url__startswith=STORAGE).respond(200, content=PNG)

    paths = client.download(ORDER_ID, tmp_path / "out", workers=3)

    assert [p.name for p in paths] == ["000-42.png", "001-7.png", "012-3.png"]
    assert all(p.read_bytes() == PNG for p in paths)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        *(p.name for p in paths),
        "manifest.jsonl",
    ]
    manifest = [json.loads(line) for line in (tmp_path / "out" / "manifest.jsonl").open()]
    assert manifest == [
        {
            "file": "000-42.png",
            "prompt": "prompt 0",
            "prompt_index": 0,
            "seed": 42,
            "order_id": ORDER_ID,
        },
        {
            "file": "001-7.png",
            "prompt": "prompt 1",
            "prompt_index": 1,
            "seed": 7,
            "order_id": ORDER_ID,
        },
        {
            "file": "012-3.png",
            "prompt": "prompt 12",
            "prompt_index": 12,
            "seed": 3,
            "order_id": ORDER_ID,
        },
    ]
    listing = api.routes[0].calls.last.request
    assert listing.headers["x-api-key"] == KEY
    assert storage.call_count == 3
    for call in storage.calls:
        assert "x-api-key" not in call.request.headers
        assert KEY not in str(call.request.headers)
        assert call.request.url.params["X-Amz-Signature"] == "secret-sig"


def test_download_rejects_bytes_that_are_not_png(
    api: respx.MockRouter, client: Client, tmp_path: Path
) -> None:
    mock_listing(api, [image_json(0, 1)])
    api.get(url__startswith=STORAGE).respond(200, content=b"<Error>AccessDenied</Error>")

    with pytest.raises(ApiError) as caught:
        client.download(ORDER_ID, tmp_path)

    assert caught.value.code == "bad_image"
    assert "secret-sig" not in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_download_retries_a_failed_fetch_twice(
    api: respx.MockRouter, client: Client, tmp_path: Path
) -> None:
    mock_listing(api, [image_json(0, 1)])
    storage = api.get(url__startswith=STORAGE).mock(
        side_effect=[
            httpx.Response(500),
            httpx.ReadTimeout("slow"),
            httpx.Response(200, content=PNG),
        ]
    )
    assert [p.name for p in client.download(ORDER_ID, tmp_path)] == ["000-1.png"]
    assert storage.call_count == 3


def test_download_fails_after_three_attempts_and_keeps_what_arrived(
    api: respx.MockRouter, client: Client, tmp_path: Path
) -> None:
    mock_listing(api, [image_json(0, 1), image_json(0, 2)])
    api.get(f"{STORAGE}/img/0-1.png").respond(200, content=PNG)
    broken = api.get(f"{STORAGE}/img/0-2.png").respond(403)

    with pytest.raises(ApiError) as caught:
        client.download(ORDER_ID, tmp_path, workers=2)

    assert (caught.value.code, caught.value.status) == ("download_failed", 403)
    assert "secret-sig" not in str(caught.value)
    assert broken.call_count == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["000-1.png", "manifest.jsonl"]
    lines = (tmp_path / "manifest.jsonl").read_text().splitlines()
    assert [json.loads(line)["file"] for line in lines] == ["000-1.png"]


def test_download_skips_pngs_already_on_disk(
    api: respx.MockRouter, client: Client, tmp_path: Path
) -> None:
    mock_listing(api, [image_json(0, 1), image_json(0, 2)])
    (tmp_path / "000-1.png").write_bytes(PNG)
    (tmp_path / "000-2.png").write_bytes(b"half a fi")  # a torn file from some other tool
    storage = api.get(url__startswith=STORAGE).respond(200, content=PNG)

    paths = client.download(ORDER_ID, tmp_path)

    assert [p.name for p in paths] == ["000-1.png", "000-2.png"]
    assert [c.request.url.path for c in storage.calls] == ["/img/0-2.png"]
    assert (tmp_path / "000-2.png").read_bytes().startswith(PNG_SIGNATURE)


def test_the_key_stays_out_of_repr_and_errors(api: respx.MockRouter, client: Client) -> None:
    api.get(f"{ORDERS}/{ORDER_ID}").mock(side_effect=httpx.ConnectError("refused"))
    with pytest.raises(ApiError) as caught:
        client.status(ORDER_ID)
    assert KEY not in repr(client)
    assert KEY not in str(caught.value)
    assert KEY not in repr(caught.value)


def test_an_injected_http_client_is_used_and_left_open(api: respx.MockRouter) -> None:
    api.get(f"{ORDERS}/{ORDER_ID}").respond(200, json=order_json())
    with httpx.Client() as http:
        with Client(API + "/", KEY, http=http) as client:
            assert client.status(ORDER_ID).order_id == ORDER_ID
        assert not http.is_closed


def test_from_env_reads_url_and_key(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="SUBCONSCIOUS_API_KEY"):
        Client.from_env()
    monkeypatch.setenv("SUBCONSCIOUS_API_KEY", KEY)
    with Client.from_env() as local:
        assert repr(local) == "Client('http://127.0.0.1:8600')"
    monkeypatch.setenv("SUBCONSCIOUS_API_URL", API + "/")
    with Client.from_env() as remote:
        assert repr(remote) == f"Client({API!r})"
