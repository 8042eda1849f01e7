"""Fixtures for the cache tests: a proxy in front of a fault-injecting fake upstream, per test."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.fake_index import FakeIndex
from tests.support.stack import MakeStack, Stack


@pytest.fixture
def make_stack(make_stack: MakeStack) -> MakeStack:
    """The root ``make_stack``, with upstream hashes on by default: cache tests verify files."""

    def make(index: FakeIndex, **options: Any) -> Stack:
        options.setdefault("hashes", True)
        return make_stack(index, **options)

    return make
