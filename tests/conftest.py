"""Shared pytest fixtures: fake upstream indexes served on 127.0.0.1.

Wheel building is session-scoped (the indexes are immutable values); servers are
function-scoped because tests flip their options, inject faults and read their request logs.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.fake_index import FIXTURES_DIR, FakeIndex
from tests.support.redis_server import TEST_PASSWORD, RedisServer, RedisUnavailable
from tests.support.s3_server import ACCESS_KEY, SECRET_KEY, MotoS3, MotoUnavailable
from tests.support.stack import MakeStack, Stack, start_stack
from tests.support.upstream import PYPI_TORCH_OPTIONS, PYTORCH_OPTIONS, UpstreamOptions, UpstreamServer


@pytest.fixture(scope="session")
def pytorch_index() -> FakeIndex:
    """The seed index (29 projects, 114 tiny wheels), built once per session."""
    return FakeIndex.from_pytorch_fixture(FIXTURES_DIR / "pytorch-nightly-cu126.json")


@pytest.fixture(scope="session")
def pypi_torch_index() -> FakeIndex:
    """torch 2.1.0: 20 real METADATA files (resolution only: bodies don't match the hashes)."""
    return FakeIndex.from_pypi_torch_fixture(FIXTURES_DIR / "pypi-torch-2.1.0")


@pytest.fixture
def pytorch_upstream(pytorch_index: FakeIndex) -> Iterator[UpstreamServer]:
    """The seed index served like the PyTorch wheel index under ``/whl/nightly/cu126/``."""
    with UpstreamServer(pytorch_index, PYTORCH_OPTIONS) as up:
        yield up


@pytest.fixture
def pypi_torch_upstream(pypi_torch_index: FakeIndex) -> Iterator[UpstreamServer]:
    """torch 2.1.0 with PEP 658 metadata and real hashes under ``/simple/``."""
    with UpstreamServer(pypi_torch_index, PYPI_TORCH_OPTIONS) as up:
        yield up


@pytest.fixture
def make_upstream() -> Iterator[Callable[..., UpstreamServer]]:
    """A factory: ``make_upstream(index, **options)`` → a started server, stopped at teardown."""
    with contextlib.ExitStack() as stack:

        def make(index: FakeIndex, **options: Any) -> UpstreamServer:
            return stack.enter_context(UpstreamServer(index, UpstreamOptions(**options)))

        yield make


@pytest.fixture
def make_stack(tmp_path: Path) -> Iterator[MakeStack]:
    """``make_stack(index, route={...}, config={...}, cache_dir=..., **upstream_options)`` → a ``Stack``.

    Upstream options default to a ``/simple`` prefix; ``route`` changes the proxy's RouteConfig
    (``page_ttl``, ``keep_pruned``...), ``config`` its Config (``offline``...); ``cache_dir`` lets a
    test restart a proxy on the cache of an earlier one.
    """
    with contextlib.ExitStack() as stack:
        count = 0

        def make(
            index: FakeIndex,
            *,
            route: dict[str, Any] | None = None,
            config: dict[str, Any] | None = None,
            cache_dir: Path | None = None,
            **options: Any,
        ) -> Stack:
            nonlocal count
            count += 1
            opts = UpstreamOptions(**{"prefix": "/simple", **options})
            return start_stack(stack, cache_dir or tmp_path / f"cache{count}", index, opts, route, config)

        yield make


# -- an S3-compatible server (moto's, a real HTTP S3 API) for the s3 backend's tests ---------------


@pytest.fixture(scope="session")
def moto() -> Iterator[MotoS3]:
    """One moto S3 server per session; the tests that need it skip, saying why, where it cannot run."""
    try:
        with MotoS3() as server:
            yield server
    except MotoUnavailable as exc:
        pytest.skip(f"no S3 server for the s3 backend's tests: {exc}")


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Only moto's test credentials, from the environment: no profile, file or role of the machine."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


_buckets = itertools.count()


@pytest.fixture
def bucket(moto: MotoS3) -> str:
    """A new, empty bucket on the session's moto server."""
    name = f"wheelmeld-test-{next(_buckets)}"
    moto.client.create_bucket(Bucket=name)
    return name


# -- Redis (Debian's redis-server) for the fleet's leases -------------------------------------------


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A fresh redis-server on 127.0.0.1 (with ``TEST_PASSWORD``); skipped where none is installed."""
    try:
        with RedisServer(password=TEST_PASSWORD) as server:
            yield server
    except RedisUnavailable as exc:
        pytest.skip(f"no Redis for the fleet lease tests: {exc}")
