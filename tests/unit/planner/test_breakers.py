"""Breakers hold a failure off where it happened (invariant 9), never the whole market."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from subconscious.models import Offer
from subconscious.planner.breakers import BreakerLimits, FailedRun, held_off
from tests import builders

NOW = datetime(2026, 12, 6, 12, tzinfo=UTC)
LIMITS = BreakerLimits(host_holdoff_s=3600, failures_to_pause=3, pause_s=900)


def offer(provider: str, offer_id: str) -> Offer:
    return builders.offer(offer_id, "RTX 4090", "0.40", provider=provider, startup_s=180)


def failed(provider: str, offer_id: str, ago_s: int, served: bool = True) -> FailedRun:
    return FailedRun(provider, offer_id, NOW - timedelta(seconds=ago_s), served)


def test_a_failed_host_is_held_off_and_nothing_else() -> None:
    blocked = held_off([failed("vast", "a1", 60)], NOW, LIMITS)
    assert not blocked.allows(offer("vast", "a1"))
    assert blocked.allows(offer("vast", "a2"))  # the same provider's other hosts
    assert blocked.allows(offer("runpod", "a1"))  # an id is a host only within its provider


def test_a_host_comes_back_after_its_hold_off() -> None:
    blocked = held_off([failed("vast", "a1", 3601)], NOW, LIMITS)
    assert blocked.allows(offer("vast", "a1"))


def test_many_hosts_failing_after_serving_never_pause_the_provider() -> None:
    # a task that crashes every machine it meets is the task's fault, not the provider's
    runs = [failed("vast", f"h{i}", 30 * i, served=True) for i in range(6)]
    blocked = held_off(runs, NOW, LIMITS)
    assert blocked.providers == frozenset()
    assert blocked.allows(offer("vast", "fresh"))


def test_a_provider_whose_launches_keep_failing_is_paused() -> None:
    runs = [failed("tensordock", f"h{i}", 60 * i, served=False) for i in range(3)]
    blocked = held_off(runs, NOW, LIMITS)
    assert blocked.providers == {"tensordock"}
    assert not blocked.allows(offer("tensordock", "never-tried"))
    assert blocked.allows(offer("vast", "h0"))
    assert any("tensordock paused" in r for r in blocked.reasons)


def test_two_launch_failures_or_old_ones_do_not_pause() -> None:
    recent = [failed("runpod", f"h{i}", 60, served=False) for i in range(2)]
    old = [failed("runpod", "old", 901, served=False)]
    assert held_off(recent + old, NOW, LIMITS).providers == frozenset()


def test_a_run_that_failed_through_no_fault_of_its_host_holds_nothing_off() -> None:
    # preempted, killed by a task that had killed another machine before, cap spent at boot
    runs = [
        FailedRun("vast", f"h{i}", NOW - timedelta(seconds=60), served=False, hosts_fault=False)
        for i in range(5)
    ]
    blocked = held_off(runs, NOW, LIMITS)
    assert blocked.hosts == frozenset() and blocked.providers == frozenset()
