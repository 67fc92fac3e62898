"""boto3 clients, created on first use (never at import: cold start matters).

Only the ``dal`` modules (and the EC2 adapter) use them. One :class:`AwsClients` belongs to one
:class:`~subconscious.services.Services`: no client lives in a module-level cache, so a test that
switches moto contexts builds new services and gets new clients. ``AWS_ENDPOINT_URL`` (read by
botocore itself) points every client at the local stack's moto server.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


def _config() -> Any:
    from botocore.config import Config

    # A render step stores with 8 upload threads; the local stack runs several render steps
    # in one process over shared clients: botocore's default pool of 10 would churn.
    return Config(
        retries={"mode": "standard", "max_attempts": 4},
        connect_timeout=3,
        read_timeout=20,
        max_pool_connections=32,
    )


_LOADER: Any = None
_LOADER_LOCK = threading.Lock()


def session() -> Any:
    """A new session (its own credentials and settings, read from the environment now) over the
    process's one botocore data loader. The loader holds only botocore's parsed service models
    and endpoint data, read-only files: without sharing it every client re-reads and re-parses
    them (about 0.1-0.2 s a client, the largest part of building one)."""
    import boto3  # imported here: handlers that never touch AWS skip its ~160 ms import
    import botocore.loaders
    import botocore.session

    global _LOADER
    with _LOADER_LOCK:
        if _LOADER is None:
            _LOADER = botocore.loaders.create_loader()
        core = botocore.session.Session()
        core.register_component("data_loader", _LOADER)
    return boto3.session.Session(botocore_session=core)


def _client_config(service: str) -> Any:
    config = _config()
    if service == "s3":
        from botocore.config import Config

        # SigV4 presigned links (botocore would sign SigV2 in us-east-1; AWS deprecated it)
        config = config.merge(Config(signature_version="s3v4"))
    return config


def client(service: str) -> Any:
    """A new client for ``service`` (SigV4 presigning for S3)."""
    return session().client(service, config=_client_config(service))


def table(name: str) -> Any:
    """A new DynamoDB ``Table`` resource."""
    return session().resource("dynamodb", config=_config()).Table(name)


class _Lazy:
    """Stands for a client or table and creates it on first attribute access, so building
    every store of a :class:`Services` costs nothing until a store is used."""

    def __init__(self, create: Callable[[], Any]) -> None:
        self._create = create
        self._target: Any = None
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        target = self._target
        if target is None:
            with self._lock:  # render steps store from threads; create the client once
                if self._target is None:
                    self._target = self._create()
                target = self._target
        return getattr(target, name)


class AwsClients:
    """One process's clients: each service's client created once, on first use, all from one
    session; every table a view of one DynamoDB resource (a ``Table`` costs nothing, a
    resource as much as a client)."""

    def __init__(self) -> None:
        self._made: dict[tuple[str, str], _Lazy] = {}
        self._lock = threading.Lock()
        # creating clients is not thread-safe on one session: every creation takes this lock
        self._creating = threading.RLock()
        self._session: Any = None
        self._dynamodb: Any = None

    def client(self, service: str) -> Any:
        return self._lazy(("client", service), lambda: self._client(service))

    def table(self, name: str) -> Any:
        return self._lazy(("table", name), lambda: self._resource().Table(name))

    def _lazy(self, key: tuple[str, str], create: Callable[[], Any]) -> Any:
        with self._lock:
            if key not in self._made:
                self._made[key] = _Lazy(create)
            return self._made[key]

    def _shared_session(self) -> Any:
        with self._creating:
            if self._session is None:
                self._session = session()
            return self._session

    def _client(self, service: str) -> Any:
        with self._creating:
            return self._shared_session().client(service, config=_client_config(service))

    def _resource(self) -> Any:
        with self._creating:
            if self._dynamodb is None:
                self._dynamodb = self._shared_session().resource("dynamodb", config=_config())
            return self._dynamodb
