"""Shared pytest fixtures: fake upstream indexes served on 127.0.0.1.

Wheel building is session-scoped (the indexes are immutable values); servers are
function-scoped because tests flip their options, inject faults and read their request logs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support.fake_index import FIXTURES_DIR, FakeIndex
from tests.support.upstream import UpstreamOptions, UpstreamServer

# The seed's index as the PyTorch wheel index serves it: static HTML, no PEP 658 files, ranges,
# relative %2B links, no #sha256 on nightly files, the non-standard data-upload-time.
PYTORCH_OPTIONS = UpstreamOptions(
    format="html",
    pep658=False,
    ranges=True,
    hashes=False,
    link_style="relative",
    prefix="/whl/nightly/cu126",
)
# torch 2.1.0's real metadata as PEP 658 files, real names and hashes on an HTML page, absolute
# links to the files (a package index usually links to a separate file host).
PYPI_TORCH_OPTIONS = UpstreamOptions(
    format="html", pep658=True, ranges=True, hashes=True, link_style="absolute", prefix="/simple"
)


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
