"""A fleet's configuration for tests: replicas sharing one bucket (moto) and one Redis."""

from __future__ import annotations

from pathlib import Path

from tests.support.redis_server import RedisServer
from tests.support.s3_server import MotoS3

__all__ = ["fleet_toml"]


def fleet_toml(path: Path, moto: MotoS3, bucket: str, redis: RedisServer, *, lease_ttl: float) -> Path:
    """A config file for ``wheelmeld serve --config``: backend s3 on ``bucket``, leases on ``redis``."""
    path.write_text(
        f"""
[cache]
backend = "s3"

[cache.s3]
endpoint_url = "{moto.endpoint_url}"
bucket = "{bucket}"
region = "us-east-1"

[coordination]
redis_url = "{redis.url}"
lease_ttl = {lease_ttl}
""",
        encoding="utf-8",
    )
    return path
