"""The EC2 adapter against in-process moto, and against botocore's Stubber where moto cannot
answer (Price List, quotas, Spot request status, a Spot interruption, error codes). Stubber
checks every response against botocore's service model; fixtures: tests/fixtures/ec2/."""

from __future__ import annotations

import base64
import copy
import json
import logging
import os
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    ParamValidationError,
    ReadTimeoutError,
)
from botocore.stub import ANY, Stubber
from moto import mock_aws

from subconscious.errors import (
    MachineGone,
    OfferGone,
    OutOfCapacity,
    ProviderAuthError,
    ProviderDown,
    ProviderError,
    ProviderRateLimited,
)
from subconscious.market import ec2 as ec2_module
from subconscious.market.ec2 import (
    API_FLAGS,
    DEFAULT_INSTANCE_TYPES,
    ENV_DIR,
    LABEL_TAG,
    OFFER_TAG,
    QUOTA_CODES,
    RENDER_PORT,
    STARTUP_S,
    EC2Provider,
    price_list_price,
)
from subconscious.models import MachineStatus, Offer

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "ec2"
REGION = "us-east-1"
API_AUTH = "subc:0123456789abcdef0123456789abcdef"
PASSWORD = API_AUTH.partition(":")[2]
LABEL = "subc-r-20261010120000-0a1b2c3d"
IMAGE = "ghcr.io/example/subc-worker:1.2"
SG = "sg-0123456789abcdef0"
INSTANCE_ID = "i-0abc1234def567890"
ERRORS = {
    "OutOfCapacity": OutOfCapacity,
    "ProviderAuthError": ProviderAuthError,
    "ProviderRateLimited": ProviderRateLimited,
    "ProviderDown": ProviderDown,
    "MachineGone": MachineGone,
    "ProviderError": ProviderError,
}


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text())


# One session for every client: a client from it costs milliseconds, where boto3.client() in a
# fresh moto mock (which drops boto3's default session) costs a fifth of a second. moto
# intercepts clients of any session made after it was imported, while a mock is started.
SESSION = boto3.session.Session(region_name=REGION)


def clock() -> datetime:
    return datetime(2026, 10, 10, 12, 0, tzinfo=UTC)


def no_wait(seconds: float) -> None:
    """The provider's sleep in tests: the propagation waits cost nothing."""


# --- moto ---
_AMI: list[str] = []


@pytest.fixture
def aws() -> Iterator[dict[str, str]]:
    """A moto account: an Amazon Deep Learning AMI and a security group to launch with. moto's
    AMIs are the same in every mock (its bundled list), so the lookup is made once."""
    with mock_aws():
        ec2 = SESSION.client("ec2")
        if not _AMI:
            images = ec2.describe_images(
                Owners=["amazon"], Filters=[{"Name": "name", "Values": ["Deep Learning AMI*"]}]
            )["Images"]
            _AMI.append(images[0]["ImageId"])
        sg = ec2.create_security_group(GroupName="render", Description="7860 only")["GroupId"]
        yield {"ami": _AMI[0], "sg": sg}


def moto_provider(aws: dict[str, str], *, lazy: bool = False, **kwargs: Any) -> EC2Provider:
    """A provider on moto's clients; with ``lazy`` it builds its own (in moto)."""
    clients = {} if lazy else {f"{s}_client": moto_client(n) for s, n in _SERVICES.items()}
    options: dict[str, Any] = {
        "region": REGION,
        "image_id": aws["ami"],
        "worker_image": IMAGE,
        "security_group_id": aws["sg"],
        "clock": clock,
        "sleep": no_wait,
        **clients,
        **kwargs,
    }
    return EC2Provider(**options)


_SERVICES = {"ec2": "ec2", "quotas": "service-quotas", "pricing": "pricing"}


def moto_client(service: str = "ec2") -> Any:
    return SESSION.client(service)


def sent(client: Any, operation: str) -> list[dict[str, Any]]:
    """Records the parameters of every ``operation`` call the client makes."""
    calls: list[dict[str, Any]] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        calls.append(copy.deepcopy(params))

    client.meta.events.register(f"provide-client-params.ec2.{operation}", record)
    return calls


# --- Stubber ---
def stubbed(service: str) -> tuple[Any, Stubber]:
    client = SESSION.client(service)
    stub = Stubber(client)
    stub.activate()
    return client, stub


def stub_provider(**kwargs: Any) -> EC2Provider:
    options: dict[str, Any] = {
        "region": REGION,
        "image_id": "ami-0123456789abcdef0",
        "worker_image": IMAGE,
        "security_group_id": SG,
        "clock": clock,
        "sleep": no_wait,
        **kwargs,
    }
    return EC2Provider(**options)


def quota(code: str, value: float) -> dict[str, Any]:
    answer: dict[str, Any] = fixture("service_quota_g_on_demand")
    answer["Quota"].update(QuotaCode=code, Value=value)
    return answer


def an_offer(offer_id: str = "g5.xlarge@us-east-1b", **kwargs: Any) -> Offer:
    options: dict[str, Any] = {
        "provider": "ec2",
        "offer_id": offer_id,
        "gpu": "A10G",
        "gpu_memory_gb": 22,
        "usd_per_hour": Decimal("1.006"),
        "interruptible": "@" in offer_id,
        "min_bid_usd_per_hour": Decimal("0.42") if "@" in offer_id else None,
        **kwargs,
    }
    return Offer(**options)


def user_data_of(ec2: Any, instance_id: str) -> str:
    attribute = ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")
    return base64.b64decode(attribute["UserData"]["Value"]).decode()


# --- offers ---
def test_offers_from_moto_fall_back_to_the_table_when_the_price_list_404s(
    aws: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    provider = moto_provider(aws, lazy=True)  # all three clients built lazily, in moto
    with caplog.at_level(logging.WARNING, logger="subconscious.market.ec2"):
        offers = provider.list_offers()
        again = provider.list_offers()
    by_id = {o.offer_id: o for o in offers}
    assert [o.offer_id for o in again] == [o.offer_id for o in offers]
    on_demand = [o for o in offers if not o.interruptible]
    assert [o.offer_id for o in on_demand] == list(DEFAULT_INSTANCE_TYPES)
    g5 = by_id["g5.xlarge"]
    assert (g5.gpu, g5.gpu_count, g5.gpu_memory_gb) == ("A10G", 1, 22)  # 22888 MiB per GPU
    assert g5.usd_per_hour == Decimal("1.006") and g5.location == REGION
    assert g5.startup_s == STARTUP_S and g5.min_bid_usd_per_hour is None
    assert {o.gpu for o in on_demand} == {"T4", "A10G", "L4", "L40S", "H100"}
    assert by_id["g6e.xlarge"].gpu_memory_gb == 45 and by_id["p5.4xlarge"].gpu_memory_gb == 80
    spot = by_id["g5.xlarge@us-east-1a"]
    assert spot.interruptible and spot.location == "us-east-1a"
    assert spot.min_bid_usd_per_hour == Decimal("0.00001")  # moto's spot price
    assert spot.usd_per_hour == Decimal("1.006")  # rented without a bid: on-demand there
    assert all(isinstance(o.usd_per_hour, Decimal) for o in offers)
    # one warning for the Price List (moto: 404 "Not yet implemented"), one for the quotas
    # (moto: NoSuchResourceException), each once however often the offers are listed
    warnings = [r.getMessage() for r in caplog.records]
    assert len([w for w in warnings if "Price List" in w]) == 1
    assert any("404" in w and "2026-10-10" in w for w in warnings)
    assert len([w for w in warnings if "quota" in w]) == 1


def test_offers_skip_types_without_an_nvidia_gpu_on_x86_or_a_price(
    aws: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    types = ["g5.xlarge", "g5g.xlarge", "m5.large", "zz9.large", "g6.4xlarge", "p4de.24xlarge"]
    provider = moto_provider(aws, instance_types=types)
    with caplog.at_level(logging.WARNING, logger="subconscious.market.ec2"):
        offers = provider.list_offers()
    on_demand = {o.offer_id: o for o in offers if not o.interruptible}
    # arm64 (g5g), no GPU (m5), unknown here (zz9), no price anywhere (g6.4xlarge)
    assert sorted(on_demand) == ["g5.xlarge", "p4de.24xlarge"]
    p4de = on_demand["p4de.24xlarge"]  # a whole 8-GPU instance, priced as one
    assert (p4de.gpu, p4de.gpu_count, p4de.gpu_memory_gb) == ("A100 80GB", 8, 80)
    assert p4de.usd_per_hour == Decimal("27.4472")
    text = caplog.text
    for name in ("g5g.xlarge", "m5.large", "zz9.large", "g6.4xlarge"):
        assert name in text


def test_no_gpu_type_means_no_offers_and_no_more_calls(aws: dict[str, str]) -> None:
    pricing, pricing_stub = stubbed("pricing")  # no responses queued: a call would fail
    provider = moto_provider(aws, instance_types=["m5.large"], pricing_client=pricing)
    assert provider.list_offers() == []
    pricing_stub.assert_no_pending_responses()


def test_on_demand_prices_from_the_price_list(aws: dict[str, str]) -> None:
    pricing, stub = stubbed("pricing")
    product = fixture("price_list_product_g5_xlarge")
    stub.add_response(
        "get_products",
        {"FormatVersion": "aws_v1", "PriceList": [json.dumps(product)]},
        {
            "ServiceCode": "AmazonEC2",
            "Filters": [
                {"Type": "TERM_MATCH", "Field": "instanceType", "Value": "g5.xlarge"},
                {"Type": "TERM_MATCH", "Field": "regionCode", "Value": REGION},
                {"Type": "TERM_MATCH", "Field": "operatingSystem", "Value": "Linux"},
                {"Type": "TERM_MATCH", "Field": "tenancy", "Value": "Shared"},
                {"Type": "TERM_MATCH", "Field": "preInstalledSw", "Value": "NA"},
                {"Type": "TERM_MATCH", "Field": "capacitystatus", "Value": "Used"},
            ],
        },
    )
    provider = moto_provider(aws, instance_types=["g5.xlarge"], pricing_client=pricing)
    offers = provider.list_offers()
    provider.list_offers()  # read once for the provider's life
    stub.assert_no_pending_responses()
    # the OnDemand term's price, not the Reserved one beside it
    assert offers[0].usd_per_hour == Decimal("1.0060000000")


def test_a_type_the_price_list_lacks_comes_from_the_table(
    aws: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    pricing, stub = stubbed("pricing")
    product = json.dumps(fixture("price_list_product_g5_xlarge"))
    stub.add_response(
        "get_products", {"PriceList": [product]}, {"ServiceCode": "AmazonEC2", "Filters": ANY}
    )
    stub.add_response(
        "get_products", {"PriceList": []}, {"ServiceCode": "AmazonEC2", "Filters": ANY}
    )
    provider = moto_provider(aws, instance_types=["g5.xlarge", "g6.xlarge"], pricing_client=pricing)
    with caplog.at_level(logging.WARNING, logger="subconscious.market.ec2"):
        prices = {o.offer_id: o.usd_per_hour for o in provider.list_offers()}
    assert prices["g6.xlarge"] == Decimal("0.8048") and prices["g5.xlarge"] == Decimal("1.006")
    assert "has no price for g6.xlarge" in caplog.text


def test_price_list_refusal_stops_asking_and_warns_once(
    aws: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    pricing, stub = stubbed("pricing")
    stub.add_client_error("get_products", "AccessDeniedException", "not allowed", 400)
    provider = moto_provider(aws, pricing_client=pricing)  # five types, one call
    with caplog.at_level(logging.WARNING, logger="subconscious.market.ec2"):
        offers = provider.list_offers()
    stub.assert_no_pending_responses()
    assert {o.offer_id for o in offers if not o.interruptible} == set(DEFAULT_INSTANCE_TYPES)
    assert caplog.text.count("Price List API did not answer (AccessDeniedException)") == 1


def test_a_region_the_table_lacks_offers_nothing_without_the_price_list(
    aws: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="subconscious.market.ec2"):
        offers = moto_provider(aws, lazy=True, region="eu-west-1").list_offers()
    assert offers == []
    assert "no on-demand price for g5.xlarge in eu-west-1" in caplog.text


def test_an_override_replaces_the_price_list(aws: dict[str, str]) -> None:
    pricing, _ = stubbed("pricing")  # nothing queued: any call would fail
    provider = moto_provider(
        aws,
        instance_types=["g5.xlarge", "g6.xlarge"],
        on_demand_prices={"g5.xlarge": Decimal("0.99")},
        pricing_client=pricing,
    )
    offers = provider.list_offers()
    assert {o.offer_id for o in offers if not o.interruptible} == {"g5.xlarge"}
    assert {o.usd_per_hour for o in offers} == {Decimal("0.99")}


def test_price_list_parsing() -> None:
    product = fixture("price_list_product_g5_xlarge")
    assert price_list_price([json.dumps(product)]) == Decimal("1.006")
    assert price_list_price([product]) == Decimal("1.006")  # already parsed
    assert price_list_price([]) is None
    dearer = copy.deepcopy(product)
    term = next(iter(dearer["terms"]["OnDemand"].values()))
    dimension = next(iter(term["priceDimensions"].values()))
    dimension["pricePerUnit"]["USD"] = "1.2120000000"
    assert price_list_price([json.dumps(product), json.dumps(dearer)]) == Decimal("1.212")
    for usd in ("0.0000000000", "NaN", "n/a"):  # no price, or not one
        dimension["pricePerUnit"]["USD"] = usd
        assert price_list_price([json.dumps(dearer)]) is None
    del dimension["pricePerUnit"]
    assert price_list_price([json.dumps(dearer)]) is None
    dimension["unit"] = "Quantity"  # not an hourly price
    dimension["pricePerUnit"] = {"USD": "5.0"}
    assert price_list_price([json.dumps(dearer)]) is None


def test_a_price_list_answer_that_does_not_parse_falls_back(
    aws: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    pricing, stub = stubbed("pricing")
    stub.add_response("get_products", {"PriceList": ["{not json"]})
    provider = moto_provider(aws, instance_types=["g5.xlarge"], pricing_client=pricing)
    with caplog.at_level(logging.WARNING, logger="subconscious.market.ec2"):
        (offer, *_) = provider.list_offers()
    assert offer.usd_per_hour == Decimal("1.006")
    assert "did not answer (JSONDecodeError)" in caplog.text


def test_error_codes_for_warnings() -> None:
    coded = ClientError({"Error": {"Code": "Throttling", "Message": "slow"}}, "GetProducts")
    uncoded = ClientError({"Error": {"Message": "?"}}, "GetProducts")
    assert ec2_module._error_code(coded) == "Throttling"
    assert ec2_module._error_code(uncoded) == "ClientError"
    assert ec2_module._error_code(ValueError("x")) == "ValueError"


def test_gpu_reading_of_instance_types() -> None:
    g5 = moto_type_info("g5.xlarge")
    assert ec2_module._gpu_of(g5) == ("A10G", 1, 22)
    amd = copy.deepcopy(g5)
    amd["GpuInfo"]["Gpus"][0].update(Name="Radeon Pro V520", Manufacturer="AMD")
    assert ec2_module._gpu_of(amd) is None  # CUDA images only
    empty = copy.deepcopy(g5)
    empty["GpuInfo"]["Gpus"][0]["Count"] = 0
    assert ec2_module._gpu_of(empty) is None
    assert ec2_module._gpu_of(moto_type_info("m5.large")) is None


def test_spot_prices_take_the_newest_row_per_zone() -> None:
    ec2, stub = stubbed("ec2")
    older = datetime(2026, 10, 10, 11, 0, tzinfo=UTC)
    newer = datetime(2026, 10, 10, 11, 55, tzinfo=UTC)
    stub.add_response(
        "describe_instance_types",
        {"InstanceTypes": [moto_type_info("g5.xlarge")]},
        {"Filters": [{"Name": "instance-type", "Values": ["g5.xlarge"]}]},
    )
    rows = [
        ("us-east-1a", "0.4177", newer, "Linux/UNIX"),
        ("us-east-1a", "0.4500", older, "Linux/UNIX"),  # older, though it comes later
        ("us-east-1b", "0.3970", older, "Linux/UNIX"),
        ("us-east-1c", "0.1000", newer, "SUSE Linux"),  # another product: ignored
        ("us-east-1d", "0", newer, "Linux/UNIX"),  # not a price: ignored
    ]
    stub.add_response(
        "describe_spot_price_history",
        {
            "SpotPriceHistory": [
                {
                    "AvailabilityZone": az,
                    "InstanceType": "g5.xlarge",
                    "ProductDescription": product,
                    "SpotPrice": price,
                    "Timestamp": when,
                }
                for az, price, when, product in rows
            ]
            + [{"AvailabilityZone": "us-east-1f", "InstanceType": "g5.xlarge", "SpotPrice": "0.1"}]
        },
        {
            "InstanceTypes": ["g5.xlarge"],
            "ProductDescriptions": ["Linux/UNIX"],
            "StartTime": clock(),
        },
    )
    quotas, unread = stubbed("service-quotas")
    for _ in range(2):  # the G quotas, on-demand and spot: unknown, so nothing is filtered
        unread.add_client_error("get_service_quota", "NoSuchResourceException", "no", 400)
    provider = stub_provider(
        instance_types=["g5.xlarge"],
        ec2_client=ec2,
        quotas_client=quotas,
        on_demand_prices={"g5.xlarge": Decimal("1.006")},
    )
    offers = {o.offer_id: o for o in provider.list_offers()}
    stub.assert_no_pending_responses()
    assert offers["g5.xlarge@us-east-1a"].min_bid_usd_per_hour == Decimal("0.4177")
    assert offers["g5.xlarge@us-east-1b"].min_bid_usd_per_hour == Decimal("0.3970")
    assert not {"g5.xlarge@us-east-1c", "g5.xlarge@us-east-1d", "g5.xlarge@us-east-1f"} & set(
        offers
    )


_TYPE_INFO: dict[str, dict[str, Any]] = {}


def moto_type_info(instance_type: str) -> dict[str, Any]:
    """moto's DescribeInstanceTypes row for a type (generated by moto from AWS's answers)."""
    if instance_type not in _TYPE_INFO:
        with mock_aws():
            answer = moto_client().describe_instance_types(InstanceTypes=[instance_type])
        _TYPE_INFO[instance_type] = answer["InstanceTypes"][0]
    return copy.deepcopy(_TYPE_INFO[instance_type])


# --- quotas ---
def quota_stub(values: dict[str, float]) -> tuple[Any, Stubber]:
    """Service Quotas answering these codes, in the order the provider asks them."""
    client, stub = stubbed("service-quotas")
    for code in QUOTA_CODES.values():
        if code in values:
            stub.add_response(
                "get_service_quota",
                quota(code, values[code]),
                {"ServiceCode": "ec2", "QuotaCode": code},
            )
    return client, stub


def test_quotas_leave_out_offers_that_no_longer_fit(aws: dict[str, str]) -> None:
    ec2 = moto_client()
    quotas, stub = quota_stub(
        {"L-DB2E81BA": 8, "L-3819A6DF": 0, "L-417A185B": 0, "L-7212CCBC": 192}
    )
    provider = moto_provider(aws, ec2_client=ec2, quotas_client=quotas)
    offers = {o.offer_id for o in provider.list_offers()}
    # G on-demand: 8 vCPUs free, every g*.xlarge has 4; G spot: none; P on-demand: none, P
    # spot: 192 vCPUs, a p5.4xlarge has 16
    assert {"g4dn.xlarge", "g5.xlarge", "g6.xlarge", "g6e.xlarge"} <= offers
    assert not any(o.startswith("g") and "@" in o for o in offers)
    assert "p5.4xlarge" not in offers and "p5.4xlarge@us-east-1a" in offers
    # two of ours run on-demand (8 vCPUs): no G on-demand offer fits any more
    for _ in range(2):
        ec2.run_instances(
            MinCount=1,
            MaxCount=1,
            InstanceType="g5.xlarge",
            ImageId=aws["ami"],
            TagSpecifications=[
                {"ResourceType": "instance", "Tags": [{"Key": LABEL_TAG, "Value": LABEL}]}
            ],
        )
    # an instance that is not ours does not count, nor one of ours outside G and P
    ec2.run_instances(MinCount=1, MaxCount=1, InstanceType="g5.xlarge", ImageId=aws["ami"])
    ec2.run_instances(
        MinCount=1,
        MaxCount=1,
        InstanceType="m5.large",
        ImageId=aws["ami"],
        TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": LABEL_TAG, "Value": LABEL}]}
        ],
    )
    offers = {o.offer_id for o in provider.list_offers()}
    stub.assert_no_pending_responses()  # the quotas were read once
    assert not any(o.startswith("g") for o in offers)
    assert "p5.4xlarge@us-east-1a" in offers


def test_spot_instances_count_against_the_spot_quota(aws: dict[str, str]) -> None:
    ec2 = moto_client()
    quotas, _ = quota_stub({"L-DB2E81BA": 64, "L-3819A6DF": 4})
    provider = moto_provider(
        aws, instance_types=["g5.xlarge"], ec2_client=ec2, quotas_client=quotas
    )
    assert any("@" in o.offer_id for o in provider.list_offers())
    provider.launch(an_offer(), label=LABEL, api_auth=API_AUTH, bid_usd_per_hour=Decimal("0.5"))
    offers = {o.offer_id for o in provider.list_offers()}
    assert offers == {"g5.xlarge"}


def test_unreadable_quotas_filter_nothing_and_warn_once(
    aws: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    quotas, stub = stubbed("service-quotas")
    stub.add_client_error("get_service_quota", "AccessDeniedException", "no grant", 400)
    stub.add_response("get_service_quota", quota("L-3819A6DF", 0.0))
    provider = moto_provider(aws, instance_types=["g5.xlarge"], quotas_client=quotas)
    with caplog.at_level(logging.WARNING, logger="subconscious.market.ec2"):
        offers = {o.offer_id for o in provider.list_offers()}
        provider.list_offers()
    assert "g5.xlarge" in offers  # its quota is unknown: kept
    assert not any("@" in o for o in offers)  # the spot quota read 0: left out
    assert caplog.text.count("could not be read (AccessDeniedException)") == 1


# --- launch ---
def test_launch_sends_a_spot_request_with_tags_metadata_and_user_data(
    aws: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    ec2 = moto_client()
    calls = sent(ec2, "RunInstances")
    provider = moto_provider(aws, ec2_client=ec2)
    with caplog.at_level(logging.DEBUG, logger="subconscious"):
        machine = provider.launch(
            an_offer(),
            label=LABEL,
            api_auth=API_AUTH,
            bid_usd_per_hour=Decimal("0.4410"),
            worker_env={"WORKER_COMPILE_SHAPES": "512x512x4", "WORKER_CHECKPOINT": "sd15"},
        )
    assert machine.status is MachineStatus.STARTING and machine.url is None
    assert machine.usd_per_hour == Decimal("0.4410") and machine.label == LABEL
    assert machine.offer_id == "g5.xlarge@us-east-1b"
    (request,) = calls
    assert request["InstanceType"] == "g5.xlarge" and request["ImageId"] == aws["ami"]
    assert (request["MinCount"], request["MaxCount"]) == (1, 1)
    assert request["SecurityGroupIds"] == [aws["sg"]]
    assert request["Placement"] == {"AvailabilityZone": "us-east-1b"}
    assert "SubnetId" not in request
    assert request["InstanceInitiatedShutdownBehavior"] == "terminate"
    assert request["MetadataOptions"] == {
        "HttpTokens": "required",
        "HttpPutResponseHopLimit": 1,
        "HttpEndpoint": "enabled",
    }
    assert request["InstanceMarketOptions"] == {
        "MarketType": "spot",
        "SpotOptions": {
            "SpotInstanceType": "one-time",
            "InstanceInterruptionBehavior": "terminate",
            "MaxPrice": "0.4410",
        },
    }
    tags = [
        {"Key": LABEL_TAG, "Value": LABEL},
        {"Key": "Name", "Value": LABEL},
        {"Key": OFFER_TAG, "Value": "g5.xlarge@us-east-1b"},
    ]
    assert request["TagSpecifications"] == [
        {"ResourceType": "instance", "Tags": tags},
        {"ResourceType": "volume", "Tags": tags},
    ]
    # what EC2 (moto) made of it
    instance = ec2.describe_instances(InstanceIds=[machine.machine_id])["Reservations"][0][
        "Instances"
    ][0]
    assert instance["InstanceLifecycle"] == "spot"
    assert instance["Placement"]["AvailabilityZone"] == "us-east-1b"
    assert instance["MetadataOptions"]["HttpTokens"] == "required"
    assert instance["MetadataOptions"]["HttpPutResponseHopLimit"] == 1
    volumes = ec2.describe_volumes(Filters=[{"Name": f"tag:{LABEL_TAG}", "Values": [LABEL]}])
    assert len(volumes["Volumes"]) == 1
    script = user_data_of(ec2, machine.machine_id)
    assert f"COMMANDLINE_ARGS=--api-auth {API_AUTH}\n" in script
    assert "WORKER_COMPILE_SHAPES=512x512x4\n" in script and "WORKER_CHECKPOINT=sd15\n" in script
    (docker_line,) = [line for line in script.splitlines() if line.startswith("docker run")]
    assert f"--env-file {ENV_DIR}/worker.env {IMAGE} {' '.join(API_FLAGS)}" in docker_line
    assert f"-p {RENDER_PORT}:{RENDER_PORT}" in docker_line and "--gpus all" in docker_line
    assert PASSWORD not in docker_line
    # nothing we logged carries the credential
    assert PASSWORD not in caplog.text


def test_launch_without_a_bid_is_on_demand_even_for_a_zone_offer(aws: dict[str, str]) -> None:
    ec2 = moto_client()
    calls = sent(ec2, "RunInstances")
    provider = moto_provider(aws, ec2_client=ec2)
    zoned = provider.launch(an_offer(), label=LABEL, api_auth=API_AUTH)
    anywhere = provider.launch(an_offer("g5.xlarge"), label=LABEL, api_auth=API_AUTH)
    assert "InstanceMarketOptions" not in calls[0] and "InstanceMarketOptions" not in calls[1]
    assert calls[0]["Placement"] == {"AvailabilityZone": "us-east-1b"}
    assert "Placement" not in calls[1]
    assert zoned.usd_per_hour == anywhere.usd_per_hour == Decimal("1.006")
    instance = provider.status(zoned.machine_id)
    assert instance.offer_id == "g5.xlarge@us-east-1b" and instance.label == LABEL


def test_user_data_writes_a_root_only_env_file_and_keeps_the_credential_off_argv(
    tmp_path: Path,
) -> None:
    """Runs the script with bash, ``docker`` and ``shutdown`` faked on PATH and the env folder
    moved under tmp: the file's content and mode, and docker's exact argv."""
    if shutil.which("bash") is None:
        pytest.skip("no bash")
    provider = stub_provider(worker_image="registry.example/a1111 image:v1")  # quoted
    script = provider._user_data(API_AUTH, {"WORKER_CHECKPOINT": "sd15"})
    folder = tmp_path / "etc-subc"
    script = script.replace(ENV_DIR, str(folder))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "argv.log"
    for name, body in (
        ("docker", f'[ "$1" = info ] && exit 0\nprintf "%s\\n" "$@" > {log}\nexit 0'),
        ("shutdown", f"echo shutdown >> {tmp_path / 'shutdown.log'}"),
    ):
        path = bin_dir / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(0o755)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}"}
    subprocess.run(["bash", "-c", script], env=env, check=True, timeout=10)
    env_file = folder / "worker.env"
    assert env_file.read_text() == (
        f"COMMANDLINE_ARGS=--api-auth {API_AUTH}\nWORKER_CHECKPOINT=sd15\n"
    )
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    argv = log.read_text().splitlines()
    assert argv == [
        "run",
        "-d",
        "--name",
        "subc-worker",
        "--restart",
        "unless-stopped",
        "--gpus",
        "all",
        "-p",
        "7860:7860",
        "--env-file",
        str(env_file),
        "registry.example/a1111 image:v1",
        *API_FLAGS,
    ]
    assert not any(PASSWORD in arg for arg in argv)
    assert not (tmp_path / "shutdown.log").exists()
    # a container that cannot start shuts the instance down (and so terminates it)
    (bin_dir / "docker").write_text('#!/bin/sh\n[ "$1" = info ] && exit 0\nexit 125\n')
    subprocess.run(["bash", "-c", script], env=env, check=True, timeout=10)
    assert (tmp_path / "shutdown.log").read_text() == "shutdown\n"


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"label": "run-1"}, ValueError),  # not our prefix: the reaper would never find it
        ({"label": "subc-" + "x" * 300}, ValueError),  # longer than a tag value
        ({"api_auth": "subc:pa ss"}, ValueError),
        ({"api_auth": "no-colon"}, ValueError),
        ({"worker_env": {"COMMANDLINE_ARGS": "--x"}}, ValueError),
        ({"bid_usd_per_hour": Decimal(0)}, ValueError),
        ({"bid_usd_per_hour": Decimal("NaN")}, ValueError),
        ({"offer": an_offer("t3.micro")}, OfferGone),
    ],
)
def test_launch_refuses_what_it_cannot_send(kwargs: dict[str, Any], error: type[Exception]) -> None:
    ec2, stub = stubbed("ec2")  # nothing queued: nothing may be sent
    args: dict[str, Any] = {"offer": an_offer(), "label": LABEL, "api_auth": API_AUTH, **kwargs}
    with pytest.raises(error):
        stub_provider(ec2_client=ec2).launch(**args)
    stub.assert_no_pending_responses()


def test_launch_into_our_subnets_by_zone(aws: dict[str, str]) -> None:
    ec2 = moto_client()
    subnets = {
        zone: ec2.describe_subnets(Filters=[{"Name": "availability-zone", "Values": [zone]}])[
            "Subnets"
        ][0]["SubnetId"]
        for zone in ("us-east-1c", "us-east-1b")
    }
    calls = sent(ec2, "RunInstances")
    provider = moto_provider(aws, ec2_client=ec2, subnets=subnets, instance_types=["g5.xlarge"])
    zones = {o.location for o in provider.list_offers() if o.interruptible}
    assert zones == {"us-east-1b", "us-east-1c"}  # only the zones we have a subnet in
    bid = Decimal("0.5")
    provider.launch(an_offer(), label=LABEL, api_auth=API_AUTH, bid_usd_per_hour=bid)
    assert calls[0]["SubnetId"] == subnets["us-east-1b"] and "Placement" not in calls[0]
    on_demand = an_offer("g5.xlarge")
    provider.launch(on_demand, label=LABEL, api_auth=API_AUTH)
    assert calls[1]["SubnetId"] == subnets["us-east-1b"]  # the first zone's, sorted
    with pytest.raises(OfferGone):
        provider.launch(an_offer("g5.xlarge@us-east-1a"), label=LABEL, api_auth=API_AUTH)


def test_launch_answer_without_an_instance_is_an_error() -> None:
    ec2, stub = stubbed("ec2")
    stub.add_response("run_instances", {"Instances": []})
    with pytest.raises(ProviderError, match="without an instance id"):
        stub_provider(ec2_client=ec2).launch(an_offer(), label=LABEL, api_auth=API_AUTH)


# --- errors ---
@pytest.mark.parametrize("case", fixture("errors"), ids=lambda case: case["code"])
def test_every_error_code_maps_to_its_typed_error(
    case: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    ec2, stub = stubbed("ec2")
    # an error that echoes the credential must not pass it on
    message = f"{case['message']} (request had {API_AUTH})"
    stub.add_client_error("run_instances", case["code"], message, case["http"])
    provider = stub_provider(ec2_client=ec2)
    with (
        caplog.at_level(logging.DEBUG, logger="subconscious"),
        pytest.raises(ProviderError) as raised,
    ):
        provider.launch(an_offer(), label=LABEL, api_auth=API_AUTH)
    assert type(raised.value) is ERRORS[case["expected"]]
    text = str(raised.value)
    assert case["code"] in text and PASSWORD not in text and "***" in text
    assert raised.value.__cause__ is None and raised.value.__suppress_context__
    assert PASSWORD not in caplog.text


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("AccessDeniedException", 400, ProviderAuthError),
        ("ThrottlingException", 400, ProviderRateLimited),
        ("SomethingNew", 502, ProviderDown),  # an unknown code with a 5xx
        ("SomethingNew", 400, ProviderError),
    ],
)
def test_other_services_codes_and_5xx(code: str, status: int, expected: type[Exception]) -> None:
    ec2, stub = stubbed("ec2")
    stub.add_client_error("describe_instances", code, "refused", status)
    with pytest.raises(ProviderError) as raised:
        stub_provider(ec2_client=ec2).status(INSTANCE_ID)
    assert type(raised.value) is expected
    assert raised.value.__cause__ is not None  # chained where no secret is involved


class _Failing:
    """A client whose every call raises ``error`` (what Stubber cannot produce)."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            raise self.error

        return call


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            EndpointConnectionError(endpoint_url="https://ec2.us-east-1.amazonaws.com/"),
            ProviderDown,
        ),
        (ReadTimeoutError(endpoint_url="https://ec2.us-east-1.amazonaws.com/"), ProviderDown),
        (NoCredentialsError(), ProviderAuthError),
        (ParamValidationError(report="bad"), ProviderError),
    ],
)
def test_botocore_failures_are_typed(error: Exception, expected: type[Exception]) -> None:
    provider = stub_provider(ec2_client=_Failing(error))
    with pytest.raises(ProviderError) as raised:
        provider.launch(an_offer(), label=LABEL, api_auth=API_AUTH)
    assert type(raised.value) is expected
    with pytest.raises(expected):
        provider.terminate(INSTANCE_ID)


# --- status ---
def running_spot() -> dict[str, Any]:
    answer: dict[str, Any] = fixture("instance_spot_running")
    return answer


def with_instance(answer: dict[str, Any], **fields: Any) -> dict[str, Any]:
    instance = answer["Reservations"][0]["Instances"][0]
    for key, value in fields.items():
        if value is None:
            instance.pop(key, None)
        else:
            instance[key] = value
    return answer


def spot_request(code: str, price: str = "0.442000") -> dict[str, Any]:
    answer: dict[str, Any] = fixture("spot_request_marked_for_termination")
    request = answer["SpotInstanceRequests"][0]
    request["Status"]["Code"] = code
    request["SpotPrice"] = price
    if code == "fulfilled":
        request["Status"]["Message"] = "Your spot request is fulfilled."
    return answer


def status_of(answer: dict[str, Any], request: dict[str, Any] | None = None, **kwargs: Any) -> Any:
    ec2, stub = stubbed("ec2")
    stub.add_response("describe_instances", answer, {"InstanceIds": [INSTANCE_ID]})
    if request is not None:
        stub.add_response(
            "describe_spot_instance_requests",
            request,
            {"SpotInstanceRequestIds": ["sir-0abcdefgh"]},
        )
    machine = stub_provider(ec2_client=ec2, **kwargs).status(INSTANCE_ID)
    stub.assert_no_pending_responses()
    return machine


def test_a_running_spot_instance_serves_at_its_public_address() -> None:
    machine = status_of(running_spot(), spot_request("fulfilled"))
    assert machine.status is MachineStatus.RUNNING
    assert machine.url == "http://203.0.113.10:7860"
    assert machine.usd_per_hour == Decimal("0.442000")  # its maximum price: our bid
    assert machine.offer_id == "g5.xlarge@us-east-1b"
    assert machine.label == "subc-r-20261010120000-0a1b2c3d"


def test_the_interruption_notice_reads_exited_while_the_instance_still_runs() -> None:
    machine = status_of(running_spot(), fixture("spot_request_marked_for_termination"))
    assert machine.status is MachineStatus.EXITED and machine.url is None


@pytest.mark.parametrize(
    "code", ["instance-terminated-by-price", "instance-terminated-no-capacity"]
)
def test_an_interrupted_request_reads_exited(code: str) -> None:
    assert status_of(running_spot(), spot_request(code)).status is MachineStatus.EXITED


def test_a_spot_interruption_in_the_instance_state_reads_exited() -> None:
    machine = status_of(
        fixture("instance_spot_terminated"), spot_request("instance-terminated-by-price")
    )
    assert machine.status is MachineStatus.EXITED


def test_our_own_terminate_of_a_spot_instance_reads_terminated() -> None:
    answer = with_instance(
        fixture("instance_spot_terminated"),
        State={"Code": 32, "Name": "shutting-down"},
        StateReason={
            "Code": "Client.UserInitiatedShutdown",
            "Message": "Client.UserInitiatedShutdown: User initiated shutdown",
        },
    )
    machine = status_of(answer, spot_request("instance-terminated-by-user"))
    assert machine.status is MachineStatus.TERMINATED


@pytest.mark.parametrize(
    ("state", "reason", "expected"),
    [
        ("pending", None, MachineStatus.STARTING),
        ("running", None, MachineStatus.RUNNING),
        ("stopping", None, MachineStatus.EXITED),
        ("stopped", None, MachineStatus.EXITED),
        ("shutting-down", "Server.SpotInstanceTermination", MachineStatus.EXITED),
        ("terminated", "Server.InternalError", MachineStatus.EXITED),
        ("terminated", "Client.InstanceInitiatedShutdown", MachineStatus.EXITED),
        ("terminated", "Client.UserInitiatedShutdown", MachineStatus.TERMINATED),
        ("terminated", None, MachineStatus.TERMINATED),
        ("rebooting-someday", None, MachineStatus.STARTING),
    ],
)
def test_status_of_each_state(state: str, reason: str | None, expected: MachineStatus) -> None:
    codes = {"pending": 0, "running": 16, "shutting-down": 32, "terminated": 48}
    reason_field = {"Code": reason, "Message": f"{reason}: ..."} if reason else None
    answer = with_instance(
        running_spot(),
        State={"Code": codes.get(state, 80), "Name": state},
        StateReason=reason_field,
        InstanceLifecycle=None,  # on-demand: its price is the on-demand price
        SpotInstanceRequestId=None,
    )
    machine = status_of(answer)
    assert machine.status is expected
    assert machine.usd_per_hour == Decimal("1.006")  # the shipped table: no call made
    assert (machine.url is not None) == (expected is MachineStatus.RUNNING)


def test_running_without_a_public_address_is_still_starting() -> None:
    answer = with_instance(running_spot(), PublicIpAddress=None, InstanceLifecycle=None)
    assert status_of(answer).status is MachineStatus.STARTING


def test_the_url_template_can_use_the_dns_name_and_the_id() -> None:
    machine = status_of(
        with_instance(running_spot(), InstanceLifecycle=None),
        url_template="https://{public_dns}/{instance_id}",
    )
    assert machine.url == f"https://ec2-203-0-113-10.compute-1.amazonaws.com/{INSTANCE_ID}"


@pytest.mark.parametrize("template", ["http://{host}:7860", "http://localhost:7860"])
def test_a_url_template_without_known_fields_is_refused(template: str) -> None:
    with pytest.raises(ValueError, match="url_template"):
        stub_provider(url_template=template)


def test_unreadable_spot_requests_leave_the_instance_state_alone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ec2, stub = stubbed("ec2")
    stub.add_response("describe_instances", running_spot())
    stub.add_client_error("describe_spot_instance_requests", "UnauthorizedOperation", "no", 403)
    with caplog.at_level(logging.WARNING, logger="subconscious.market.ec2"):
        machine = stub_provider(ec2_client=ec2).status(INSTANCE_ID)
    assert machine.status is MachineStatus.RUNNING
    assert machine.usd_per_hour == Decimal("1.006")  # no bid known: the on-demand price
    assert "interruption notices are missed" in caplog.text


def test_prices_known_to_the_provider_come_first() -> None:
    answer = with_instance(running_spot(), InstanceLifecycle=None)
    assert status_of(answer, on_demand_prices={"g5.xlarge": Decimal("0.95")}).usd_per_hour == (
        Decimal("0.95")
    )
    request = spot_request("fulfilled")
    del request["SpotInstanceRequests"][0]["SpotPrice"]
    assert status_of(running_spot(), request).usd_per_hour == Decimal("1.006")


def test_an_unpriced_type_reads_zero() -> None:
    answer = with_instance(running_spot(), InstanceType="g6.4xlarge", InstanceLifecycle=None)
    assert status_of(answer).usd_per_hour == Decimal(0)


def test_status_of_an_unknown_or_malformed_id_is_machine_gone(aws: dict[str, str]) -> None:
    provider = moto_provider(aws)
    with pytest.raises(MachineGone):
        provider.status("i-0123456789abcdef0")
    with pytest.raises(MachineGone):
        provider.status("not-an-instance")
    ec2, stub = stubbed("ec2")
    stub.add_response("describe_instances", {"Reservations": []})
    with pytest.raises(MachineGone):
        stub_provider(ec2_client=ec2).status(INSTANCE_ID)


def not_found(stub: Stubber, operation: str) -> None:
    stub.add_client_error(
        operation,
        "InvalidInstanceID.NotFound",
        f"The instance ID '{INSTANCE_ID}' does not exist",
        400,
    )


def test_a_new_id_not_yet_known_everywhere_is_asked_again() -> None:
    ec2, stub = stubbed("ec2")
    not_found(stub, "describe_instances")
    not_found(stub, "describe_instances")
    stub.add_response("describe_instances", with_instance(running_spot(), InstanceLifecycle=None))
    waits: list[float] = []
    machine = stub_provider(ec2_client=ec2, sleep=waits.append).status(INSTANCE_ID)
    assert machine.status is MachineStatus.RUNNING and waits == [1.0, 2.0]


def test_an_id_unknown_after_every_wait_is_gone() -> None:
    ec2, stub = stubbed("ec2")
    for _ in range(4):
        not_found(stub, "describe_instances")
    waits: list[float] = []
    with pytest.raises(MachineGone):
        stub_provider(ec2_client=ec2, sleep=waits.append).status(INSTANCE_ID)
    assert waits == [1.0, 2.0, 4.0]
    stub.assert_no_pending_responses()


def test_terminate_asks_again_before_taking_not_found_for_gone() -> None:
    """A TerminateInstances answered NotFound right after the launch terminated nothing."""
    ec2, stub = stubbed("ec2")
    not_found(stub, "terminate_instances")
    stub.add_response(
        "terminate_instances",
        {
            "TerminatingInstances": [
                {
                    "InstanceId": INSTANCE_ID,
                    "CurrentState": {"Code": 32, "Name": "shutting-down"},
                    "PreviousState": {"Code": 16, "Name": "running"},
                }
            ]
        },
        {"InstanceIds": [INSTANCE_ID]},
    )
    waits: list[float] = []
    stub_provider(ec2_client=ec2, sleep=waits.append).terminate(INSTANCE_ID)
    stub.assert_no_pending_responses()
    assert waits == [1.0]
    ec2, stub = stubbed("ec2")
    stub.add_client_error("terminate_instances", "InvalidInstanceID.Malformed", "bad id", 400)
    stub_provider(ec2_client=ec2, sleep=waits.append).terminate(INSTANCE_ID)  # no waiting
    assert waits == [1.0]


# --- terminate and the list ---
def test_terminate_is_idempotent(aws: dict[str, str]) -> None:
    ec2 = moto_client()
    provider = moto_provider(aws, ec2_client=ec2)
    machine = provider.launch(an_offer("g5.xlarge"), label=LABEL, api_auth=API_AUTH)
    provider.terminate(machine.machine_id)
    provider.terminate(machine.machine_id)
    provider.terminate("i-0123456789abcdef0")  # never existed
    provider.terminate("../etc")  # cannot exist: nothing sent
    assert provider.status(machine.machine_id).status is MachineStatus.TERMINATED
    state = ec2.describe_instances(InstanceIds=[machine.machine_id])["Reservations"][0][
        "Instances"
    ][0]["State"]["Name"]
    assert state == "terminated"


def test_machines_lists_ours_by_label(aws: dict[str, str]) -> None:
    ec2 = moto_client()
    provider = moto_provider(aws, ec2_client=ec2)
    first = provider.launch(an_offer("g5.xlarge"), label="subc-a", api_auth=API_AUTH)
    second = provider.launch(
        an_offer(), label="subc-b", api_auth=API_AUTH, bid_usd_per_hour=Decimal("0.5")
    )
    gone = provider.launch(an_offer("g5.xlarge"), label="subc-a", api_auth=API_AUTH)
    provider.terminate(gone.machine_id)
    # not ours: no label tag, or a label tag another tool wrote
    ec2.run_instances(MinCount=1, MaxCount=1, InstanceType="g5.xlarge", ImageId=aws["ami"])
    ec2.run_instances(
        MinCount=1,
        MaxCount=1,
        InstanceType="g5.xlarge",
        ImageId=aws["ami"],
        TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": LABEL_TAG, "Value": "other"}]}
        ],
    )
    every = {m.machine_id: m for m in provider.machines()}
    assert set(every) == {first.machine_id, second.machine_id}
    assert every[second.machine_id].offer_id == "g5.xlarge@us-east-1b"
    assert every[first.machine_id].status is MachineStatus.RUNNING
    assert every[first.machine_id].url is not None
    assert [m.machine_id for m in provider.machines("subc-a")] == [first.machine_id]
    assert provider.machines("subc-none") == []


def test_machines_reads_every_spot_request_in_one_call() -> None:
    ec2, stub = stubbed("ec2")
    stub.add_response("describe_instances", running_spot(), {"Filters": ANY})
    stub.add_response(
        "describe_spot_instance_requests",
        fixture("spot_request_marked_for_termination"),
        {"SpotInstanceRequestIds": ["sir-0abcdefgh"]},
    )
    (machine,) = stub_provider(ec2_client=ec2).machines("subc-r-20261010120000-0a1b2c3d")
    assert machine.status is MachineStatus.EXITED


# --- construction ---
@pytest.mark.parametrize(
    "kwargs",
    [
        {"region": ""},
        {"image_id": ""},
        {"worker_image": ""},
        {"security_group_id": ""},
        {"instance_types": []},
        {"instance_types": ["g5.xlarge", "G5 XL"]},
    ],
)
def test_constructor_refuses_missing_settings(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="ec2"):
        stub_provider(**kwargs)


def test_the_shipped_table_is_exact_and_dated() -> None:
    prices, as_of = ec2_module._table(REGION)
    assert as_of == "2026-10-10"
    assert set(DEFAULT_INSTANCE_TYPES) <= set(prices)
    assert all(isinstance(p, Decimal) and p > 0 for p in prices.values())
    assert ec2_module._table("mars-north-1")[0] == {}


def test_importing_the_module_leaves_boto3_alone() -> None:
    code = (
        "import sys; import subconscious.market.ec2; "
        "sys.exit(1 if 'boto3' in sys.modules or 'botocore' in sys.modules else 0)"
    )
    root = Path(__file__).resolve().parents[3]
    env = {**os.environ, "PYTHONPATH": f"{root / 'layers'}"}
    done = subprocess.run([sys.executable, "-c", code], env=env, check=False)
    assert done.returncode == 0


def test_no_module_level_environment_reads() -> None:
    source = Path(ec2_module.__file__).read_text()
    assert not re.search(r"os\.environ|getenv", source)
