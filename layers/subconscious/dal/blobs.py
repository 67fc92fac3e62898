"""Images in S3, and presigned GET links to them."""

from __future__ import annotations

from typing import Any

from subconscious import aws


class ImageBucket:
    def __init__(self, bucket: str, client: Any = None) -> None:
        self.bucket = bucket
        self._s3 = client or aws.client("s3")

    def put_png(self, key: str, body: bytes, metadata: dict[str, str]) -> None:
        self._s3.put_object(
            Bucket=self.bucket, Key=key, Body=body, ContentType="image/png", Metadata=metadata
        )

    def presign(self, key: str, expires_s: int) -> str:
        url: str = self._s3.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires_s
        )
        return url
