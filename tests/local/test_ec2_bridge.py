"""The local stack's EC2: moto's instances get renderers, moto's spot prices the price file's."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.core.models import DEFAULT_ACCOUNT_ID

from infra.local.ec2 import (
    LABEL_TAG,
    LOCAL_INSTANCE_TYPES,
    Ec2Bridge,
    api_auth_from_user_data,
    load_prices,
    market_offers,
    offer_id,
    patch_spot_prices,
    unpatch_spot_prices,
)
from infra.local.emulated_market import MachineNotFound, NoSpotCapacity

REGION = "us-east-1"
USER_DATA = (
    "#!/bin/bash\ncat > /run/subc.env <<'EOF'\nCOMMANDLINE_ARGS=--api-auth subc:s3cret\nEOF\n"
)


class FakeMarket:
    """Records what the bridge asks of the market."""

    def __init__(self) -> None:
        self.offers: list[dict[str, object]] = []
        self.launched: list[dict[str, Any]] = []
        self.terminated: list[str] = []
        self.preempted: set[str] = set()
        self.refuse_spot = False
        self.preempt_listeners: list[Any] = []

    def add_offers(self, offers: Any) -> None:
        self.offers.extend(offers)

    def launch(self, offer: str, label: str, auth: str, **kwargs: Any) -> dict[str, object]:
        if self.refuse_spot and kwargs.get("bid_usd_per_hour") is not None:
            raise NoSpotCapacity(offer)
        machine_id = f"m-{len(self.launched)}"
        self.launched.append({"offer": offer, "label": label, "auth": auth, **kwargs})
        return {"machine_id": machine_id}

    def machine(self, machine_id: str) -> dict[str, object]:
        if machine_id == "m-gone":
            raise MachineNotFound(machine_id)
        status = "terminated" if machine_id in self.terminated else "running"
        return {"status": status, "preempted": machine_id in self.preempted}

    def terminate(self, machine_id: str) -> None:
        self.terminated.append(machine_id)


@pytest.fixture
def ec2() -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("ec2", region_name=REGION)


def _run(
    ec2: Any, *, spot: bool = False, user_data: str = USER_DATA, label: str = "subc-r1"
) -> str:
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    extra: dict[str, Any] = {}
    if spot:
        extra["InstanceMarketOptions"] = {
            "MarketType": "spot",
            "SpotOptions": {"SpotInstanceType": "one-time"},
        }
    answer = ec2.run_instances(
        ImageId=image,
        MinCount=1,
        MaxCount=1,
        InstanceType="g5.2xlarge",
        UserData=user_data,
        TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": LABEL_TAG, "Value": label}]}
        ],
        **extra,
    )
    return str(answer["Instances"][0]["InstanceId"])


def _instance(ec2: Any, instance_id: str) -> dict[str, Any]:
    reservations = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
    return dict(reservations[0]["Instances"][0])


def _bridge(market: FakeMarket) -> Ec2Bridge:
    return Ec2Bridge(market, load_prices(REGION), account=DEFAULT_ACCOUNT_ID, region=REGION)  # type: ignore[arg-type]


def test_prices_come_from_the_price_files_aws_rows() -> None:
    prices = load_prices(REGION)
    assert set(prices.on_demand) == set(LOCAL_INSTANCE_TYPES)
    # g4dn.xlarge: on-demand $0.526; spot $0.1845 in the cheapest zone, $0.201 in the dearest
    assert prices.on_demand["g4dn.xlarge"] == Decimal("0.526")
    assert prices.spot[("g4dn.xlarge", "us-east-1a")] == Decimal("0.1845")
    assert prices.spot[("g4dn.xlarge", "us-east-1b")] == Decimal("0.201")
    assert prices.gpu["g5.2xlarge"] == "A10G"
    offers = {o["offer_id"]: o for o in market_offers(prices)}
    assert offers[offer_id("g4dn.xlarge")]["min_bid"] == "0.201"
    assert offers[offer_id("g4dn.xlarge")]["usd_per_hour"] == "0.526"


def test_spot_price_history_answers_with_the_price_file(ec2: Any) -> None:
    patch_spot_prices(load_prices(REGION))
    try:
        history = ec2.describe_spot_price_history(InstanceTypes=["g4dn.xlarge"])["SpotPriceHistory"]
    finally:
        unpatch_spot_prices()
    assert {(h["AvailabilityZone"], h["SpotPrice"]) for h in history} == {
        ("us-east-1a", "0.1845"),
        ("us-east-1b", "0.201"),
    }
    after = ec2.describe_spot_price_history(InstanceTypes=["g4dn.xlarge"])["SpotPriceHistory"]
    assert {h["SpotPrice"] for h in after} == {"0.00001"}  # moto's own answer again


def test_credential_is_read_from_base64_user_data() -> None:
    encoded = base64.b64encode(USER_DATA.encode()).decode()
    assert api_auth_from_user_data(encoded) == "subc:s3cret"
    assert api_auth_from_user_data([encoded]) == "subc:s3cret"
    assert api_auth_from_user_data(base64.b64encode(b"#!/bin/bash\n").decode()) is None
    assert api_auth_from_user_data(None) is None


def test_an_instance_serves_on_its_own_address_until_terminated(ec2: Any) -> None:
    market = FakeMarket()
    bridge = _bridge(market)
    first, second = _run(ec2), _run(ec2, label="subc-r2")
    bridge.step()
    assert [m["auth"] for m in market.launched] == ["subc:s3cret", "subc:s3cret"]
    assert [m["label"] for m in market.launched] == ["subc-r1", "subc-r2"]
    assert {m["port"] for m in market.launched} == {7860}
    addresses = [_instance(ec2, i)["PublicIpAddress"] for i in (first, second)]
    assert addresses == [m["host"] for m in market.launched]
    assert len(set(addresses)) == 2 and all(a.startswith("127.0.10.") for a in addresses)
    assert market.launched[0]["bid_usd_per_hour"] is None  # on-demand
    bridge.step()
    assert len(market.launched) == 2  # each instance is served once

    ec2.terminate_instances(InstanceIds=[first])
    bridge.step()
    bridge.step()
    assert market.terminated == ["m-0"]


def test_untagged_instances_and_instances_without_a_credential_get_no_renderer(ec2: Any) -> None:
    market = FakeMarket()
    bridge = _bridge(market)
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="g5.2xlarge")
    skipped = _run(ec2, user_data="#!/bin/bash\necho no credential\n")
    bridge.step()
    bridge.step()
    assert market.launched == []
    assert bridge.skipped == {skipped}


def test_a_spot_instance_whose_pool_runs_dry_reads_as_reclaimed_by_aws(ec2: Any) -> None:
    market = FakeMarket()
    bridge = _bridge(market)
    instance_id = _run(ec2, spot=True)
    bridge.step()
    assert market.launched[0]["bid_usd_per_hour"] == Decimal("0.6067")  # the dearest zone's
    market.preempted.add("m-0")
    for listener in market.preempt_listeners:  # as EmulatedMarket does, before the kill
        listener("m-0")
    state = _instance(ec2, instance_id)
    assert state["State"]["Name"] == "terminated"
    assert state["StateReason"]["Code"] == "Server.SpotInstanceTermination"
    bridge.step()
    bridge.step()
    assert market.terminated == ["m-0"]  # the exited renderer's record is closed, once


def test_a_spot_launch_without_capacity_is_reclaimed_at_once(ec2: Any) -> None:
    market = FakeMarket()
    market.refuse_spot = True
    bridge = _bridge(market)
    instance_id = _run(ec2, spot=True)
    bridge.step()
    assert market.launched == []
    assert _instance(ec2, instance_id)["StateReason"]["Code"] == "Server.SpotInstanceTermination"
    assert instance_id in bridge.ended


def test_a_preemption_the_bridge_missed_is_caught_on_its_next_look(ec2: Any) -> None:
    market = FakeMarket()
    bridge = _bridge(market)
    instance_id = _run(ec2, spot=True)
    bridge.step()
    market.preempted.add("m-0")  # no listener call: only the next step sees it
    bridge.step()
    assert _instance(ec2, instance_id)["StateReason"]["Code"] == "Server.SpotInstanceTermination"
    bridge._on_preempt("m-unknown")  # a machine of no instance: nothing happens
