"""The ``subconscious`` command: flags to request bodies, output, and exit codes."""

from __future__ import annotations

import io
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from subconscious_cli.formatting import Progress, format_order, progress_line
from subconscious_cli.main import main
from subconscious_cli.models import OrderOut
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
    # our expected finish beside the promise
    requested = next(line for line in out.splitlines() if "opt-requested" in line)
    cheapest = next(line for line in out.splitlines() if "opt-cheapest" in line)
    assert "EXPECTED" in out and "COMPLETES AT" in out
    assert requested.count("Z") == 2 and cheapest.count("Z") == 2


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


def test_order_of_a_quote_made_elsewhere_needs_an_option(
    api: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    probe = api.post(f"{API}/v1/orders").respond(
        422,
        json=error_json(
            "validation_error",
            "quote q-unseen has no option -",
            [{"field": "option_id", "message": "not an option of this quote"}],
        ),
    )
    code, _, err = run([*BASE, "order", "q-unseen"], capsys)
    assert code == 2
    assert "OPTION_ID" in err
    assert "q-unseen was not quoted by this CLI" in err
    assert sent(probe) == {"quote_id": "q-unseen", "option_id": "-"}


def test_a_mistyped_quote_id_is_an_unknown_quote_not_a_missing_option(
    api: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    for argv in (["order", "q-typo"], ["order", "q-typo", "opt-requested"]):
        api.post(f"{API}/v1/orders").respond(
            404, json=error_json("not_found", "quote q-typo not found")
        )
        code, _, err = run([*BASE, *argv], capsys)
        assert code == 1
        assert err.startswith("error: unknown_quote: no quote q-typo for this API key")
        assert "OPTION_ID" not in err


def test_quote_already_accepted_names_the_order(
    api: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    message = f"quote q-1 was already accepted as order {ORDER_ID}"
    api.post(f"{API}/v1/orders").respond(
        409, json=error_json("conflict", message, [{"field": "quote_id", "message": message}])
    )
    code, _, err = run([*BASE, "order", "q-1", "opt-requested"], capsys)
    assert code == 1
    assert f"error: conflict: {message}; follow it with: subconscious status {ORDER_ID}" in err


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


def typed(**fields: Any) -> OrderOut:
    state = fields.pop("state", "rendering")
    done = fields.pop("done", 0)
    total = fields.pop("total", 100)
    return OrderOut.model_validate(order_json(state, done, total, **fields))


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
    assert lines[0].startswith("[#####.....] 50/100 images  $0.62 charged  eta ")
    assert lines[0].endswith("  state rendering")
    assert lines[1] == "[##########] 100/100 images  $1.23 charged  eta -  state completed"
    assert "state completed" in out


def test_status_watch_gives_up_at_its_timeout(
    api: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    api.get(f"{API}/v1/orders/{ORDER_ID}").respond(200, json=order_json("rendering", 1))
    argv = [*BASE, "status", ORDER_ID, "--watch", "--poll", "0.01", "--timeout", "0.05"]
    code, out, err = run(argv, capsys)
    assert code == 1
    assert "error: timeout:" in err
    assert "state rendering" in out


def test_status_watch_json_that_times_out_prints_the_last_status(
    api: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    api.get(f"{API}/v1/orders/{ORDER_ID}").mock(
        side_effect=[
            httpx.Response(200, json=order_json("accepted", 0)),
            httpx.Response(200, json=order_json("rendering", 7)),
        ]
        + [httpx.Response(200, json=order_json("rendering", 8))] * 50
    )
    argv = [*BASE, "status", ORDER_ID, "--watch", "--json", "--poll", "0.01", "--timeout", "0.1"]
    code, out, err = run(argv, capsys)
    assert code == 1
    last = json.loads(out)
    assert (last["state"], last["images_done"]) == ("rendering", 8)
    assert "still rendering (8/100)" in err


def test_progress_line_matches_the_documented_shape() -> None:
    now = datetime(2025, 6, 1, 9, 0, tzinfo=UTC)
    order = typed(done=50, charge_usd="0.1234", eta="2025-06-01T14:05:00Z")
    assert progress_line(order, now) == (
        "[#####.....] 50/100 images  $0.12 charged  eta 14:05Z  state rendering"
    )
    tiny = typed(done=1, charge_usd="0.000027", eta=None)
    assert "$0.000027 charged" in progress_line(tiny, now)
    tomorrow = typed(state="accepted", total=0, eta="2025-06-02T01:00:00+00:00")
    assert "eta 2025-06-02 01:00Z" in progress_line(tomorrow, now)


def test_customer_output_shows_price_and_charge_never_our_cost() -> None:
    # an API from before contract item 3 still sends spend_usd: it must not be shown
    order = typed(done=50, charge_usd="0.615", spend_usd="0.0777")
    text = progress_line(order) + format_order(order)
    assert "0.0777" not in text
    assert "spent" not in text
    assert "$0.0123/image, total $1.23, charged so far $0.615" in format_order(order)


def test_a_held_order_says_until_when_and_why() -> None:
    now = datetime(2025, 6, 1, 9, 0, tzinfo=UTC)
    held = typed(
        state="accepted",
        held_until="2025-06-01T09:35:00Z",
        held_reason="sharing a machine start-up with 2 other orders",
    )
    assert progress_line(held, now).endswith(
        "state accepted  held until 09:35Z: sharing a machine start-up with 2 other orders"
    )
    assert "held      until 2025-06-01 09:35Z  sharing a machine" in format_order(held)
    assert "held" not in progress_line(typed(state="accepted"), now)


def test_an_ended_order_says_why_and_what_it_was_charged() -> None:
    now = datetime(2025, 6, 1, 9, 0, tzinfo=UTC)
    partial = typed(
        state="partially_completed",
        done=96,
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
    open_order = typed(done=50, eta=None)
    assert "given up" not in progress_line(open_order, now) + format_order(open_order)


def test_progress_redraws_in_place_on_a_tty() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Tty()
    progress = Progress(stream)
    progress(typed(done=10, charge_usd="10.00"))
    progress(typed(done=10, charge_usd="10.00"))
    progress(typed(state="completed", done=100, charge_usd="0.5", eta=None))
    progress.finish()
    text = stream.getvalue()
    assert text.count("\r") == 2
    assert text.endswith("\n")
    assert text.rstrip().endswith("state completed")
    first, second = text.split("\r")[1:]
    assert len(second.rstrip("\n")) >= len(first)


def mock_images(api: respx.MockRouter, state: str, images: list[dict[str, Any]]) -> None:
    api.get(f"{API}/v1/orders/{ORDER_ID}").respond(
        200, json=order_json(state, len(images), total=2)
    )
    api.get(f"{API}/v1/orders/{ORDER_ID}/images").respond(
        200, json={"order_id": ORDER_ID, "images": images, "next_token": None}
    )
    api.get(url__startswith=STORAGE).respond(200, content=PNG)


def test_download_prints_count_directory_and_manifest_with_progress(
    api: respx.MockRouter, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    mock_images(api, "completed", [image_json(0, 5), image_json(1, 6)])
    target = tmp_path / "pngs"
    code, out, err = run([*BASE, "download", ORDER_ID, str(target)], capsys)
    assert code == 0
    assert out.strip() == f"2 PNGs in {target}, listed in {target / 'manifest.jsonl'}"
    assert sorted(p.name for p in target.iterdir()) == [
        "000-5.png",
        "001-6.png",
        "manifest.jsonl",
    ]
    lines = [json.loads(line) for line in (target / "manifest.jsonl").open()]
    assert [(m["file"], m["prompt"], m["seed"], m["order_id"]) for m in lines] == [
        ("000-5.png", "prompt 0", 5, ORDER_ID),
        ("001-6.png", "prompt 1", 6, ORDER_ID),
    ]
    assert err.splitlines() == [
        f"downloading 1/2 PNGs into {target}",
        f"downloading 2/2 PNGs into {target}",
    ]


def test_download_of_an_unfinished_order_warns_and_exits_3(
    api: respx.MockRouter, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    mock_images(api, "accepted", [])
    code, out, err = run([*BASE, "download", ORDER_ID, str(tmp_path)], capsys)
    assert code == 3
    assert out == f"0 PNGs in {tmp_path}\n"
    assert f"error: order {ORDER_ID} is still accepted (0/2 rendered)" in err
    assert "incomplete" in err


def test_download_of_a_partial_order_says_how_much_was_delivered(
    api: respx.MockRouter, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    api.get(f"{API}/v1/orders/{ORDER_ID}").respond(
        200,
        json=order_json(
            "partially_completed", 1, total=2, end_reason="tasks_failed", images_failed=1
        ),
    )
    api.get(f"{API}/v1/orders/{ORDER_ID}/images").respond(
        200, json={"order_id": ORDER_ID, "images": [image_json(0, 5)], "next_token": None}
    )
    api.get(url__startswith=STORAGE).respond(200, content=PNG)
    code, _, err = run([*BASE, "download", ORDER_ID, str(tmp_path)], capsys)
    assert code == 0
    assert "ended partially_completed (tasks_failed): 1 of 2 images, charged $0.0123" in err


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


def test_download_of_an_order_that_ended_with_nothing_exits_1(
    api: respx.MockRouter, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    api.get(f"{API}/v1/orders/{ORDER_ID}").respond(
        200, json=order_json("expired", 0, total=2, end_reason="deadline_passed")
    )
    api.get(f"{API}/v1/orders/{ORDER_ID}/images").respond(
        200, json={"order_id": ORDER_ID, "images": [], "next_token": None}
    )
    code, _, err = run([*BASE, "download", ORDER_ID, str(tmp_path)], capsys)
    assert code == 1
    assert f"error: order {ORDER_ID} ended expired (deadline_passed) with no images" in err
    assert list(tmp_path.iterdir()) == []


def test_a_local_deadline_is_echoed_with_the_zone_and_sent_in_utc(
    api: respx.MockRouter, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        route = api.post(f"{API}/v1/quotes").respond(201, json=quote_json())
        argv = [*BASE, "quote", "--prompt", "x", "--count", "1", "--deadline", "tomorrow 09:00"]
        code, _, err = run(argv, capsys)
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    assert code == 0
    echoed = err.splitlines()[0]
    assert echoed.startswith("deadline ")
    assert " 09:00 E" in echoed  # EST or EDT, by the date
    assert "(UTC-05:00)" in echoed or "(UTC-04:00)" in echoed
    sent_deadline = datetime.fromisoformat(sent(route)["constraints"]["deadline"])
    assert sent_deadline.utcoffset() == timedelta(0)
    assert sent_deadline.hour in (13, 14)  # 09:00 in New York
