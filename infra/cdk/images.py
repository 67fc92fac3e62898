"""Images: the S3 buckets (rendered PNGs, market history) and their access-log bucket."""

from __future__ import annotations

from typing import Any

from aws_cdk import Aws, Duration, RemovalPolicy
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra import definitions as d
from infra.cdk.nag import acknowledge
from subconscious.models.work import image_key

# every image key starts here (subconscious.models.work.image_key)
IMAGES_PREFIX = image_key("t", "o", 0, 0).split("/", 1)[0] + "/"
HISTORY_PREFIX = "market/"  # subconscious.dal.prices.MarketHistory


def bucket_name(name: str) -> str:
    """Bucket names are global: the definitions' name, made unique per account and region."""
    return f"{name}-{Aws.ACCOUNT_ID}-{Aws.REGION}"


class Images(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, retention_days: int) -> None:
        super().__init__(scope, construct_id)
        private: dict[str, Any] = {
            "block_public_access": s3.BlockPublicAccess.BLOCK_ALL,
            "enforce_ssl": True,
            "encryption": s3.BucketEncryption.S3_MANAGED,
            "object_ownership": s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        }
        self.access_logs = s3.Bucket(
            self,
            "AccessLogs",
            **private,
            lifecycle_rules=[
                s3.LifecycleRule(id="expire-access-logs", expiration=Duration.days(90))
            ],
            removal_policy=RemovalPolicy.RETAIN,
        )
        acknowledge(
            self.access_logs,
            "AwsSolutions-S1",
            "This is the access-log bucket of the other buckets; logging it to itself would loop.",
        )
        self.images = s3.Bucket(
            self,
            "Images",
            bucket_name=bucket_name(d.IMAGES_BUCKET),
            **private,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix="images/",
            # The web console's zip download reads images through their presigned links from
            # the page's origin (the API's, which the bucket cannot name without a cycle). A
            # link is a bearer credential on its own: any origin may GET with one, no more.
            cors=[
                s3.CorsRule(
                    allowed_methods=[s3.HttpMethods.GET], allowed_origins=["*"], max_age=3600
                )
            ],
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-old-orders",
                    prefix=IMAGES_PREFIX,
                    expiration=Duration.days(retention_days),
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                )
            ],
            removal_policy=RemovalPolicy.RETAIN,
        )
        # Where the images' presigned links point (the console's img-src): the global
        # endpoint botocore signs for, and the regional one S3 may redirect to.
        self.image_origins = [
            f"https://{self.images.bucket_name}.s3.amazonaws.com",
            f"https://{self.images.bucket_regional_domain_name}",
        ]
        self.history = s3.Bucket(
            self,
            "MarketHistory",
            bucket_name=bucket_name(d.HISTORY_BUCKET),
            **private,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix="market-history/",
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="cheaper-storage-for-old-snapshots",
                    prefix=HISTORY_PREFIX,
                    transitions=[
                        s3.Transition(
                            storage_class=s3.StorageClass.INFREQUENT_ACCESS,
                            transition_after=Duration.days(30),
                        )
                    ],
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                )
            ],
            removal_policy=RemovalPolicy.RETAIN,
        )
