"""Local emulators of the Vast.ai, RunPod (REST v2 + GraphQL) and TensorDock v2 APIs, over an
EmulatedMarket: one module per provider (:mod:`.vast`, :mod:`.runpod`, :mod:`.tensordock`,
mirroring ``subconscious.market``), the HTTP plumbing they share in :mod:`.common`.

They speak the request and response shapes the real adapters
(``subconscious.market.vast.VastProvider``, ``subconscious.market.runpod.RunPodProvider`` and
``subconscious.market.tensordock.TensorDockProvider``) rely on, as recorded in
``tests/fixtures/{vast,runpod,tensordock}``, so those adapters run unchanged end to end on one
machine: point them at ``serve_vast(...).url`` / ``serve_runpod(...).url`` and
``serve_runpod(...).rest_url`` / ``serve_tensordock(...).url`` (RunPod also needs its proxy URL
template pointed at the pod's port: ``http://{ip}:{public_port}``).

Each rented machine is a real placeholder automatic1111 (``infra.local.renderer``) launched
through :meth:`EmulatedMarket.launch`, with the credential the adapter sent (Vast: the
``COMMANDLINE_ARGS`` env entry; RunPod: the ``--api-auth`` of REST's ``args`` or GraphQL's
``dockerArgs``, ``$VAR`` expanded from the pod's ``env``; TensorDock: the env file written by
``cloud_init``), so the renderer enforces it. The credential is parsed and handed to the market
only: it is never stored here, returned by any read or list, or logged.

Knobs for tests: ``sell_out()`` takes every offer of one provider off its market;
``fail_launches()`` keeps them listed but refuses every launch with the provider's server
error (each provider module says which). Each module's docstring says what its offers are and
what it simplifies; rate limits are not emulated.
"""

from infra.local.emulators.common import EmulatorServer, api_auth_from_args
from infra.local.emulators.runpod import RunPodEmulatorServer, serve_runpod
from infra.local.emulators.tensordock import serve_tensordock
from infra.local.emulators.vast import (
    VAST_FIRST_ASK_ID,
    VAST_PORTLESS_ASK_OFFSET,
    VastEmulatorServer,
    serve_vast,
)

__all__ = [
    "VAST_FIRST_ASK_ID",
    "VAST_PORTLESS_ASK_OFFSET",
    "EmulatorServer",
    "RunPodEmulatorServer",
    "VastEmulatorServer",
    "api_auth_from_args",
    "serve_runpod",
    "serve_tensordock",
    "serve_vast",
]
