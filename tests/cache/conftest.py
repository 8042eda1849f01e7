"""Fixtures for the cache tests: a proxy in front of a fault-injecting fake upstream, per test."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.server.kit import Stack, start_stack
from tests.support.fake_index import FakeIndex
from tests.support.upstream import UpstreamOptions

MakeStack = Callable[..., Stack]


@pytest.fixture
def make_stack(tmp_path: Path) -> Iterator[MakeStack]:
    """``make_stack(index, route={...}, config={...}, cache_dir=..., **upstream_options)`` → a ``Stack``.

    Upstream options default to a ``/simple`` prefix with hashes; ``route`` changes the proxy's
    RouteConfig (``page_ttl``, ``keep_pruned``...), ``config`` its Config (``offline``...).
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
            opts = UpstreamOptions(**{"prefix": "/simple", "hashes": True, **options})
            cache = cache_dir or tmp_path / f"cache{count}"
            return start_stack(stack, cache, index, opts, route, config)

        yield make
