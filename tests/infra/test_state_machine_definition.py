"""The render-run state machine (one ASL file for AWS and the local stack) keeps invariant 1:
every state that can fail leads to Teardown, and Teardown always leads to Record."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from infra import definitions as d

ASL: dict[str, Any] = json.loads(d.STATE_MACHINE_FILE.read_text())
STATES: dict[str, dict[str, Any]] = ASL["States"]


def test_written_in_jsonpath_not_jsonata() -> None:
    assert ASL.get("QueryLanguage", "JSONPath") == "JSONPath"
    assert all(s.get("QueryLanguage", "JSONPath") == "JSONPath" for s in STATES.values())


@pytest.mark.parametrize(
    "name",
    [n for n, s in STATES.items() if s["Type"] == "Task" and n not in ("Teardown", "Record")],
)
def test_every_working_state_catches_everything_into_teardown(name: str) -> None:
    catches = STATES[name].get("Catch", [])
    assert any("States.ALL" in c["ErrorEquals"] and c["Next"] == "Teardown" for c in catches), (
        f"{name} can fail without giving the machine back"
    )
    # the error is kept beside the input, so Teardown still knows the run id
    assert all(c.get("ResultPath") == "$.error" for c in catches)


def test_teardown_retries_then_always_records() -> None:
    teardown = STATES["Teardown"]
    assert teardown["Next"] == "Record"
    catch_all = [r for r in teardown["Retry"] if r["ErrorEquals"] == ["States.ALL"]]
    assert catch_all and catch_all[0]["MaxAttempts"] >= 3
    assert teardown["Retry"][-1] is catch_all[0]  # States.ALL must come last
    assert [c["Next"] for c in teardown["Catch"]] == ["Record"]
    # Record is told whether Teardown gave up, and only a clean run ends in success
    assert STATES["Record"]["Parameters"]["teardown_error.$"] == "$.teardown_error"
    assert STATES["Outcome"]["Choices"] == [
        {"Variable": "$.record.status", "StringEquals": "succeeded", "Next": "RunSucceeded"}
    ]
    assert STATES["Outcome"]["Default"] == "RunFailed"


def test_every_task_retries_lambda_service_errors() -> None:
    for name, state in STATES.items():
        if state["Type"] == "Task":
            errors = {e for r in state["Retry"] for e in r["ErrorEquals"]}
            assert "Lambda.TooManyRequestsException" in errors, name


def test_every_path_to_an_end_passes_through_teardown() -> None:
    def successors(name: str) -> set[str]:
        state = STATES[name]
        nxt = {state["Next"]} if "Next" in state else set()
        nxt |= {c["Next"] for c in state.get("Catch", [])}
        nxt |= {c["Next"] for c in state.get("Choices", [])}
        if "Default" in state:
            nxt.add(state["Default"])
        return nxt

    def reaches_end_without_teardown(name: str, seen: set[str]) -> bool:
        if name == "Teardown" or name in seen:
            return False
        state = STATES[name]
        if state["Type"] in ("Succeed", "Fail") or state.get("End"):
            return True
        return any(reaches_end_without_teardown(n, seen | {name}) for n in successors(name))

    assert not reaches_end_without_teardown(ASL["StartAt"], set())


def test_intervals_come_from_the_execution_input() -> None:
    waits = [s for s in STATES.values() if s["Type"] == "Wait"]
    assert waits
    assert all("SecondsPath" in w and "Seconds" not in w for w in waits)


def test_every_placeholder_is_a_known_function() -> None:
    placeholders = set(re.findall(r"\$\{(\w+)\}", d.STATE_MACHINE_FILE.read_text()))
    assert placeholders == set(d.STATE_MACHINE_SUBSTITUTIONS)
    functions = {f.name for f in d.FUNCTIONS}
    assert set(d.STATE_MACHINE_SUBSTITUTIONS.values()) <= functions


def test_provision_retries_every_transient_provider_error_by_name() -> None:
    """Step Functions matches error names exactly, not by class hierarchy."""
    retried = {e for r in STATES["Provision"]["Retry"] for e in r["ErrorEquals"]}
    assert {"ProviderError", "ProviderDown", "ProviderRateLimited", "OutOfCapacity"} <= retried
    assert "ProviderAuthError" not in retried  # a refused key will not fix itself
