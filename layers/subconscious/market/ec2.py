"""AWS EC2 as a market, over boto3 (``ec2``, ``pricing``, ``service-quotas``).

What this relies on (the botocore service models ``ec2/2016-11-15``, ``pricing/2017-10-15``
and ``service-quotas/2019-06-24`` define every shape read here; the AWS pages are cited by
address, the fixtures behind the tests in ``tests/fixtures/ec2/README.md``):

- Offers. One on-demand offer per instance type (``"g5.xlarge"``, priced for the region) and
  one per type and availability zone (``"g5.xlarge@us-east-1a"``) that can also be rented as a
  Spot Instance: ``min_bid_usd_per_hour`` is that zone's current spot price. As for Vast and
  RunPod, ``usd_per_hour`` is what the offer costs rented without a bid (on-demand, in that
  zone) and a bid is what makes a launch interruptible: the planner passes one exactly when it
  plans the machine as interruptible (``logic/dispatch.py``), so a machine it counts as
  uninterruptible never is one. Prices are for the whole instance; GPUs are counted in
  ``gpu_count`` and the memory is per GPU, as Vast's offers give them.
- Spot prices: ``DescribeSpotPriceHistory`` with ``StartTime`` now answers the price in effect
  for each type and zone (API reference, ``DescribeSpotPriceHistory``; dstackai/gpuhunt's AWS
  provider asks the same way, ``providers/aws.py`` ``_add_spots_worker``); the newest row per
  (type, zone) is taken.
- On-demand prices: the Price List API (``GetProducts``, ``AmazonEC2``, Linux, shared tenancy,
  no pre-installed software, ``capacitystatus`` Used; served from ``us-east-1``), each answer a
  JSON string whose ``terms.OnDemand.*.priceDimensions.*.pricePerUnit.USD`` is the hourly
  price. Read once per provider; where it cannot be read (no ``pricing:GetProducts`` grant,
  moto's "Not yet implemented") the shipped table ``data/ec2_on_demand_prices.json`` stands in,
  with its date. A type priced nowhere is not offered at all (its spot offers included: their
  ``usd_per_hour`` is the on-demand price).
- GPUs: ``DescribeInstanceTypes`` ``GpuInfo`` (``Gpus[].Name/Count/MemoryInfo.SizeInMiB``),
  read once per provider. Only NVIDIA GPUs on x86_64 are offered (the images are CUDA, amd64).
  Names go through the catalogue, with the memory, so a p4de's "A100" is the 80 GB card. The
  memory is what EC2 reports, to the nearest GiB: 22888 MiB (22) for the A10G and the L4, sold
  as 24 GB (gpuhunt calls the L4 figure a misreport and says 24); 22 is the cautious side for
  the batch sizes the planner fits in it.
- vCPU quotas (Service Quotas, ``ec2``): L-DB2E81BA "Running On-Demand G and VT instances",
  L-3819A6DF "All G and VT Spot Instance Requests", L-417A185B "Running On-Demand P instances",
  L-7212CCBC "All P Spot Instance Requests", counted in vCPUs; dstack's AWS backend reads the
  same on-demand codes (``core/backends/aws/compute.py`` ``_ON_DEMAND_QUOTA_CODES``). Our live
  instances' vCPUs are taken off and offers that no longer fit are left out. A quota that cannot
  be read (moto: NoSuchResourceException; no grant: AccessDeniedException) filters nothing.
- Launch: ``RunInstances`` (one instance), terminating on shutdown, IMDSv2 with a hop limit of
  1 so containers cannot reach the instance metadata (user data included), our tags on the
  instance and its volume, and with a bid ``InstanceMarketOptions`` spot, one-time, terminate
  on interruption, ``MaxPrice`` the bid (dstack sends the same spot options,
  ``core/backends/aws/resources.py`` ``create_instances_struct``). botocore fills
  ``ClientToken`` (an idempotency token in the model) and keeps it across its own retries, so a
  retried launch cannot start a second instance.
- The machine: user data (a bash script cloud-init runs once as root) writes a root-only env
  file with ``COMMANDLINE_ARGS=--api-auth user:password`` and the worker's ``WORKER_*``
  settings, then ``docker run --env-file`` starts the image with the API-only flags, which the
  worker image and automatic1111 images both take (``worker/README.md``). The credential is in
  that file only, never on a command line. If the container cannot start, the instance shuts
  itself down and so terminates.
- Status: ``DescribeInstances``. A Spot Instance's interruption notice comes two minutes ahead
  (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/spot-instance-termination-notices.html);
  through the API it shows as the Spot request's status ``marked-for-termination`` while the
  instance still runs, then ``instance-terminated-by-price`` / ``-no-capacity`` / ... (request
  status codes: https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/spot-request-status.html).
  Both read EXITED, as does an instance that ended for a ``Server.*`` reason or shut itself
  down (``StateReason``, API reference: ``Server.SpotInstanceTermination`` is an interruption).
- Eventual consistency: right after RunInstances, DescribeInstances and TerminateInstances may
  answer InvalidInstanceID.NotFound for the new id, and a terminate answered so terminated
  nothing; both are asked again after 1, 2 and 4 s before the instance counts as gone.
- Errors: ``ClientError`` codes (EC2 API reference, "Error codes") map to the typed errors
  below; a connection that fails is ProviderDown. Nothing we raise or log carries the
  credential or the user data.
"""

from __future__ import annotations

import json
import logging
import re
import shlex
import string
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from importlib import resources
from typing import Any

from subconscious.catalogue import canonical
from subconscious.errors import (
    MachineGone,
    OfferGone,
    OutOfCapacity,
    ProviderAuthError,
    ProviderDown,
    ProviderError,
    ProviderRateLimited,
)
from subconscious.market.base import Provider, worker_environment
from subconscious.models import Machine, MachineStatus, Offer
from subconscious.models.labels import LABEL_PREFIX

logger = logging.getLogger(__name__)

RENDER_PORT = 7860
# Launch to first image: the instance boots (about 40 s from RunInstances, Depot's measurement,
# https://depot.dev/blog/faster-ec2-boot-time), its root volume loads lazily from the AMI's
# snapshot while the image (several GB) is pulled, then the server starts (~52 s measured in a
# container, up to 284 s seen for SD.Next, /work/shared/PROVIDERS.md) and loads its checkpoint.
# The planner adds this to every quote, so it errs long.
STARTUP_S = 420
DEFAULT_INSTANCE_TYPES: tuple[str, ...] = (
    "g4dn.xlarge",  # T4 16 GB
    "g5.xlarge",  # A10G 24 GB
    "g6.xlarge",  # L4 24 GB
    "g6e.xlarge",  # L40S 48 GB
    "p5.4xlarge",  # one H100 80 GB
)
# Whole-instance multi-GPU types (p4d.24xlarge, p5.48xlarge) are offered when listed, with their
# gpu_count, but not by default: one render server uses one GPU, while the planner multiplies a
# machine's speed by gpu_count (planner/costs.py).
LABEL_TAG = "subc:label"
OFFER_TAG = "subc:offer"  # the offer a machine was launched from, read back by status()
PRICE_TABLE = "ec2_on_demand_prices.json"
PRICING_REGION = "us-east-1"  # a Price List endpoint (also eu-central-1, ap-south-1)
API_FLAGS = ("--api", "--nowebui", "--listen", "--port", str(RENDER_PORT))
CONTAINER = "subc-worker"
ENV_DIR = "/etc/subc"
ENV_FILE = f"{ENV_DIR}/worker.env"
_HEREDOC = "SUBC_ENV_END"
# Waits for the Docker daemon while cloud-init runs the script (2 s apart, 3 minutes at most).
DOCKER_WAIT_TRIES = 90

# Quota codes per (family class, spot?): values are vCPUs.
QUOTA_CODES: dict[tuple[str, bool], str] = {
    ("G", False): "L-DB2E81BA",  # Running On-Demand G and VT instances
    ("G", True): "L-3819A6DF",  # All G and VT Spot Instance Requests
    ("P", False): "L-417A185B",  # Running On-Demand P instances
    ("P", True): "L-7212CCBC",  # All P Spot Instance Requests
}
_FAMILY_CLASS = {"g": "G", "vt": "G", "p": "P"}

_LIVE_STATES = ("pending", "running", "stopping", "stopped", "shutting-down")
_COUNTED_STATES = frozenset({"pending", "running", "stopping", "shutting-down"})  # for quotas

_CAPACITY = frozenset(
    {
        "InsufficientInstanceCapacity",
        "SpotMaxPriceTooLow",
        "MaxSpotInstanceCountExceeded",
        "InstanceLimitExceeded",
        "VcpuLimitExceeded",
        "InsufficientFreeAddressesInSubnet",
        "Unsupported",
    }
)
_AUTH = frozenset(
    {
        "AuthFailure",
        "UnauthorizedOperation",
        "InvalidClientTokenId",
        "OptInRequired",
        # the same refusal in the JSON services (Pricing, Service Quotas) and from STS
        "AccessDenied",
        "AccessDeniedException",
        "UnrecognizedClientException",
        "ExpiredToken",
        "RequestExpired",
    }
)
_RATE = frozenset(
    {"RequestLimitExceeded", "Throttling", "ThrottlingException", "TooManyRequestsException"}
)
_DOWN = frozenset(
    {
        "InternalError",
        "ServiceUnavailable",
        "Unavailable",
        "InternalFailure",
        "ServiceUnavailableException",
    }
)
_GONE = frozenset({"InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed"})

# The Spot request status codes of an interruption (notice or done). instance-terminated-by-user
# is a terminate of ours; the stop and hibernate codes cannot happen (we terminate).
_INTERRUPTED_PREFIXES = ("marked-for-", "instance-terminated-", "instance-stopped-")
_NOT_AN_INTERRUPTION = frozenset({"instance-terminated-by-user"})

# automatic1111 splits --api-auth on "," and ":", and its launcher splits COMMANDLINE_ARGS like
# a shell: a credential outside this alphabet would change meaning (or break the env file).
_API_AUTH = re.compile(r"[A-Za-z0-9._~-]+:[A-Za-z0-9._~-]+")
_INSTANCE_ID = re.compile(r"i-[0-9a-f]{8,17}")
_INSTANCE_TYPE = re.compile(r"[a-z][a-z0-9-]*\.[a-z0-9-]+")
_TAG_VALUE = re.compile(r"[A-Za-z0-9._:/=+@ -]{1,256}")
_MESSAGE_LIMIT = 200
# Waits (s) while a new instance's id is unknown to the endpoint asked (7 s in all).
PROPAGATION_WAITS_S = (1.0, 2.0, 4.0)


class EC2Provider(Provider):
    name = "ec2"
    # "running" is the instance: the image is pulled and started after it, which the offer's
    # start-up estimate covers (logic/render_run.py adds it to the serve deadline)
    running_before_pull = True

    def __init__(
        self,
        *,
        region: str,
        image_id: str,
        worker_image: str,
        security_group_id: str,
        subnets: Mapping[str, str] | None = None,
        instance_types: Sequence[str] = DEFAULT_INSTANCE_TYPES,
        url_template: str = "http://{public_ip}:7860",
        on_demand_prices: Mapping[str, Decimal] | None = None,
        ec2_client: Any = None,
        quotas_client: Any = None,
        pricing_client: Any = None,
        clock: Callable[[], datetime] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """``image_id``: an AMI with Docker and the NVIDIA container toolkit (or its
        ``resolve:ssm:`` parameter). ``security_group_id``: a group that opens the render port
        only. ``subnets``: zone → subnet of our VPC (each must give instances a public IPv4
        address); only those zones are offered, and an on-demand launch takes the first zone's
        subnet; none: the default VPC, every zone. ``url_template``: the machine's address from
        ``public_ip``, ``public_dns`` and ``instance_id``. ``on_demand_prices``: instance type
        → USD per hour, instead of the Price List API. Clients are built on first use.
        ``sleep``: the waits while a new instance's id propagates (tests pass a fake)."""
        if not region or not image_id or not worker_image or not security_group_id:
            raise ValueError("ec2: region, image_id, worker_image and security_group_id are needed")
        types = tuple(dict.fromkeys(instance_types))
        bad = [t for t in types if not _INSTANCE_TYPE.fullmatch(t)]
        if not types or bad:
            raise ValueError(f"ec2: not instance types: {bad or 'none given'}")
        self._url_fields = _template_fields(url_template)
        self._region = region
        self._image_id = image_id
        self._worker_image = worker_image
        self._security_group_id = security_group_id
        self._subnets = dict(sorted((subnets or {}).items()))
        self._instance_types = types
        self._url_template = url_template
        self._price_override = dict(on_demand_prices) if on_demand_prices is not None else None
        self._ec2_client = ec2_client
        self._quotas_client = quotas_client
        self._pricing_client = pricing_client
        self._clock = clock or (lambda: datetime.now(UTC))
        self._sleep = sleep
        # Read once for the provider's life (a cold start reads them again).
        self._type_info: dict[str, dict[str, Any]] = {}
        self._unknown_types: set[str] = set()
        self._prices: dict[str, Decimal] | None = None
        self._quotas: dict[tuple[str, bool], int | None] | None = None
        self._warned: set[str] = set()

    # --- offers ---
    def list_offers(self) -> list[Offer]:
        info = self._types(self._instance_types)
        gpus = {t: found for t in self._instance_types if (found := self._gpu(t, info.get(t)))}
        if not gpus:
            return []
        prices = self._on_demand_prices()
        spot = self._spot_prices(list(gpus))
        room = self._room()
        offers: list[Offer] = []
        for instance_type, (gpu_name, count, memory) in gpus.items():
            price = prices.get(instance_type)
            if price is None:
                self._warn_once(
                    f"price:{instance_type}",
                    "ec2: no on-demand price for %s in %s: not offered",
                    instance_type,
                    self._region,
                )
                continue
            vcpus = _vcpus(info[instance_type])
            common: dict[str, Any] = {
                "provider": self.name,
                "gpu": gpu_name,
                "gpu_count": count,
                "gpu_memory_gb": memory,
                "usd_per_hour": price,
                "startup_s": STARTUP_S,
            }
            if _fits(room, instance_type, spot=False, vcpus=vcpus):
                offers.append(Offer(offer_id=instance_type, location=self._region, **common))
            if not _fits(room, instance_type, spot=True, vcpus=vcpus):
                continue
            for (spot_type, az), spot_price in sorted(spot.items()):
                if spot_type != instance_type or (self._subnets and az not in self._subnets):
                    continue
                offers.append(
                    Offer(
                        offer_id=f"{instance_type}@{az}",
                        interruptible=True,
                        min_bid_usd_per_hour=spot_price,
                        location=az,
                        **common,
                    )
                )
        return offers

    # --- machines ---
    def launch(
        self,
        offer: Offer,
        *,
        label: str,
        api_auth: str,
        bid_usd_per_hour: Decimal | None = None,
        worker_env: Mapping[str, str] | None = None,
    ) -> Machine:
        if not label.startswith(LABEL_PREFIX) or not _TAG_VALUE.fullmatch(label):
            # the reaper finds our machines by the prefix; a tag value has its own alphabet
            raise ValueError(f"label must start with {LABEL_PREFIX!r} and fit in a tag")
        if not _API_AUTH.fullmatch(api_auth):
            raise ValueError("api_auth must be user:password in [A-Za-z0-9._~-]")
        env = worker_environment(worker_env)
        instance_type, _, az = offer.offer_id.partition("@")
        if instance_type not in self._instance_types:
            raise OfferGone(f"ec2: no offer {offer.offer_id!r}")
        if bid_usd_per_hour is not None and (
            not bid_usd_per_hour.is_finite() or bid_usd_per_hour <= 0
        ):
            raise ValueError("ec2: a bid must be a positive price")
        request: dict[str, Any] = {
            "MinCount": 1,
            "MaxCount": 1,
            "InstanceType": instance_type,
            "ImageId": self._image_id,
            "SecurityGroupIds": [self._security_group_id],
            "InstanceInitiatedShutdownBehavior": "terminate",
            # IMDSv2 only, one hop: a container (one hop further) cannot read the instance's
            # metadata, the user data with the credential included
            "MetadataOptions": {
                "HttpTokens": "required",
                "HttpPutResponseHopLimit": 1,
                "HttpEndpoint": "enabled",
            },
            "TagSpecifications": [
                {"ResourceType": kind, "Tags": _tags(label, offer.offer_id)}
                for kind in ("instance", "volume")
            ],
            "UserData": self._user_data(api_auth, env),
        }
        if self._subnets:
            if az and az not in self._subnets:
                raise OfferGone(f"ec2: {offer.offer_id} is in no zone of our subnets")
            # the subnet decides the zone: the offer's, or for an on-demand offer the first
            request["SubnetId"] = self._subnets[az] if az else next(iter(self._subnets.values()))
        elif az:
            request["Placement"] = {"AvailabilityZone": az}
        if bid_usd_per_hour is not None:
            request["InstanceMarketOptions"] = {
                "MarketType": "spot",
                "SpotOptions": {
                    "SpotInstanceType": "one-time",
                    "InstanceInterruptionBehavior": "terminate",
                    "MaxPrice": f"{bid_usd_per_hour:f}",  # plain digits, never "1E+1"
                },
            }
        secrets = (api_auth, api_auth.partition(":")[2])
        with _aws("run_instances", secrets=secrets):
            answer = self._ec2().run_instances(**request)
        instances = answer.get("Instances") if isinstance(answer, dict) else None
        instance_id = instances[0].get("InstanceId") if instances else None
        if not isinstance(instance_id, str) or not instance_id:
            # an instance may exist: the run fails and Teardown gives back its label
            raise ProviderError("ec2: run_instances answered without an instance id")
        return Machine(
            provider=self.name,
            machine_id=instance_id,
            offer_id=offer.offer_id,
            label=label,
            status=MachineStatus.STARTING,
            url=None,
            usd_per_hour=bid_usd_per_hour if bid_usd_per_hour is not None else offer.usd_per_hour,
        )

    def status(self, machine_id: str) -> Machine:
        if not _INSTANCE_ID.fullmatch(machine_id):  # no such instance can exist
            raise MachineGone(f"ec2: no instance {machine_id!r}")
        answer = self._propagated(
            "describe_instances", lambda: self._ec2().describe_instances(InstanceIds=[machine_id])
        )
        instances = _instances(answer)
        if not instances:
            raise MachineGone(f"ec2: instance {machine_id} is gone")
        return self._machine(instances[0], self._spot_requests(instances))

    def terminate(self, machine_id: str) -> None:
        if not _INSTANCE_ID.fullmatch(machine_id):
            return  # no such instance can exist
        try:
            self._propagated(
                "terminate_instances",
                lambda: self._ec2().terminate_instances(InstanceIds=[machine_id]),
            )
        except MachineGone:  # given back already (and forgotten by EC2)
            return

    def machines(self, label: str | None = None) -> list[Machine]:
        instances = [i for i in self._our_instances(label) if _is_ours(i, label)]
        spot = self._spot_requests(instances)
        return [self._machine(instance, spot) for instance in instances]

    def _propagated(self, action: str, call: Callable[[], Any]) -> Any:
        """``call``, asked again while EC2 answers InvalidInstanceID.NotFound: right after
        RunInstances the id may not have reached every endpoint yet, and a TerminateInstances
        answered NotFound then has not terminated anything ("Eventual consistency in the
        Amazon EC2 API", https://docs.aws.amazon.com/ec2/latest/devguide/eventual-consistency.html:
        describe again with backoff). Only after the last wait is the instance gone."""
        for wait in (*PROPAGATION_WAITS_S, None):
            try:
                with _aws(action):
                    return call()
            except MachineGone as error:
                if wait is None or _code(error.__cause__) != "InvalidInstanceID.NotFound":
                    raise
                self._sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    # --- clients ---
    def _ec2(self) -> Any:
        if self._ec2_client is None:
            self._ec2_client = _client("ec2", self._region)
        return self._ec2_client

    def _quotas_api(self) -> Any:
        if self._quotas_client is None:
            self._quotas_client = _client("service-quotas", self._region)
        return self._quotas_client

    def _pricing(self) -> Any:
        if self._pricing_client is None:
            self._pricing_client = _client("pricing", PRICING_REGION)
        return self._pricing_client

    # --- instance types ---
    def _types(self, wanted: Sequence[str]) -> dict[str, dict[str, Any]]:
        """``DescribeInstanceTypes`` for these types, each read once. A filter rather than
        ``InstanceTypes``: one type this region lacks must not fail the others."""
        missing = [t for t in wanted if t not in self._type_info and t not in self._unknown_types]
        if missing:
            with _aws("describe_instance_types"):
                pages = (
                    self._ec2()
                    .get_paginator("describe_instance_types")
                    .paginate(Filters=[{"Name": "instance-type", "Values": missing}])
                )
                for page in pages:
                    for row in page.get("InstanceTypes") or []:
                        self._type_info[str(row.get("InstanceType"))] = row
            for instance_type in missing:
                if instance_type not in self._type_info:
                    self._unknown_types.add(instance_type)
                    logger.warning("ec2: %s is not offered in %s", instance_type, self._region)
        return {t: self._type_info[t] for t in wanted if t in self._type_info}

    def _gpu(self, instance_type: str, info: dict[str, Any] | None) -> tuple[str, int, int] | None:
        """(catalogue name, GPUs, GB per GPU), or None for a type we cannot render on."""
        if info is None:
            return None
        found = _gpu_of(info)
        if found is None:
            self._warn_once(
                f"gpu:{instance_type}",
                "ec2: %s has no NVIDIA GPU on x86_64: not offered",
                instance_type,
            )
        return found

    # --- prices ---
    def _on_demand_prices(self) -> dict[str, Decimal]:
        if self._prices is None:
            self._prices = self._read_on_demand_prices()
        return self._prices

    def _read_on_demand_prices(self) -> dict[str, Decimal]:
        if self._price_override is not None:
            return self._price_override
        from botocore.exceptions import BotoCoreError, ClientError

        prices: dict[str, Decimal] = {}
        failure: str | None = None
        for instance_type in self._instance_types:
            try:
                price = self._listed_price(instance_type)
            except (BotoCoreError, ClientError, ValueError, KeyError, TypeError) as error:
                failure = _error_code(error)
                break  # one refusal says it for every type: no more calls
            if price is not None:
                prices[instance_type] = price
        missing = [t for t in self._instance_types if t not in prices]
        if not missing:
            return prices
        table, as_of = _table(self._region)
        if failure is not None:
            logger.warning(
                "ec2: the Price List API did not answer (%s); on-demand prices from the shipped "
                "table of %s",
                failure,
                as_of,
            )
        else:
            logger.warning(
                "ec2: the Price List API has no price for %s; the shipped table of %s is used",
                ", ".join(missing),
                as_of,
            )
        prices.update({t: table[t] for t in missing if t in table})
        return prices

    def _listed_price(self, instance_type: str) -> Decimal | None:
        filters = {
            "instanceType": instance_type,
            "regionCode": self._region,
            "operatingSystem": "Linux",
            "tenancy": "Shared",
            "preInstalledSw": "NA",
            "capacitystatus": "Used",
        }
        items: list[str] = []
        pages = (
            self._pricing()
            .get_paginator("get_products")
            .paginate(
                ServiceCode="AmazonEC2",
                Filters=[
                    {"Type": "TERM_MATCH", "Field": k, "Value": v} for k, v in filters.items()
                ],
            )
        )
        for page in pages:
            items += page.get("PriceList") or []
        return price_list_price(items)

    def _spot_prices(self, types: Sequence[str]) -> dict[tuple[str, str], Decimal]:
        """The price in effect now for each (type, zone)."""
        latest: dict[tuple[str, str], tuple[datetime, Decimal]] = {}
        with _aws("describe_spot_price_history"):
            pages = (
                self._ec2()
                .get_paginator("describe_spot_price_history")
                .paginate(
                    InstanceTypes=list(types),
                    ProductDescriptions=["Linux/UNIX"],
                    StartTime=self._clock(),
                )
            )
            for page in pages:
                for row in page.get("SpotPriceHistory") or []:
                    parsed = _spot_row(row)
                    if parsed is None:
                        continue
                    key, when, price = parsed
                    if key not in latest or when > latest[key][0]:
                        latest[key] = (when, price)
        return {key: price for key, (_, price) in latest.items()}

    def _price_of(self, instance_type: str) -> Decimal | None:
        """An on-demand price without a call: what was read, or the override, or the table."""
        known = self._prices if self._prices is not None else self._price_override
        if known is not None and instance_type in known:
            return known[instance_type]
        return _table(self._region)[0].get(instance_type)

    # --- quotas ---
    def _room(self) -> dict[tuple[str, bool], int | None]:
        """vCPUs still free per (family class, spot?); None where the quota is unknown."""
        quotas = self._read_quotas()
        if all(value is None for value in quotas.values()):
            return quotas
        used: dict[tuple[str, bool], int] = {}
        instances = [
            i
            for i in self._our_instances(None)
            if (i.get("State") or {}).get("Name") in _COUNTED_STATES
        ]
        info = self._types(sorted({str(i.get("InstanceType")) for i in instances}))
        for instance in instances:
            family = _family_class(str(instance.get("InstanceType")))
            spot = instance.get("InstanceLifecycle") == "spot"
            if family is not None:
                vcpus = _vcpus(info.get(str(instance.get("InstanceType"))) or {})
                used[(family, spot)] = used.get((family, spot), 0) + vcpus
        return {
            key: None if quota is None else quota - used.get(key, 0)
            for key, quota in quotas.items()
        }

    def _read_quotas(self) -> dict[tuple[str, bool], int | None]:
        if self._quotas is not None:
            return self._quotas
        from botocore.exceptions import BotoCoreError, ClientError

        families = {_family_class(t) for t in self._instance_types} - {None}
        quotas: dict[tuple[str, bool], int | None] = {}
        for (family, spot), code in QUOTA_CODES.items():
            if family not in families:
                continue
            try:
                answer = self._quotas_api().get_service_quota(ServiceCode="ec2", QuotaCode=code)
                quotas[(family, spot)] = int(Decimal(str(answer["Quota"]["Value"])))
            except (BotoCoreError, ClientError, KeyError, TypeError, ArithmeticError) as error:
                quotas[(family, spot)] = None
                self._warn_once(
                    "quotas",
                    "ec2: vCPU quota %s could not be read (%s): offers are not filtered by it",
                    code,
                    _error_code(error),
                )
        self._quotas = quotas
        return quotas

    # --- instances ---
    def _our_instances(self, label: str | None) -> list[dict[str, Any]]:
        tag = (
            {"Name": "tag-key", "Values": [LABEL_TAG]}
            if label is None
            else {"Name": f"tag:{LABEL_TAG}", "Values": [label]}
        )
        filters = [tag, {"Name": "instance-state-name", "Values": list(_LIVE_STATES)}]
        found: list[dict[str, Any]] = []
        with _aws("describe_instances"):
            for page in self._ec2().get_paginator("describe_instances").paginate(Filters=filters):
                found += _instances(page)
        return found

    def _spot_requests(self, instances: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """The Spot requests behind these instances, by id (empty where they cannot be read:
        the instance's own state still tells an interruption once it is under way)."""
        ids = sorted(
            {
                str(i["SpotInstanceRequestId"])
                for i in instances
                if i.get("InstanceLifecycle") == "spot" and i.get("SpotInstanceRequestId")
            }
        )
        if not ids:
            return {}
        from botocore.exceptions import BotoCoreError, ClientError

        found: dict[str, dict[str, Any]] = {}
        try:
            pages = (
                self._ec2()
                .get_paginator("describe_spot_instance_requests")
                .paginate(SpotInstanceRequestIds=ids)
            )
            for page in pages:
                for request in page.get("SpotInstanceRequests") or []:
                    found[str(request.get("SpotInstanceRequestId"))] = request
        except (BotoCoreError, ClientError) as error:
            self._warn_once(
                "spot-requests",
                "ec2: Spot requests could not be read (%s): interruption notices are missed",
                _error_code(error),
            )
        return found

    def _machine(self, instance: dict[str, Any], spot: Mapping[str, dict[str, Any]]) -> Machine:
        instance_id = str(instance.get("InstanceId") or "")
        tags = _tag_map(instance)
        request = spot.get(str(instance.get("SpotInstanceRequestId") or ""))
        status = _status(instance, request)
        url = self._url(instance) if status is MachineStatus.RUNNING else None
        if status is MachineStatus.RUNNING and url is None:
            status = MachineStatus.STARTING  # no public address yet
        return Machine(
            provider=self.name,
            machine_id=instance_id,
            offer_id=tags.get(OFFER_TAG, str(instance.get("InstanceType") or "")),
            label=tags.get(LABEL_TAG, ""),
            status=status,
            url=url,
            usd_per_hour=self._paid(instance, request),
        )

    def _paid(self, instance: dict[str, Any], request: dict[str, Any] | None) -> Decimal:
        """What the instance costs per hour, as far as EC2 tells: a Spot Instance's maximum
        price (our bid), else the on-demand price. Informational (spend is costed from the
        run's offer and bid), so an unknown one reads 0 rather than hide the machine."""
        if request is not None:
            bid = _price(request.get("SpotPrice"))
            if bid is not None:
                return bid
        return self._price_of(str(instance.get("InstanceType") or "")) or Decimal(0)

    def _url(self, instance: dict[str, Any]) -> str | None:
        fields = {
            "public_ip": str(instance.get("PublicIpAddress") or ""),
            "public_dns": str(instance.get("PublicDnsName") or ""),
            "instance_id": str(instance.get("InstanceId") or ""),
        }
        if any(not fields[name] for name in self._url_fields):
            return None
        return self._url_template.format(**fields)

    def _user_data(self, api_auth: str, worker_env: Mapping[str, str]) -> str:
        """The first-boot script. The env file is written from a quoted here-document (no
        expansion; every line was checked to be ``NAME=plain value``), readable by root alone,
        and handed to ``docker run --env-file``: the credential is on no command line."""
        env = {"COMMANDLINE_ARGS": f"--api-auth {shlex.quote(api_auth)}", **worker_env}
        run = shlex.join(
            [
                "docker",
                "run",
                "-d",
                "--name",
                CONTAINER,
                "--restart",
                "unless-stopped",
                "--gpus",
                "all",
                "-p",
                f"{RENDER_PORT}:{RENDER_PORT}",
                "--env-file",
                ENV_FILE,
                self._worker_image,
                *API_FLAGS,
            ]
        )
        return "\n".join(
            [
                "#!/bin/bash",
                "# subconscious render machine (layers/subconscious/market/ec2.py)",
                "set -u",
                "umask 077",
                f"mkdir -p -m 700 {ENV_DIR}",
                f"cat > {ENV_FILE} <<'{_HEREDOC}'",
                *(f"{key}={value}" for key, value in env.items()),
                _HEREDOC,
                f"chmod 600 {ENV_FILE}",
                f"for _ in $(seq {DOCKER_WAIT_TRIES}); do"
                " docker info >/dev/null 2>&1 && break; sleep 2; done",
                # a container that cannot start (image pull refused, no GPU) ends the instance:
                # it terminates on shutdown, and the run sees it gone at once
                f"{run} || shutdown -h now",
                "",
            ]
        )

    def _warn_once(self, key: str, message: str, *args: object) -> None:
        if key not in self._warned:
            self._warned.add(key)
            logger.warning(message, *args)


# --- the Price List ---
def price_list_price(items: Sequence[Any]) -> Decimal | None:
    """The hourly on-demand USD price in a ``GetProducts`` answer's ``PriceList`` (JSON
    strings), or None if it has none. Several products with different prices (the filters
    should leave one) give the highest: a quote must not count on the cheaper one."""
    found: set[Decimal] = set()
    for item in items:
        product = json.loads(item) if isinstance(item, str) else item
        for term in ((product.get("terms") or {}).get("OnDemand") or {}).values():
            for dimension in (term.get("priceDimensions") or {}).values():
                if str(dimension.get("unit", "Hrs")) != "Hrs":
                    continue
                price = _price((dimension.get("pricePerUnit") or {}).get("USD"))
                if price is not None and price > 0:
                    found.add(price)
    if len(found) > 1:
        logger.warning("ec2: the Price List gave several prices %s; the highest is used", found)
    return max(found) if found else None


def shipped_on_demand_prices(region: str) -> dict[str, Decimal]:
    """The shipped table's on-demand prices for ``region`` (where the Price List API is not
    to be asked: the local stack's moto has none)."""
    return _table(region)[0]


def _table(region: str) -> tuple[dict[str, Decimal], str]:
    """The shipped prices for ``region`` (empty if it has none) and the table's date."""
    data = json.loads((resources.files("subconscious") / "data" / PRICE_TABLE).read_text())
    rows = (data.get("regions") or {}).get(region) or {}
    prices = {t: p for t, row in rows.items() if (p := _price(row.get("usd_per_hour")))}
    return prices, str(data.get("as_of") or "an unknown date")


# --- pure helpers ---
def _client(service: str, region: str) -> Any:
    import boto3
    from botocore.config import Config

    # standard retries: throttling and transient errors, with backoff; RunInstances keeps its
    # ClientToken across them
    config = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5)
    return boto3.client(service, region_name=region, config=config)


@contextmanager
def _aws(action: str, *, secrets: Sequence[str] = ()) -> Iterator[None]:
    """botocore's errors as ours. With ``secrets`` the original error is not chained either,
    so no traceback can show what AWS echoed."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except (BotoCoreError, ClientError) as error:
        typed = _typed(error, action, secrets)
        if secrets:
            raise typed from None
        raise typed from error


def _typed(error: Exception, action: str, secrets: Sequence[str]) -> ProviderError:
    from botocore.exceptions import ClientError, HTTPClientError, NoCredentialsError
    from botocore.exceptions import ConnectionError as ConnectionFailed

    if isinstance(error, ClientError):
        info = error.response.get("Error") or {}
        code = str(info.get("Code") or "")
        message = _redacted(str(info.get("Message") or ""), secrets)
        status = (error.response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        text = f"ec2: {action} refused ({code or status}: {message})"
        if code in _CAPACITY:
            return OutOfCapacity(text)
        if code in _GONE:
            return MachineGone(text)
        if code in _AUTH:
            return ProviderAuthError(text)
        if code in _RATE:
            return ProviderRateLimited(text)
        if code in _DOWN or (isinstance(status, int) and status >= 500):
            return ProviderDown(text)
        return ProviderError(text)
    text = f"ec2: {action} failed ({type(error).__name__})"
    if isinstance(error, ConnectionFailed | HTTPClientError):  # connect, read, DNS, TLS
        return ProviderDown(text)
    if isinstance(error, NoCredentialsError):
        return ProviderAuthError(text)
    return ProviderError(text)


def _code(error: BaseException | None) -> str:
    """The AWS error code of a botocore ClientError ("" for anything else)."""
    response = getattr(error, "response", None)
    code = (response.get("Error") or {}).get("Code") if isinstance(response, dict) else None
    return str(code or "")


def _error_code(error: Exception) -> str:
    """A short name for a warning: the AWS error code, or the exception's class."""
    return _code(error) or type(error).__name__


def _redacted(text: str, secrets: Sequence[str]) -> str:
    for secret in sorted(filter(None, secrets), key=len, reverse=True):
        text = text.replace(secret, "***")
    return " ".join(text.split())[:_MESSAGE_LIMIT]


def _template_fields(template: str) -> set[str]:
    fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    unknown = fields - {"public_ip", "public_dns", "instance_id"}
    if unknown or not fields:
        raise ValueError(
            f"ec2: url_template fields must be public_ip, public_dns, instance_id: "
            f"{sorted(unknown) or 'none given'}"
        )
    return fields


def _price(value: Any) -> Decimal | None:
    """A price string (AWS sends prices as strings) as an exact Decimal; None if absent or not
    a price."""
    if value is None:
        return None
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return None
    return amount if amount.is_finite() and amount >= 0 else None


def _spot_row(row: dict[str, Any]) -> tuple[tuple[str, str], datetime, Decimal] | None:
    instance_type, az = row.get("InstanceType"), row.get("AvailabilityZone")
    when, price = row.get("Timestamp"), _price(row.get("SpotPrice"))
    # "Linux/UNIX", or "Linux/UNIX (Amazon VPC)" as older accounts and moto name it
    if not str(row.get("ProductDescription") or "").startswith("Linux/UNIX"):
        return None
    if not instance_type or not az or not isinstance(when, datetime) or not price:
        return None
    return (str(instance_type), str(az)), when, price


def _gpu_of(info: dict[str, Any]) -> tuple[str, int, int] | None:
    gpus = (info.get("GpuInfo") or {}).get("Gpus") or []
    architectures = (info.get("ProcessorInfo") or {}).get("SupportedArchitectures") or []
    if not gpus or "x86_64" not in architectures:
        return None
    first = gpus[0]
    if str(first.get("Manufacturer") or "").upper() != "NVIDIA":
        return None
    count = sum(int(g.get("Count") or 0) for g in gpus)
    mib = int((first.get("MemoryInfo") or {}).get("SizeInMiB") or 0)
    if count < 1 or mib <= 0:
        return None
    memory = (mib + 512) // 1024  # to the nearest GiB: 22888 MiB (an A10G as EC2 reports it) → 22
    return canonical(f"{first.get('Name') or 'GPU'} {memory}GB"), count, memory


def _vcpus(info: dict[str, Any]) -> int:
    return int((info.get("VCpuInfo") or {}).get("DefaultVCpus") or 0)


def _family_class(instance_type: str) -> str | None:
    """The quota class of an instance type: "G" (G and VT), "P", or None (not counted here)."""
    match = re.match(r"([a-z]+)\d", instance_type)
    return _FAMILY_CLASS.get(match.group(1)) if match else None


def _fits(
    room: Mapping[tuple[str, bool], int | None], instance_type: str, *, spot: bool, vcpus: int
) -> bool:
    family = _family_class(instance_type)
    free = room.get((family, spot)) if family is not None else None
    return free is None or vcpus <= free


def _tags(label: str, offer_id: str) -> list[dict[str, str]]:
    return [
        {"Key": LABEL_TAG, "Value": label},
        {"Key": "Name", "Value": label},
        {"Key": OFFER_TAG, "Value": offer_id},
    ]


def _tag_map(instance: dict[str, Any]) -> dict[str, str]:
    return {
        str(tag.get("Key")): str(tag.get("Value") or "")
        for tag in instance.get("Tags") or []
        if isinstance(tag, dict)
    }


def _is_ours(instance: dict[str, Any], label: str | None) -> bool:
    found = _tag_map(instance).get(LABEL_TAG, "")
    return found == label if label is not None else found.startswith(LABEL_PREFIX)


def _instances(answer: Any) -> list[dict[str, Any]]:
    reservations = answer.get("Reservations") if isinstance(answer, dict) else None
    return [
        instance
        for reservation in reservations or []
        for instance in reservation.get("Instances") or []
        if isinstance(instance, dict)
    ]


def _status(instance: dict[str, Any], request: dict[str, Any] | None) -> MachineStatus:
    state = str((instance.get("State") or {}).get("Name") or "")
    reason = str((instance.get("StateReason") or {}).get("Code") or "")
    if state in ("shutting-down", "terminated"):
        # ended by EC2 (a Spot interruption, a failed host) or by itself (the container could
        # not start): it died; anything else (our TerminateInstances) is a give-back
        died = reason.startswith("Server.") or reason == "Client.InstanceInitiatedShutdown"
        return MachineStatus.EXITED if died else MachineStatus.TERMINATED
    if state in ("stopping", "stopped"):
        return MachineStatus.EXITED  # we never stop ours
    if request is not None and _interrupted(request):
        return MachineStatus.EXITED  # the two-minute notice: it is going, whatever it reads
    if state == "running":
        return MachineStatus.RUNNING
    if state != "pending":
        logger.warning("ec2: unknown instance state %r", state)
    return MachineStatus.STARTING


def _interrupted(request: dict[str, Any]) -> bool:
    code = str((request.get("Status") or {}).get("Code") or "")
    return code.startswith(_INTERRUPTED_PREFIXES) and code not in _NOT_AN_INTERRUPTION
