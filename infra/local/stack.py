"""The embedded local stack: the whole system on one machine, no cloud account, no Docker.

- moto in server mode on 127.0.0.1 (DynamoDB, S3, SQS, Lambda, Step Functions) with Step
  Functions execution switched on;
- moto's Lambda runs our real handlers in-process (moto would otherwise need Docker);
- the resources come from ``infra/definitions.py`` and the state machine from the same ASL file
  the AWS stack deploys;
- an HTTP front on 127.0.0.1 turns requests into API Gateway (REST) events for the API handler;
- a timer fires the scheduled handlers (EventBridge's job in AWS);
- the emulated GPU market, whose machines are renderer processes speaking automatic1111's API,
  served through emulators of Vast.ai's, RunPod's and TensorDock's APIs to the real adapters,
  and behind moto's EC2 to the real EC2 adapter (``infra/local/ec2.py``);
  its interruptible machines are preempted as the spot traces say (``infra/local/spot.py``),
  replayed ``spot_tick_s`` wall seconds per trace tick from the calmest stretch of the traces.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from infra import definitions as d
from infra.local import moto_dynamodb
from infra.local import state as saved_state
from infra.local.ec2 import LOCAL_INSTANCE_TYPES, Ec2Bridge, patch_spot_prices, unpatch_spot_prices
from infra.local.ec2 import load_prices as load_ec2_prices
from infra.local.emulated_market import EmulatedMarket, MachineFaults, serve_market
from infra.local.emulators import serve_runpod, serve_tensordock, serve_vast
from infra.local.resources import create_resources
from infra.local.spot import SpotMarket

log = logging.getLogger("subconscious.local")
REGION = "us-east-1"
ACCOUNT = "123456789012"
MAX_FRONT_BODY = 10 * 1024 * 1024  # API Gateway's payload limit
MOTO_CONTROL_TIMEOUT_S = 60.0  # moto's own reset and config calls (see _configure_moto)
# One 600 s trace tick per 30 s: 20 times faster than the traces happened, so a spot pool's
# capacity (about 4 hours between drops on average) lasts minutes; the calm start every pool
# shares lasts 14 ticks (7 minutes) before the first preemption can come.
SPOT_TICK_S = 30.0
EMULATED_PROVIDERS = ("vast", "runpod", "tensordock")
# The providers the dispatch rents from: the three emulated marketplaces and EC2 on moto.
LOCAL_PROVIDERS = (*EMULATED_PROVIDERS, "ec2")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LambdaContext:
    """What powertools reads from a Lambda context."""

    function_name: str
    memory_limit_in_mb: int
    invoked_function_arn: str
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    log_group_name: str = "local"
    log_stream_name: str = "local"

    def get_remaining_time_in_millis(self) -> int:
        return 900_000


def context_for(function: d.Function) -> Any:
    """A Lambda context for ``function`` (duck-typed as powertools' ``LambdaContext``)."""
    return LambdaContext(
        function_name=function.name,
        memory_limit_in_mb=function.memory_mb,
        invoked_function_arn=f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function.name}",
    )


def resolve_handler(path: str) -> Callable[[dict[str, Any], Any], Any]:
    module, name = path.rsplit(".", 1)
    handler: Callable[[dict[str, Any], Any], Any] = getattr(importlib.import_module(module), name)
    return handler


_ORIGINAL_INVOKE: Any = None
_ORIGINAL_MODULES: Any = None


def _patch_moto() -> None:
    """Run invoked functions in this process instead of in Docker. The error name a Step
    Functions Catch sees is the exception's class name, as in AWS. And list moto's services
    once: its server does it for every request, a directory scan of 150 folders under the lock
    every request waits on (about 5 % of the founding example's time, measured)."""
    from moto import backends
    from moto.awslambda.models import LambdaFunction

    global _ORIGINAL_MODULES
    if _ORIGINAL_MODULES is None:
        _ORIGINAL_MODULES = backends.list_of_moto_modules
        modules = tuple(_ORIGINAL_MODULES())
        backends.list_of_moto_modules = lambda: iter(modules)

    global _ORIGINAL_INVOKE
    if _ORIGINAL_INVOKE is None:
        _ORIGINAL_INVOKE = LambdaFunction._invoke_lambda

    def invoke_in_process(self: Any, event: Any = None) -> tuple[str, bool, str]:
        function = next((f for f in d.FUNCTIONS if f.name == self.function_name), None)
        if function is None:
            return json.dumps({"errorType": "ResourceNotFound", "errorMessage": "?"}), True, ""
        try:
            result = resolve_handler(function.handler)(event or {}, context_for(function))
        except Exception as error:
            body = {"errorType": type(error).__name__, "errorMessage": str(error)[:1000]}
            return json.dumps(body), True, ""
        return json.dumps(result, default=str), False, ""

    LambdaFunction._invoke_lambda = invoke_in_process  # type: ignore[method-assign]
    moto_dynamodb.serialise()


def _unpatch_moto() -> None:
    """Leave moto as found: other code in this process (tests) may use it in-process."""
    from moto import backends
    from moto.awslambda.models import LambdaFunction
    from moto.core.config import default_user_config

    global _ORIGINAL_INVOKE, _ORIGINAL_MODULES
    if _ORIGINAL_MODULES is not None:
        backends.list_of_moto_modules = _ORIGINAL_MODULES
        _ORIGINAL_MODULES = None
    if _ORIGINAL_INVOKE is not None:
        LambdaFunction._invoke_lambda = _ORIGINAL_INVOKE  # type: ignore[method-assign]
        _ORIGINAL_INVOKE = None
    moto_dynamodb.unserialise()
    default_user_config["stepfunctions"]["execute_state_machine"] = False
    unpatch_spot_prices()


class LocalStack:
    """Start with :meth:`start`, stop with :meth:`stop` (or use :func:`running`)."""

    def __init__(
        self,
        *,
        dispatch_every_s: float = 1.0,
        default_faults: MachineFaults | None = None,
        settings: dict[str, str] | None = None,
        timer: bool = True,
        api_port: int = 0,
        providers: tuple[str, ...] = LOCAL_PROVIDERS,
        spot_tick_s: float | None = SPOT_TICK_S,
        state_dir: Path | None = None,
        machine_logs: Path | None = None,
    ) -> None:
        # The real adapters, against emulators of their APIs on 127.0.0.1 ("emulated" is the
        # market's own simpler API).
        self.providers = providers
        self._emulators: list[Any] = []
        self.api_port = api_port
        self.dispatch_every_s = dispatch_every_s
        # spot_tick_s=None: no spot pools, every rental is on-demand.
        spot = None if spot_tick_s is None else SpotMarket.from_directory(tick_s=spot_tick_s)
        # Each machine's renderer output: kept after the stop, as what explains a failed run;
        # beside the saved state if there is one, else a temporary folder.
        if machine_logs is None and state_dir is not None:
            machine_logs = state_dir / "machines"
        self.market = EmulatedMarket(
            default_faults=default_faults or MachineFaults(), spot=spot, log_dir=machine_logs
        )
        self.extra_settings = settings or {}
        self.timer_enabled = timer
        # state_dir: keep tables, objects, queued work and the demo key across restarts
        # (infra/local/state.py); None: a fresh account every start (make demo, the tests)
        self.state_dir = state_dir
        self.api_key = (
            saved_state.api_key(state_dir)
            if state_dir is not None
            else f"sk_local_{secrets.token_urlsafe(24)}"
        )
        self.tenant_id = "t-local-demo"
        self.other_tenants: list[str] = []  # add_tenant's
        self.loaded: dict[str, int] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._moto: Any = None
        self._market_server: Any = None
        self._ec2: Ec2Bridge | None = None
        self._front: ThreadingHTTPServer | None = None
        self._started = False  # every part up: only then is there state worth saving
        self._patched = False  # moto patched by this stack (stop undoes it once)
        self.state_machine_arn = ""
        self.webhook_queue_url = ""
        self.api_url = ""
        self.schedule_errors = 0

    # --- life cycle ---
    def start(self) -> LocalStack:
        """Start every part; if one fails, stop what did start before raising, so that a
        failed start leaves no server, renderer or moto patch behind."""
        try:
            return self._start()
        except BaseException:
            self.stop(drain_s=0)
            raise

    def _start(self) -> LocalStack:
        from moto.server import ThreadedMotoServer

        _patch_moto()
        self._patched = True
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's per-request lines
        moto_port = free_port()
        self._moto = ThreadedMotoServer(ip_address="127.0.0.1", port=moto_port, verbose=False)
        self._moto.start()
        endpoint = f"http://127.0.0.1:{moto_port}"
        self._market_server = serve_market(self.market)
        self._provider_keys = {name: secrets.token_urlsafe(24) for name in EMULATED_PROVIDERS}
        self._vast = serve_vast(self.market, self._provider_keys["vast"])
        self._runpod = serve_runpod(self.market, self._provider_keys["runpod"])
        self._tensordock = serve_tensordock(self.market, self._provider_keys["tensordock"])
        self._emulators = [self._vast, self._runpod, self._tensordock]
        os.environ.update(
            {
                "AWS_ENDPOINT_URL": endpoint,
                "AWS_ACCESS_KEY_ID": "local",
                "AWS_SECRET_ACCESS_KEY": "local",
                "AWS_DEFAULT_REGION": REGION,
                "MOTO_PORT": str(moto_port),  # where moto's Step Functions calls Lambda
                "POWERTOOLS_SERVICE_NAME": "subconscious",
                "POWERTOOLS_LOG_LEVEL": os.environ.get("POWERTOOLS_LOG_LEVEL", "WARNING"),
                "POWERTOOLS_METRICS_DISABLED": "true",  # no CloudWatch here to read EMF lines
            }
        )
        self._configure_moto(endpoint)
        ec2_prices = load_ec2_prices(REGION)
        patch_spot_prices(ec2_prices)
        self._ec2 = Ec2Bridge(self.market, ec2_prices, account=ACCOUNT, region=REGION).start()
        self._create_resources()
        self._load_state()
        self._add_tenant()
        self._start_front()
        self._start_webhook_deliveries()
        if self.timer_enabled:
            self._start_timer()
        self._started = True
        return self

    def stop(self, drain_s: float = 30.0) -> None:
        """Stop the timer, let live render runs give their machines back, then stop all."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        if self._moto is not None and self.state_machine_arn:  # none when a start failed early
            self.wait_for_runs(drain_s)
        # a start that failed half-way must not overwrite what the last good stop saved
        if self.state_dir is not None and self._moto is not None and self._started:
            saved_state.save(self.state_dir, self._client, ACCOUNT, REGION)
        # each part is dropped once closed: a second stop (a test's fixture after a failed
        # start) closes nothing twice
        if self._ec2 is not None:
            self._ec2.stop()
            self._ec2 = None
        self.market.shutdown()  # kills any renderer still alive: nothing outlives the stack
        if self._front is not None:
            self._front.shutdown()
            self._front.server_close()
            self._front = None
        if self._market_server is not None:
            self._market_server.close()
            self._market_server = None
        for emulator in self._emulators:
            emulator.close()
        self._emulators = []
        if self._moto is not None:
            self._moto.stop()
            self._moto = None
        if self._patched:  # a second stop must not undo another stack's (or test's) patch
            _unpatch_moto()
            self._patched = False

    # --- set-up ---
    def _configure_moto(self, endpoint: str) -> None:
        import httpx

        # moto keeps its backends per process: start from nothing, as a fresh account would.
        # A reset rebuilds every backend an earlier stack in this process loaded (EC2's, for
        # one, reads its AMI and instance-type tables again): seconds on a busy 2-core
        # machine, so the limit is generous (CI once timed out at 5 s).
        httpx.post(f"{endpoint}/moto-api/reset", timeout=MOTO_CONTROL_TIMEOUT_S).raise_for_status()
        httpx.post(
            f"{endpoint}/moto-api/config",
            json={"stepfunctions": {"execute_state_machine": True}},
            timeout=MOTO_CONTROL_TIMEOUT_S,
        ).raise_for_status()

    def _client(self, service: str) -> Any:
        import boto3

        return boto3.client(service, region_name=REGION)

    def _load_state(self) -> None:
        """What the last stop saved in ``state_dir``, into the resources just created."""
        if self.state_dir is None or not saved_state.has_state(self.state_dir):
            return
        urls = {d.WORK_QUEUE: self._queue_urls[0], d.WORK_DLQ: self._queue_urls[1]}
        self.loaded = saved_state.load(self.state_dir, self._client, urls)
        log.info("local state loaded from %s: %s", self.state_dir, self.loaded)

    def _create_resources(self) -> None:
        created = create_resources(self._client)
        self._queue_urls = (created.queue_url, created.dlq_url)
        self.state_machine_arn = created.state_machine_arn
        self.webhook_queue_url = created.webhook_queue_url
        settings = {
            **created.settings,
            "SUBC_EMULATED_MARKET_URL": self._market_server.url,
            "SUBC_MACHINE_AUTH_SECRET": secrets.token_hex(32),
            "SUBC_PROVIDERS": json.dumps(list(self.providers)),
            "SUBC_VAST_API_KEY": self._provider_keys["vast"],
            "SUBC_VAST_BASE_URL": self._vast.url,
            "SUBC_VAST_IMAGE": "local/a1111-placeholder",
            "SUBC_RUNPOD_API_KEY": self._provider_keys["runpod"],
            "SUBC_RUNPOD_URL": self._runpod.url,
            "SUBC_RUNPOD_REST_URL": self._runpod.rest_url,
            "SUBC_RUNPOD_IMAGE": "local/a1111-placeholder",
            "SUBC_RUNPOD_CLOUD_TYPE": "ALL",  # both clouds, as the emulator's lowestPrice
            # an emulated pod serves on its mapped port, not behind RunPod's HTTPS proxy
            "SUBC_RUNPOD_PROXY_URL": "http://{ip}:{public_port}",
            "SUBC_TENSORDOCK_API_TOKEN": self._provider_keys["tensordock"],
            "SUBC_TENSORDOCK_BASE_URL": self._tensordock.url,
            # v2 refuses a create without a key; nothing is forwarded to port 22 anyway
            "SUBC_TENSORDOCK_SSH_PUBLIC_KEY": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIlocal local",
            # fast loops: the local machines boot in about a second
            # the emulated machines boot in about a second; the adapters assume minutes
            **self._ec2_settings(),
            "SUBC_STARTUP_S_BY_PROVIDER": json.dumps(
                {"vast": 5, "runpod": 5, "tensordock": 5, "ec2": 5, "emulated": 5}
            ),
            "SUBC_POLL_INTERVAL_S": "1",
            "SUBC_READY_TIMEOUT_S": "60",
            "SUBC_RENDER_SLICE_S": "20",
            "SUBC_RENDERER_REQUEST_TIMEOUT_S": "30",
            # the emulated machines are loopback processes (never allowed in AWS)
            "SUBC_ALLOW_PRIVATE_MACHINE_ADDRESSES": "true",
            "SUBC_SQS_WAIT_S": "1",
            "SUBC_IDLE_POLLS_BEFORE_TEARDOWN": "3",
            "SUBC_DISPATCH_LEASE_S": "30",
            "SUBC_REAPER_GRACE_S": "5",
            # webhook receivers here are the developer's own http servers on loopback
            "SUBC_ALLOW_HTTP_WEBHOOKS": "true",
            "SUBC_ALLOW_PRIVATE_WEBHOOK_ADDRESSES": "true",
            "SUBC_WEBHOOK_BACKOFF_S": "2",
            **self.extra_settings,
        }
        os.environ.update(settings)
        from subconscious import services

        services.reset()

    def _ec2_settings(self) -> dict[str, str]:
        """A security group opening the render port, an AMI of moto's, the price file's types."""
        ec2 = self._client("ec2")
        group = ec2.create_security_group(
            GroupName="subc-render", Description="automatic1111's port only"
        )["GroupId"]
        ec2.authorize_security_group_ingress(
            GroupId=group, IpProtocol="tcp", FromPort=7860, ToPort=7860, CidrIp="0.0.0.0/0"
        )
        image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        return {
            "SUBC_EC2_REGION": REGION,
            "SUBC_EC2_IMAGE_ID": image,
            "SUBC_EC2_WORKER_IMAGE": "local/a1111-placeholder",
            "SUBC_EC2_SECURITY_GROUP_ID": group,
            "SUBC_EC2_INSTANCE_TYPES": json.dumps(list(LOCAL_INSTANCE_TYPES)),
            "SUBC_EC2_PRICE_LIST": "false",  # moto has no Price List API: the shipped table
        }

    def _add_tenant(self) -> None:
        from subconscious.services import services

        services().tenants.add_key(self.tenant_id, self.api_key, name="local demo")

    def add_tenant(self, tenant_id: str) -> str:
        """Another tenant with a fresh key (tests of isolation)."""
        from subconscious.services import services

        key = f"sk_local_{secrets.token_urlsafe(24)}"
        services().tenants.add_key(tenant_id, key)
        self.other_tenants.append(tenant_id)
        return key

    # --- the HTTP front (API Gateway's job) ---
    def _start_front(self) -> None:
        function = next(f for f in d.FUNCTIONS if f.name == f"{d.PREFIX}-api")
        handler = resolve_handler(function.handler)

        class Front(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_FRONT_BODY:
                    self._answer(413, {}, json.dumps({"message": "Request Too Long"}))
                    return
                body = self.rfile.read(length).decode("utf-8", "replace") if length else None
                event = api_gateway_event(self.command, self.path, dict(self.headers), body)
                result = handler(event, context_for(function))
                headers = dict(result.get("headers") or {})
                for name, values in (result.get("multiValueHeaders") or {}).items():
                    headers[name] = ", ".join(values)
                self._answer(int(result["statusCode"]), headers, result.get("body") or "")

            def _answer(self, status: int, headers: dict[str, str], body: str) -> None:
                data = body.encode()
                self.send_response(status)
                for name, value in headers.items():
                    if name.lower() != "content-length":
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = _serve

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("front: " + format, *args)

        self._front = ThreadingHTTPServer(("127.0.0.1", self.api_port or free_port()), Front)
        self.api_url = f"http://127.0.0.1:{self._front.server_address[1]}"
        thread = threading.Thread(target=self._front.serve_forever, name="api-front", daemon=True)
        thread.start()

    # --- the webhook queue's event source (SQS → Lambda in AWS) ---
    def _start_webhook_deliveries(self) -> None:
        thread = threading.Thread(target=self._deliver_webhooks, name="webhooks", daemon=True)
        self._threads.append(thread)
        thread.start()

    def _deliver_webhooks(self) -> None:
        """Hand each batch of webhook events to the webhooks function, and delete the ones it
        did not report failed, as the SQS event source mapping does."""
        function = next(f for f in d.FUNCTIONS if f.name == f"{d.PREFIX}-webhooks")
        handler = resolve_handler(function.handler)
        sqs = self._client("sqs")
        while not self._stop.is_set():
            try:
                deliver_batch(sqs, self.webhook_queue_url, handler, function, wait_s=1)
            except Exception:
                log.exception("webhook delivery failed")
                self._stop.wait(1)

    # --- the schedules (EventBridge's job) ---
    def start_schedules(self) -> None:
        """Start the schedules of a stack started with ``timer=False`` (a test that drove the
        first ticks by hand); nothing if they run already."""
        if not self.timer_enabled:
            self.timer_enabled = True
            self._start_timer()

    def _start_timer(self) -> None:
        thread = threading.Thread(target=self._timer, name="schedules", daemon=True)
        self._threads.append(thread)
        thread.start()

    def _timer(self) -> None:
        """Each schedule of infra/definitions.py at a local rate: dispatch every
        ``dispatch_every_s``, the others at their AWS rate divided by the same factor."""
        speedup = d.SCHEDULES[f"{d.PREFIX}-dispatch"] / self.dispatch_every_s
        due = dict.fromkeys(d.SCHEDULES, time.monotonic())
        while not self._stop.wait(0.1):
            for name, rate_s in d.SCHEDULES.items():
                if time.monotonic() >= due[name]:
                    due[name] = time.monotonic() + rate_s / speedup
                    self.fire(name)

    def fire(self, function_name: str) -> dict[str, Any]:
        """Invoke a scheduled function once, as its EventBridge rule would."""
        function = next(f for f in d.FUNCTIONS if f.name == function_name)
        try:
            result: dict[str, Any] = resolve_handler(function.handler)(
                scheduled_event(function.name), context_for(function)
            )
        except Exception:
            self.schedule_errors += 1
            log.exception("scheduled %s failed", function_name)
            return {}
        return result

    def dispatch_once(self) -> dict[str, Any]:
        return self.fire(f"{d.PREFIX}-dispatch")

    # --- observation ---
    def sell_out(self, provider: str, sold_out: bool = True) -> None:
        """Take every offer of one emulated provider off the market (``vast``, ``runpod``,
        ``tensordock``), or put them back; the next price refresh sees it."""
        emulators = {"vast": self._vast, "runpod": self._runpod, "tensordock": self._tensordock}
        emulators[provider].sell_out(sold_out)

    def fail_launches(self, provider: str, failing: bool = True) -> None:
        """Make every launch on one emulated provider fail with its server error while its
        offers stay listed (``vast``, ``runpod``, ``tensordock``), or stop failing."""
        emulators = {"vast": self._vast, "runpod": self._runpod, "tensordock": self._tensordock}
        emulators[provider].fail_launches(failing)

    def vast_portless_hosts(self, listed: bool = True) -> None:
        """List beside every Vast.ai offer a 10 % cheaper host whose router opens no port:
        rented, it runs but never maps a public port (a search asking for one hides it)."""
        self._vast.list_portless_hosts(listed)

    def vast_fail_containers(self, failing: bool = True) -> None:
        """Make every new Vast.ai rental stay ``created`` with an "OCI runtime create failed"
        ``status_msg`` (its market machine runs, so it bills), or stop failing."""
        self._vast.fail_containers(failing)

    def runpod_pods_never_start(self, on: bool = True) -> None:
        """RunPod pods rented from now on read RUNNING with no runtime (no ports) for ever,
        billed: a host whose driver cannot run the image's CUDA (runpod/runpodctl#253)."""
        self._runpod.never_start(on)

    def gpu_spend_usd(self, order_id: str) -> Decimal:
        """What the order cost us in GPU time so far (the customer's view never shows it),
        whichever of this stack's tenants placed it."""
        from subconscious.money import to_usd
        from subconscious.services import services

        for tenant_id in (self.tenant_id, *self.other_tenants):
            order = services().orders.get(tenant_id, order_id)
            if order is not None:
                return to_usd(order.spend_micros)
        raise KeyError(f"no tenant of this stack has order {order_id}")

    def executions(self) -> list[dict[str, Any]]:
        sfn = self._client("stepfunctions")
        return list(sfn.list_executions(stateMachineArn=self.state_machine_arn)["executions"])

    def wait_for_runs(self, timeout_s: float) -> bool:
        """Wait until no render run executes, and none has for two dispatch ticks (a tick that
        read the backlog just before its last order ended may still start one run, which then
        finds no work and gives its machine back); True if none is left running."""
        end = time.monotonic() + timeout_s
        settle_s = 2 * self.dispatch_every_s + 0.5
        idle_since: float | None = None
        while time.monotonic() < end:
            if any(e["status"] == "RUNNING" for e in self.executions()):
                idle_since = None
            elif idle_since is None:
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since >= settle_s:
                return True
            time.sleep(0.25)
        return False


def api_gateway_event(
    method: str, raw_path: str, headers: dict[str, str], body: str | None
) -> dict[str, Any]:
    """An API Gateway REST (v1) proxy event, as API Gateway sends it."""
    parts = urlsplit(raw_path)
    query = parse_qsl(parts.query, keep_blank_values=True)
    multi_query: dict[str, list[str]] = {}
    for key, value in query:
        multi_query.setdefault(key, []).append(value)
    request_id = str(uuid.uuid4())
    return {
        "resource": parts.path,
        "path": parts.path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": {k: v[-1] for k, v in multi_query.items()} or None,
        "multiValueQueryStringParameters": multi_query or None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "requestId": request_id,
            "stage": "local",
            "httpMethod": method,
            "path": parts.path,
            "resourcePath": parts.path,
            "identity": {"sourceIp": "127.0.0.1"},
            "accountId": ACCOUNT,
        },
        "body": body,
        "isBase64Encoded": False,
    }


def sqs_event(messages: list[dict[str, Any]], queue_name: str) -> dict[str, Any]:
    """An SQS event source's event for messages received with all their attributes."""
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "messageAttributes": {},
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{queue_name}",
                "awsRegion": REGION,
            }
            for m in messages
        ]
    }


def deliver_batch(
    sqs: Any,
    queue_url: str,
    handler: Callable[[dict[str, Any], Any], Any],
    function: d.Function,
    wait_s: int = 0,
) -> dict[str, Any] | None:
    """One poll of an SQS event source mapping with ``ReportBatchItemFailures``: receive up to
    10 messages, invoke ``handler``, delete those not reported failed (a failed one comes back
    when its visibility ends). The handler's answer; None when the queue had nothing."""
    messages = sqs.receive_message(
        QueueUrl=queue_url,
        MaxNumberOfMessages=10,
        WaitTimeSeconds=wait_s,
        MessageSystemAttributeNames=["All"],
    ).get("Messages", [])
    if not messages:
        return None
    response: dict[str, Any] = handler(
        sqs_event(messages, queue_url.rsplit("/", 1)[1]), context_for(function)
    )
    failed = {f["itemIdentifier"] for f in response.get("batchItemFailures", [])}
    for m in messages:
        if m["MessageId"] not in failed:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
    return response


def scheduled_event(function_name: str) -> dict[str, Any]:
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "region": REGION,
        "resources": [f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{function_name}-schedule"],
        "detail": {},
    }


@contextmanager
def running(**kwargs: Any) -> Iterator[LocalStack]:
    stack = LocalStack(**kwargs).start()
    try:
        yield stack
    finally:
        stack.stop()


def main() -> None:
    """``make local``: run the stack until Ctrl-C, for the ``subconscious`` command."""
    import argparse
    import signal

    parser = argparse.ArgumentParser(description="Run the local stack until interrupted.")
    parser.add_argument("--port", type=int, default=8600, help="API port on 127.0.0.1")
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="keep orders, images, queued work and the key in this folder across restarts "
        "(make local: .local-state); without it every start is a fresh account",
    )
    parser.add_argument(
        "--spot-tick-s",
        type=float,
        default=SPOT_TICK_S,
        help="wall seconds per spot-trace tick (each tick is 600 s of the recorded trace)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    stack = LocalStack(
        api_port=args.port, spot_tick_s=args.spot_tick_s, state_dir=args.state_dir
    ).start()
    if stack.loaded:
        print(f"state loaded from {args.state_dir}: {stack.loaded}", flush=True)
    # The key of the local tenant: shown to the person who started the stack (the same on
    # every start with --state-dir; a throwaway one without).
    print(f"export SUBCONSCIOUS_API_URL={stack.api_url} SUBCONSCIOUS_API_KEY={stack.api_key}")
    print("local stack running; Ctrl-C stops it and every machine it started", flush=True)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    try:
        stopped.wait()
    except KeyboardInterrupt:
        pass
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
