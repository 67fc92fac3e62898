"""An emulated GPU marketplace whose machines are placeholder renderer processes.

The local stack rents "GPUs" here exactly as it would from a real market: list offers, launch a
machine with a label and the API credential its automatic1111 should require, poll its status,
terminate it. Each machine is a ``python -m infra.local.renderer`` process on a free local port.
Tests script failures through a FIFO of :class:`MachineFaults`, one entry per future launch, in
process or over ``POST /_control/faults``.

The credential handed to a machine reaches only that process's environment; it is never stored
on the machine record, returned, or logged.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from http import HTTPStatus
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qs, urlsplit

from infra.local.http_base import MethodHandler
from infra.local.spot import SpotMarket

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CSV = Path(__file__).resolve().parent / "data" / "gpu_prices.csv"

MARKET_PROVIDERS = ("Vast.ai", "RunPod Community Cloud", "RunPod Secure Cloud")
PRICING_TYPES = ("on_demand", "marketplace_median")
TERMINATE_GRACE_S = 3.0
MAX_BODY_BYTES = 1024 * 1024

# Checked longest name first so "L40S" wins over "L4" and "RTX 3090 Ti" falls to "RTX 3090".
# Beyond the common SD cards, every model in the price file is listed with its real memory, so
# a planner sizing batches by memory never sees a 12 GB card advertised as 24 GB.
_GPU_MEMORY_GB = {
    "RTX 5090": 32,
    "RTX 4090": 24,
    "RTX 3090": 24,
    "L40S": 48,
    "L4": 24,
    "A10": 24,
    "H100": 80,
    "H100 NVL": 94,
    "H200": 141,
    "B200": 180,
    "A100": 40,
    "A30": 24,
    "A40": 48,
    "L40": 48,
    "RTX 3060": 12,
    "RTX 4070 Ti": 12,
    "RTX 4080": 16,
    "RTX 5080": 16,
    "RTX A4000": 16,
    "RTX A4500": 20,
    "RTX A5000": 24,
    "RTX A6000": 48,
    "RTX 4000 Ada": 20,
    "RTX 6000 Ada": 48,
}
_DEFAULT_GPU_MEMORY_GB = 24


RENDERER_MODULES = {"placeholder": "infra.local.renderer", "worker": "worker"}
_MACHINE_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")


class OfferNotFound(LookupError):
    """No offer has that id."""


class MachineNotFound(LookupError):
    """No machine has that id."""


class SpotRefused(Exception):
    """An interruptible rental was refused."""


class NoSpotCapacity(SpotRefused):
    """The offer sells no interruptible machines, or its spot pool has no capacity now."""


class BidTooLow(SpotRefused):
    """The bid is under the offer's minimum."""

    def __init__(self, offer_id: str, min_bid: Decimal) -> None:
        super().__init__(offer_id, min_bid)
        self.min_bid = min_bid


@dataclass(frozen=True)
class MachineFaults:
    """How the renderer behind one machine misbehaves (see infra.local.renderer's flags)."""

    startup_delay_s: float = 0.5
    images_per_s: float = 50.0
    crash_after_images: int | None = None
    error_rate: float = 0.0
    oom_above_batch: int | None = None
    # Dies on its first txt2img, before answering (the placeholder's --crash-on-call).
    crash_on_call: bool = False
    # A prompt containing this text always answers HTTP 500 / kills the process.
    fail_prompt: str | None = None
    crash_prompt: str | None = None
    # "placeholder" draws stand-ins; "worker" runs `python -m worker --tiny` (real diffusers,
    # tiny random weights, its own speed). Default from $SUBC_LOCAL_RENDERER.
    renderer: str = field(
        default_factory=lambda: os.environ.get("SUBC_LOCAL_RENDERER", "placeholder")
    )

    def __post_init__(self) -> None:
        if self.renderer not in RENDERER_MODULES:
            raise ValueError(f"renderer must be one of {sorted(RENDERER_MODULES)}")
        if self.startup_delay_s < 0:
            raise ValueError("startup_delay_s must be >= 0")
        if self.images_per_s <= 0:
            raise ValueError("images_per_s must be > 0")
        if self.crash_after_images is not None and self.crash_after_images < 1:
            raise ValueError("crash_after_images must be >= 1")
        if not 0 <= self.error_rate <= 1:
            raise ValueError("error_rate must be between 0 and 1")
        if self.oom_above_batch is not None and self.oom_above_batch < 0:
            raise ValueError("oom_above_batch must be >= 0")
        for name in ("fail_prompt", "crash_prompt"):
            if getattr(self, name) == "":
                raise ValueError(f"{name} must be null or a non-empty text")

    def renderer_args(self) -> list[str]:
        if self.renderer == "worker":  # speed, boot and crash knobs are the placeholder's
            oom = (
                []
                if self.oom_above_batch is None
                else ["--oom-above-batch", str(self.oom_above_batch)]
            )
            return ["--tiny", *oom]
        args = [
            "--startup-delay-s",
            repr(float(self.startup_delay_s)),
            "--images-per-s",
            repr(float(self.images_per_s)),
            "--error-rate",
            repr(float(self.error_rate)),
        ]
        if self.crash_after_images is not None:
            args += ["--crash-after-images", str(self.crash_after_images)]
        if self.oom_above_batch is not None:
            args += ["--oom-above-batch", str(self.oom_above_batch)]
        if self.crash_on_call:
            args.append("--crash-on-call")
        if self.fail_prompt is not None:
            args.append(f"--fail-prompt={self.fail_prompt}")
        if self.crash_prompt is not None:
            args.append(f"--crash-prompt={self.crash_prompt}")
        return args


# --------------------------------------------------------------------------- offers


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def gpu_memory_gb(gpu: str) -> int:
    """Memory of one GPU: stated in the name ("A100 80GB SXM"), else looked up by model."""
    stated = re.search(r"(\d+)\s*GB", gpu, flags=re.IGNORECASE)
    if stated:
        return int(stated.group(1))
    for model in sorted(_GPU_MEMORY_GB, key=len, reverse=True):
        if re.match(rf"{re.escape(model)}\b", gpu, flags=re.IGNORECASE):
            return _GPU_MEMORY_GB[model]
    return _DEFAULT_GPU_MEMORY_GB


def _observed_on(date: str) -> str:
    # Dates are ISO days, "start..end" ranges (the end counts) or "unknown" (oldest of all).
    end = date.rpartition("..")[2].strip()
    return end if re.fullmatch(r"\d{4}-\d{2}-\d{2}", end) else ""


def load_offers(csv_path: Path = DEFAULT_CSV) -> list[dict[str, object]]:
    """One single-GPU offer per (provider, GPU) from the marketplace-style providers.

    When the price file holds several observations of the same pair, the most recently dated
    one wins (file order breaks ties), so the emulated market quotes current prices.
    """
    chosen: dict[tuple[str, str], dict[str, str]] = {}
    with csv_path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if (
                row["provider"] not in MARKET_PROVIDERS
                or row["pricing_type"] not in PRICING_TYPES
                or row["gpus_per_instance"].strip() != "1"
            ):
                continue
            try:
                Decimal(row["usd_per_gpu_hour"])
            except InvalidOperation:
                continue
            key = (row["provider"], row["gpu"])
            previous = chosen.get(key)
            if previous is None or _observed_on(row["date"]) > _observed_on(previous["date"]):
                chosen[key] = row

    rows = sorted(
        chosen.values(),
        key=lambda r: (Decimal(r["usd_per_gpu_hour"]), r["provider"], r["gpu"]),
    )
    offers: list[dict[str, object]] = []
    used_ids: set[str] = set()
    for row in rows:
        offer_id = base = f"emu-{_slug(row['provider'])}-{_slug(row['gpu'])}"
        suffix = 2
        while offer_id in used_ids:
            offer_id, suffix = f"{base}-{suffix}", suffix + 1
        used_ids.add(offer_id)
        offers.append(
            {
                "offer_id": offer_id,
                "provider_name": row["provider"],
                "gpu": row["gpu"],
                "gpu_count": 1,
                "gpu_memory_gb": gpu_memory_gb(row["gpu"]),
                "usd_per_hour": row["usd_per_gpu_hour"].strip(),
                "interruptible": False,
                "reliability": "0.99",
                "location": row["region"],
                "startup_s": 1.0,
            }
        )
    return offers


# --------------------------------------------------------------------------- machines


@dataclass
class _Machine:
    machine_id: str
    offer: dict[str, object]
    label: str
    port: int
    faults: MachineFaults
    process: subprocess.Popen[bytes]
    log_file: IO[bytes]
    log_path: Path
    launched_at: datetime
    host: str = "127.0.0.1"
    bid: Decimal | None = None  # interruptible at this price per hour; None: on-demand
    terminated_at: datetime | None = None
    preempted_at: datetime | None = None
    seen_listening: bool = False

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat(timespec="milliseconds")


def _free_port(avoid: Iterable[int]) -> int:
    taken = set(avoid)
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port not in taken:
            return port


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.05):
            return True
    except OSError:
        return False


def _stop(process: subprocess.Popen[bytes], grace_s: float = TERMINATE_GRACE_S) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class EmulatedMarket:
    """Offers from the price file; machines are renderer processes owned by this object.

    With a :class:`~infra.local.spot.SpotMarket`, the offers of marketplaces that sell
    interruptible machines carry ``spot_pool`` and ``min_bid`` (a Decimal string), and
    :meth:`launch` with a bid rents one interruptible; when its pool's trace drops to no
    capacity, the market kills its renderer (status ``exited``, ``preempted`` true), checked
    on every read and by a watcher thread while interruptible machines live.
    """

    def __init__(
        self,
        offers: list[dict[str, object]] | None = None,
        default_faults: MachineFaults = MachineFaults(),
        python: str = sys.executable,
        log_dir: Path | None = None,
        spot: SpotMarket | None = None,
    ) -> None:
        self._offers = [dict(o) for o in (load_offers(DEFAULT_CSV) if offers is None else offers)]
        self.spot = spot
        for offer in self._offers:
            pool = spot.pool_for(offer) if spot is not None else None
            if spot is not None and pool is not None:
                offer["spot_pool"] = pool
                offer["min_bid"] = str(spot.min_bid(offer["usd_per_hour"]))
        self._offers_by_id = {str(o["offer_id"]): o for o in self._offers}
        self.default_faults = default_faults
        self.python = python
        self._log_dir = log_dir
        self.fault_queue: list[MachineFaults] = []
        self.launched_count = 0
        self._machines: dict[str, _Machine] = {}
        self._lock = threading.RLock()
        self._closing = threading.Event()
        self._watcher: threading.Thread | None = None
        # Called with a machine's id as it is preempted, before its renderer is killed: an API
        # in front of the market (EC2's, infra/local/ec2.py) shows the reclaim first, as the
        # provider does.
        self.preempt_listeners: list[Callable[[str], None]] = []

    @property
    def log_dir(self) -> Path:
        """Where each machine's renderer output goes (``<machine_id>.log``).

        Created on first use, so a market that never launches leaves nothing behind; logs
        outlive shutdown on purpose, as they are what explains a failed run afterwards.
        """
        with self._lock:
            if self._log_dir is None:
                self._log_dir = Path(tempfile.mkdtemp(prefix="emulated-market-"))
            self._log_dir.mkdir(parents=True, exist_ok=True)
            return self._log_dir

    def __enter__(self) -> EmulatedMarket:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()

    # ---- offers and faults

    def offers(self) -> list[dict[str, object]]:
        with self._lock:
            return [dict(o) for o in self._offers]

    def spot_available(self, offer_id: str) -> bool:
        """Whether the offer can be rented interruptible now (it has a pool, with capacity)."""
        with self._lock:
            offer = self._offers_by_id.get(offer_id)
            pool = offer.get("spot_pool") if offer is not None else None
            return self.spot is not None and isinstance(pool, str) and self.spot.available(pool)

    def queue_faults(self, faults: MachineFaults, count: int = 1) -> int:
        """Make the next ``count`` launches use ``faults``; returns the queue length."""
        with self._lock:
            self.fault_queue.extend([faults] * count)
            return len(self.fault_queue)

    # ---- machines

    def add_offers(self, offers: Iterable[dict[str, object]]) -> None:
        """Offers that can be launched but are not listed by :meth:`offers` (a market whose
        listing lives elsewhere: the EC2 instance types moto runs, ``infra/local/ec2.py``).
        Each gets a spot pool as listed offers do; a ``min_bid`` it carries is kept."""
        with self._lock:
            for given in offers:
                offer = dict(given)
                pool = self.spot.pool_for(offer) if self.spot is not None else None
                if self.spot is not None and pool is not None:
                    offer["spot_pool"] = pool
                    offer.setdefault("min_bid", str(self.spot.min_bid(offer["usd_per_hour"])))
                self._offers_by_id[str(offer["offer_id"])] = offer

    def launch(
        self,
        offer_id: str,
        label: str,
        api_auth: str,
        *,
        bid_usd_per_hour: Decimal | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
    ) -> dict[str, object]:
        """Start a machine; with a bid, an interruptible one (raises a :class:`SpotRefused`
        when the offer has no pool, its pool no capacity now, or the bid is under the minimum).
        ``host``/``port``: where its renderer listens (another loopback address stands for
        another computer, as each EC2 instance has its own address); by default a free port
        of 127.0.0.1.
        """
        with self._lock:
            offer = self._offers_by_id.get(offer_id)
            if offer is None:
                raise OfferNotFound(offer_id)
            if bid_usd_per_hour is not None:
                if not self.spot_available(offer_id):
                    raise NoSpotCapacity(offer_id)
                min_bid = Decimal(str(offer["min_bid"]))
                if bid_usd_per_hour < min_bid:
                    raise BidTooLow(offer_id, min_bid)
            faults = self.fault_queue.pop(0) if self.fault_queue else self.default_faults
            machine_id = f"m-{secrets.token_hex(6)}"
            if port is None:
                port = _free_port(
                    m.port for m in self._machines.values() if m.terminated_at is None
                )
            log_path = self.log_dir / f"{machine_id}.log"
            log_file = log_path.open("ab")
            command = [
                self.python,
                "-m",
                RENDERER_MODULES[faults.renderer],
                "--port",
                str(port),
                "--host",
                host,
                "--exit-with-parent",
                *faults.renderer_args(),
            ]
            # A rented machine is a stranger's computer: it gets its own credential and nothing
            # of ours (no AWS keys, no HMAC secret), only what runs Python.
            env = {k: v for k, v in os.environ.items() if k in _MACHINE_ENV}
            env["RENDERER_API_AUTH"] = api_auth
            try:
                process = subprocess.Popen(
                    command,
                    cwd=REPO_ROOT,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                )
            except OSError:
                log_file.close()
                raise
            machine = _Machine(
                machine_id=machine_id,
                offer=offer,
                label=label,
                port=port,
                faults=faults,
                process=process,
                log_file=log_file,
                log_path=log_path,
                launched_at=datetime.now(UTC),
                host=host,
                bid=bid_usd_per_hour,
            )
            self._machines[machine_id] = machine
            self.launched_count += 1
            log.info(
                "launched %s (%s, label %r%s) pid %d on port %d",
                machine_id,
                offer_id,
                label,
                "" if bid_usd_per_hour is None else f", interruptible at {bid_usd_per_hour}",
                process.pid,
                port,
            )
            if bid_usd_per_hour is not None:
                self._watch_spot()
            return self._describe(machine)

    def machine(self, machine_id: str) -> dict[str, object]:
        with self._lock:
            self.preempt_due()
            return self._describe(self._get(machine_id))

    def machines(self, label: str | None = None) -> list[dict[str, object]]:
        with self._lock:
            self.preempt_due()
            return [
                self._describe(m)
                for m in self._machines.values()
                if m.terminated_at is None and (label is None or m.label == label)
            ]

    def process(self, machine_id: str) -> subprocess.Popen[bytes]:
        """The renderer process behind a machine, for tests and diagnostics."""
        with self._lock:
            return self._get(machine_id).process

    def log_path(self, machine_id: str) -> Path:
        with self._lock:
            return self._get(machine_id).log_path

    def terminate(self, machine_id: str) -> dict[str, object]:
        with self._lock:
            machine = self._get(machine_id)
            if machine.terminated_at is not None:
                return self._describe(machine)
        # Outside the lock: the grace period must not stall every other caller.
        _stop(machine.process)
        with self._lock:
            self._mark_terminated(machine)
            log.info("terminated %s", machine_id)
            return self._describe(machine)

    def preempt_due(self) -> list[str]:
        """Preempt every live interruptible machine whose pool has no capacity now: its
        renderer is killed at once, as a host reclaimed from under it. Returns their ids."""
        if self.spot is None:
            return []
        preempted = []
        with self._lock:
            for machine in self._machines.values():
                if (
                    machine.bid is None
                    or machine.terminated_at is not None
                    or machine.preempted_at is not None
                    or self.spot.available(str(machine.offer["spot_pool"]))
                ):
                    continue
                self._preempt(machine)
                preempted.append(machine.machine_id)
        return preempted

    def preempt(self, machine_id: str) -> dict[str, object]:
        """Preempt one live interruptible machine now, whatever its pool's trace says (a
        host reclaimed mid-batch, on a test's cue): its renderer is killed at once. Raises
        ValueError for an on-demand machine (providers never reclaim those) or one that
        has ended."""
        with self._lock:
            machine = self._get(machine_id)
            if machine.bid is None:
                raise ValueError(
                    f"{machine_id} is on-demand: only interruptible ones are preempted"
                )
            if machine.terminated_at is not None or machine.preempted_at is not None:
                raise ValueError(f"{machine_id} has already ended")
            self._preempt(machine)
            return self._describe(machine)

    def _preempt(self, machine: _Machine) -> None:
        machine.preempted_at = datetime.now(UTC)
        for listener in self.preempt_listeners:
            try:
                listener(machine.machine_id)
            except Exception:  # the preemption happens anyway
                log.exception("a preemption listener failed")
        if machine.process.poll() is None:
            machine.process.kill()
            machine.process.wait()
        log.info("preempted %s (spot pool %s)", machine.machine_id, machine.offer.get("spot_pool"))

    def _watch_spot(self) -> None:
        if self._watcher is not None or self.spot is None:
            return
        every_s = max(0.01, min(0.25, self.spot.tick_s / 4))

        def watch() -> None:
            while not self._closing.wait(every_s):
                try:
                    self.preempt_due()
                except Exception:  # a watcher that dies would silently stop preemptions
                    log.exception("spot watcher failed")

        self._watcher = threading.Thread(target=watch, name="emulated-market-spot", daemon=True)
        self._watcher.start()

    def shutdown(self) -> None:
        """Terminate every machine; signals them all first so the grace periods overlap."""
        self._closing.set()
        if self._watcher is not None:
            self._watcher.join(timeout=5)
        with self._lock:
            live = [m for m in self._machines.values() if m.terminated_at is None]
        for machine in live:
            if machine.process.poll() is None:
                machine.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + TERMINATE_GRACE_S
        for machine in live:
            _stop(machine.process, grace_s=max(0.0, deadline - time.monotonic()))
        with self._lock:
            for machine in live:
                self._mark_terminated(machine)

    # ---- internals

    def _get(self, machine_id: str) -> _Machine:
        machine = self._machines.get(machine_id)
        if machine is None:
            raise MachineNotFound(machine_id)
        return machine

    def _mark_terminated(self, machine: _Machine) -> None:
        if machine.terminated_at is None:
            machine.terminated_at = datetime.now(UTC)
        machine.log_file.close()

    def _status(self, machine: _Machine) -> str:
        if machine.terminated_at is not None:
            return "terminated"
        if machine.process.poll() is not None:
            machine.log_file.close()
            return "exited"
        if not machine.seen_listening:
            machine.seen_listening = _listening(machine.host, machine.port)
        return "running" if machine.seen_listening else "starting"

    def _describe(self, machine: _Machine) -> dict[str, object]:
        return {
            "machine_id": machine.machine_id,
            "offer_id": machine.offer["offer_id"],
            "label": machine.label,
            "gpu": machine.offer["gpu"],
            "usd_per_hour": (
                machine.offer["usd_per_hour"] if machine.bid is None else str(machine.bid)
            ),
            "interruptible": machine.bid is not None,
            "preempted": machine.preempted_at is not None,
            "status": self._status(machine),
            "url": machine.url,
            "launched_at": _iso(machine.launched_at),
            "terminated_at": _iso(machine.terminated_at),
            "images_per_s": float(machine.faults.images_per_s),
        }


# --------------------------------------------------------------------------- HTTP


class BadRequest(ValueError):
    """The request body is not what the route needs."""


class _MarketHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], market: EmulatedMarket) -> None:
        self.market = market
        super().__init__(address, _MarketHandler)


class MarketServer:
    """The market's HTTP API running in a daemon thread."""

    def __init__(self, httpd: _MarketHTTPServer, thread: threading.Thread, url: str) -> None:
        self._httpd = httpd
        self._thread = thread
        self.url = url

    def close(self) -> None:
        """Stop answering; the machines keep running (shut the market down for that)."""
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> MarketServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def serve_market(market: EmulatedMarket, host: str = "127.0.0.1", port: int = 0) -> MarketServer:
    httpd = _MarketHTTPServer((host, port), market)
    bound_port = int(httpd.server_address[1])
    url_host = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host
    thread = threading.Thread(
        target=httpd.serve_forever,
        kwargs={"poll_interval": 0.1},
        name=f"emulated-market:{bound_port}",
        daemon=True,
    )
    thread.start()
    return MarketServer(httpd, thread, f"http://{url_host}:{bound_port}")


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw or b"null")
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"body is not valid JSON: {exc.__class__.__name__}") from exc
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object")
    return body


def _required_str(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or (name != "api_auth" and not value):
        raise BadRequest(f"field {name!r} is required and must be a string")
    return value


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# Each fault field: whether a value is valid, what it must be (for the error), and the value
# MachineFaults gets. Checked in this order, so the first bad field named is always the same.
_FAULT_FIELDS: dict[str, tuple[Callable[[object], bool], str, Callable[[Any], Any]]] = {
    **{
        name: (_is_number, "a number", float)
        for name in ("startup_delay_s", "images_per_s", "error_rate")
    },
    **{
        name: (lambda v: v is None or _is_int(v), "an integer or null", lambda v: v)
        for name in ("crash_after_images", "oom_above_batch")
    },
    "crash_on_call": (lambda v: isinstance(v, bool), "a boolean", lambda v: v),
    **{
        name: (lambda v: v is None or isinstance(v, str), "a string or null", lambda v: v)
        for name in ("fail_prompt", "crash_prompt")
    },
}


def parse_faults(body: dict[str, Any]) -> tuple[MachineFaults, int]:
    """A MachineFaults (every field optional) plus ``count`` from a control request body."""
    known = {f.name for f in fields(MachineFaults)} | {"count"}
    unknown = sorted(set(body) - known)
    if unknown:
        raise BadRequest(f"unknown fields: {', '.join(unknown)}")
    values: dict[str, Any] = {}
    for name, (valid, kind, convert) in _FAULT_FIELDS.items():
        if name in body:
            if not valid(body[name]):
                raise BadRequest(f"{name} must be {kind}")
            values[name] = convert(body[name])
    count = body.get("count", 1)
    if not _is_int(count) or not 1 <= count <= 1000:
        raise BadRequest("count must be an integer between 1 and 1000")
    try:
        return MachineFaults(**values), count
    except ValueError as exc:
        raise BadRequest(str(exc)) from exc


class _MarketHandler(MethodHandler):
    server_version = "emulated-market"

    def _handle(self, method: str) -> None:
        started = time.monotonic()
        parts = urlsplit(self.path)
        path = parts.path.rstrip("/") or "/"
        server = self.server
        assert isinstance(server, _MarketHTTPServer)
        try:
            raw = self._read_body()
            status, payload = self._route(server.market, method, path, parts.query, raw)
        except BadRequest as exc:
            status, payload = HTTPStatus.BAD_REQUEST, _error("bad_request", str(exc))
        except OfferNotFound as exc:
            status = HTTPStatus.NOT_FOUND
            payload = _error("offer_not_found", f"no offer {exc.args[0]!r}")
        except MachineNotFound as exc:
            status = HTTPStatus.NOT_FOUND
            payload = _error("machine_not_found", f"no machine {exc.args[0]!r}")
        except Exception:
            # Only the class goes to the client; the traceback (no request body) to the log.
            log.exception("market %s %s failed", method, path)
            status, payload = HTTPStatus.INTERNAL_SERVER_ERROR, _error("internal", "see logs")
        self._reply_json(status, payload)
        log.debug(
            "market %s %s %d %.1fms", method, path, status, (time.monotonic() - started) * 1000
        )

    def _read_body(self) -> bytes:
        body = self._body_or_none(MAX_BODY_BYTES)
        if body is None:
            raise BadRequest("missing, invalid or oversized Content-Length")
        return body

    @staticmethod
    def _route(
        market: EmulatedMarket, method: str, path: str, query: str, raw: bytes
    ) -> tuple[HTTPStatus, object]:
        if path == "/offers" and method == "GET":
            return HTTPStatus.OK, {"offers": market.offers()}
        if path == "/machines" and method == "GET":
            labels = parse_qs(query).get("label")
            return HTTPStatus.OK, {"machines": market.machines(labels[-1] if labels else None)}
        if path == "/machines" and method == "POST":
            body = _json_object(raw)
            machine = market.launch(
                _required_str(body, "offer_id"),
                _required_str(body, "label"),
                _required_str(body, "api_auth"),
            )
            return HTTPStatus.CREATED, machine
        if path.startswith("/machines/") and path.count("/") == 2:
            machine_id = path.rpartition("/")[2]
            if method == "GET":
                return HTTPStatus.OK, market.machine(machine_id)
            if method == "DELETE":
                return HTTPStatus.OK, market.terminate(machine_id)
        if path == "/_control/faults" and method == "POST":
            faults, count = parse_faults(_json_object(raw))
            return HTTPStatus.OK, {"queued": market.queue_faults(faults, count)}
        known = {"/offers", "/machines", "/_control/faults"}
        if path in known or path.startswith("/machines/"):
            return HTTPStatus.METHOD_NOT_ALLOWED, _error("method_not_allowed", method)
        return HTTPStatus.NOT_FOUND, _error("not_found", f"no route {path}")

    def log_message(self, format: str, *args: Any) -> None:
        # Requests are logged by _handle without bodies, which is where credentials travel.
        return


def _error(code: str, message: str) -> dict[str, str]:
    return {"error": code, "message": message}
