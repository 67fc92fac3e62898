"""Typed errors. Logic raises these; ``subconscious.http_errors`` maps each to one HTTP answer,
and the render-run state machine sees the class name as the error name its Catch/Retry match."""

from __future__ import annotations


class ConfigurationError(RuntimeError):
    """The deployment is misconfigured (a missing secret): fail loudly, never work around it."""


class SubconsciousError(Exception):
    """Base of every error we raise on purpose. ``code`` is stable: clients may match on it."""

    code = "internal_error"

    def __init__(self, message: str, *, details: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []


# --- Customer-facing (4xx) ---
class BadRequest(SubconsciousError):
    code = "bad_request"


class InvalidJson(BadRequest):
    code = "invalid_json"


class ValidationFailed(SubconsciousError):
    code = "validation_error"


class OutsideTerms(ValidationFailed):
    """The chosen option misses the customer's own deadline or price cap, and the order did
    not say ``accept_outside_terms``: nothing is ordered."""

    code = "outside_terms"


class PayloadTooLarge(SubconsciousError):
    code = "payload_too_large"


class Unauthorized(SubconsciousError):
    code = "unauthorized"


class NotFound(SubconsciousError):
    code = "not_found"


class Conflict(SubconsciousError):
    code = "conflict"


class IdempotencyKeyReused(Conflict):
    code = "idempotency_key_reused"


class RequestInProgress(Conflict):
    code = "request_in_progress"


class QuoteAlreadyAccepted(Conflict):
    """Another acceptance of the same quote won: the answer names the order it made."""

    # "conflict", as before this class existed: clients match on it; the message and the
    # details name the order that won
    code = "conflict"

    def __init__(self, message: str, *, order_id: str) -> None:
        super().__init__(message, details=[{"field": "quote_id", "message": message}])
        self.order_id = order_id


class QuoteExpired(SubconsciousError):
    code = "quote_expired"


class NoCapacity(SubconsciousError):
    """No offer on the market can run this job right now."""

    code = "no_capacity"


# --- Provider and machine side (seen by the state machine) ---
class ProviderError(SubconsciousError):
    code = "provider_error"


class OfferGone(ProviderError):
    code = "offer_gone"


class ProviderAuthError(ProviderError):
    """The provider refused our API key."""

    code = "provider_auth"


class ProviderRateLimited(ProviderError):
    code = "provider_rate_limited"


class ProviderDown(ProviderError):
    """Timeouts, refused connections, 5xx after retries."""

    code = "provider_down"


class OutOfCapacity(ProviderError):
    """The offer exists but cannot be rented now (taken, no stock)."""

    code = "out_of_capacity"


class MachineGone(ProviderError):
    code = "machine_gone"


class RendererError(SubconsciousError):
    """The machine's automatic1111 server failed a request (after retries)."""

    code = "renderer_error"


class RendererUnavailable(RendererError):
    """The machine stopped answering (crash, preemption, network): replace the machine."""

    code = "renderer_unavailable"


class RendererOutOfMemory(RendererError):
    code = "renderer_out_of_memory"


class BadImage(RendererError):
    """An image that is not a PNG of the requested size, or seeds that do not match."""

    code = "bad_image"


class MachineNotReady(SubconsciousError):
    code = "machine_not_ready"


# --- A run that failed through no fault of its host (the breakers do not hold it off) ---
class MachinePreempted(MachineGone):
    """An interruptible machine its market took back (outbid, reclaimed)."""

    code = "machine_preempted"


class TaskCrashedMachine(RendererUnavailable):
    """The machine died on a task that had already failed on another machine: the task, not
    this host, is the likely cause (the task's own attempts bound it)."""

    code = "task_crashed_machine"


class SpendCapReached(MachineNotReady):
    """The run's share of its orders' budget was spent while the machine booted."""

    code = "spend_cap_reached"


# Error names (as the state machine records them on a failed run) that say nothing against
# the machine's host or provider.
NOT_THE_HOSTS_FAULT = frozenset(
    {MachinePreempted.__name__, TaskCrashedMachine.__name__, SpendCapReached.__name__}
)


class UnsupportedMediaType(SubconsciousError):
    """A request body sent as something other than JSON (the only type this API reads)."""

    code = "unsupported_media_type"


class UnsafeMachineAddress(RendererUnavailable):
    """The machine's URL names a host the render step may not reach (loopback, private,
    link-local such as the metadata service, …): the machine is treated as dead, never called."""

    code = "unsafe_machine_address"


class RendererAnswerTooLarge(RendererUnavailable):
    """The machine sent more than any honest answer to the request could hold: reading
    stopped at the cap; the machine is replaced (its fault, not the task's)."""

    code = "renderer_answer_too_large"
