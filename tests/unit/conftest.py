"""Fixtures of the command-line tests: a tiny fake upstream on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.fake_index import FakeFile, FakeIndex
from tests.support.upstream import UpstreamOptions, UpstreamServer
from tests.support.wheels import build_wheel, metadata_from_fields


@pytest.fixture
def small_upstream() -> Iterator[UpstreamServer]:
    metadata = metadata_from_fields("tiny", "1.0", ["idna"])
    index = FakeIndex.from_files(
        {"tiny": [FakeFile("tiny-1.0-py3-none-any.whl", build_wheel("tiny-1.0-py3-none-any.whl", metadata))]}
    )
    with UpstreamServer(index, UpstreamOptions(prefix="/simple")) as up:
        yield up
