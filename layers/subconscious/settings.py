"""Every setting, read once from the environment through one pydantic model.

The CDK stack (and the local stack) set these variables; nothing else in the code reads
``os.environ``. Secrets are ``SecretStr`` so they never print. In AWS the secret ones come from
Secrets Manager: ``SUBC_PROVIDER_SECRETS_ARN`` names a JSON secret whose keys are
``SECRET_FIELDS``; it is read once per cold start, with the rest of the settings.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from subconscious.models.servers import StaticServer, WorkerKind

# Settings that may come from the Secrets Manager secret (a non-empty value there wins).
SECRET_FIELDS = ("machine_auth_secret", "vast_api_key", "runpod_api_key", "tensordock_api_token")

# The render step's Lambda times out at 900 s; keep a minute for the slice's own bookkeeping.
RENDER_LAMBDA_BUDGET_S = 840


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SUBC_", extra="ignore", frozen=True)

    # --- AWS resources (names come from infra/definitions.py) ---
    tenants_table: str = "subc-tenants"
    quotes_table: str = "subc-quotes"
    orders_table: str = "subc-orders"
    images_table: str = "subc-images"
    runs_table: str = "subc-runs"
    idempotency_table: str = "subc-idempotency"
    images_bucket: str = "subc-images"
    history_bucket: str = "subc-market-history"
    prices_table: str = "subc-prices"
    work_queue_url: str = ""
    # Where SQS moves a task delivered MAX_RECEIVE_COUNT times; the dispatch tick drains it.
    dead_letter_queue_url: str = ""
    render_run_state_machine_arn: str = ""
    webhooks_table: str = "subc-webhooks"
    webhook_queue_url: str = ""

    # --- API ---
    max_body_bytes: int = 64 * 1024
    presign_expiry_s: int = Field(default=3600, ge=60, le=7 * 24 * 3600)
    quote_ttl_s: int = Field(default=900, ge=60)
    images_page_size: int = Field(default=100, ge=1, le=1000)
    margin_percent: int = Field(default=30, ge=0, le=500)
    # Where the web console (GET /console) may load thumbnails and image bytes from: the
    # origins of the presigned links (its Content-Security-Policy's img-src and connect-src),
    # as JSON, e.g. ["https://subc-images-1-us-east-1.s3.amazonaws.com"]. Empty: the origin of
    # a link the bucket presigns (offline signing), the moto endpoint on the local stack.
    console_image_origins: tuple[
        Annotated[str, Field(pattern=r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$")], ...
    ] = ()

    # Secrets Manager secret (ARN or name) holding SECRET_FIELDS, read by load_settings().
    provider_secrets_arn: str = ""

    # --- Market ---
    # Cached offers older than this are not used to quote or rent (the live market is asked).
    price_max_age_s: int = Field(default=900, ge=60)
    # The quote's forecast of interruptible capacity: read from the last days of the market
    # history (a sample of snapshots a day), refreshed by the prices tick this often.
    # (at most 15 × 48 objects, well inside the prices Lambda's time)
    forecast_days: int = Field(default=7, ge=1, le=14)
    forecast_snapshots_per_day: int = Field(default=24, ge=1, le=48)
    forecast_refresh_s: int = Field(default=3600, ge=60)
    providers: tuple[str, ...] = ("emulated",)
    emulated_market_url: str = "http://127.0.0.1:8650"
    # HMAC key from which each run's automatic1111 credential is derived.
    machine_auth_secret: SecretStr = SecretStr("")
    # The server those images run: automatic1111, or our lean worker (worker/: the same API,
    # faster; the planner counts on its rate and may have it compile for long runs).
    worker: WorkerKind = WorkerKind.AUTOMATIC1111
    # The lean worker's checkpoint (a path in its image, or a hub id); its default where empty.
    worker_checkpoint: str = Field(default="", pattern=r"^[A-Za-z0-9._/:-]*$")
    # Marketplace credentials (Secrets Manager in AWS) and the worker image each one runs.
    vast_api_key: SecretStr = SecretStr("")
    vast_image: str = ""
    vast_base_url: str = "https://console.vast.ai/api/v0"  # the local stack's emulator locally
    runpod_api_key: SecretStr = SecretStr("")
    runpod_image: str = ""
    tensordock_image: str = ""  # the adapter's automatic1111 image where empty
    # REST v2 for on-demand pods, offers, status and teardown; GraphQL only for interruptible
    # pods (REST v2 has no bid), to be dropped when RunPod retires it (early 2027).
    runpod_rest_url: str = "https://api.runpod.io/v2"  # the local stack's emulator locally
    runpod_url: str = "https://api.runpod.io/graphql"  # the local stack's emulator locally
    runpod_cloud_type: str = "COMMUNITY"  # COMMUNITY, SECURE or ALL
    # Where a pod serves: RunPod's proxy; the local stack's "http://{ip}:{public_port}".
    runpod_proxy_url: str = "https://{pod_id}-{port}.proxy.runpod.net"
    tensordock_api_token: SecretStr = SecretStr("")
    tensordock_ssh_public_key: str = ""
    tensordock_base_url: str = "https://dashboard.tensordock.com/api/v2"
    # AWS EC2 (market/ec2.py): the region, an AMI with Docker and NVIDIA's container toolkit
    # (RunInstances resolves the "resolve:ssm:" form: AWS's Deep Learning Base AMI), the image it
    # runs, the security group opening only the render port (the CDK stack's), its VPC's
    # subnets by zone as JSON ({"us-east-1a": "subnet-..."}; empty: the default VPC), the
    # instance types listed (empty: the adapter's), and where an instance serves.
    ec2_region: str = "us-east-1"
    ec2_image_id: str = (
        "resolve:ssm:/aws/service/deeplearning/ami/x86_64/"
        "base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id"
    )
    ec2_worker_image: str = ""
    ec2_security_group_id: str = ""
    ec2_subnets: dict[str, str] = Field(default_factory=dict)
    ec2_instance_types: tuple[str, ...] = ()
    ec2_machine_url: str = "http://{public_ip}:7860"
    # On-demand prices from AWS's Price List API (else, and where it fails, the shipped table).
    ec2_price_list: bool = True
    # automatic1111 servers that already run (never launched or stopped by us), as JSON:
    # [{"url": ..., "gpu": ..., "gpu_memory_gb": 24, "usd_per_hour": "0", "api_auth": "u:p"}]
    static_servers: tuple[StaticServer, ...] = ()
    # Seconds from rent to a ready automatic1111, per provider, where we know better than the
    # adapter's estimate (the local stack's emulated machines boot in seconds), as JSON.
    startup_s_by_provider: dict[str, int] = Field(default_factory=dict)

    # --- Dispatch and render runs ---
    # Longer than the dispatch Lambda's timeout (60 s), so a lease never expires mid-tick.
    dispatch_lease_s: int = Field(default=90, ge=1)
    # Caps on what the dispatch rents at once: machines, and their summed price per hour.
    max_live_runs: int = Field(default=4, ge=1)
    max_spend_usd_per_hour: Decimal = Field(default=Decimal(20), gt=0)
    render_slice_s: int = Field(default=540, ge=1, le=RENDER_LAMBDA_BUDGET_S)
    ready_timeout_s: int = Field(default=900, ge=1)
    poll_interval_s: int = Field(default=15, ge=1)
    # An orphaned machine is destroyed this long after the reaper first saw it orphaned.
    reaper_grace_s: int = Field(default=300, ge=0)
    idle_polls_before_teardown: int = Field(default=2, ge=1)
    # One txt2img call: well under RunPod's 100 s proxy cut.
    renderer_request_timeout_s: float = Field(default=75.0, gt=0, le=95)
    # A rented machine must be on a public address (render/address.py). True only for the local
    # stack and tests, whose machines are loopback processes; never in AWS.
    allow_private_machine_addresses: bool = False
    sqs_wait_s: int = Field(default=1, ge=0, le=20)

    # --- Failures (docs/reliability.md) ---
    # Attempts of one task (its retries are split in halves and avoid the machine that
    # failed); after the last its images are given up and its order ends without them.
    task_max_attempts: int = Field(default=3, ge=1, le=10)
    # A machine the provider reports running must serve (a first txt2img) this soon after;
    # else it is given up long before ready_timeout_s (which also covers the image pull).
    machine_serve_deadline_s: int = Field(default=420, ge=1)
    # An unfinished order with late_work "continue" renders on this long past its deadline.
    late_limit_s: int = Field(default=24 * 3600, ge=0)
    # Breakers (planner/breakers.py): an offer (one host) whose machine failed is not rented
    # again for host_holdoff_s; a provider with provider_failures_to_pause machines that
    # failed before rendering anything within provider_pause_s is paused until then.
    host_holdoff_s: int = Field(default=3600, ge=0)
    provider_failures_to_pause: int = Field(default=3, ge=1)
    provider_pause_s: int = Field(default=900, ge=0)

    # --- Webhooks (docs/webhooks.md) ---
    # Attempts of one event before it is given up, and the first retry's wait (x4 each time).
    webhook_max_attempts: int = Field(default=8, ge=1, le=20)
    webhook_backoff_s: int = Field(default=30, ge=0, le=3600)
    webhook_timeout_s: float = Field(default=10.0, gt=0, le=30)
    # Receivers must be https on public addresses. True only for the local stack and tests,
    # whose receivers are loopback http servers; never in AWS.
    allow_http_webhooks: bool = False
    allow_private_webhook_addresses: bool = False

    @model_validator(mode="after")
    def _lean_images_everywhere(self) -> Settings:
        # TensorDock's default image is automatic1111: the planner would count on rates the
        # machines never reach
        if (
            self.worker is WorkerKind.LEAN
            and "tensordock" in self.providers
            and not self.tensordock_image
        ):
            raise ValueError("SUBC_WORKER=lean with tensordock needs SUBC_TENSORDOCK_IMAGE")
        return self

    @model_validator(mode="after")
    def _slice_fits_in_a_lambda(self) -> Settings:
        # A slice starts no task after slice_s; the last one may take 3 attempts + storing.
        worst = self.render_slice_s + self.renderer_request_timeout_s * 3 + 30
        if worst > RENDER_LAMBDA_BUDGET_S:
            raise ValueError(
                f"render_slice_s + 3 x renderer_request_timeout_s + 30 = {worst:.0f}s exceeds "
                f"the render step's {RENDER_LAMBDA_BUDGET_S}s budget"
            )
        return self


def load_settings() -> Settings:
    """The settings from the environment (and the secret it names). Called by the composition
    root once per cold start (``subconscious.services``), nowhere else."""
    settings = Settings()
    if not settings.provider_secrets_arn:
        return settings
    from subconscious.dal.secrets import read_json_secret

    stored = read_json_secret(settings.provider_secrets_arn)
    overrides: dict[str, Any] = {k: v for k, v in stored.items() if k in SECRET_FIELDS and v}
    return Settings(**overrides) if overrides else settings
