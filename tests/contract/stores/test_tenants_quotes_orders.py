"""Tenants, quotes, orders and the images ledger: the same answers from twin and store."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from subconscious.dal._dynamo import is_condition_failure
from subconscious.errors import BadRequest, QuoteAlreadyAccepted
from subconscious.models import EndReason, OrderState, RunShare
from subconscious.models.tenancy import Principal, Role
from subconscious.services import Services

from .conftest import order, quote


def test_tenant_for_key(stores: Services) -> None:
    assert stores.tenants.tenant_for_key("sk_unknown") is None
    stores.tenants.add_key("t-1", "sk_one", name="first")
    stores.tenants.add_key("t-2", "sk_two")
    assert stores.tenants.tenant_for_key("sk_one") == "t-1"
    assert stores.tenants.tenant_for_key("sk_two") == "t-2"
    stores.tenants.add_key("t-3", "sk_one")  # the same key again: the last write wins
    assert stores.tenants.tenant_for_key("sk_one") == "t-3"


def test_quotes_are_scoped_by_tenant(stores: Services) -> None:
    q = quote("q-7")
    stores.quotes.put("t-1", q)
    assert stores.quotes.get("t-1", "q-7") == q
    assert stores.quotes.get("t-2", "q-7") is None
    assert stores.quotes.get("t-1", "q-8") is None


def test_create_or_resume_one_acceptance_wins(stores: Services) -> None:
    o = order()
    stores.orders.create_or_resume("t-1", o, "key-1")
    got = stores.orders.get("t-1", "o-1")
    assert got is not None and got.state is OrderState.QUOTED and got.images_done == 0
    assert got.model_dump() == o.model_dump()
    assert stores.orders.get("t-2", "o-1") is None
    assert stores.orders.accepted_with("t-1", "o-1") == ("key-1", "opt-1")
    assert stores.orders.accepted_with("t-1", "o-2") is None
    stores.orders.create_or_resume("t-1", o, "key-1")  # the same acceptance again: resumed
    with pytest.raises(QuoteAlreadyAccepted) as other_key:
        stores.orders.create_or_resume("t-1", o, "key-2")
    assert other_key.value.order_id == "o-1"
    with pytest.raises(QuoteAlreadyAccepted):
        stores.orders.create_or_resume("t-1", order(option_id="opt-2"), "key-1")


def test_resume_refused_once_the_order_moved(stores: Services) -> None:
    stores.orders.create_or_resume("t-1", order(), "key-1")
    assert stores.orders.transition("t-1", "o-1", OrderState.ACCEPTED)
    with pytest.raises(QuoteAlreadyAccepted):
        stores.orders.create_or_resume("t-1", order(), "key-1")


def test_transition_only_from_allowed_states(stores: Services) -> None:
    assert not stores.orders.transition("t-1", "o-1", OrderState.ACCEPTED)  # no such order
    stores.orders.create_or_resume("t-1", order(), "key-1")
    assert not stores.orders.transition("t-1", "o-1", OrderState.COMPLETED)  # not from quoted
    assert stores.orders.transition("t-1", "o-1", OrderState.ACCEPTED)
    assert not stores.orders.transition("t-1", "o-1", OrderState.ACCEPTED)  # already there
    accepted = stores.orders.get("t-1", "o-1")
    assert accepted is not None and accepted.state is OrderState.ACCEPTED
    assert accepted.end_reason is None and accepted.ended_at is None
    assert accepted.updated_at != order().updated_at  # stamped with the time it moved
    assert stores.orders.transition("t-1", "o-1", OrderState.CANCELLED)
    ended = stores.orders.get("t-1", "o-1")
    assert ended is not None and ended.state is OrderState.CANCELLED
    assert ended.end_reason is not None and ended.ended_at == ended.updated_at
    assert not stores.orders.transition("t-1", "o-1", OrderState.ACCEPTED)  # terminal


def test_terminal_transition_records_the_given_reason(stores: Services) -> None:
    stores.orders.create_or_resume("t-1", order(), "key-1")
    assert stores.orders.transition(
        "t-1", "o-1", OrderState.FAILED, EndReason.ACCEPTANCE_INCOMPLETE
    )
    got = stores.orders.get("t-1", "o-1")
    assert got is not None and got.end_reason is EndReason.ACCEPTANCE_INCOMPLETE


def test_add_spend_accumulates_and_needs_the_order(stores: Services) -> None:
    stores.orders.create_or_resume("t-1", order(), "key-1")
    assert stores.orders.add_spend("t-1", "o-1", 150).spend_micros == 150
    after = stores.orders.add_spend("t-1", "o-1", 50)
    assert after.spend_micros == 200 and after.state is OrderState.QUOTED
    with pytest.raises(ClientError) as missing:
        stores.orders.add_spend("t-1", "o-404", 1)
    assert is_condition_failure(missing.value)


def test_open_orders_lists_each_unfinished_order_with_its_tenant(stores: Services) -> None:
    stores.orders.create_or_resume("t-1", order("o-1"), "k1")
    stores.orders.create_or_resume("t-2", order("o-2"), "k2")
    stores.orders.create_or_resume("t-1", order("o-3"), "k3")
    assert stores.orders.transition("t-1", "o-3", OrderState.CANCELLED)
    listed = sorted((tenant, o.order_id) for tenant, o in stores.orders.open_orders())
    assert listed == [("t-1", "o-1"), ("t-2", "o-2")]


def _record(stores: Services, seed: int, order_id: str = "o-1") -> bool:
    return stores.images.record(
        "t-1",
        order_id,
        prompt_index=0,
        prompt="a fox",
        seed=seed,
        width=512,
        height=512,
        key=f"k/{seed}.png",
    )


def test_record_counts_each_image_once(stores: Services) -> None:
    assert not _record(stores, 1)  # no order: nothing written, nothing counted
    stores.orders.create_or_resume("t-1", order(), "key-1")
    assert _record(stores, 1)
    assert not _record(stores, 1)  # a duplicate delivery
    assert _record(stores, 2)
    got = stores.orders.get("t-1", "o-1")
    assert got is not None and (got.images_done, got.images_failed) == (2, 0)


def test_give_up_and_record_settle_an_image_once(stores: Services) -> None:
    stores.orders.create_or_resume("t-1", order(), "key-1")
    assert stores.images.give_up("t-1", "o-1", prompt_index=0, seed=1)
    assert not stores.images.give_up("t-1", "o-1", prompt_index=0, seed=1)
    assert not _record(stores, 1)  # given up first: never delivered too
    assert _record(stores, 2)
    assert not stores.images.give_up("t-1", "o-1", prompt_index=0, seed=2)
    got = stores.orders.get("t-1", "o-1")
    assert got is not None and (got.images_done, got.images_failed) == (1, 1)
    assert not stores.images.give_up("t-1", "o-404", prompt_index=0, seed=1)


def test_page_lists_delivered_images_in_order(stores: Services) -> None:
    stores.orders.create_or_resume("t-1", order(), "key-1")
    for seed in (3, 1, 2):
        assert _record(stores, seed)
    images, token = stores.images.page("t-1", "o-1", 10, None)
    assert [i.seed for i in images] == [1, 2, 3] and token is None
    assert images[0].key == "k/1.png" and images[0].prompt == "a fox"
    assert (images[0].width, images[0].height, images[0].prompt_index) == (512, 512, 0)
    assert stores.images.page("t-2", "o-1", 10, None) == ([], None)


def test_page_tokens_walk_the_rows_and_skip_given_up_ones(stores: Services) -> None:
    stores.orders.create_or_resume("t-1", order(), "key-1")
    for seed in (1, 3):
        assert _record(stores, seed)
    assert stores.images.give_up("t-1", "o-1", prompt_index=0, seed=2)
    first, token = stores.images.page("t-1", "o-1", 2, None)
    assert [i.seed for i in first] == [1] and token is not None  # limit counts rows read
    second, last = stores.images.page("t-1", "o-1", 2, token)
    assert [i.seed for i in second] == [3] and last is None


@pytest.mark.parametrize("token", ["%%%", "bm90LWEta2V5", "MDAxI3h5"])
def test_page_refuses_tokens_it_did_not_give(stores: Services, token: str) -> None:
    with pytest.raises(BadRequest):
        stores.images.page("t-1", "o-1", 10, token)


def test_a_tenant_record_carries_its_role(stores: Services) -> None:
    stores.tenants.add_key("t-1", "sk_customer")
    stores.tenants.add_key("ops", "sk_operator", name="ops", role=Role.OPERATOR)
    assert stores.tenants.principal_for_key("sk_customer") == Principal("t-1", Role.CUSTOMER)
    assert stores.tenants.principal_for_key("sk_operator") == Principal("ops", Role.OPERATOR)
    assert stores.tenants.principal_for_key("sk_unknown") is None
    assert stores.tenants.tenant_for_key("sk_operator") == "ops"


def test_orders_accumulate_aws_charges_beside_gpu_spend(stores: Services) -> None:
    stores.orders.create_or_resume("t-1", order(), "key-1")
    stores.orders.add_spend("t-1", "o-1", 150, aws_micros=40)
    after = stores.orders.add_spend("t-1", "o-1", 50, aws_micros=2)
    assert (after.spend_micros, after.aws_micros) == (200, 42)
    assert (after.gpu_cost_micros, after.aws_cost_micros) == (200, 42)


def test_a_runs_share_is_set_once_per_run_and_needs_the_order(stores: Services) -> None:
    stores.orders.create_or_resume("t-1", order(), "key-1")
    stores.orders.set_run_cost("t-1", "o-1", "r-1", 1_000, 30)
    stores.orders.set_run_cost("t-1", "o-1", "r-1", 1_000, 30)  # a retried record
    stores.orders.set_run_cost("t-1", "o-1", "r-2", 7, 1)
    got = stores.orders.get("t-1", "o-1")
    assert got is not None
    assert got.run_costs == {
        "r-1": RunShare(gpu_micros=1_000, aws_micros=30),
        "r-2": RunShare(gpu_micros=7, aws_micros=1),
    }
    assert (got.gpu_cost_micros, got.aws_cost_micros) == (1_007, 31)
    with pytest.raises(ClientError) as missing:
        stores.orders.set_run_cost("t-1", "o-404", "r-1", 1, 1)
    assert is_condition_failure(missing.value)
    assert stores.orders.get("t-1", "o-404") is None  # no order made up by the write
