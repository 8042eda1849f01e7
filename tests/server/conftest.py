"""Fixtures for HTTP-level tests of ``wheelmeld serve``: a real proxy in front of a real fake upstream."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.fake_index import FakeIndex
from tests.support.stack import Stack, start_stack
from tests.support.upstream import PYTORCH_OPTIONS


@pytest.fixture
def seed(pytorch_index: FakeIndex, tmp_path: Path) -> Iterator[Stack]:
    """The seed's PyTorch nightly index, served like the PyTorch wheel index, behind the proxy."""
    with contextlib.ExitStack() as stack:
        yield start_stack(stack, tmp_path / "cache", pytorch_index, PYTORCH_OPTIONS)


@pytest.fixture(scope="module")
def shared_seed(pytorch_index: FakeIndex, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Like ``seed`` but one per module: only for tests that read pages and change nothing."""
    with contextlib.ExitStack() as stack:
        cache = tmp_path_factory.mktemp("shared") / "cache"
        yield start_stack(stack, cache, pytorch_index, PYTORCH_OPTIONS)
