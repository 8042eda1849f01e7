"""Fixtures for the cache tests: a proxy in front of a fault-injecting fake upstream, per test, on
each cache backend: the local disk alone, and the local disk in front of a bucket (moto's S3)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.fake_index import FakeIndex
from tests.support.stack import MakeStack, Stack


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The ``Config`` changes of the backend under test; for s3, a new empty bucket."""
    if request.param == "local":
        return {}
    pytest.importorskip("aiobotocore", reason="the [s3] extra is not installed (pip install -e '.[test]')")
    moto = request.getfixturevalue("moto")
    request.getfixturevalue("aws_env")
    bucket = request.getfixturevalue("bucket")
    return {
        "cache_backend": "s3",
        "s3_bucket": bucket,
        "s3_endpoint_url": moto.endpoint_url,
        "s3_region": "us-east-1",
    }


@pytest.fixture
def make_stack(make_stack: MakeStack, backend: dict[str, Any]) -> MakeStack:
    """The root ``make_stack`` on the backend under test, with upstream hashes on by default: cache
    tests verify files."""

    def make(index: FakeIndex, **options: Any) -> Stack:
        options.setdefault("hashes", True)
        options["config"] = {**backend, **(options.get("config") or {})}
        return make_stack(index, **options)

    return make
