"""Invariant 6: bad input gets a clear 4xx (a stable code, the field at fault), never a 5xx, and
a rejected request writes nothing: no quote or order row, no idempotency record, no task."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from infra.local.resources import Created
from subconscious.services import Services
from tests.integration.api_helpers import (
    UNKNOWN_ORDER,
    Writes,
    accept,
    assert_error,
    call,
    create_quote,
    job,
    order_body,
    quote_body,
    writes,
)

# handler tests: the API over moto's resources, as in AWS (tests/conftest.py's svc)
pytestmark = pytest.mark.moto

NOTHING = Writes(quotes=0, orders=0, images=0, idempotency=0, queued=0)
MAX_BODY = 64 * 1024  # Settings.max_body_bytes


def _prompts(*counts: Any, text: Any = "a red fox in snow") -> list[dict[str, Any]]:
    return [{"text": text, "count": count} for count in counts]


# (request body, expected field paths of the 422's details)
INVALID_QUOTES: list[Any] = [
    pytest.param([], ["body"], id="body-is-an-empty-json-list"),
    pytest.param(["job"], ["body"], id="body-is-a-json-list-of-strings"),
    pytest.param("123", ["body"], id="body-is-a-json-number"),
    pytest.param({}, ["job"], id="job-missing"),
    pytest.param(quote_body(job(width="512")), ["job.width"], id="width-as-string"),
    pytest.param(quote_body(job(prompts=_prompts(1.5))), ["job.prompts.0.count"], id="count-1.5"),
    pytest.param(quote_body(job(prompts=_prompts("4"))), ["job.prompts.0.count"], id="count-str"),
    pytest.param(quote_body(job(prompts=_prompts(True))), ["job.prompts.0.count"], id="count-bool"),
    pytest.param(quote_body(job(width=513)), ["job.width"], id="width-513"),
    pytest.param(quote_body(job(width=64)), ["job.width"], id="width-64-sd15"),
    pytest.param(quote_body(job(width=1088)), ["job.width"], id="width-1088-sd15"),
    pytest.param(
        quote_body(job(model_family="sdxl", width=1024, height=4096)),
        ["job.height"],
        id="height-4096-sdxl",
    ),
    pytest.param(
        quote_body(job(model_family="sdxl", width=256, height=1024)),
        ["job.width"],
        id="width-256-sdxl",
    ),
    pytest.param(quote_body(job(model_family="sd3")), ["job.model_family"], id="unknown-family"),
    pytest.param(quote_body(job(prompts=_prompts(0))), ["job.prompts.0.count"], id="zero-images"),
    pytest.param(
        quote_body(job(prompts=_prompts(5, -1))), ["job.prompts.1.count"], id="negative-count"
    ),
    pytest.param(
        quote_body(job(prompts=_prompts(1_000_000))),
        ["job.prompts.0.count"],
        id="a-million-images-in-one-prompt",
    ),
    pytest.param(
        quote_body(job(prompts=_prompts(*[5000] * 200))),
        ["job.prompts"],
        id="200-prompts-of-5000",
    ),
    pytest.param(
        quote_body(job(prompts=_prompts(5000, 5001))),
        ["job.prompts"],
        id="10001-images-in-two-prompts",
    ),
    pytest.param(quote_body(job(prompts=[])), ["job.prompts"], id="no-prompts"),
    pytest.param(
        quote_body({k: v for k, v in job().items() if k != "prompts"}),
        ["job.prompts"],
        id="prompts-missing",
    ),
    pytest.param(quote_body(job(prompts=_prompts(4, text=""))), ["job.prompts.0.text"], id="empty"),
    pytest.param(
        quote_body(job(prompts=_prompts(4, text="   \t "))),
        ["job.prompts.0.text"],
        id="blank-prompt-text",
    ),
    pytest.param(
        quote_body(job(prompts=_prompts(4, text="x" * 2001))),
        ["job.prompts.0.text"],
        id="prompt-text-2001-chars",
    ),
    pytest.param(
        quote_body(constraints={"deadline": "2001-01-01T00:00:00Z"}),
        ["constraints.deadline"],
        id="deadline-in-the-past",
    ),
    pytest.param(
        quote_body(constraints={"deadline": "2099-01-01T18:00:00"}),
        ["constraints.deadline"],
        id="deadline-without-timezone",
    ),
    pytest.param(
        quote_body(constraints={"deadline": "tomorrow"}),
        ["constraints.deadline"],
        id="deadline-not-a-time",
    ),
    pytest.param(
        quote_body(constraints={"max_price_per_image_usd": "-0.01"}),
        ["constraints.max_price_per_image_usd"],
        id="negative-max-price",
    ),
    pytest.param(
        quote_body(constraints={"max_price_per_image_usd": "0.0000001"}),
        ["constraints.max_price_per_image_usd"],
        id="max-price-below-a-micro-dollar",
    ),
    pytest.param(
        quote_body(constraints={"max_price_per_image_usd": "NaN"}),
        ["constraints.max_price_per_image_usd"],
        id="max-price-nan",
    ),
    pytest.param(quote_body(job(sampler="Euler z")), ["job.sampler"], id="unknown-sampler"),
    pytest.param(quote_body(job(colour="red")), ["job.colour"], id="unknown-field-in-job"),
    pytest.param({**quote_body(), "colour": "red"}, ["colour"], id="unknown-field-top-level"),
    pytest.param(
        quote_body(constraints={"colour": "red"}),
        ["constraints.colour"],
        id="unknown-field-in-constraints",
    ),
    pytest.param(quote_body(job(seed={"kind": "fixed"})), ["job.seed"], id="fixed-seed-no-base"),
    pytest.param(
        quote_body(job(seed={"kind": "random", "base": 7})), ["job.seed"], id="random-seed-base"
    ),
    pytest.param(
        quote_body(job(seed={"kind": "fixed", "base": 2**32})),
        ["job.seed.base"],
        id="seed-base-over-32-bits",
    ),
    pytest.param(quote_body(job(steps=0)), ["job.steps"], id="steps-0"),
    pytest.param(quote_body(job(steps=151)), ["job.steps"], id="steps-151"),
    pytest.param(quote_body(job(cfg_scale="7.55")), ["job.cfg_scale"], id="cfg-two-decimals"),
    pytest.param(quote_body(job(negative_prompt=None)), ["job.negative_prompt"], id="neg-null"),
]


@pytest.mark.parametrize(("body", "fields"), INVALID_QUOTES)
def test_invalid_quote_request_is_a_422_naming_the_field_and_writes_nothing(
    aws: Created, api_key: str, body: Any, fields: list[str]
) -> None:
    response = call("POST", "/v1/quotes", body, key=api_key)

    assert_error(response, 422, "validation_error", fields)
    assert writes(aws) == NOTHING


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("{not json", id="not-json"),
        pytest.param('{"job": {"prompts": [', id="truncated"),
        pytest.param("{'job': {}}", id="single-quotes"),
        pytest.param('{"job": {"prompts": [{"text": "a", "count": 1,}]}}', id="trailing-comma"),
    ],
)
def test_body_that_is_not_json_is_a_400_invalid_json(aws: Created, api_key: str, raw: str) -> None:
    response = call("POST", "/v1/quotes", raw, key=api_key)

    assert_error(response, 400, "invalid_json")
    assert "details" not in response[1]["error"]
    assert writes(aws) == NOTHING


@pytest.mark.parametrize("raw", [None, "", "null"], ids=["no-body", "empty-body", "json-null"])
def test_missing_body_is_a_422_on_body(aws: Created, api_key: str, raw: str | None) -> None:
    assert_error(call("POST", "/v1/quotes", raw, key=api_key), 422, "validation_error", ["body"])
    assert writes(aws) == NOTHING


def test_several_problems_are_all_named(aws: Created, api_key: str) -> None:
    body = quote_body(job(width=513, steps=0, sampler="Euler z"), {"deadline": "2099-01-01"})

    status, answer = call("POST", "/v1/quotes", body, key=api_key)

    assert status == 422, answer
    fields = sorted(detail["field"] for detail in answer["error"]["details"])
    assert fields == ["constraints.deadline", "job.sampler", "job.steps", "job.width"]
    assert writes(aws) == NOTHING


# --- bodies API Gateway passes base64-encoded (binary media types) ---
def test_base64_encoded_request_is_decoded(aws: Created, api_key: str) -> None:
    status, body = call("POST", "/v1/quotes", quote_body(), key=api_key, base64_body=True)

    assert status == 201, body
    assert body["job"]["prompts"] == job()["prompts"]


@pytest.mark.parametrize(
    ("raw", "status", "code", "fields"),
    [
        pytest.param("!!!not-base64", 400, "invalid_json", None, id="not-base64"),
        pytest.param(
            base64.b64encode(b"\xff\xfe{").decode(), 400, "invalid_json", None, id="not-utf8"
        ),
        pytest.param(
            base64.b64encode(b"[1]").decode(), 422, "validation_error", ["body"], id="a-list"
        ),
        pytest.param(
            base64.b64encode(b'{"job": 1}').decode(),
            422,
            "validation_error",
            ["job"],
            id="job-not-an-object",
        ),
        pytest.param(
            base64.b64encode(b" " * (MAX_BODY + 1)).decode(),
            413,
            "payload_too_large",
            None,
            id="decoded-over-64KiB",
        ),
    ],
)
def test_bad_base64_encoded_body_is_a_4xx(
    aws: Created, api_key: str, raw: str, status: int, code: str, fields: list[str] | None
) -> None:
    response = call("POST", "/v1/quotes", raw, key=api_key, base64_body=True)

    assert_error(response, status, code, fields)
    assert writes(aws) == NOTHING


# --- body size: Settings.max_body_bytes (64 KiB), counted in bytes, before anything parses it ---
def _padded(size: int) -> str:
    """A valid quote request of exactly ``size`` bytes (JSON allows trailing whitespace)."""
    text = json.dumps(quote_body())
    return text + " " * (size - len(text.encode()))


def test_body_of_exactly_64_kib_is_accepted(aws: Created, api_key: str) -> None:
    status, body = call("POST", "/v1/quotes", _padded(MAX_BODY), key=api_key)

    assert status == 201, body


def _multibyte_request() -> str:
    """A valid quote request of 40,000 characters but over 80,000 bytes."""
    prompts = [{"text": "é" * 1000, "count": 1} for _ in range(40)]
    return json.dumps(quote_body(job(prompts=prompts)), ensure_ascii=False)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(_padded(MAX_BODY + 1), id="64KiB-plus-one-byte"),
        pytest.param(_padded(1024 * 1024), id="one-MiB"),
    ],
)
def test_oversized_body_is_a_413(aws: Created, api_key: str, raw: str) -> None:
    response = call("POST", "/v1/quotes", raw, key=api_key)

    assert_error(response, 413, "payload_too_large")
    assert writes(aws) == NOTHING


def test_body_size_is_counted_in_bytes_not_characters(aws: Created, api_key: str) -> None:
    raw = _multibyte_request()
    assert len(raw) < MAX_BODY < len(raw.encode())

    response = call("POST", "/v1/quotes", raw, key=api_key)

    assert_error(response, 413, "payload_too_large")
    assert writes(aws) == NOTHING


def test_oversized_order_body_is_a_413_and_queues_nothing(aws: Created, api_key: str) -> None:
    quote = create_quote(api_key)
    before = writes(aws)
    raw = json.dumps(order_body(quote)) + " " * MAX_BODY

    response = call(
        "POST", "/v1/orders", raw, key=api_key, headers={"Idempotency-Key": "idem-key-0001"}
    )

    assert_error(response, 413, "payload_too_large")
    assert writes(aws) == before


# Regression (found by this suite): the size limit used to run after powertools had parsed
# and validated the body, so an oversized invalid body got 400/422 instead of 413.
@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(
            json.dumps(quote_body(job(negative_prompt="x" * 70_000))), id="long-negative-prompt"
        ),
        pytest.param("x" * (1024 * 1024), id="one-MiB-of-garbage"),
        pytest.param(
            json.dumps({"job": job(), "padding": "x" * (MAX_BODY + 10)}), id="unknown-big-field"
        ),
    ],
)
def test_oversized_invalid_body_is_a_413(aws: Created, api_key: str, raw: str) -> None:
    response = call("POST", "/v1/quotes", raw, key=api_key)

    assert_error(response, 413, "payload_too_large")
    assert writes(aws) == NOTHING


# --- POST /v1/orders: none of these queue anything ---
def test_order_without_idempotency_key_is_a_422_naming_the_header(
    aws: Created, api_key: str
) -> None:
    quote = create_quote(api_key)
    before = writes(aws)

    status, body = call("POST", "/v1/orders", order_body(quote), key=api_key)

    assert_error((status, body), 422, "validation_error")
    fields = [detail["field"].lower() for detail in body["error"]["details"]]
    assert fields == ["header.idempotency-key"]
    assert writes(aws) == before
    assert before.queued == 0


@pytest.mark.parametrize("idempotency_key", ["short", "k" * 129], ids=["7-chars", "129-chars"])
def test_order_with_idempotency_key_of_bad_length_is_a_422(
    aws: Created, api_key: str, idempotency_key: str
) -> None:
    quote = create_quote(api_key)
    before = writes(aws)

    status, body = accept(api_key, quote, idempotency_key)

    assert_error((status, body), 422, "validation_error")
    assert [d["field"].lower() for d in body["error"]["details"]] == ["header.idempotency-key"]
    assert writes(aws) == before


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        pytest.param({"quote_id": "q-1"}, ["option_id"], id="option-missing"),
        pytest.param({"option_id": "opt-1"}, ["quote_id"], id="quote-missing"),
        pytest.param({"quote_id": "", "option_id": "opt-1"}, ["quote_id"], id="quote-empty"),
        pytest.param({"quote_id": "q" * 65, "option_id": "opt-1"}, ["quote_id"], id="quote-65"),
        pytest.param({"quote_id": 7, "option_id": "opt-1"}, ["quote_id"], id="quote-number"),
        pytest.param(
            {"quote_id": "q-1", "option_id": "opt-1", "price": "0"}, ["price"], id="unknown-field"
        ),
        pytest.param(["q-1", "opt-1"], ["body"], id="json-list"),
        pytest.param([], ["body"], id="empty-json-list"),
    ],
)
def test_invalid_order_request_is_a_422(
    aws: Created, api_key: str, body: Any, fields: list[str]
) -> None:
    response = call(
        "POST", "/v1/orders", body, key=api_key, headers={"Idempotency-Key": "idem-key-0001"}
    )

    assert_error(response, 422, "validation_error", fields)
    assert writes(aws) == NOTHING


def test_order_for_an_unknown_quote_is_a_404_and_queues_nothing(aws: Created, api_key: str) -> None:
    quote = create_quote(api_key)
    before = writes(aws)
    unknown = {**quote, "quote_id": "q-" + "f" * 32}

    response = accept(api_key, unknown, "idem-key-0001")

    assert_error(response, 404, "not_found")
    assert writes(aws) == before


def test_order_for_an_unknown_option_is_a_422_on_option_id_and_queues_nothing(
    aws: Created, api_key: str
) -> None:
    quote = create_quote(api_key)
    before = writes(aws)

    response = accept(api_key, quote, "idem-key-0001", option_id="opt-000000000000")

    assert_error(response, 422, "validation_error", ["option_id"])
    assert writes(aws) == before


def test_a_refused_acceptance_does_not_burn_its_idempotency_key(aws: Created, api_key: str) -> None:
    """A 4xx leaves no idempotency record behind: the same key works once the request is right."""
    quote = create_quote(api_key)
    assert_error(
        accept(api_key, quote, "idem-key-0001", option_id="opt-000000000000"),
        422,
        "validation_error",
        ["option_id"],
    )

    status, order = accept(api_key, quote, "idem-key-0001")

    assert status == 201, order
    assert order["state"] == "accepted"


MALFORMED_ORDER_IDS = [
    "o-123",
    "O-" + "0" * 32,
    "o-" + "0" * 31 + "g",
    "o-" + "0" * 33,
    "q-" + "0" * 32,
    UNKNOWN_ORDER + "%0a",
    "..%2f..%2fquotes",
]


@pytest.mark.parametrize(
    ("method", "suffix"),
    [("GET", ""), ("GET", "/images"), ("DELETE", "")],
    ids=["get", "images", "delete"],
)
def test_malformed_order_id_in_the_path_is_a_422(
    aws: Created, api_key: str, method: str, suffix: str
) -> None:
    for order_id in MALFORMED_ORDER_IDS:
        response = call(method, f"/v1/orders/{order_id}{suffix}", key=api_key)

        assert_error(response, 422, "validation_error", ["path.order_id"])
    assert writes(aws) == NOTHING


def test_unknown_well_formed_order_is_a_404(aws: Created, api_key: str) -> None:
    for method, suffix in (("GET", ""), ("GET", "/images"), ("DELETE", "")):
        response = call(method, f"/v1/orders/{UNKNOWN_ORDER}{suffix}", key=api_key)
        assert_error(response, 404, "not_found")
    assert writes(aws) == NOTHING


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=0", "query.limit"),
        ("limit=1001", "query.limit"),
        ("limit=-1", "query.limit"),
        ("limit=ten", "query.limit"),
        ("next_token=" + "A" * 201, "query.next_token"),
    ],
)
def test_bad_image_query_is_a_422(svc: Services, api_key: str, query: str, field: str) -> None:
    response = call("GET", f"/v1/orders/{UNKNOWN_ORDER}/images?{query}", key=api_key)

    assert_error(response, 422, "validation_error", [field])


# --- Inputs that used to get a 500 or be half-read (found by this suite) ---
# Regression (found by this suite): json.loads raised RecursionError on deep nesting, which
# powertools did not catch, and the API answered 500 internal_error.
@pytest.mark.parametrize(
    "raw",
    ["[" * 5000 + "]" * 5000, '{"job": ' * 5000 + "1" + "}" * 5000],
    ids=["nested-lists", "nested-objects"],
)
def test_deeply_nested_json_is_a_4xx_not_a_500(aws: Created, api_key: str, raw: str) -> None:
    status, body = call("POST", "/v1/quotes", raw, key=api_key)

    assert status in (400, 422), body
    assert body["error"]["code"] in ("invalid_json", "validation_error")
    assert writes(aws) == NOTHING


# Regression (found by this suite): ConstraintsIn._future's astimezone(UTC) raised
# OverflowError, which pydantic lets through, and the API answered 500 internal_error.
@pytest.mark.parametrize(
    "deadline",
    ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00"],
    ids=["after-year-9999-in-utc", "before-year-1-in-utc"],
)
def test_deadline_outside_the_utc_range_is_a_422(aws: Created, api_key: str, deadline: str) -> None:
    response = call(
        "POST", "/v1/quotes", quote_body(constraints={"deadline": deadline}), key=api_key
    )

    assert_error(response, 422, "validation_error", ["constraints.deadline"])
    assert writes(aws) == NOTHING


# Regression (found by this suite): an unbounded max price made money.to_micros raise
# decimal.Overflow in the planner, and the API answered 500 internal_error.
@pytest.mark.parametrize("price", ["1e1000000", "1e30"], ids=["1e1000000", "1e30"])
def test_absurd_max_price_is_a_422_not_a_500(aws: Created, api_key: str, price: str) -> None:
    body = quote_body(constraints={"max_price_per_image_usd": price})

    response = call("POST", "/v1/quotes", body, key=api_key)

    assert_error(response, 422, "validation_error", ["constraints.max_price_per_image_usd"])
    assert writes(aws) == NOTHING


# Regression (found by this suite): powertools replaced a list body by its first element, so
# [valid request, garbage] was accepted (201) with the rest silently ignored.
@pytest.mark.parametrize(
    "body",
    [[quote_body()], [quote_body(), {"job": "anything", "colour": "red"}]],
    ids=["list-of-one-valid-request", "valid-request-then-garbage"],
)
def test_quote_body_that_is_a_list_of_requests_is_a_422(
    aws: Created, api_key: str, body: list[Any]
) -> None:
    response = call("POST", "/v1/quotes", body, key=api_key)

    assert_error(response, 422, "validation_error", ["body"])
    assert writes(aws) == NOTHING


# Regression (found by this suite): [valid order request] was accepted and its tasks queued.
def test_order_body_that_is_a_list_is_a_422_and_queues_nothing(aws: Created, api_key: str) -> None:
    quote = create_quote(api_key)
    before = writes(aws)

    response = call(
        "POST",
        "/v1/orders",
        [order_body(quote)],
        key=api_key,
        headers={"Idempotency-Key": "idem-key-0001"},
    )

    assert_error(response, 422, "validation_error", ["body"])
    assert writes(aws) == before
