"""Fixtures for the cache tests: a proxy in front of a fault-injecting fake upstream, per test, and a
real redis-server for the fleet's leases."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.fake_index import FakeIndex
from tests.support.redis_server import TEST_PASSWORD, RedisServer, RedisUnavailable
from tests.support.stack import MakeStack, Stack


@pytest.fixture
def make_stack(make_stack: MakeStack) -> MakeStack:
    """The root ``make_stack``, with upstream hashes on by default: cache tests verify files."""

    def make(index: FakeIndex, **options: Any) -> Stack:
        options.setdefault("hashes", True)
        return make_stack(index, **options)

    return make


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A fresh redis-server on 127.0.0.1 (with ``TEST_PASSWORD``); skipped where none is installed."""
    try:
        with RedisServer(password=TEST_PASSWORD) as server:
            yield server
    except RedisUnavailable as exc:
        pytest.skip(f"no Redis for the fleet lease tests: {exc}")
