"""Listing a tenant's orders newest first (the orders table's ``by_created`` index), and the
hold dispatch records on an order waiting to share a start-up; both backends alike."""

from __future__ import annotations

from datetime import timedelta

import pytest

from subconscious.errors import BadRequest
from subconscious.models import OrderState
from subconscious.services import Services

from .conftest import NOW, order


def _id(n: int) -> str:
    return f"o-{n:032x}"


def _place(stores: Services, tenant: str, n: int, minutes_ago: int) -> None:
    made = order(_id(n), created_at=NOW - timedelta(minutes=minutes_ago))
    stores.orders.create_or_resume(tenant, made, f"k{n}")


def _walk(stores: Services, tenant: str, limit: int, state: OrderState | None = None) -> list[str]:
    """Every order id, page after page, checking each page's size."""
    seen: list[str] = []
    token: str | None = None
    for _ in range(20):
        page, token = stores.orders.page(tenant, limit, token, state)
        assert len(page) <= limit
        seen += [o.order_id for o in page]
        if token is None:
            return seen
    raise AssertionError("tokens never ran out")


def test_orders_are_listed_newest_first_per_tenant(stores: Services) -> None:
    for n, minutes_ago in ((1, 30), (2, 10), (3, 20), (4, 1)):
        _place(stores, "t-1", n, minutes_ago)
    _place(stores, "t-2", 5, 0)  # the newest of all, another tenant's
    page, token = stores.orders.page("t-1", 10, None)
    assert [o.order_id for o in page] == [_id(4), _id(2), _id(3), _id(1)]
    assert token is None
    assert page[0].created_at == NOW - timedelta(minutes=1)
    assert [o.order_id for o in stores.orders.page("t-2", 10, None)[0]] == [_id(5)]
    assert stores.orders.page("t-3", 10, None) == ([], None)


def test_tokens_walk_every_order_once_in_order(stores: Services) -> None:
    for n in range(1, 8):
        _place(stores, "t-1", n, 100 - n)  # higher n: newer
    assert _walk(stores, "t-1", 3) == [_id(n) for n in range(7, 0, -1)]
    first, token = stores.orders.page("t-1", 3, None)
    assert token is not None and len(first) == 3
    exact, last = stores.orders.page("t-1", 7, None)
    assert len(exact) == 7 and last is None  # a page that holds the rest is the last


def test_a_state_filter_keeps_only_that_state(stores: Services) -> None:
    for n in range(1, 7):
        _place(stores, "t-1", n, 100 - n)
    for n in (2, 5, 6):
        assert stores.orders.transition("t-1", _id(n), OrderState.ACCEPTED)
    assert stores.orders.transition("t-1", _id(5), OrderState.CANCELLED)
    assert _walk(stores, "t-1", 1, OrderState.ACCEPTED) == [_id(6), _id(2)]
    assert _walk(stores, "t-1", 2, OrderState.QUOTED) == [_id(4), _id(3), _id(1)]
    assert _walk(stores, "t-1", 5, OrderState.CANCELLED) == [_id(5)]
    assert _walk(stores, "t-1", 5, OrderState.FAILED) == []


def test_another_tenants_token_lists_only_the_callers_orders(stores: Services) -> None:
    for n in range(1, 4):
        _place(stores, "t-1", n, 10 - n)
        _place(stores, "t-2", 10 + n, 10 - n)
    _, token = stores.orders.page("t-1", 1, None)
    page, _ = stores.orders.page("t-2", 5, token)
    assert {o.order_id for o in page} <= {_id(11), _id(12), _id(13)}


@pytest.mark.parametrize(
    "token",
    [
        "%%%",
        "bm90LWEta2V5",  # "not-a-key"
        # a time without its order id, and one with an id that is not an order's
        "MjAzMC0wMS0wMVQxMjowMDowMC4wMDAwMDBa",
        "MjAzMC0wMS0wMVQxMjowMDowMC4wMDAwMDBafG8tMQ==",
    ],
)
def test_page_refuses_tokens_it_did_not_give(stores: Services, token: str) -> None:
    with pytest.raises(BadRequest):
        stores.orders.page("t-1", 10, token)


def test_a_hold_is_recorded_on_an_accepted_order_and_cleared_when_it_moves(
    stores: Services,
) -> None:
    _place(stores, "t-1", 1, 5)
    until = NOW + timedelta(minutes=35)
    assert not stores.orders.set_hold("t-1", _id(1), until, "waiting")  # still quoted
    assert not stores.orders.set_hold("t-1", _id(9), until, "waiting")  # no such order
    assert stores.orders.transition("t-1", _id(1), OrderState.ACCEPTED)
    assert stores.orders.set_hold("t-1", _id(1), until, "waiting to share a start-up")
    held = stores.orders.get("t-1", _id(1))
    assert held is not None and held.held_until == until
    assert held.held_reason == "waiting to share a start-up"
    listed = stores.orders.page("t-1", 5, None)[0][0]
    assert (listed.held_until, listed.held_reason) == (until, held.held_reason)

    assert stores.orders.set_hold("t-1", _id(1), None, None)  # dispatch changed its mind
    cleared = stores.orders.get("t-1", _id(1))
    assert cleared is not None and (cleared.held_until, cleared.held_reason) == (None, None)

    assert stores.orders.set_hold("t-1", _id(1), until, "waiting")
    assert stores.orders.transition("t-1", _id(1), OrderState.RENDERING)
    rendering = stores.orders.get("t-1", _id(1))
    assert rendering is not None and (rendering.held_until, rendering.held_reason) == (None, None)
    assert not stores.orders.set_hold("t-1", _id(1), until, "waiting")


def test_a_rare_state_is_found_behind_many_others(stores: Services) -> None:
    # DynamoDB reads a bounded number of index pages per request (a page may come back short,
    # even empty, with a token); following the tokens still finds every match, in order
    _place(stores, "t-1", 1, 100)
    assert stores.orders.transition("t-1", _id(1), OrderState.ACCEPTED)
    for n in range(2, 30):
        _place(stores, "t-1", n, 100 - n)
    assert _walk(stores, "t-1", 1, OrderState.ACCEPTED) == [_id(1)]
    assert len(_walk(stores, "t-1", 10, OrderState.QUOTED)) == 28
