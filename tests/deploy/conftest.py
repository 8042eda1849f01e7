"""Fixtures for the deployment tests: the shipped nginx tier in front of a real proxy stack."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.deploy.tier import CountingProxy, Nginx, find_nginx
from tests.support.fake_index import FakeIndex
from tests.support.proxy import proxy_config
from tests.support.upstream import UpstreamOptions, UpstreamServer


@dataclass(frozen=True, slots=True)
class Tier:
    """upstream <- proxy <- nginx, and a client on nginx."""

    upstream: UpstreamServer
    proxy: CountingProxy
    nginx: Nginx
    client: httpx.Client


MakeTier = Callable[..., Tier]


@pytest.fixture(scope="session")
def nginx_binary() -> str:
    binary = find_nginx()
    if binary is None:
        pytest.skip("nginx is not installed (Debian: apt-get install nginx); the tier tests need it")
    return binary


@pytest.fixture
def make_tier(nginx_binary: str, tmp_path: Path) -> Iterator[MakeTier]:
    """``make_tier(index, options, route={...}, config={...})`` -> a started ``Tier``."""
    with contextlib.ExitStack() as stack:

        def make(
            index: FakeIndex,
            options: UpstreamOptions,
            *,
            route: dict[str, Any] | None = None,
            config: dict[str, Any] | None = None,
        ) -> Tier:
            up = stack.enter_context(UpstreamServer(index, options))
            prefix = "/" + options.prefix.strip("/").split("/")[0]
            cfg = proxy_config(tmp_path / "proxy-cache", {prefix: up.url + prefix}, **(config or {}))
            cfg = replace(cfg, routes=tuple(replace(r, **(route or {})) for r in cfg.routes))
            proxy = stack.enter_context(CountingProxy(cfg))
            nginx = stack.enter_context(Nginx(nginx_binary, [proxy.port], tmp_path / "nginx"))
            client = stack.enter_context(httpx.Client(base_url=nginx.url, timeout=30.0))
            return Tier(up, proxy, nginx, client)

        yield make
