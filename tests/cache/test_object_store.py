"""The backend-neutral parts of ``proxy.cache.object_store``: key rules and the verifying stream."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from proxy.cache.object_store import BodyMismatch, Expected, InvalidKey, check_key, verified

BODY = b"0123456789" * 1000
SHA = hashlib.sha256(BODY).hexdigest()


@pytest.mark.parametrize(
    "key",
    ["files/torch/torch-2.7.0+cu126-cp311-cp311-linux_x86_64.whl", "a", "metadata/x.metadata", "pages/a b"],
)
def test_plain_relative_keys_pass(key: str) -> None:
    assert check_key(key) == key


@pytest.mark.parametrize("key", ["", "/abs", "a//b", "a/", "./a", "a/../b", "..", "a/.", "a\nb", "a\x00b"])
def test_keys_that_could_leave_their_place_are_refused(key: str) -> None:
    with pytest.raises(InvalidKey):
        check_key(key)


async def _chunks(data: bytes, size: int = 1000) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def _drain(expected: Expected, data: bytes = BODY) -> bytes:
    return b"".join([chunk async for chunk in verified(_chunks(data), expected)])


@pytest.mark.parametrize(
    "expected",
    [Expected(), Expected(size=len(BODY)), Expected(sha256=SHA), Expected(len(BODY), SHA.upper())],
)
def test_a_matching_body_passes_whole(expected: Expected) -> None:
    assert asyncio.run(_drain(expected)) == BODY


@pytest.mark.parametrize(
    ("expected", "reason"),
    [
        (Expected(size=len(BODY) + 1), "expected"),
        (Expected(size=len(BODY) - 1), "longer than"),
        (Expected(sha256="0" * 64), "sha256"),
        (Expected(len(BODY), hashlib.sha256(b"other").hexdigest()), "sha256"),
    ],
)
def test_a_mismatch_raises_instead_of_ending(expected: Expected, reason: str) -> None:
    with pytest.raises(BodyMismatch, match=reason):
        asyncio.run(_drain(expected))


def test_a_body_too_long_stops_at_the_first_byte_too_many() -> None:
    async def run() -> int:
        passed = 0
        with pytest.raises(BodyMismatch):
            async for chunk in verified(_chunks(BODY), Expected(size=2500)):
                passed += len(chunk)
        return passed

    assert asyncio.run(run()) == 2000


def test_the_default_install_needs_no_s3_client() -> None:
    # The interface is importable, and the proxy runs, without the [s3] extra's packages (aiohttp,
    # which aiobotocore uses too, is a dependency of its own: the range reads' client).
    code = (
        "import sys, proxy.cache.object_store, proxy.server.app, proxy.cli\n"
        "loaded = {'aiobotocore', 'botocore'} & set(sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])
