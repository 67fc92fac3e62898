"""quote -> confirm -> order -> watch -> download in one call (Client.run, `subconscious run`),
the order guard (an option outside the customer's terms only with their agreement), and the
commands list and market."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from subconscious_cli import __version__
from subconscious_cli.client import ApiError, Client, OutsideTerms
from subconscious_cli.main import main
from tests.client.fakes import (
    API,
    KEY,
    ORDER_ID,
    PNG,
    STORAGE,
    error_json,
    image_json,
    market_json,
    option_json,
    order_json,
    quote_json,
)

BASE = ["--api-url", API, "--api-key", KEY]
CAP = {"deadline": None, "max_price_per_image_usd": "0.025"}
# the case: the only option on time costs 10.8x the customer's cap
PRICEY = option_json("opt-fast", "fastest", "0.27", meets_budget=False)
WITHIN = [
    option_json("opt-req", "requested", "0.02"),
    option_json("opt-cheap", "cheapest", "0.01", hours=5),
]


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    assert KEY not in out + err
    return code, out, err


def sent(route: respx.Route) -> Any:
    return json.loads(route.calls.last.request.content)


def mock_flow(
    api: respx.MockRouter, options: list[dict[str, Any]], *, images: int = 2
) -> dict[str, respx.Route]:
    done = [image_json(i, 100 + i) for i in range(images)]
    return {
        "quote": api.post(f"{API}/v1/quotes").respond(
            201, json=quote_json("q-9", constraints=CAP, options=options)
        ),
        "order": api.post(f"{API}/v1/orders").respond(201, json=order_json(total=images)),
        "status": api.get(f"{API}/v1/orders/{ORDER_ID}").mock(
            side_effect=[
                httpx.Response(200, json=order_json("rendering", 1, total=images)),
                httpx.Response(200, json=order_json("completed", images, total=images)),
            ]
        ),
        "images": api.get(f"{API}/v1/orders/{ORDER_ID}/images").respond(
            200, json={"order_id": ORDER_ID, "images": done, "next_token": None}
        ),
        "storage": api.get(url__startswith=STORAGE).respond(200, content=PNG),
    }


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


# -- Client.run -------------------------------------------------------------------------------


def test_run_quotes_orders_the_cheapest_within_terms_watches_and_downloads(
    api: respx.MockRouter, client: Client, tmp_path: Path
) -> None:
    routes = mock_flow(api, WITHIN)
    seen: list[str] = []

    result = client.run(
        ["a fox", "a hen"],
        count=1,
        deadline="+6h",
        max_price="0.025",
        out_dir=tmp_path,
        job={"sampler": "DDIM", "cfg_scale": "5.5"},
        poll_s=0,
        on_progress=lambda o: seen.append(o.state),
    )

    body = sent(routes["quote"])
    assert body["job"] == {
        "sampler": "DDIM",
        "cfg_scale": "5.5",
        "prompts": [{"text": "a fox", "count": 1}, {"text": "a hen", "count": 1}],
    }
    assert body["constraints"]["max_price_per_image_usd"] == "0.025"
    assert body["constraints"]["deadline"].endswith("+00:00")
    # cheapest within the terms; no flag: nothing outside the terms was agreed to
    assert sent(routes["order"]) == {"quote_id": "q-9", "option_id": "opt-cheap"}
    assert result.option.option_id == "opt-cheap"
    assert seen == ["rendering", "completed"]
    assert result.order.state == "completed"
    assert result.complete
    assert [Path(f).name for f in result.files] == ["000-100.png", "001-101.png"]
    assert result.manifest == str(tmp_path / "manifest.jsonl")
    assert len(Path(result.manifest).read_text().splitlines()) == 2


def test_run_refuses_an_option_outside_the_terms_without_agreement(
    api: respx.MockRouter, client: Client, tmp_path: Path
) -> None:
    routes = mock_flow(api, [PRICEY])
    with pytest.raises(OutsideTerms, match=r"costs \$0.27/image, over your \$0.025"):
        client.run(["a fox"], max_price="0.025", out_dir=tmp_path)
    assert not routes["order"].called
    with pytest.raises(OutsideTerms):
        client.run(["a fox"], max_price="0.025", out_dir=tmp_path, confirm=lambda q, o: False)
    assert not routes["order"].called


@pytest.mark.parametrize("how", ["confirm", "flag"])
def test_run_sends_the_flag_once_agreed(
    api: respx.MockRouter, client: Client, tmp_path: Path, how: str
) -> None:
    routes = mock_flow(api, [PRICEY])
    asked: list[str] = []

    def confirm(_: Any, option: Any) -> bool:
        asked.append(option.option_id)
        return True

    client.run(
        ["a fox"],
        max_price="0.025",
        out_dir=tmp_path,
        poll_s=0,
        confirm=confirm if how == "confirm" else None,
        accept_outside_terms=how == "flag",
    )
    assert sent(routes["order"]) == {
        "quote_id": "q-9",
        "option_id": "opt-fast",
        "accept_outside_terms": True,
    }
    assert asked == (["opt-fast"] if how == "confirm" else [])


def test_run_picks_an_option_by_label_or_id_and_names_the_ones_there_are(
    api: respx.MockRouter, client: Client, tmp_path: Path
) -> None:
    routes = mock_flow(api, WITHIN)
    client.run(["x"], option="requested", out_dir=tmp_path, poll_s=0)
    assert sent(routes["order"])["option_id"] == "opt-req"
    with pytest.raises(ApiError, match=r"no option 'wait_3d': opt-req \(requested\)"):
        client.run(["x"], option="wait_3d", out_dir=tmp_path)


def test_run_with_nothing_delivered_downloads_nothing(
    api: respx.MockRouter, client: Client, tmp_path: Path
) -> None:
    routes = mock_flow(api, WITHIN)
    routes["status"].mock(
        return_value=httpx.Response(
            200, json=order_json("expired", 0, total=2, end_reason="deadline_passed")
        )
    )
    result = client.run(["x"], out_dir=tmp_path, poll_s=0)
    assert (result.files, result.manifest, result.complete) == ([], None, False)
    assert not routes["images"].called


# -- subconscious run -------------------------------------------------------------------------


def test_cli_run_ends_with_images_and_manifest(
    api: respx.MockRouter, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    routes = mock_flow(api, WITHIN)
    out_dir = tmp_path / "out"
    argv = [*BASE, "run", "--prompt", "a fox", "--count", "2", "--deadline", "eod"]
    argv += ["--max-price", "0.025", "--out", str(out_dir), "--poll", "0"]
    argv += ["--sampler", "DPM++ 2M Karras", "--cfg", "6.5"]

    code, out, err = run_cli(argv, capsys)

    assert code == 0, err
    job = sent(routes["quote"])["job"]
    assert (job["sampler"], job["cfg_scale"]) == ("DPM++ 2M Karras", "6.5")
    assert err.startswith("deadline ")  # echoed with its zone before anything is ordered
    assert "chosen: opt-cheap (cheapest) RTX 4090, $0.01/image, $0.02 in all" in err
    assert f"ordered {ORDER_ID}" in err
    assert "accept with:" not in err  # run accepts by itself
    assert f"2 PNGs in {out_dir}, listed in {out_dir / 'manifest.jsonl'}" in out
    assert sorted(p.name for p in out_dir.iterdir()) == [
        "000-100.png",
        "001-101.png",
        "manifest.jsonl",
    ]


def test_cli_run_outside_terms_on_a_pipe_needs_yes(
    api: respx.MockRouter,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))  # not a terminal: never read
    routes = mock_flow(api, [PRICEY])
    argv = [*BASE, "run", "--prompt", "x", "--count", "2", "--max-price", "0.025"]
    argv += ["--out", str(tmp_path), "--poll", "0"]

    code, _, err = run_cli(argv, capsys)
    assert code == 2
    assert "option opt-fast (fastest) costs $0.27/image, over your $0.025" in err
    assert "nothing was ordered. Rerun with --yes" in err
    assert not routes["order"].called

    code, _, err = run_cli([*argv, "--yes"], capsys)
    assert code == 0, err
    assert sent(routes["order"])["accept_outside_terms"] is True


@pytest.mark.parametrize(("answer", "ordered"), [("y\n", True), ("\n", False), ("no\n", False)])
def test_cli_run_outside_terms_on_a_terminal_asks(
    api: respx.MockRouter,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    answer: str,
    ordered: bool,
) -> None:
    monkeypatch.setattr("sys.stdin", Tty(answer))
    routes = mock_flow(api, [PRICEY])
    argv = [*BASE, "run", "--prompt", "x", "--count", "2", "--max-price", "0.025"]
    code, _, err = run_cli([*argv, "--out", str(tmp_path), "--poll", "0"], capsys)
    assert "Order it anyway? [y/N]" in err
    assert routes["order"].called is ordered
    assert code == (0 if ordered else 2)


def test_cli_run_that_times_out_exits_1_with_the_order_named(
    api: respx.MockRouter, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    routes = mock_flow(api, WITHIN)
    routes["status"].mock(return_value=httpx.Response(200, json=order_json("accepted", 0)))
    argv = [*BASE, "run", "--prompt", "x", "--count", "2", "--out", str(tmp_path)]
    code, _, err = run_cli([*argv, "--poll", "0.01", "--timeout", "0.05"], capsys)
    assert code == 1
    assert f"error: timeout: order {ORDER_ID} still accepted" in err


# -- subconscious order: the guard ------------------------------------------------------------


def quote_then_order(
    api: respx.MockRouter, capsys: pytest.CaptureFixture[str], *order_args: str
) -> tuple[int, str, respx.Route]:
    api.post(f"{API}/v1/quotes").respond(
        201, json=quote_json("q-9", constraints=CAP, options=[PRICEY])
    )
    orders = api.post(f"{API}/v1/orders").respond(201, json=order_json())
    assert run_cli([*BASE, "quote", "--prompt", "x", "--count", "2"], capsys)[0] == 0
    code, _, err = run_cli([*BASE, "order", "q-9", *order_args], capsys)
    return code, err, orders


def test_order_without_an_option_does_not_silently_accept_10x_the_cap(
    api: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err, orders = quote_then_order(api, capsys)
    assert code == 2
    assert "option opt-fast (fastest) costs $0.27/image, over your $0.025" in err
    assert "--yes" in err
    assert not orders.called


@pytest.mark.parametrize("option", [[], ["opt-fast"]])
def test_order_outside_terms_with_yes_sends_the_flag(
    api: respx.MockRouter, capsys: pytest.CaptureFixture[str], option: list[str]
) -> None:
    code, _, orders = quote_then_order(api, capsys, *option, "--yes")
    assert code == 0
    assert sent(orders) == {
        "quote_id": "q-9",
        "option_id": "opt-fast",
        "accept_outside_terms": True,
    }


def test_order_within_terms_sends_no_flag(
    api: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    api.post(f"{API}/v1/quotes").respond(201, json=quote_json("q-9", options=WITHIN))
    orders = api.post(f"{API}/v1/orders").respond(201, json=order_json())
    run_cli([*BASE, "quote", "--prompt", "x", "--count", "2"], capsys)
    code, _, _ = run_cli([*BASE, "order", "q-9"], capsys)
    assert code == 0
    assert sent(orders) == {"quote_id": "q-9", "option_id": "opt-cheap"}


def test_the_apis_outside_terms_refusal_is_shown_and_agreed_to_only_with_yes(
    api: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    message = (
        "option cheapest costs $0.27/image, over your max_price_per_image_usd $0.025; "
        "resend with accept_outside_terms=true"
    )
    refusal = httpx.Response(422, json=error_json("outside_terms", message))
    orders = api.post(f"{API}/v1/orders").mock(side_effect=[refusal, refusal])
    # a quote this CLI never saw: only the API knows the terms
    code, _, err = run_cli([*BASE, "order", "q-elsewhere", "opt-x"], capsys)
    assert code == 2
    assert message in err
    assert orders.call_count == 1
    assert "accept_outside_terms" not in sent(orders)

    orders.side_effect = [refusal, httpx.Response(201, json=order_json())]
    code, _, err = run_cli([*BASE, "order", "q-elsewhere", "opt-x", "--yes"], capsys)
    assert code == 0, err
    assert sent(orders)["accept_outside_terms"] is True


# -- list, market, version, errors ------------------------------------------------------------


def test_list_shows_my_orders_newest_first_and_the_next_page(
    api: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    page = {
        "orders": [order_json("rendering", 3), order_json("completed", 100)],
        "next_token": "t2",
    }
    route = api.get(f"{API}/v1/orders").respond(200, json=page)
    code, out, _ = run_cli([*BASE, "list", "--state", "rendering", "--limit", "2"], capsys)
    assert code == 0
    assert dict(route.calls.last.request.url.params) == {"state": "rendering", "limit": "2"}
    lines = out.splitlines()
    assert lines[0].split() == [
        "ORDER", "STATE", "IMAGES", "PRICE/IMAGE", "CHARGED", "CREATED", "PROMISED"
    ]  # fmt: skip
    assert lines[1].split()[:5] == [ORDER_ID, "rendering", "3/100", "$0.0123", "$0.0369"]
    assert lines[-1] == "more: subconscious list --next-token t2"

    run_cli([*BASE, "list", "--next-token", "t2", "--json"], capsys)
    assert route.calls.last.request.url.params["next_token"] == "t2"


def test_list_with_a_bad_state_is_a_usage_error(
    api: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli([*BASE, "list", "--state", "done"], capsys)
    assert code == 2
    assert "--state" in err
    assert not api.calls


def test_market_shows_offers_by_gpu_with_price_per_image(
    api: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    api.get(f"{API}/v1/market").respond(200, json=market_json())
    code, out, _ = run_cli([*BASE, "market"], capsys)
    assert code == 0
    row = next(line for line in out.splitlines() if line.startswith("RTX 4090"))
    assert row.split() == ["RTX", "4090", "vast", "$0.35", "-", "$0.00012", "$0.00051", "US-CA"]
    assert "stale: runpod" in out
    code, out, _ = run_cli([*BASE, "market", "--json"], capsys)
    assert json.loads(out)["gpus"][0]["offers"][0]["usd_per_image_sd15"] == "0.00012"


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"subconscious {__version__}"


def test_a_wrong_url_names_the_url_tried(
    api: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = "http://api.tset:8600"
    api.get(url__startswith=wrong).mock(side_effect=httpx.ConnectError("Name or service unknown"))
    code, _, err = run_cli(["--api-url", wrong, "--api-key", KEY, "status", ORDER_ID], capsys)
    assert code == 1
    assert f"no answer from {wrong}/v1/orders/{ORDER_ID}" in err
    assert "is the API URL right?" in err


def test_a_url_that_answers_html_names_the_url(
    api: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    api.get(f"{API}/v1/market").respond(200, text="<html>a login page</html>")
    code, _, err = run_cli([*BASE, "market"], capsys)
    assert code == 1
    assert f"GET {API}/v1/market answered non-JSON: is this the API's URL?" in err
