"""The ``subconscious`` command: flags to request bodies, output, and exit codes."""

from __future__ import annotations

import argparse
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from subconscious_cli.formatting import Progress, format_order, progress_line
from subconscious_cli.main import main, parse_deadline
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

BASE = ["--api-url", API, "--api-key", KEY]


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    assert KEY not in out
    assert KEY not in err
    return code, out, err


def sent(route: respx.Route) -> Any:
    return json.loads(route.calls.last.request.content)


def test_quote_body_is_built_from_the_flags(
    api: respx.MockRouter, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    route = api.post(f"{API}/v1/quotes").respond(201, json=quote_json())
    prompts_file = tmp_path / "prompts.txt"
    prompts_file.write_text("from the file\n\n  second from the file  \n")
    before = datetime.now(UTC)

    code, out, _ = run(
        [
            *BASE,
            "quote",
            "--prompt",
            "a lighthouse at dawn",
            "--prompt",
            "a fox",
            "--prompts-file",
            str(prompts_file),
            "--count",
            "25",
            "--family",
            "sdxl",
            "--width",
            "1024",
            "--height",
            "768",
            "--steps",
            "30",
            "--negative",
            "blurry",
            "--seed",
            "1234",
            "--deadline",
            "+6h",
            "--max-price",
            "0.03",
        ],
        capsys,
    )

    assert code == 0
    body = sent(route)
    job, constraints = body["job"], body["constraints"]
    assert job == {
        "prompts": [
            {"text": "a lighthouse at dawn", "count": 25},
            {"text": "a fox", "count": 25},
            {"text": "from the file", "count": 25},
            {"text": "second from the file", "count": 25},
        ],
        "negative_prompt": "blurry",
        "model_family": "sdxl",
        "width": 1024,
        "height": 768,
        "steps": 30,
        "cfg_scale": "7",
        "sampler": "Euler a",
        "seed": {"kind": "fixed", "base": 1234},
    }
    assert constraints["max_price_per_image_usd"] == "0.03"
    deadline = datetime.fromisoformat(constraints["deadline"])
    assert deadline.utcoffset() == timedelta(0)
    six_hours_on = before + timedelta(hours=6)
    assert six_hours_on - timedelta(seconds=1) <= deadline <= six_hours_on + timedelta(seconds=60)
    assert "opt-requested" in out
    assert "$0.000123" in out
    assert "q-1" in out
    assert "2x RTX 3090 (spot)" in out
    # our expected finish beside the promise; "-" where the server does not say
    requested = next(line for line in out.splitlines() if "opt-requested" in line)
    cheapest = next(line for line in out.splitlines() if "opt-cheapest" in line)
    assert "EXPECTED" in out and "COMPLETES AT" in out
    assert requested.count("Z") == 2 and " - " in cheapest


def test_quote_defaults_send_a_random_seed_and_no_constraints(
    api: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    route = api.post(f"{API}/v1/quotes").respond(201, json=quote_json(feasible=False))
    code, out, _ = run([*BASE, "quote", "--prompt", "a fox", "--count", "1"], capsys)
    assert code == 0
    body = sent(route)
    assert body["job"]["seed"] == {"kind": "random"}
    assert body["job"]["model_family"] == "sd15"
    assert (body["job"]["width"], body["job"]["height"], body["job"]["steps"]) == (512, 512, 20)
    assert body["constraints"] == {"deadline": None, "max_price_per_image_usd": None}
    assert "no option meets" in out


def test_quote_json_output_parses(
    api: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    answer = quote_json()
    api.post(f"{API}/v1/quotes").respond(201, json=answer)
    code, out, _ = run([*BASE, "quote", "--prompt", "x", "--count", "2", "--json"], capsys)
    assert code == 0
    assert json.loads(out) == answer


def test_quote_without_prompts_is_a_usage_error(
    api: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run([*BASE, "quote", "--count", "2"], capsys)
    assert code == 2
    assert "no prompts" in err


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("+90m", timedelta(minutes=90)),
        ("+3d", timedelta(days=3)),
        ("+1d12h", timedelta(days=1, hours=12)),
    ],
)
def test_relative_deadlines(text: str, expected: timedelta) -> None:
    now = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
    assert parse_deadline(text, now) == now + expected


def test_absolute_deadlines_are_converted_to_utc() -> None:
    assert parse_deadline("2025-06-01T18:00Z") == datetime(2025, 6, 1, 18, tzinfo=UTC)
    moment = parse_deadline("2025-06-01T20:00+02:00")
    assert moment == datetime(2025, 6, 1, 18, tzinfo=UTC)
    assert moment.tzinfo is UTC


@pytest.mark.parametrize("text", ["2025-06-01T18:00", "tomorrow", "+", "+0h", "+6x"])
def test_unusable_deadlines_are_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_deadline(text)


def test_bad_flag_values_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    for bad in (["--max-price", "cheap"], ["--max-price", "-1"], ["--deadline", "soon"]):
        code, _, err = run([*BASE, "quote", "--prompt", "x", "--count", "1", *bad], capsys)
        assert code == 2
        assert bad[0] in err


def test_missing_key_exits_2_before_any_request(
    api: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(["--api-url", API, "status", ORDER_ID], capsys)
    assert code == 2
    assert out == ""
    assert "SUBCONSCIOUS_API_KEY" in err
    assert not api.calls


def test_key_and_url_come_from_the_environment(
    api: respx.MockRouter, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SUBCONSCIOUS_API_URL", API)
    monkeypatch.setenv("SUBCONSCIOUS_API_KEY", KEY)
    route = api.get(f"{API}/v1/orders/{ORDER_ID}").respond(200, json=order_json())
    code, out, _ = run(["status", ORDER_ID], capsys)
    assert code == 0
    assert route.calls.last.request.headers["x-api-key"] == KEY
    assert ORDER_ID in out


def test_connection_options_also_work_after_the_subcommand(
    api: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    route = api.get(f"{API}/v1/orders/{ORDER_ID}").respond(200, json=order_json())
    code, _, _ = run(["status", ORDER_ID, "--api-url", API, "--api-key", KEY], capsys)
    assert code == 0
    assert route.called


def test_api_errors_print_code_message_and_fields_and_exit_1(
    api: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    api.post(f"{API}/v1/quotes").respond(
        422,
        json=error_json(
            "validation_error",
            "the request is invalid",
            [{"field": "job.width", "message": "must be a multiple of 64"}],
        ),
    )
    code, out, err = run(
        [*BASE, "quote", "--prompt", "x", "--count", "1", "--width", "500"], capsys
    )
    assert code == 1
    assert out == ""
    assert err.splitlines() == [
        "error: validation_error: the request is invalid",
        "  job.width: must be a multiple of 64",
    ]


def test_order_defaults_to_the_first_option_of_a_quote_it_printed(
    api: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    api.post(f"{API}/v1/quotes").respond(201, json=quote_json("q-7"))
    orders = api.post(f"{API}/v1/orders").respond(201, json=order_json())
    assert run([*BASE, "quote", "--prompt", "x", "--count", "1"], capsys)[0] == 0

    code, out, _ = run([*BASE, "order", "q-7", "--json"], capsys)

    assert code == 0
    assert sent(orders) == {"quote_id": "q-7", "option_id": "opt-requested"}
    assert json.loads(out)["order_id"] == ORDER_ID


def test_order_of_an_unknown_quote_needs_an_option(
    api: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run([*BASE, "order", "q-unseen"], capsys)
    assert code == 2
    assert "OPTION_ID" in err
    assert not api.calls


def test_order_passes_option_and_idempotency_key(
    api: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    route = api.post(f"{API}/v1/orders").respond(201, json=order_json())
    code, out, _ = run(
        [*BASE, "order", "q-1", "opt-cheapest", "--idempotency-key", "k" * 20], capsys
    )
    assert code == 0
    assert sent(route) == {"quote_id": "q-1", "option_id": "opt-cheapest"}
    assert route.calls.last.request.headers["idempotency-key"] == "k" * 20
    assert f"status {ORDER_ID} --watch" in out


def test_order_failure_after_retries_shows_the_key_to_reuse(
    api: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    route = api.post(f"{API}/v1/orders").respond(503, json=error_json("no_capacity", "busy"))
    code, _, err = run([*BASE, "order", "q-1", "opt-requested"], capsys)
    assert code == 1
    key = route.calls.last.request.headers["idempotency-key"]
    assert f"--idempotency-key {key}" in err
    assert "error: no_capacity: busy" in err


def test_status_json_output_parses(
    api: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    api.get(f"{API}/v1/orders/{ORDER_ID}").respond(200, json=order_json("rendering", 5))
    code, out, _ = run([*BASE, "status", ORDER_ID, "--json"], capsys)
    assert code == 0
    assert json.loads(out)["images_done"] == 5


def test_status_watch_logs_a_line_per_change_when_not_a_tty(
    api: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    api.get(f"{API}/v1/orders/{ORDER_ID}").mock(
        side_effect=[
            httpx.Response(200, json=order_json("rendering", 50)),
            httpx.Response(200, json=order_json("rendering", 50)),
            httpx.Response(200, json=order_json("completed", 100, eta=None)),
        ]
    )
    code, out, err = run([*BASE, "status", ORDER_ID, "--watch", "--poll", "0"], capsys)
    assert code == 0
    lines = err.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("[#####.....] 50/100 images  $0.12 spent  eta ")
    assert lines[0].endswith("  state rendering")
    assert lines[1] == "[##########] 100/100 images  $0.12 spent  eta -  state completed"
    assert "state completed" in out


def test_status_watch_gives_up_at_its_timeout(
    api: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    api.get(f"{API}/v1/orders/{ORDER_ID}").respond(200, json=order_json("rendering", 1))
    argv = [*BASE, "status", ORDER_ID, "--watch", "--poll", "0.01", "--timeout", "0.05"]
    code, _, err = run(argv, capsys)
    assert code == 1
    assert "error: timeout:" in err


def test_progress_line_matches_the_documented_shape() -> None:
    now = datetime(2025, 6, 1, 9, 0, tzinfo=UTC)
    order = order_json("rendering", 50, spend_usd="0.1234", eta="2025-06-01T14:05:00Z")
    assert progress_line(order, now) == (
        "[#####.....] 50/100 images  $0.12 spent  eta 14:05Z  state rendering"
    )
    tiny = order_json("rendering", 1, spend_usd="0.000027", eta=None)
    assert "$0.000027 spent" in progress_line(tiny, now)
    tomorrow = order_json("accepted", 0, total=0, eta="2025-06-02T01:00:00+00:00")
    assert "eta 2025-06-02 01:00Z" in progress_line(tomorrow, now)


def test_an_ended_order_says_why_and_what_it_was_charged() -> None:
    now = datetime(2025, 6, 1, 9, 0, tzinfo=UTC)
    partial = order_json(
        "partially_completed",
        96,
        eta=None,
        end_reason="tasks_failed",
        images_failed=4,
        charge_usd="0.0119",
        ended_at="2025-06-01T08:59:00Z",
    )
    assert progress_line(partial, now).endswith(
        "state partially_completed  (tasks_failed: 4 given up, charged $0.0119)"
    )
    assert "ended     2025-06-01 08:59Z  tasks_failed, 4 given up, charged $0.0119" in (
        format_order(partial)
    )
    open_order = order_json("rendering", 50, eta=None)
    assert "charged" not in progress_line(open_order, now) + format_order(open_order)


def test_progress_redraws_in_place_on_a_tty() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Tty()
    progress = Progress(stream)
    progress(order_json("rendering", 10, spend_usd="10.00"))
    progress(order_json("rendering", 10, spend_usd="10.00"))
    progress(order_json("completed", 100, spend_usd="0.5", eta=None))
    progress.finish()
    text = stream.getvalue()
    assert text.count("\r") == 2
    assert text.endswith("\n")
    assert text.rstrip().endswith("state completed")
    first, second = text.split("\r")[1:]
    assert len(second.rstrip("\n")) >= len(first)


def test_download_prints_count_and_directory(
    api: respx.MockRouter, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    api.get(f"{API}/v1/orders/{ORDER_ID}/images").respond(
        200,
        json={
            "order_id": ORDER_ID,
            "images": [image_json(0, 5), image_json(1, 6)],
            "next_token": None,
        },
    )
    api.get(url__startswith=STORAGE).respond(200, content=PNG)
    target = tmp_path / "pngs"
    code, out, _ = run([*BASE, "download", ORDER_ID, str(target)], capsys)
    assert code == 0
    assert out.strip() == f"2 PNGs in {target}"
    assert sorted(p.name for p in target.iterdir()) == ["000-5.png", "001-6.png"]


def test_cancel_exits_0_and_a_missing_order_exits_1(
    api: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    api.delete(f"{API}/v1/orders/{ORDER_ID}").respond(200, json=order_json("cancelled", 3))
    code, out, _ = run([*BASE, "cancel", ORDER_ID], capsys)
    assert (code, "state cancelled" in out) == (0, True)

    other = "o-" + "b" * 32
    api.delete(f"{API}/v1/orders/{other}").respond(
        404, json=error_json("not_found", f"order {other} not found")
    )
    code, _, err = run([*BASE, "cancel", other], capsys)
    assert code == 1
    assert err.startswith("error: not_found: order ")


def test_help_and_unknown_commands_return_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert main(["frobnicate"]) == 2
    capsys.readouterr()
