"""The image contract (``worker/README.md``, "The image"): every adapter's start command, built by
the adapter itself, run the way the container runtime runs it, and what the server then gets.

A container runs its image's ENTRYPOINT with the command the provider sends as arguments in
place of the image's CMD (Vast's ``runtype: "args"``: the ``args`` list; RunPod's REST ``args``
and GraphQL ``dockerArgs``: one string RunPod splits like a shell; TensorDock: ``docker run
--env-file FILE IMAGE`` with nothing after the image, so the image's CMD). Here that is
``sh worker/entrypoint.sh <command>`` with a fake ``python`` first on PATH that prints its
arguments and the variables the credential may ride in. The server then sees its own
arguments plus ``$COMMANDLINE_ARGS``, which the worker and automatic1111's launcher both append.
"""

from __future__ import annotations

import base64
import json
import re
import shlex
import subprocess
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from subconscious.market.ec2 import EC2Provider
from subconscious.market.runpod import START_COMMAND, RunPodProvider
from subconscious.market.tensordock import TensorDockProvider
from subconscious.market.vast import VastProvider
from subconscious.models import Offer

REPO = Path(__file__).resolve().parents[2]
ENTRYPOINT = REPO / "worker" / "entrypoint.sh"
DOCKERFILE = REPO / "worker" / "Dockerfile"
API_FLAGS = ["--api", "--nowebui", "--listen", "--port", "7860"]
API_AUTH = "subc:s3cret-per-run"
FAKE_PYTHON = """#!/bin/sh
for arg in "$@"; do printf 'arg=%s\\n' "$arg"; done
printf 'A1111_AUTH=%s\\n' "${A1111_AUTH-}"
printf 'COMMANDLINE_ARGS=%s\\n' "${COMMANDLINE_ARGS-}"
"""
_WRITE_FILE = re.compile(r"printf %s ([A-Za-z0-9+/=]+) \| base64 -d > (\S+?)\)")


@dataclass
class Started:
    """What the fake ``python`` was started with."""

    argv: list[str]
    env: dict[str, str]

    def server_args(self) -> list[str]:
        """The server's arguments as it reads them: its own (after ``-m worker`` or
        ``launch.py``), then ``$COMMANDLINE_ARGS`` split like a shell."""
        own = self.argv[2:] if self.argv[:2] == ["-m", "worker"] else self.argv[1:]
        return own + shlex.split(self.env["COMMANDLINE_ARGS"])


def run(
    command: list[str], env: dict[str, str], tmp_path: Path, entrypoint: bool = True
) -> Started:
    """Run ``command`` as a container's CMD: through the worker image's ENTRYPOINT, or alone (an
    image without one)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    python = bin_dir / "python"
    python.write_text(FAKE_PYTHON)
    python.chmod(0o755)
    argv = ["sh", str(ENTRYPOINT), *command] if entrypoint else command
    done = subprocess.run(
        argv,
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    args, seen = [], {}
    for line in done.stdout.splitlines():
        key, _, value = line.partition("=")
        if key == "arg":
            args.append(value)
        else:
            seen[key] = value
    return Started(args, seen)


def image_cmd() -> list[str]:
    """The worker image's CMD, as its Dockerfile writes it (exec form)."""
    line = next(x for x in DOCKERFILE.read_text().splitlines() if x.startswith("CMD "))
    cmd: list[str] = json.loads(line.removeprefix("CMD "))
    return cmd


def assert_serves(started: Started) -> None:
    args = started.server_args()
    assert any(args[i : i + len(API_FLAGS)] == API_FLAGS for i in range(len(args))), args
    assert args[args.index("--api-auth") + 1] == API_AUTH, args


def an_offer(offer_id: str) -> Offer:
    return Offer(
        provider="x", offer_id=offer_id, gpu="RTX 4090", gpu_memory_gb=24, usd_per_hour=Decimal(1)
    )


def sent(answer: dict[str, Any], status: int = 200) -> tuple[httpx.Client, list[httpx.Request]]:
    requests: list[httpx.Request] = []

    def reply(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(status, json=answer)

    return httpx.Client(transport=httpx.MockTransport(reply)), requests


# --- each adapter's start, as the adapter sends it ---
def vast_start() -> tuple[list[str], dict[str, str]]:
    client, requests = sent({"success": True, "new_contract": 41000001})
    VastProvider("k", image="worker", http=client, sleep=lambda _: None).launch(
        an_offer("31000001"), label="subc-r", api_auth=API_AUTH
    )
    body = json.loads(requests[-1].content)
    assert body["runtype"] == "args"  # keeps the image's ENTRYPOINT, args in place of its CMD
    # env also carries docker options ("-p 7860:7860"), which are not variables
    return body["args"], {k: v for k, v in body["env"].items() if not k.startswith("-")}


def runpod_rest_start() -> tuple[list[str], dict[str, str]]:
    client, requests = sent({"id": "p", "status": "PROVISIONING", "cost": 1}, status=201)
    RunPodProvider("k", image="worker", http=client, sleep=lambda _: None).launch(
        an_offer("NVIDIA GeForce RTX 4090"), label="subc-r", api_auth=API_AUTH
    )
    body = json.loads(requests[-1].content)
    assert requests[-1].url.path == "/v2/pods"
    return shlex.split(body["args"]), body["env"]


def runpod_graphql_start() -> tuple[list[str], dict[str, str]]:
    client, requests = sent({"data": {"podRentInterruptable": {"id": "p", "costPerHr": 0.3}}})
    RunPodProvider("k", image="worker", http=client, sleep=lambda _: None).launch(
        an_offer("NVIDIA GeForce RTX 4090"),
        label="subc-r",
        api_auth=API_AUTH,
        bid_usd_per_hour=Decimal("0.3"),
    )
    spec = json.loads(requests[-1].content)["variables"]["input"]
    assert requests[-1].url.path == "/graphql"
    return shlex.split(spec["dockerArgs"]), {e["key"]: e["value"] for e in spec["env"]}


def tensordock_start() -> tuple[list[str], dict[str, str]]:
    provider = TensorDockProvider("t", ssh_public_key="ssh-ed25519 AAAA", a1111_image="worker")
    files = {
        path: base64.b64decode(encoded).decode()
        for line in provider._cloud_init(API_AUTH, {})["runcmd"]
        for encoded, path in _WRITE_FILE.findall(line)
    }
    run_line = next(x for x in files["/etc/subc/start-a1111.sh"].splitlines() if "docker run" in x)
    words = shlex.split(run_line)
    assert words[-1] == "worker"  # nothing after the image: its CMD runs
    env_file = files[words[words.index("--env-file") + 1]]
    # docker reads an env file line by line, KEY=VALUE, the value taken as it stands
    env = dict(line.split("=", 1) for line in env_file.splitlines() if line)
    return image_cmd(), env


def ec2_start() -> tuple[list[str], dict[str, str]]:
    provider = EC2Provider(
        region="us-east-1", image_id="ami-0", worker_image="worker", security_group_id="sg-0"
    )
    script = provider._user_data(API_AUTH, {})
    run_line = next(x for x in script.splitlines() if x.startswith("docker run"))
    words = shlex.split(run_line.removesuffix(" || shutdown -h now"))
    image_at = words.index("worker")
    # the env file is a quoted here-document: its lines as they stand
    lines = script.splitlines()
    start = next(
        i
        for i, x in enumerate(lines)
        if x.startswith(f"cat > {words[words.index('--env-file') + 1]}")
    )
    end = lines.index(lines[start].rsplit("'", 2)[1], start + 1)
    env = dict(line.split("=", 1) for line in lines[start + 1 : end])
    return words[image_at + 1 :], env


STARTS = {
    "vast": vast_start,
    "ec2": ec2_start,
    "runpod-rest": runpod_rest_start,
    "runpod-graphql-interruptible": runpod_graphql_start,
    "tensordock": tensordock_start,
}


@pytest.mark.parametrize("name", list(STARTS))
def test_each_adapters_start_serves_through_the_worker_image(name: str, tmp_path: Path) -> None:
    command, env = STARTS[name]()
    started = run(command, env, tmp_path)
    assert_serves(started)
    # the credential is on no command line: only COMMANDLINE_ARGS carries it
    assert API_AUTH not in " ".join([*command, *started.argv])


@pytest.mark.parametrize("name", ["runpod-rest", "runpod-graphql-interruptible"])
def test_runpods_start_also_runs_in_an_image_without_an_entrypoint(
    name: str, tmp_path: Path
) -> None:
    # RunPod's command replaces CMD: in an automatic1111 image with no ENTRYPOINT it runs as it
    # stands, its launch.py in the working directory.
    command, env = STARTS[name]()
    started = run(command, env, tmp_path, entrypoint=False)
    assert started.argv[0] == "launch.py"
    assert_serves(started)


def test_runpod_sends_one_start_command_over_both_apis() -> None:
    assert runpod_rest_start()[0] == runpod_graphql_start()[0] == shlex.split(START_COMMAND)


def test_the_images_cmd_alone_starts_the_worker(tmp_path: Path) -> None:
    # `docker run IMAGE`: the CMD's flags reach the worker; the credential comes from env
    started = run(image_cmd(), {"COMMANDLINE_ARGS": f"--api-auth {API_AUTH}"}, tmp_path)
    assert started.argv[:2] == ["-m", "worker"]
    assert_serves(started)


def test_nothing_at_all_starts_the_worker_with_commandline_args(tmp_path: Path) -> None:
    args = " ".join([*API_FLAGS, "--api-auth", API_AUTH])
    started = run([], {"COMMANDLINE_ARGS": args}, tmp_path)
    assert started.argv == ["-m", "worker"]
    assert_serves(started)
