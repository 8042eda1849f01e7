"""Session-scoped servers and clients for the end-to-end tests (helpers live in ``e2ekit``).

The e2e tests only *read* from their upstreams, so one upstream and one proxy serve the whole
session: a lock made once is checked by several tests, and the directory stays well under two
minutes.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.e2ekit import PYTORCH_OPTIONS, Clients
from tests.support.fake_index import FIXTURES_DIR, FakeIndex
from tests.support.proxy import ProxyServer, proxy_config
from tests.support.upstream import UpstreamServer


@pytest.fixture(scope="session")
def clients(tmp_path_factory: pytest.TempPathFactory) -> Clients:
    """One uv cache for the session: every index URL (upstream, proxy) keys its own entries."""
    root = tmp_path_factory.mktemp("clients")
    (root / "home").mkdir()
    return Clients(home=root / "home", uv_cache=root / "uv-cache")


@pytest.fixture(scope="session")
def seed_index() -> FakeIndex:
    return FakeIndex.from_pytorch_fixture(FIXTURES_DIR / "pytorch-nightly-cu126.json")


@pytest.fixture(scope="session")
def seed_upstream(seed_index: FakeIndex) -> Iterator[UpstreamServer]:
    """The seed index, served like the PyTorch index, under ``/whl/nightly/cu126/``."""
    with UpstreamServer(seed_index, PYTORCH_OPTIONS) as up:
        yield up


@pytest.fixture(scope="session")
def seed_proxy(
    seed_upstream: UpstreamServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ProxyServer]:
    """wheelmeld with ``/whl`` in front of the seed upstream's ``/whl``."""
    config = proxy_config(tmp_path_factory.mktemp("proxy-cache"), {"/whl": f"{seed_upstream.url}/whl"})
    with ProxyServer(config) as proxy:
        yield proxy
