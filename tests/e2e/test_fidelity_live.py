"""Opt-in, on the real network: the fidelity cases of ``tests/e2e/fidelity.py`` as tests.

Runs only with ``WHEELMELD_LIVE=1`` (marker ``live``). Each case's universal lock through wheelmeld
must select, on all five platforms, what ``uv pip compile --python-platform`` resolves against the
upstream directly, and is never worse than the direct lock; a case whose difference is known to be
uv's universal resolution (``Case.known``) is an expected failure. ``docs/fidelity.md`` keeps both.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from proxy.default_index import discover_default_index
from tests.e2e.e2ekit import Clients
from tests.e2e.fidelity import CASES, Case, check_case
from tests.support.proxy import ProxyServer, proxy_config

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.live,
    pytest.mark.skipif(os.environ.get("WHEELMELD_LIVE") != "1", reason="set WHEELMELD_LIVE=1 to run"),
]


@pytest.fixture(scope="module")
def index_url() -> str:
    return discover_default_index().url


@pytest.fixture(scope="module")
def live_proxy(index_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyServer]:
    config = proxy_config(tmp_path_factory.mktemp("fidelity-cache"), {"/simple": index_url})
    with ProxyServer(config) as proxy:
        yield proxy


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.requirement)
def test_the_proxied_universal_lock_is_right_on_every_platform(
    clients: Clients, index_url: str, live_proxy: ProxyServer, case: Case, tmp_path: Path
) -> None:
    result = check_case(clients, case, index_url, f"{live_proxy.url}/simple", tmp_path)
    # Never worse than no proxy: it locks wherever the direct lock does, and is wrong on no
    # platform where the direct lock is right.
    assert result.proxy.failed is None or result.direct.failed is not None, result.why()
    assert result.proxy.wrong_platforms <= result.direct.wrong_platforms, result.why()
    if not result.proxy.right:
        if case.known is None:
            pytest.fail(result.why())
        pytest.xfail(result.why())
