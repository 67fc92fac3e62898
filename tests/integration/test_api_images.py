"""GET /v1/orders/{id}/images: pages of stored images with presigned download links."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import requests

from infra import definitions as d
from subconscious.models import image_key
from subconscious.services import Services
from tests.integration.api_helpers import TENANT_A, assert_error, call, place_order

# handler tests: the API over moto's resources, as in AWS (tests/conftest.py's svc)
pytestmark = pytest.mark.moto

PRESIGN_EXPIRY_S = 3600  # Settings.presign_expiry_s default
# (prompt_index, prompt, seed): two prompts, five images, stored out of order
IMAGES = [
    (1, "a lighthouse in a storm, watercolour", 501),
    (0, "a lighthouse at dawn, oil painting", 12),
    (0, "a lighthouse at dawn, oil painting", 10),
    (1, "a lighthouse in a storm, watercolour", 500),
    (0, "a lighthouse at dawn, oil painting", 11),
]


def _png(seed: int) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + f"image of seed {seed}".encode()


def _store_images(svc: Services, order_id: str, images: list[tuple[int, str, int]]) -> None:
    for prompt_index, prompt, seed in images:
        key = image_key(TENANT_A, order_id, prompt_index, seed)
        svc.bucket.put_png(key, _png(seed), {"seed": str(seed)})
        assert svc.images.record(
            TENANT_A,
            order_id,
            prompt_index=prompt_index,
            prompt=prompt,
            seed=seed,
            width=512,
            height=512,
            key=key,
        )


def _pages(order_id: str, api_key: str, limit: int) -> list[dict[str, Any]]:
    pages: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        query = f"limit={limit}" + (f"&next_token={token}" if token else "")
        status, page = call("GET", f"/v1/orders/{order_id}/images?{query}", key=api_key)
        assert status == 200, page
        pages.append(page)
        token = page["next_token"]
        if token is None:
            return pages
        assert len(pages) < 10, "pagination does not end"


@pytest.fixture
def order_with_images(svc: Services, api_key: str) -> str:
    order_id = str(place_order(api_key)["order_id"])
    _store_images(svc, order_id, IMAGES)
    return order_id


def test_pages_through_every_image_once_in_prompt_and_seed_order(
    order_with_images: str, api_key: str
) -> None:
    pages = _pages(order_with_images, api_key, limit=2)

    assert [len(p["images"]) for p in pages] == [2, 2, 1]
    assert all(p["order_id"] == order_with_images for p in pages)
    assert [p["next_token"] is not None for p in pages] == [True, True, False]
    listed = [(i["prompt_index"], i["prompt"], i["seed"]) for p in pages for i in p["images"]]
    assert listed == sorted(IMAGES)


def test_each_image_has_its_size_and_a_link_to_its_own_object(
    order_with_images: str, api_key: str
) -> None:
    status, page = call("GET", f"/v1/orders/{order_with_images}/images", key=api_key)

    assert status == 200, page
    assert page["next_token"] is None  # default page size (100) holds all five
    assert len(page["images"]) == len(IMAGES)
    for image in page["images"]:
        assert (image["width"], image["height"]) == (512, 512)
        key = image_key(TENANT_A, order_with_images, image["prompt_index"], image["seed"])
        url = urlsplit(image["url"])
        assert url.scheme == "https"
        assert d.IMAGES_BUCKET in url.netloc + url.path
        assert unquote(url.path).endswith(key)
        download = requests.get(image["url"], timeout=10)
        assert download.status_code == 200
        assert download.content == _png(image["seed"])


def test_links_expire_after_the_default_hour(order_with_images: str, api_key: str) -> None:
    """Invariant 5: presigned links expire (whatever the signature version says it with)."""
    status, page = call("GET", f"/v1/orders/{order_with_images}/images?limit=1", key=api_key)

    assert status == 200, page
    image = page["images"][0]
    url_expires_at = datetime.fromisoformat(image["url_expires_at"])
    expected = datetime.now(UTC) + timedelta(seconds=PRESIGN_EXPIRY_S)
    assert abs(url_expires_at - expected) < timedelta(seconds=30)
    query = parse_qs(urlsplit(image["url"]).query)
    assert query["X-Amz-Expires"] == [str(PRESIGN_EXPIRY_S)]
    signed_at = datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    assert abs(signed_at - datetime.now(UTC)) < timedelta(seconds=30)


# Regression (found by this suite): botocore signed S3 links SigV2 in us-east-1 (no 7-day cap,
# deprecated by AWS) until subconscious/aws.py asked for s3v4.
def test_links_are_sigv4_with_an_hour_expiry(order_with_images: str, api_key: str) -> None:
    status, page = call("GET", f"/v1/orders/{order_with_images}/images?limit=2", key=api_key)

    assert status == 200, page
    for image in page["images"]:
        assert "X-Amz-Expires=3600" in image["url"]
        assert "X-Amz-Algorithm=AWS4-HMAC-SHA256" in image["url"]


def test_images_of_another_order_are_not_listed(svc: Services, api_key: str) -> None:
    first = str(place_order(api_key, "idem-key-0001")["order_id"])
    second = str(place_order(api_key, "idem-key-0002")["order_id"])
    _store_images(svc, first, IMAGES[:2])
    _store_images(svc, second, IMAGES[2:])

    first_page = call("GET", f"/v1/orders/{first}/images", key=api_key)[1]
    second_page = call("GET", f"/v1/orders/{second}/images", key=api_key)[1]

    assert sorted((i["prompt_index"], i["seed"]) for i in first_page["images"]) == [
        (0, 12),
        (1, 501),
    ]
    assert sorted((i["prompt_index"], i["seed"]) for i in second_page["images"]) == [
        (0, 10),
        (0, 11),
        (1, 500),
    ]
    assert all(second in i["url"] for i in second_page["images"])


BAD_TOKENS = [
    "garbage",  # not base64 (bad padding)
    "Zm9vYmFy",  # "foobar": no '#'
    "_-_-",  # not UTF-8 once decoded
    "Iw==",  # "#": nothing but the separator
    "MDAwI2FiYw==",  # "000#abc": not digits
]


def test_a_token_this_api_did_not_give_out_is_a_400(order_with_images: str, api_key: str) -> None:
    for token in BAD_TOKENS:
        path = f"/v1/orders/{order_with_images}/images?limit=2&next_token={token}"

        assert_error(call("GET", path, key=api_key), 400, "bad_request")


def test_limit_0_is_a_422(order_with_images: str, api_key: str) -> None:
    response = call("GET", f"/v1/orders/{order_with_images}/images?limit=0", key=api_key)

    assert_error(response, 422, "validation_error", ["query.limit"])


def test_a_stale_token_of_the_same_order_still_works(order_with_images: str, api_key: str) -> None:
    """Tokens are positions, not sessions: reusing one gives the same next page."""
    first = call("GET", f"/v1/orders/{order_with_images}/images?limit=2", key=api_key)[1]
    path = f"/v1/orders/{order_with_images}/images?limit=2&next_token={first['next_token']}"

    pages = [call("GET", path, key=api_key) for _ in range(2)]

    assert [status for status, _ in pages] == [200, 200]
    seen = [[(i["prompt_index"], i["seed"]) for i in page["images"]] for _, page in pages]
    assert seen[0] == seen[1] == [(0, 12), (1, 500)]
    assert pages[0][1]["next_token"] == pages[1][1]["next_token"] is not None
