"""Optional provider capabilities are declared (``Provider.supports``), and the render steps
follow the declaration, not the provider's class: a fake that declares what a static server
declares is treated like one, capability by capability."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from pydantic import SecretStr

from subconscious.errors import UnsafeMachineAddress
from subconscious.logic import render_run
from subconscious.market.base import Capability, Provider
from subconscious.market.ec2 import EC2Provider
from subconscious.market.emulated import EmulatedProvider
from subconscious.market.fake import FakeProvider
from subconscious.market.runpod import RunPodProvider
from subconscious.market.static import StaticProvider
from subconscious.market.tensordock import TensorDockProvider
from subconscious.market.vast import VastProvider
from subconscious.models import Machine, MachineStatus, RenderRun
from subconscious.models.servers import StaticServer
from subconscious.services import Services, build
from subconscious.settings import Settings
from tests.conftest import offer

MARKETPLACES = [
    FakeProvider,
    EmulatedProvider,
    VastProvider,
    RunPodProvider,
    TensorDockProvider,
    EC2Provider,
]
SECRET = SecretStr("a-machine-auth-secret-long-enough")


class Declaring(FakeProvider):
    """A fake marketplace that declares ``declared`` and, with them, has its own credentials."""

    def __init__(self, declared: set[Capability]) -> None:
        super().__init__([offer()])
        self.declared = frozenset(declared)

    def supports(self, capability: Capability) -> bool:
        return capability in self.declared

    def credential(self, machine_id: str) -> tuple[str, str] | None:
        return "operator", f"pw-{machine_id}"


def _services(provider: Provider) -> Services:
    settings = Settings(allow_private_machine_addresses=False, machine_auth_secret=SECRET)
    return build(settings, providers={"fake": provider})


def _run_and_machine(url: str = "http://10.0.0.5:7860") -> tuple[RenderRun, Machine]:
    run = RenderRun(
        run_id="r-capable",
        offer=offer(),
        spend_cap_micros=10**6,
        started_at=datetime.now(UTC),
        machine_id="m-1",
    )
    machine = Machine(
        provider="fake",
        machine_id="m-1",
        offer_id=run.offer.offer_id,
        label="",
        status=MachineStatus.RUNNING,
        url=url,
        usd_per_hour=Decimal(0),
    )
    return run, machine


# --- who declares what ---
def test_a_static_server_declares_what_an_operators_server_is() -> None:
    static = StaticProvider([StaticServer(url="http://10.0.0.5:7860", gpu="RTX 3090")])
    assert {c for c in Capability if static.supports(c)} == {
        Capability.OPERATOR_ADDRESSES,
        Capability.OWN_CREDENTIALS,
        Capability.LASTING_MACHINES,
    }


@pytest.mark.parametrize("adapter", MARKETPLACES, ids=lambda cls: cls.__name__)
def test_a_marketplace_declares_nothing(adapter: type[Provider]) -> None:
    # every adapter is a Provider and keeps the base's answer: no capability
    assert Provider in adapter.__mro__  # (a Protocol: issubclass would not tell)
    assert adapter.supports is Provider.supports
    assert adapter.credential is Provider.credential


def test_the_default_declares_nothing_and_has_no_credential() -> None:
    fake = FakeProvider([offer()])
    assert not any(fake.supports(c) for c in Capability)
    with pytest.raises(NotImplementedError, match="fake does not declare own credentials"):
        fake.credential("m-1")


# --- render_run follows the declaration ---
def test_private_addresses_only_where_declared() -> None:
    run, machine = _run_and_machine("http://10.0.0.5:7860")
    with pytest.raises(UnsafeMachineAddress):
        render_run._client(_services(Declaring(set())), run, machine)
    with pytest.raises(UnsafeMachineAddress):  # another capability does not imply this one
        render_run._client(_services(Declaring({Capability.OWN_CREDENTIALS})), run, machine)
    declares = _services(Declaring({Capability.OPERATOR_ADDRESSES}))
    render_run._client(declares, run, machine).close()
    # still never link-local, whatever is declared
    run, machine = _run_and_machine("http://169.254.169.254")
    with pytest.raises(UnsafeMachineAddress, match="link-local"):
        render_run._client(_services(Declaring(set(Capability))), run, machine)


def test_own_credentials_only_where_declared() -> None:
    run, machine = _run_and_machine()
    plain = _services(Declaring({Capability.OPERATOR_ADDRESSES, Capability.LASTING_MACHINES}))
    assert render_run._credential(plain, run, machine) == render_run.machine_credential(
        plain, run.run_id
    )
    declares = _services(Declaring({Capability.OWN_CREDENTIALS}))
    assert render_run._credential(declares, run, machine) == ("operator", "pw-m-1")


def test_retries_avoid_the_machine_unless_it_lasts() -> None:
    run, _ = _run_and_machine()
    plain = _services(Declaring({Capability.OPERATOR_ADDRESSES, Capability.OWN_CREDENTIALS}))
    assert render_run._avoidable(plain, run) == "m-1"
    assert render_run._avoidable(_services(Declaring({Capability.LASTING_MACHINES})), run) is None
