"""The TensorDock adapter against a mocked v2 API (fixtures shaped like TensorDock's docs)."""

from __future__ import annotations

import base64
import json
import logging
import re
import shutil
import stat
import subprocess
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from subconscious.errors import (
    MachineGone,
    OfferGone,
    OutOfCapacity,
    ProviderAuthError,
    ProviderDown,
    ProviderError,
    ProviderRateLimited,
)
from subconscious.market import tensordock
from subconscious.market.tensordock import API_BASE, TensorDockProvider
from subconscious.models import Machine, MachineStatus, Offer

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "tensordock"
TOKEN = "td-token-3f9a7c1e5b2d4f6a"
API_AUTH = "subc:0123456789abcdef0123456789abcdef"
PASSWORD = API_AUTH.partition(":")[2]
SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB6n0lTzHcK4PbRk0cbMZUGdLw7Hv1QJ5o0x0k3zH2aX ops"
AUSTIN = "0b3a5c2e-7a1d-4c1e-9a55-2f7b1d0c9e11"
MANASSAS = "5e1f7d3a-9c2b-4f6e-8a1d-3b5c7e9f1a20"
VM_ID = "9f3c1f7e-2d4b-4b8e-a0c1-6e2f8d5b7a90"

Reply = httpx.Response | Exception


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text())


class FakeTensorDock:
    """Routes (method, path) to queued replies; the last reply of a route repeats."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], list[Reply]] = {}
        self.requests: list[httpx.Request] = []
        self.sleeps: list[float] = []

    def on(self, method: str, path: str, *replies: Reply) -> None:
        self.routes[(method, f"/api/v2{path}")] = list(replies)

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        replies = self.routes[(request.method, request.url.path)]
        reply = replies.pop(0) if len(replies) > 1 else replies[0]
        if isinstance(reply, Exception):
            raise reply
        return reply

    def provider(self) -> TensorDockProvider:
        client = httpx.Client(base_url=API_BASE, transport=httpx.MockTransport(self.handler))
        return TensorDockProvider(
            TOKEN, ssh_public_key=SSH_KEY, http=client, sleep=self.sleeps.append
        )

    def calls(self, method: str, path: str) -> list[httpx.Request]:
        return [r for r in self.requests if (r.method, r.url.path) == (method, f"/api/v2{path}")]


def ok(body: Any) -> httpx.Response:
    return httpx.Response(200, json=body)


@pytest.fixture
def td() -> FakeTensorDock:
    fake = FakeTensorDock()
    fake.on("GET", "/hostnodes", ok(fixture("hostnodes")))
    fake.on("POST", "/instances", ok(fixture("instance_created")))
    fake.on("GET", f"/instances/{VM_ID}", ok(fixture("instance_running")))
    fake.on("GET", "/instances", ok(fixture("instances")))
    fake.on("DELETE", f"/instances/{VM_ID}", ok(fixture("instance_deleted")))
    return fake


def offer(offer_id: str = f"{AUSTIN}:geforcertx4090-pcie-24gb") -> Offer:
    return Offer(
        provider="tensordock",
        offer_id=offer_id,
        gpu="geforcertx4090-pcie-24gb",
        gpu_memory_gb=24,
        usd_per_hour=Decimal("0.339"),
        startup_s=420,
    )


_RUNCMD_WRITE = re.compile(r"\(umask 077 && printf %s ([A-Za-z0-9+/=]+) \| base64 -d > (\S+)\)")


def written(cloud_init: dict[str, Any]) -> dict[str, str]:
    """The files the create's runcmd lines write, by path (decoded as the VM's shell would)."""
    files = {}
    for line in cloud_init["runcmd"]:
        if found := _RUNCMD_WRITE.fullmatch(line):
            files[found.group(2)] = base64.b64decode(found.group(1)).decode()
    return files


def hostnodes_with(change: Callable[[dict[str, Any]], None]) -> httpx.Response:
    """The fixture's listing with its first host edited."""
    body = fixture("hostnodes")
    change(body["data"]["hostnodes"][0])
    return ok(body)


# --- offers ---
def test_offers_are_one_per_stocked_host_gpu_priced_with_the_bundle(td: FakeTensorDock) -> None:
    offers = td.provider().list_offers()

    assert offers == [
        Offer(
            provider="tensordock",
            offer_id=f"{AUSTIN}:geforcertx4090-pcie-24gb",
            gpu="geforcertx4090-pcie-24gb",
            gpu_count=1,
            gpu_memory_gb=24,
            # 0.29 + 4 x 0.003 + 16 x 0.002 + 100 x 0.00005, exactly
            usd_per_hour=Decimal("0.339"),
            interruptible=False,
            reliability=Decimal("0.995"),
            location="Austin, Texas, United States",
            startup_s=420,
        ),
        Offer(
            provider="tensordock",
            offer_id=f"{MANASSAS}:h100-sxm5-80gb",
            gpu="h100-sxm5-80gb",
            gpu_memory_gb=80,
            usd_per_hour=Decimal("2.261"),  # 2.2 + 0.014 + 0.04 + 0.007
            reliability=Decimal("0.9725"),
            location="Manassas, Virginia, United States",
            startup_s=420,
        ),
        Offer(
            provider="tensordock",
            offer_id=f"{MANASSAS}:rtxa6000-pcie-48gb",
            gpu="rtxa6000-pcie-48gb",
            gpu_memory_gb=48,
            usd_per_hour=Decimal("0.511"),
            reliability=Decimal("0.9725"),
            location="Manassas, Virginia, United States",
            startup_s=420,
        ),
    ]
    # The same sum in floats is off: the Decimal(str()) path is what keeps it exact.
    assert 0.29 + 4 * 0.003 + 16 * 0.002 + 100 * 0.00005 != 0.339
    # Skipped: a GPU with no stock (3090), a host with no free port, a host too small for the
    # bundle (8 GB RAM).
    assert not any("3090" in o.offer_id or "3060" in o.offer_id for o in offers)
    assert not any(o.location.startswith("Helsinki") for o in offers)


def test_the_token_travels_as_a_bearer_header_only(td: FakeTensorDock) -> None:
    td.provider().list_offers()

    (request,) = td.requests
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert str(request.url) == f"{API_BASE}/hostnodes"


@pytest.mark.parametrize(
    "change",
    [
        lambda h: h["available_resources"]["gpus"][0].update(v0Name="geforcertx4090"),
        lambda h: h.pop("pricing"),
        lambda h: h["pricing"].pop("per_gb_ram_hr"),
        lambda h: h["pricing"].update(per_vcpu_hr="n/a"),
        lambda h: h["available_resources"]["gpus"][0].update(price_per_hr=-0.1),
        lambda h: h["available_resources"]["gpus"][0].update(price_per_hr="Infinity"),
        lambda h: h.update(id=""),
    ],
    ids=["no-memory-in-name", "no-pricing", "no-ram-price", "bad-price", "negative", "inf", "id"],
)
def test_an_offer_that_cannot_be_priced_or_named_is_skipped(
    td: FakeTensorDock, change: Callable[[dict[str, Any]], None], caplog: pytest.LogCaptureFixture
) -> None:
    td.on("GET", "/hostnodes", hostnodes_with(change))

    offers = td.provider().list_offers()

    assert [o.offer_id.split(":")[0] for o in offers] == [MANASSAS, MANASSAS]
    assert "tensordock offer skipped" in caplog.text


@pytest.mark.parametrize(
    "change",
    [
        lambda h: h["available_resources"].update(vcpu_count=2),
        lambda h: h["available_resources"].update(storage_gb=80),  # v2's minimum is 100 GB
        lambda h: h["available_resources"].update(ram_gb="lots"),
        lambda h: h["available_resources"]["gpus"][0].update(availableCount=None),
        lambda h: h["available_resources"].update(available_ports=["x"]),
        lambda h: h.update(available_resources=None),
    ],
    ids=["few-cpus", "small-disk", "bad-ram", "no-count", "bad-port", "no-resources"],
)
def test_hosts_that_cannot_give_the_bundle_or_a_port_are_skipped(
    td: FakeTensorDock, change: Callable[[dict[str, Any]], None]
) -> None:
    td.on("GET", "/hostnodes", hostnodes_with(change))

    assert all(o.offer_id.startswith(MANASSAS) for o in td.provider().list_offers())


def test_absent_resource_figures_are_left_for_the_create_to_judge(td: FakeTensorDock) -> None:
    def strip(host: dict[str, Any]) -> None:
        for key in ("vcpu_count", "ram_gb", "storage_gb"):
            host["available_resources"].pop(key)

    td.on("GET", "/hostnodes", hostnodes_with(strip))

    assert td.provider().list_offers()[0].offer_id.startswith(AUSTIN)


@pytest.mark.parametrize(
    ("uptime", "reliability"),
    [(None, Decimal("0.99")), ("NaN", Decimal("0.99")), (150, Decimal("0.99")), (0, Decimal(0))],
)
def test_reliability_is_uptime_or_the_default(
    td: FakeTensorDock, uptime: Any, reliability: Decimal
) -> None:
    td.on("GET", "/hostnodes", hostnodes_with(lambda h: h.update(uptime_percentage=uptime)))

    assert td.provider().list_offers()[0].reliability == reliability


def test_location_is_empty_when_the_host_names_none(td: FakeTensorDock) -> None:
    td.on("GET", "/hostnodes", hostnodes_with(lambda h: h.update(location=None)))

    assert td.provider().list_offers()[0].location == ""


@pytest.mark.parametrize(
    "body", [{"data": {}}, {"data": []}, [], {"hostnodes": {}}], ids=["no-key", "list", "top", "v0"]
)
def test_a_listing_of_another_shape_is_a_provider_error(td: FakeTensorDock, body: Any) -> None:
    td.on("GET", "/hostnodes", ok(body))

    with pytest.raises(ProviderError, match=r"data\.hostnodes"):
        td.provider().list_offers()


def test_malformed_json_is_a_provider_error(td: FakeTensorDock) -> None:
    td.on("GET", "/hostnodes", httpx.Response(200, text="<html>maintenance</html>"))

    with pytest.raises(ProviderError, match="without JSON"):
        td.provider().list_offers()


def test_429_waits_as_told_by_retry_after(td: FakeTensorDock) -> None:
    td.on(
        "GET",
        "/hostnodes",
        httpx.Response(429, headers={"Retry-After": "7"}),
        ok(fixture("hostnodes")),
    )

    assert len(td.provider().list_offers()) == 3
    assert td.sleeps == [7.0]


def test_5xx_is_retried_then_provider_down(td: FakeTensorDock) -> None:
    td.on("GET", "/hostnodes", httpx.Response(503))

    with pytest.raises(ProviderDown):
        td.provider().list_offers()
    assert len(td.requests) == 4 and len(td.sleeps) == 3


# --- launch ---
def test_launch_deploys_one_gpu_with_the_bundle_and_the_api_port(td: FakeTensorDock) -> None:
    machine = td.provider().launch(offer(), label="subc-r-1", api_auth=API_AUTH)

    assert machine == Machine(
        provider="tensordock",
        machine_id=VM_ID,
        offer_id=f"{AUSTIN}:geforcertx4090-pcie-24gb",
        label="subc-r-1",
        status=MachineStatus.STARTING,
        url=None,
        usd_per_hour=Decimal("0.339"),
    )
    (create,) = td.calls("POST", "/instances")
    assert create.headers["Authorization"] == f"Bearer {TOKEN}"
    assert create.extensions["timeout"]["read"] == 60.0  # a create may be slow; never retried
    body = json.loads(create.content)
    attributes = body["data"].pop("attributes")
    assert body == {"data": {"type": "virtualmachine"}}
    cloud_init = attributes.pop("cloud_init")
    assert attributes == {
        "name": "subc-r-1",
        "type": "virtualmachine",
        "image": "ubuntu2404_ml_everything",
        "hostnode_id": AUSTIN,
        "resources": {
            "vcpu_count": 4,
            "ram_gb": 16,
            "storage_gb": 100,
            "gpus": {"geforcertx4090-pcie-24gb": {"count": 1}},
        },
        "port_forwards": [{"internal_port": 7860, "external_port": 20010}],
        "ssh_key": SSH_KEY,
    }
    assert set(cloud_init) == {"runcmd"}
    assert cloud_init["runcmd"][0] == "mkdir -p -m 0700 /etc/subc"
    assert cloud_init["runcmd"][-1] == "sh /etc/subc/start-a1111.sh"
    files = written(cloud_init)
    assert files["/etc/subc/a1111.env"] == (
        f"COMMANDLINE_ARGS=--api --nowebui --listen --port 7860 --api-auth {API_AUTH}\n"
    )
    script = files["/etc/subc/start-a1111.sh"]
    assert "--env-file /etc/subc/a1111.env universonic/stable-diffusion-webui:latest" in script
    assert "-p 7860:7860 " in script and "--gpus all" in script


def test_the_credential_is_only_in_the_root_only_env_file(td: FakeTensorDock) -> None:
    td.provider().launch(offer(), label="subc-r-1", api_auth=API_AUTH)

    (create,) = td.calls("POST", "/instances")
    attributes = json.loads(create.content)["data"]["attributes"]
    files = written(attributes["cloud_init"])
    assert PASSWORD in files.pop("/etc/subc/a1111.env")
    assert PASSWORD not in json.dumps(files)  # not in the start script
    env_line = attributes["cloud_init"]["runcmd"].pop(1)
    assert "umask 077" in env_line and "> /etc/subc/a1111.env" in env_line  # root-only file
    assert PASSWORD not in json.dumps(attributes)  # not in the name or anywhere else
    assert all(PASSWORD not in str(r.url) for r in td.requests)


def test_a_container_image_is_shell_quoted_into_the_start_script(td: FakeTensorDock) -> None:
    client = httpx.Client(base_url=API_BASE, transport=httpx.MockTransport(td.handler))
    provider = TensorDockProvider(
        TOKEN, ssh_public_key=SSH_KEY, http=client, a1111_image="img:1; rm -rf /"
    )

    provider.launch(offer(), label="subc-r-1", api_auth=API_AUTH)

    attributes = json.loads(td.calls("POST", "/instances")[0].content)["data"]["attributes"]
    script = written(attributes["cloud_init"])["/etc/subc/start-a1111.sh"]
    assert "--env-file /etc/subc/a1111.env 'img:1; rm -rf /'" in script


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (httpx.ReadTimeout("slow"), ProviderDown),
        (httpx.Response(503), ProviderDown),
        (httpx.Response(429, headers={"Retry-After": "1"}), ProviderRateLimited),
    ],
    ids=["timeout", "5xx", "429"],
)
def test_a_create_is_sent_once_whatever_comes_back(
    td: FakeTensorDock, reply: Reply, error: type[ProviderError]
) -> None:
    # A timeout or a 5xx may come after the VM exists: a second create would rent a second one.
    td.on("POST", "/instances", reply, ok(fixture("instance_created")))

    with pytest.raises(error):
        td.provider().launch(offer(), label="subc-r-1", api_auth=API_AUTH)
    assert len(td.calls("POST", "/instances")) == 1 and td.sleeps == []


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (httpx.Response(400, json=fixture("error_status_in_body")), OutOfCapacity),
        (ok(fixture("error_status_in_body")), OutOfCapacity),
        (
            httpx.Response(409, json={"error": "External port 20010 is already in use"}),
            OutOfCapacity,
        ),
        (httpx.Response(404, json=fixture("error_jsonapi")), OfferGone),
        (httpx.Response(404), OfferGone),
        (httpx.Response(400, json={"error": {"message": "Invalid hostnode_id"}}), OfferGone),
        (httpx.Response(401), ProviderAuthError),
        (httpx.Response(403, json={"error": "Forbidden"}), ProviderAuthError),
        (ok(fixture("error_v0")), ProviderAuthError),
        (httpx.Response(400, json={"errors": [{"title": "Unauthorized"}]}), ProviderAuthError),
        (ok({"status": 402, "error": "You need at least $1 of balance"}), ProviderError),
        (httpx.Response(400, json={"message": "Invalid image ubuntu9999"}), ProviderError),
        (httpx.Response(422, json={"errors": [{}]}), ProviderError),
        (httpx.Response(400, text="Bad Request"), ProviderError),
        (ok({"success": False}), ProviderError),
        (ok({"data": {"type": "virtualmachine"}}), ProviderError),
    ],
    ids=[
        "400-no-stock",
        "200-no-stock",
        "port-taken",
        "host-not-found",
        "404",
        "bad-host",
        "401",
        "403",
        "v0-token",
        "jsonapi-auth",
        "balance",
        "bad-image",
        "errors-empty",
        "not-json",
        "success-false",
        "no-id",
    ],
)
def test_launch_errors_map_to_typed_errors(
    td: FakeTensorDock, reply: httpx.Response, error: type[ProviderError]
) -> None:
    td.on("POST", "/instances", reply)

    with pytest.raises(ProviderError) as raised:
        td.provider().launch(offer(), label="subc-r-1", api_auth=API_AUTH)
    assert type(raised.value) is error


def test_an_unclassified_refusal_keeps_tensordock_s_words(td: FakeTensorDock) -> None:
    td.on("POST", "/instances", httpx.Response(400, json={"message": "Invalid image ubuntu9999"}))

    with pytest.raises(ProviderError, match="answered 400: Invalid image ubuntu9999"):
        td.provider().launch(offer(), label="subc-r-1", api_auth=API_AUTH)


@pytest.mark.parametrize(
    ("change", "offer_id", "error"),
    [
        (lambda h: None, f"{AUSTIN}-gone:geforcertx4090-pcie-24gb", OfferGone),
        (lambda h: None, AUSTIN, OfferGone),
        (lambda h: None, f"{AUSTIN}:geforcertx3090-pcie-24gb", OutOfCapacity),
        (lambda h: h["available_resources"].update(available_ports=[]), None, OutOfCapacity),
        (lambda h: h["available_resources"].update(ram_gb=8), None, OutOfCapacity),
    ],
    ids=["host-gone", "malformed-offer-id", "gpu-sold", "no-port", "no-room"],
)
def test_launch_checks_the_host_before_renting(
    td: FakeTensorDock,
    change: Callable[[dict[str, Any]], None],
    offer_id: str | None,
    error: type[ProviderError],
) -> None:
    td.on("GET", "/hostnodes", hostnodes_with(change))

    with pytest.raises(error):
        td.provider().launch(
            offer(offer_id) if offer_id else offer(), label="subc-r-1", api_auth=API_AUTH
        )
    assert td.calls("POST", "/instances") == []


def test_launch_takes_the_first_usable_port(td: FakeTensorDock) -> None:
    ports = ["x", 20011]
    td.on(
        "GET",
        "/hostnodes",
        hostnodes_with(lambda h: h["available_resources"].update(available_ports=ports)),
    )

    td.provider().launch(offer(), label="subc-r-1", api_auth=API_AUTH)

    attributes = json.loads(td.calls("POST", "/instances")[0].content)["data"]["attributes"]
    assert attributes["port_forwards"] == [{"internal_port": 7860, "external_port": 20011}]


def test_there_is_nothing_to_bid_on(td: FakeTensorDock) -> None:
    with pytest.raises(ProviderError, match="no interruptible"):
        td.provider().launch(
            offer(), label="subc-r-1", api_auth=API_AUTH, bid_usd_per_hour=Decimal("0.2")
        )
    assert td.requests == []


@pytest.mark.parametrize(
    ("label", "api_auth"),
    [("r-1", API_AUTH), ("subc-r-1", "subc"), ("subc-r-1", "subc:pa ss"), ("subc-r-1", "a:b,c:d")],
)
def test_launch_refuses_a_label_or_credential_it_cannot_carry_safely(
    td: FakeTensorDock, label: str, api_auth: str
) -> None:
    with pytest.raises(ValueError, match=r"label|api_auth") as raised:
        td.provider().launch(offer(), label=label, api_auth=api_auth)
    assert api_auth not in str(raised.value)
    assert td.requests == []


# --- status ---
def test_status_of_a_running_machine_has_the_forwarded_url(td: FakeTensorDock) -> None:
    assert td.provider().status(VM_ID) == Machine(
        provider="tensordock",
        machine_id=VM_ID,
        offer_id="",  # TensorDock's details do not name the host
        label="subc-r-1",
        status=MachineStatus.RUNNING,
        url="http://203.0.113.42:20010",
        usd_per_hour=Decimal("0.339"),
    )


@pytest.mark.parametrize(
    ("word", "status"),
    [
        ("running", MachineStatus.RUNNING),
        ("Running", MachineStatus.RUNNING),
        ("starting", MachineStatus.STARTING),
        ("pending", MachineStatus.STARTING),
        ("provisioning", MachineStatus.STARTING),
        ("stopping", MachineStatus.EXITED),
        ("Stopped", MachineStatus.EXITED),
        ("StoppedDisassociated", MachineStatus.EXITED),
        ("stopped_disassociated", MachineStatus.EXITED),
        ("deleting", MachineStatus.EXITED),
        ("deleted", MachineStatus.EXITED),
        ("error", MachineStatus.EXITED),
    ],
)
def test_status_words_map_to_machine_statuses(
    td: FakeTensorDock, word: str, status: MachineStatus
) -> None:
    body = fixture("instance_running") | {"status": word}
    td.on("GET", f"/instances/{VM_ID}", ok(body))

    machine = td.provider().status(VM_ID)

    assert machine.status is status
    assert (machine.url is not None) == (status is MachineStatus.RUNNING)


def test_an_unknown_status_keeps_polling_and_is_logged(
    td: FakeTensorDock, caplog: pytest.LogCaptureFixture
) -> None:
    body = fixture("instance_running") | {"status": "hibernating"}
    td.on("GET", f"/instances/{VM_ID}", ok(body))

    assert td.provider().status(VM_ID).status is MachineStatus.STARTING
    assert "unknown tensordock status" in caplog.text


@pytest.mark.parametrize(
    ("network", "url"),
    [
        (
            {
                "portForwards": [
                    {"internal_port": 22, "external_port": 20001},
                    {"internal_port": "7860", "external_port": "20002"},
                ]
            },
            "http://203.0.113.42:20002",
        ),
        (
            {
                "ipAddress": None,
                "portForwards": None,
                "ip_address": "198.51.100.7",
                "port_forwards": [{"internal_port": 7860, "external_port": 20003}],
            },
            "http://198.51.100.7:20003",
        ),
        ({"ipAddress": None}, None),
        ({"portForwards": []}, None),
        ({"portForwards": {"7860": 20010}}, "http://203.0.113.42:20010"),
        ({"portForwards": ["7860:20010"]}, None),
        ({"portForwards": [{"internal_port": 7860, "external_port": None}]}, None),
    ],
    ids=["picks-7860", "snake-case", "no-ip", "no-forwards", "map", "strings", "no-external"],
)
def test_the_url_comes_from_the_port_forward_of_7860(
    td: FakeTensorDock, network: dict[str, Any], url: str | None
) -> None:
    td.on("GET", f"/instances/{VM_ID}", ok(fixture("instance_running") | network))

    machine = td.provider().status(VM_ID)

    assert machine.status is MachineStatus.RUNNING and machine.url == url


def test_a_wrapped_instance_answer_is_read_too(td: FakeTensorDock) -> None:
    flat = fixture("instance_running")
    wrapped = {"data": {"type": "virtualmachine", "id": flat.pop("id"), "attributes": flat}}
    td.on("GET", f"/instances/{VM_ID}", ok(wrapped))

    assert td.provider().status(VM_ID).url == "http://203.0.113.42:20010"


def test_status_remembers_what_the_launch_knew(td: FakeTensorDock) -> None:
    body = fixture("instance_running")
    del body["rateHourly"]
    td.on("GET", f"/instances/{VM_ID}", ok(body))
    provider = td.provider()
    launched = offer()

    provider.launch(launched, label="subc-r-1", api_auth=API_AUTH)
    machine = provider.status(VM_ID)

    assert machine.offer_id == launched.offer_id
    assert machine.usd_per_hour == launched.usd_per_hour


def test_a_price_tensordock_reports_badly_is_a_provider_error(td: FakeTensorDock) -> None:
    td.on("GET", f"/instances/{VM_ID}", ok(fixture("instance_running") | {"rateHourly": "?"}))

    with pytest.raises(ProviderError, match="not a number"):
        td.provider().status(VM_ID)


@pytest.mark.parametrize(
    "reply",
    [
        httpx.Response(404),
        httpx.Response(400, json={"error": "Instance not found"}),
        ok({"status": 404, "error": "Instance does not exist"}),
    ],
    ids=["404", "400-words", "200-body"],
)
def test_a_missing_machine_is_machine_gone(td: FakeTensorDock, reply: httpx.Response) -> None:
    td.on("GET", f"/instances/{VM_ID}", reply)

    with pytest.raises(MachineGone):
        td.provider().status(VM_ID)


def test_an_instance_answer_that_is_not_an_object_is_a_provider_error(td: FakeTensorDock) -> None:
    td.on("GET", f"/instances/{VM_ID}", ok([fixture("instance_running")]))

    with pytest.raises(ProviderError, match="not an object"):
        td.provider().status(VM_ID)


# --- terminate ---
def test_terminate_deletes_the_instance(td: FakeTensorDock) -> None:
    td.provider().terminate(VM_ID)

    (delete,) = td.calls("DELETE", f"/instances/{VM_ID}")
    assert delete.headers["Authorization"] == f"Bearer {TOKEN}"


@pytest.mark.parametrize(
    "gone",
    [httpx.Response(404), ok({"status": 400, "error": "Instance already deleted"})],
    ids=["404", "already-deleted"],
)
def test_terminate_is_idempotent(td: FakeTensorDock, gone: httpx.Response) -> None:
    td.on("DELETE", f"/instances/{VM_ID}", ok(fixture("instance_deleted")), gone)
    provider = td.provider()

    provider.terminate(VM_ID)
    provider.terminate(VM_ID)

    assert len(td.calls("DELETE", f"/instances/{VM_ID}")) == 2


def test_terminate_accepts_an_empty_answer(td: FakeTensorDock) -> None:
    td.on("DELETE", f"/instances/{VM_ID}", httpx.Response(204))

    td.provider().terminate(VM_ID)


def test_terminate_that_fails_raises(td: FakeTensorDock) -> None:
    td.on("DELETE", f"/instances/{VM_ID}", httpx.Response(500))

    with pytest.raises(ProviderDown):
        td.provider().terminate(VM_ID)


# --- machines ---
def test_machines_are_ours_and_alive(td: FakeTensorDock) -> None:
    machines = td.provider().machines()

    assert [(m.label, m.status) for m in machines] == [
        ("subc-r-1", MachineStatus.RUNNING),
        ("subc-r-2", MachineStatus.EXITED),
    ]
    assert all(m.url is None for m in machines)  # the listing carries no address


def test_machines_filtered_by_label(td: FakeTensorDock) -> None:
    provider = td.provider()

    assert [m.machine_id for m in provider.machines(label="subc-r-1")] == [VM_ID]
    assert provider.machines(label="subc-r-3") == []  # deleted
    assert provider.machines(label="My Instance") == []  # not ours


def test_machines_read_a_flat_listing_too(td: FakeTensorDock) -> None:
    flat = [
        {"id": VM_ID, "name": "subc-r-1", "status": "running", "ipAddress": "203.0.113.42"},
        "noise",
    ]
    td.on("GET", "/instances", ok({"data": flat}))

    assert [m.machine_id for m in td.provider().machines(label="subc-r-1")] == [VM_ID]


@pytest.mark.parametrize("body", [{"data": {}}, {"instances": []}, []])
def test_a_machine_listing_of_another_shape_is_a_provider_error(
    td: FakeTensorDock, body: Any
) -> None:
    td.on("GET", "/instances", ok(body))

    with pytest.raises(ProviderError, match=r"data\.instances"):
        td.provider().machines()


# --- secrets ---
def test_credentials_never_reach_urls_errors_or_logs(
    td: FakeTensorDock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    echo = f"Invalid cloud_init: --api-auth {API_AUTH} with token {TOKEN}"
    td.on("POST", "/instances", httpx.Response(400, json={"error": echo}))
    td.on("GET", f"/instances/{VM_ID}", ok({"status": 400, "error": f"bad token {TOKEN}"}))
    provider = td.provider()
    messages = []
    calls: list[Callable[[], Machine]] = [
        lambda: provider.launch(offer(), label="subc-r-1", api_auth=API_AUTH),
        lambda: provider.status(VM_ID),
    ]

    provider.list_offers()
    for call in calls:
        with pytest.raises(ProviderError) as raised:
            call()
        messages.append(str(raised.value))
    provider.machines()
    provider.terminate(VM_ID)

    assert "***" in messages[0] and "***" in messages[1]
    for text in [*messages, caplog.text, *(str(r.url) for r in td.requests)]:
        assert TOKEN not in text and PASSWORD not in text
    assert provider._http.secrets == {TOKEN}  # the launch's credential is not kept


def test_redaction_happens_before_the_cut(td: FakeTensorDock) -> None:
    echo = "x" * 190 + TOKEN
    td.on("GET", f"/instances/{VM_ID}", httpx.Response(400, json={"error": echo}))

    with pytest.raises(ProviderError) as raised:
        td.provider().status(VM_ID)
    assert TOKEN[:8] not in str(raised.value)


def test_without_an_injected_client_it_builds_its_own() -> None:
    provider = TensorDockProvider(TOKEN, ssh_public_key=SSH_KEY)

    assert str(provider._http.client.base_url) == f"{API_BASE}/"
    assert provider.name == tensordock.TensorDockProvider.name == "tensordock"
    provider._http.client.close()


def test_the_lean_workers_settings_ride_in_the_env_file(td: FakeTensorDock) -> None:
    worker_env = {"WORKER_COMPILE_SHAPES": "512x512x8,768x768x4"}
    td.provider().launch(offer(), label="subc-r-1", api_auth=API_AUTH, worker_env=worker_env)
    (create,) = td.calls("POST", "/instances")
    cloud_init = json.loads(create.content)["data"]["attributes"]["cloud_init"]
    assert written(cloud_init)["/etc/subc/a1111.env"] == (
        f"COMMANDLINE_ARGS=--api --nowebui --listen --port 7860 --api-auth {API_AUTH}\n"
        "WORKER_COMPILE_SHAPES=512x512x8,768x768x4\n"
    )


@pytest.mark.parametrize(
    "worker_env",
    [
        {"COMMANDLINE_ARGS": "--api"},  # would replace the credential's line
        {"WORKER_COMPILE_SHAPES": "512x512x8\nCOMMANDLINE_ARGS=--api"},  # a second line
        {"worker_checkpoint": "x"},
    ],
)
def test_only_plain_worker_settings_reach_a_machine(
    td: FakeTensorDock, worker_env: dict[str, str]
) -> None:
    with pytest.raises(ValueError, match="worker setting"):
        td.provider().launch(offer(), label="subc-r-1", api_auth=API_AUTH, worker_env=worker_env)
    assert not td.calls("POST", "/instances")


# --- issue 14: TensorDock as it really answers (sources: tests/fixtures/tensordock/README.md) ---
def test_machines_read_the_getting_started_listing_shape(td: FakeTensorDock) -> None:
    # data.attributes.instances: without it, machines() raised, and with it every launch
    # (provision lists by label first), every teardown and the reaper.
    td.on("GET", "/instances", ok(fixture("instances_attributes")))
    provider = td.provider()

    machines = provider.machines()

    assert [(m.machine_id, m.label, m.status) for m in machines] == [
        (VM_ID, "subc-r-1", MachineStatus.RUNNING),
        ("4b6d8f0a-2c4e-4a6b-8d0f-6a8c0e2b4d5f", "subc-r-2", MachineStatus.EXITED),
    ]
    assert provider.machines(label="subc-r-3") == []  # deleted
    assert provider.machines(label="My Instance") == []  # not ours


@pytest.mark.parametrize(
    "shape",
    [
        lambda items: {"data": {"instances": items}},
        lambda items: {"data": {"type": "list", "attributes": {"instances": items}}},
        lambda items: {"data": items},
    ],
    ids=["data.instances", "data.attributes.instances", "data-list"],
)
def test_every_listing_shape_gives_the_same_machines(
    td: FakeTensorDock, shape: Callable[[list[Any]], Any]
) -> None:
    items = fixture("instances_attributes")["data"]["attributes"]["instances"]
    td.on("GET", "/instances", ok(shape(items)))

    assert [m.label for m in td.provider().machines()] == ["subc-r-1", "subc-r-2"]


def test_the_url_comes_from_a_port_forward_map(td: FakeTensorDock) -> None:
    td.on("GET", f"/instances/{VM_ID}", ok(fixture("instance_port_forwards_map")))

    machine = td.provider().status(VM_ID)

    assert (machine.status, machine.url) == (MachineStatus.RUNNING, "http://203.0.113.42:20010")
    assert machine.usd_per_hour == Decimal("0.339")


@pytest.mark.parametrize(
    ("forwards", "url"),
    [
        ({"20010": "7860"}, "http://203.0.113.42:20010"),  # external -> internal, as v0 had it
        ({"22": 20001, "7860": "20002"}, "http://203.0.113.42:20002"),
        ({"20001": 22}, None),
        ({"7860": "auto"}, None),
    ],
    ids=["external-to-internal", "internal-to-external", "other-port", "not-a-port"],
)
def test_a_port_forward_map_is_read_either_way_round(
    td: FakeTensorDock, forwards: dict[str, Any], url: str | None
) -> None:
    td.on(
        "GET", f"/instances/{VM_ID}", ok(fixture("instance_running") | {"portForwards": forwards})
    )

    assert td.provider().status(VM_ID).url == url


def test_cloud_init_uses_only_documented_options(td: FakeTensorDock) -> None:
    # TensorDock documents runcmd, packages, package_update and package_upgrade; not write_files
    td.provider().launch(offer(), label="subc-r-1", api_auth=API_AUTH)

    cloud_init = json.loads(td.calls("POST", "/instances")[0].content)["data"]["attributes"][
        "cloud_init"
    ]
    assert set(cloud_init) <= {"runcmd", "packages", "package_update", "package_upgrade"}
    assert all(isinstance(line, str) for line in cloud_init["runcmd"])
    assert set(written(cloud_init)) == {"/etc/subc/a1111.env", "/etc/subc/start-a1111.sh"}


@pytest.mark.skipif(shutil.which("sh") is None or shutil.which("base64") is None, reason="no sh")
def test_the_runcmd_lines_write_root_only_files_in_a_real_shell(
    td: FakeTensorDock, tmp_path: Path
) -> None:
    worker_env = {"WORKER_COMPILE_SHAPES": "512x512x8"}
    td.provider().launch(offer(), label="subc-r-1", api_auth=API_AUTH, worker_env=worker_env)
    cloud_init = json.loads(td.calls("POST", "/instances")[0].content)["data"]["attributes"][
        "cloud_init"
    ]
    # as cloud-init runs them (one sh script), but under tmp_path and without the start script
    lines = [line.replace("/etc/subc", str(tmp_path / "subc")) for line in cloud_init["runcmd"]]
    subprocess.run(["sh", "-c", "\n".join(lines[:-1])], check=True, timeout=30)

    env_file, script = tmp_path / "subc" / "a1111.env", tmp_path / "subc" / "start-a1111.sh"
    assert env_file.read_text() == written(cloud_init)["/etc/subc/a1111.env"]
    assert script.read_text() == written(cloud_init)["/etc/subc/start-a1111.sh"]
    assert {stat.S_IMODE(p.stat().st_mode) for p in (env_file, script)} == {0o600}
    assert stat.S_IMODE((tmp_path / "subc").stat().st_mode) == 0o700
