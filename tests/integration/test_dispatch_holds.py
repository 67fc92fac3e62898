"""Issue 16: an order the dispatch holds back to share a machine start-up says until when
and why (``held_until``, ``held_reason``), and stops saying it once the dispatch rents."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from subconscious.catalogue import canonical
from subconscious.logic.dispatch import hold_reason, tick
from subconscious.logic.orders import order_out
from subconscious.models import OrderState
from subconscious.models.spot import SpotOutlook
from subconscious.planner.policy import MIN_DEFER_WINDOW
from subconscious.services import Services
from tests.integration.test_dispatch import TENANT, _accept_requested

NOW = datetime(2030, 1, 1, 12, 0, 10, tzinfo=UTC)


def test_a_held_order_says_until_when_it_waits_then_rendering_clears_it(svc: Services) -> None:
    _, order = _accept_requested(svc, 8, NOW, timedelta(days=1))

    report = tick(svc, now=NOW)

    assert report.started_runs == []
    assert any("share a start-up" in d for d in report.decisions), report.decisions
    held = svc.orders.get(TENANT, order.order_id)
    assert held is not None and held.held_until is not None
    # by the time the most urgent promise is MIN_DEFER_WINDOW away, to the next minute
    latest = held.promised_at - MIN_DEFER_WINDOW
    assert latest <= held.held_until < latest + timedelta(minutes=1)
    assert held.held_until.second == 0 and held.held_until.microsecond == 0
    assert held.held_reason == hold_reason(held.held_until, NOW)
    # another day than the tick's: the date is named too
    assert held.held_reason.startswith(f"waiting until {held.held_until:%Y-%m-%d %H:%M} UTC")
    assert "share a machine start-up" in held.held_reason
    assert hold_reason(NOW + timedelta(hours=2), NOW).startswith("waiting until 14:00 UTC to")
    out = order_out(held, NOW)
    assert (out.held_until, out.held_reason) == (held.held_until, held.held_reason)

    assert svc.orders.transition(TENANT, order.order_id, OrderState.RENDERING)
    rendering = svc.orders.get(TENANT, order.order_id)
    assert rendering is not None and rendering.held_until is None


def test_the_hold_is_cleared_when_the_dispatch_rents(svc: Services) -> None:
    _, order = _accept_requested(svc, 8, NOW, timedelta(days=1))
    tick(svc, now=NOW)
    held = svc.orders.get(TENANT, order.order_id)
    assert held is not None and held.held_until is not None

    report = tick(svc, now=held.held_until + timedelta(minutes=1))  # past it: it rents

    assert report.started_runs, report.decisions
    after = svc.orders.get(TENANT, order.order_id)
    assert after is not None and (after.held_until, after.held_reason) == (None, None)


def test_a_tick_that_changes_nothing_writes_nothing(
    svc: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    _accept_requested(svc, 8, NOW, timedelta(days=1))
    tick(svc, now=NOW)
    writes: list[str] = []
    original = svc.orders.set_hold

    def counted(*args: Any) -> bool:
        writes.append(str(args[1]))
        return original(*args)

    monkeypatch.setattr(svc.orders, "set_hold", counted)

    tick(svc, now=NOW + timedelta(minutes=1))

    assert writes == []


def test_a_failure_to_record_a_hold_never_costs_the_tick(
    svc: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    _accept_requested(svc, 8, NOW, timedelta(days=1))

    def broken(*args: object) -> bool:
        raise RuntimeError("table unavailable")

    monkeypatch.setattr(svc.orders, "set_hold", broken)
    report = tick(svc, now=NOW)

    assert report.acted and any("share a start-up" in d for d in report.decisions)
    # the lease was released: the next tick acts
    assert tick(svc, now=NOW + timedelta(minutes=1)).acted


def test_an_order_waiting_for_interruptible_machines_says_so_and_when_on_demand_starts(
    svc: Services,
) -> None:
    """Where the market has listed these cards interruptible before but lists none now, the
    work waits for them and the safety net rents on-demand once waiting longer would need more
    machines: the order says so, and by when at the latest; and at that time it rents."""
    cards = {canonical(o.gpu) for o in svc.provider("fake").list_offers()}
    svc.prices.save_outlook(SpotOutlook(dict.fromkeys(cards, 0.5), 48, NOW))
    _, order = _accept_requested(svc, 2000, NOW, timedelta(hours=2))

    report = tick(svc, now=NOW)

    assert report.started_runs == [], report.decisions
    assert any("interruptible capacity is gone" in d for d in report.decisions)
    held = svc.orders.get(TENANT, order.order_id)
    assert held is not None and held.held_until is not None and held.held_reason is not None
    assert NOW < held.held_until < held.promised_at
    assert held.held_reason == hold_reason(held.held_until, NOW, for_interruptible=True)
    assert held.held_reason.startswith("waiting for cheaper interruptible machines")

    early = tick(svc, now=held.held_until - timedelta(minutes=2))
    assert early.started_runs == [], early.decisions  # not before it
    later = tick(svc, now=held.held_until + timedelta(minutes=1))
    assert later.started_runs and any(d.startswith("safety net") for d in later.decisions)
