"""Fixtures for HTTP-level tests of ``wheelmeld serve``: a real proxy in front of a real fake upstream."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PYTORCH_OPTIONS
from tests.server.kit import Stack, start_stack
from tests.support.fake_index import FakeIndex
from tests.support.upstream import UpstreamOptions

MakeStack = Callable[..., Stack]


@pytest.fixture
def make_stack(tmp_path: Path) -> Iterator[MakeStack]:
    """``make_stack(index, route={...}, config={...}, **upstream_options)`` → a started ``Stack``.

    Upstream options default to a ``/simple`` prefix; ``route`` changes the proxy's RouteConfig
    (``page_ttl``, ``extra_file_hosts``...), ``config`` its Config.
    """
    with contextlib.ExitStack() as stack:
        count = 0

        def make(
            index: FakeIndex,
            *,
            route: dict[str, Any] | None = None,
            config: dict[str, Any] | None = None,
            **options: Any,
        ) -> Stack:
            nonlocal count
            count += 1
            opts = UpstreamOptions(**{"prefix": "/simple", **options})
            return start_stack(stack, tmp_path / f"cache{count}", index, opts, route, config)

        yield make


@pytest.fixture
def seed(pytorch_index: FakeIndex, tmp_path: Path) -> Iterator[Stack]:
    """The seed's PyTorch nightly index, served like download.pytorch.org, behind the proxy."""
    with contextlib.ExitStack() as stack:
        yield start_stack(stack, tmp_path / "cache", pytorch_index, PYTORCH_OPTIONS)


@pytest.fixture(scope="module")
def shared_seed(pytorch_index: FakeIndex, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Like ``seed`` but one per module: only for tests that read pages and change nothing."""
    with contextlib.ExitStack() as stack:
        cache = tmp_path_factory.mktemp("shared") / "cache"
        yield start_stack(stack, cache, pytorch_index, PYTORCH_OPTIONS)
