"""The emulated GPU market: offers from the price file, machines as renderer processes."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from infra.local.emulated_market import (
    EmulatedMarket,
    MachineFaults,
    MachineNotFound,
    MarketServer,
    OfferNotFound,
    gpu_memory_gb,
    load_offers,
    serve_market,
)

SECRET = "render-bot:pa55-w0rd-xyz"
AUTH = ("render-bot", "pa55-w0rd-xyz")
FAST = MachineFaults(startup_delay_s=0.0)
SD_MODELS = "/sdapi/v1/sd-models"


@pytest.fixture
def market(tmp_path: Path) -> Iterator[EmulatedMarket]:
    emulated = EmulatedMarket(default_faults=FAST, log_dir=tmp_path / "machines")
    yield emulated
    emulated.shutdown()


@pytest.fixture
def server(market: EmulatedMarket) -> Iterator[MarketServer]:
    running = serve_market(market)
    yield running
    running.close()


def _cheapest(market: EmulatedMarket) -> str:
    return str(market.offers()[0]["offer_id"])


def _wait_status(market: EmulatedMarket, machine_id: str, status: str) -> dict[str, object]:
    deadline = time.monotonic() + 10
    while (machine := market.machine(machine_id))["status"] != status:
        assert time.monotonic() < deadline, f"{machine_id} stuck in {machine['status']}"
        time.sleep(0.02)
    return machine


def _wait_ready(url: str) -> httpx.Response:
    deadline = time.monotonic() + 10
    while True:
        try:
            response = httpx.get(url + SD_MODELS, auth=AUTH, timeout=2)
            if response.status_code == 200:
                return response
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "renderer never became ready"
        time.sleep(0.02)


def _txt2img(url: str) -> httpx.Response:
    body = {"prompt": "a cat", "width": 64, "height": 64, "steps": 2}
    return httpx.post(url + "/sdapi/v1/txt2img", json=body, auth=AUTH, timeout=10)


def test_offers_are_single_gpu_market_offers_sorted_by_decimal_price(tmp_path: Path) -> None:
    offers = load_offers()
    assert offers
    prices = [Decimal(str(o["usd_per_hour"])) for o in offers]
    assert prices == sorted(prices)
    ids = [o["offer_id"] for o in offers]
    assert len(set(ids)) == len(ids)
    assert all(str(i).startswith("emu-") for i in ids)
    assert {o["provider_name"] for o in offers} == {
        "Vast.ai",
        "RunPod Community Cloud",
        "RunPod Secure Cloud",
    }
    pairs = [(o["provider_name"], o["gpu"]) for o in offers]
    assert len(set(pairs)) == len(pairs)
    for offer in offers:
        # Money is never a float anywhere in an offer.
        assert isinstance(offer["usd_per_hour"], str)
        assert isinstance(offer["reliability"], str)
        assert offer["gpu_count"] == 1
        assert offer["interruptible"] is False
    by_id = {o["offer_id"]: o for o in offers}
    assert by_id["emu-runpod-community-cloud-l40s"]["usd_per_hour"] == "0.79"
    assert by_id["emu-runpod-community-cloud-l40s"]["location"] == "global"
    assert by_id["emu-runpod-community-cloud-h100-sxm-80gb-hbm3"]["gpu_memory_gb"] == 80
    assert EmulatedMarket(log_dir=tmp_path).offers() == offers


@pytest.mark.parametrize(
    ("gpu", "memory"),
    [
        ("A100 80GB PCIe", 80),
        ("A100 40GB SXM4", 40),
        ("A100", 40),
        ("H100 SXM (80GB HBM3)", 80),
        ("RTX 4090", 24),
        ("RTX 3090 Ti", 24),
        ("RTX 5090", 32),
        ("L4", 24),
        ("L40S", 48),
        ("A10", 24),
        ("H200", 141),
        ("B200", 180),
        ("Some Future GPU", 24),
    ],
)
def test_gpu_memory_comes_from_the_name_or_the_table(gpu: str, memory: int) -> None:
    assert gpu_memory_gb(gpu) == memory


def test_launch_starts_a_renderer_that_answers_with_the_given_credential(
    market: EmulatedMarket,
) -> None:
    offer = market.offers()[0]
    machine = market.launch(str(offer["offer_id"]), "job-1", SECRET)
    assert set(machine) == {
        "machine_id",
        "offer_id",
        "label",
        "gpu",
        "usd_per_hour",
        "status",
        "url",
        "launched_at",
        "terminated_at",
        "images_per_s",
        "interruptible",
        "preempted",
    }
    assert machine["interruptible"] is False and machine["preempted"] is False
    assert str(machine["machine_id"]).startswith("m-")
    assert machine["status"] in ("starting", "running")
    assert (machine["gpu"], machine["usd_per_hour"]) == (offer["gpu"], offer["usd_per_hour"])
    assert str(machine["launched_at"]).endswith("+00:00")
    assert machine["terminated_at"] is None
    assert market.launched_count == 1

    running = _wait_status(market, str(machine["machine_id"]), "running")
    url = str(running["url"])
    assert url.startswith("http://127.0.0.1:")
    assert _wait_ready(url).json()[0]["model_name"] == "sd15-placeholder"
    assert httpx.get(url + SD_MODELS, timeout=2).status_code == 401
    assert "pa55" not in json.dumps(running)


def test_queued_faults_apply_to_the_next_launch_only(market: EmulatedMarket) -> None:
    market.fault_queue.append(
        MachineFaults(startup_delay_s=0.0, images_per_s=7.0, oom_above_batch=0)
    )
    faulty = market.launch(_cheapest(market), "job", SECRET)
    healthy = market.launch(_cheapest(market), "job", SECRET)
    assert market.fault_queue == []
    assert faulty["images_per_s"] == 7.0
    assert healthy["images_per_s"] == 50.0

    faulty_url, healthy_url = str(faulty["url"]), str(healthy["url"])
    _wait_ready(faulty_url)
    _wait_ready(healthy_url)
    oom = _txt2img(faulty_url)
    assert oom.status_code == 500
    assert oom.json()["error"] == "OutOfMemoryError"
    assert _txt2img(healthy_url).status_code == 200


def test_prompt_and_call_faults_reach_the_renderer(market: EmulatedMarket) -> None:
    market.queue_faults(MachineFaults(startup_delay_s=0.0, fail_prompt="-poison"))
    market.queue_faults(MachineFaults(startup_delay_s=0.0, crash_prompt="killer"))
    market.queue_faults(MachineFaults(startup_delay_s=0.0, crash_on_call=True))
    poisoned, killed, crashing = (market.launch(_cheapest(market), "job", SECRET) for _ in "abc")
    for machine in (poisoned, killed, crashing):
        _wait_ready(str(machine["url"]))

    def render(machine: dict[str, object], prompt: str) -> httpx.Response:
        body = {"prompt": prompt, "width": 64, "height": 64, "steps": 2}
        return httpx.post(f"{machine['url']}/sdapi/v1/txt2img", json=body, auth=AUTH, timeout=10)

    assert render(poisoned, "a -poison apple").status_code == 500
    assert render(poisoned, "an apple").status_code == 200
    assert render(killed, "an apple").status_code == 200
    for machine, prompt in ((killed, "a killer apple"), (crashing, "an apple")):
        with pytest.raises(httpx.TransportError):
            render(machine, prompt)
        _wait_status(market, str(machine["machine_id"]), "exited")


def test_fault_flags_for_the_renderer() -> None:
    args = MachineFaults(crash_on_call=True, fail_prompt="-x y", crash_prompt="z").renderer_args()
    assert args[-3:] == ["--crash-on-call", "--fail-prompt=-x y", "--crash-prompt=z"]
    assert "--crash-on-call" not in MachineFaults().renderer_args()
    with pytest.raises(ValueError, match="fail_prompt"):
        MachineFaults(fail_prompt="")


def test_terminate_kills_the_process_and_is_idempotent(market: EmulatedMarket) -> None:
    machine_id = str(market.launch(_cheapest(market), "job", SECRET)["machine_id"])
    _wait_status(market, machine_id, "running")
    process = market.process(machine_id)

    first = market.terminate(machine_id)
    assert process.poll() is not None
    assert first["status"] == "terminated"
    assert first["terminated_at"] is not None
    assert market.terminate(machine_id) == first
    assert market.machine(machine_id) == first
    assert market.machines() == []
    with pytest.raises(MachineNotFound):
        market.terminate("m-000000000000")
    with pytest.raises(MachineNotFound):
        market.machine("m-000000000000")
    with pytest.raises(OfferNotFound):
        market.launch("emu-no-such-offer", "job", SECRET)


def test_a_machine_whose_renderer_dies_reports_exited(market: EmulatedMarket) -> None:
    market.fault_queue.append(MachineFaults(startup_delay_s=0.0, crash_after_images=1))
    machine = market.launch(_cheapest(market), "job", SECRET)
    url = str(machine["url"])
    _wait_ready(url)
    with pytest.raises(httpx.TransportError):
        _txt2img(url)
    machine_id = str(machine["machine_id"])
    _wait_status(market, machine_id, "exited")
    assert market.process(machine_id).returncode == 17
    assert [m["machine_id"] for m in market.machines()] == [machine_id]


def test_machines_lists_live_machines_filtered_by_label(market: EmulatedMarket) -> None:
    offer_id = _cheapest(market)
    a1 = market.launch(offer_id, "a", SECRET)
    market.launch(offer_id, "a", SECRET)
    market.launch(offer_id, "b", SECRET)
    assert len(market.machines()) == 3
    assert len(market.machines("a")) == 2
    assert [m["label"] for m in market.machines("b")] == ["b"]
    assert market.machines("c") == []
    market.terminate(str(a1["machine_id"]))
    assert len(market.machines("a")) == 1
    assert market.launched_count == 3


def test_shutdown_kills_every_machine(market: EmulatedMarket) -> None:
    ids = [str(market.launch(_cheapest(market), "job", SECRET)["machine_id"]) for _ in range(3)]
    processes = [market.process(i) for i in ids]
    market.shutdown()
    assert all(p.poll() is not None for p in processes)
    assert market.machines() == []
    assert {market.machine(i)["status"] for i in ids} == {"terminated"}


def test_http_api(
    market: EmulatedMarket,
    server: MarketServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="infra.local.emulated_market")
    seen: list[str] = []
    with httpx.Client(base_url=server.url, timeout=10) as client:

        def call(method: str, path: str, **kwargs: Any) -> httpx.Response:
            response = client.request(method, path, **kwargs)
            seen.append(response.text)
            return response

        offers = call("GET", "/offers")
        assert offers.status_code == 200
        assert offers.json() == {"offers": market.offers()}

        bad_json = call("POST", "/machines", content=b"{oops")
        assert (bad_json.status_code, bad_json.json()["error"]) == (400, "bad_request")
        missing = call("POST", "/machines", json={"offer_id": _cheapest(market), "label": "x"})
        assert (missing.status_code, missing.json()["error"]) == (400, "bad_request")
        unknown = call(
            "POST", "/machines", json={"offer_id": "emu-nope", "label": "x", "api_auth": SECRET}
        )
        assert (unknown.status_code, unknown.json()["error"]) == (404, "offer_not_found")

        created = call(
            "POST",
            "/machines",
            json={"offer_id": _cheapest(market), "label": "web", "api_auth": SECRET},
        )
        assert created.status_code == 201
        machine_id = created.json()["machine_id"]

        listed = call("GET", "/machines", params={"label": "web"})
        assert [m["machine_id"] for m in listed.json()["machines"]] == [machine_id]
        assert call("GET", "/machines", params={"label": "other"}).json() == {"machines": []}
        assert call("GET", "/machines").json()["machines"][0]["machine_id"] == machine_id

        fetched = call("GET", f"/machines/{machine_id}")
        assert (fetched.status_code, fetched.json()["label"]) == (200, "web")
        lost = call("GET", "/machines/m-nope")
        assert (lost.status_code, lost.json()["error"]) == (404, "machine_not_found")

        queued = call("POST", "/_control/faults", json={"oom_above_batch": 0, "count": 2})
        assert queued.json() == {"queued": 2}
        assert market.fault_queue == [MachineFaults(oom_above_batch=0)] * 2
        assert call("POST", "/_control/faults", json={}).json() == {"queued": 3}
        typo = call("POST", "/_control/faults", json={"crash_after": 1})
        assert (typo.status_code, typo.json()["error"]) == (400, "bad_request")
        wrong_type = call("POST", "/_control/faults", json={"error_rate": "high"})
        assert wrong_type.status_code == 400
        market.fault_queue.clear()
        prompts = {"fail_prompt": "bad", "crash_prompt": "worse", "crash_on_call": True}
        assert call("POST", "/_control/faults", json=prompts).json() == {"queued": 1}
        expected = MachineFaults(fail_prompt="bad", crash_prompt="worse", crash_on_call=True)
        assert market.fault_queue == [expected]
        market.fault_queue.clear()
        for wrong in ({"crash_on_call": 1}, {"fail_prompt": 3}, {"crash_prompt": ""}):
            refused = call("POST", "/_control/faults", json=wrong)
            assert (refused.status_code, refused.json()["error"]) == (400, "bad_request")

        deleted = call("DELETE", f"/machines/{machine_id}")
        assert (deleted.status_code, deleted.json()["status"]) == (200, "terminated")
        assert call("DELETE", f"/machines/{machine_id}").json() == deleted.json()
        assert call("DELETE", "/machines/m-nope").status_code == 404
        assert call("GET", "/nowhere").status_code == 404

    log_file = market.log_dir / f"{machine_id}.log"
    assert log_file.exists()
    for text in [*seen, caplog.text, log_file.read_text(errors="replace")]:
        assert "pa55" not in text


def test_closing_the_server_leaves_machines_running(market: EmulatedMarket) -> None:
    running = serve_market(market)
    response = httpx.post(
        running.url + "/machines",
        json={"offer_id": _cheapest(market), "label": "x", "api_auth": SECRET},
        timeout=10,
    )
    running.close()
    with pytest.raises(httpx.TransportError):
        httpx.get(running.url + "/offers", timeout=1)
    machine_id = response.json()["machine_id"]
    assert market.process(machine_id).poll() is None


def test_a_machine_gets_no_credential_of_ours(
    market: EmulatedMarket, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rented machine is a stranger's computer: our AWS keys and HMAC secret stay with us."""
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "our-aws-secret")
    monkeypatch.setenv("SUBC_MACHINE_AUTH_SECRET", "our-hmac-secret")
    machine = market.launch(_cheapest(market), label="subc-env", api_auth="u:p")
    pid = market.process(str(machine["machine_id"])).pid
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    names = {entry.split(b"=", 1)[0] for entry in environ if entry}
    assert b"AWS_SECRET_ACCESS_KEY" not in names
    assert b"SUBC_MACHINE_AUTH_SECRET" not in names
    assert b"RENDERER_API_AUTH" in names


def test_emulated_prices_never_pass_through_float() -> None:
    import httpx

    from subconscious.market.emulated import EmulatedProvider

    body = {
        "offers": [
            {
                "offer_id": "x",
                "gpu": "RTX 4090",
                "gpu_count": 1,
                "gpu_memory_gb": 24,
                "usd_per_hour": 0.1,
                "startup_s": 1,
            }
        ]
    }
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=body))
    provider = EmulatedProvider(
        "http://m", http=httpx.Client(base_url="http://m", transport=transport)
    )
    assert provider.list_offers()[0].usd_per_hour == Decimal("0.1")
