"""The remote-zip reader never trusts its upstream: lying headers and corrupted bytes.

Unit tests over ``httpx.MockTransport`` (a tiny in-process range server), so hypothesis can try
hundreds of corruptions quickly; the loopback-server tests live in ``test_remote_zip.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import zipfile
from collections.abc import Callable

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.network.remote_zip import FetchedMetadata, RemoteZipError, fetch_wheel_metadata
from tests.support.wheels import build_wheel, metadata_from_fields

NAME = "demo_pkg-1.0-py3-none-any.whl"
METADATA = metadata_from_fields("demo-pkg", "1.0", ["six", 'numpy; python_version >= "3.12"'])
WHEEL = build_wheel(NAME, METADATA, payload_size=3000, compression=zipfile.ZIP_STORED)
WHEEL64 = build_wheel(NAME, METADATA, payload_size=3000, force_zip64=True)

# (status, headers, body) for a request asking bytes [start, stop) of a file of `size` bytes.
Answer = tuple[int, dict[str, str], bytes]
Liar = Callable[[bytes, int, int, int], Answer | None]


def _handler(body: bytes, liar: Liar | None = None) -> Callable[[httpx.Request], httpx.Response]:
    calls = 0

    def handle(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        match = re.fullmatch(r"bytes=(\d*)-(\d*)", request.headers.get("range", ""))
        assert match, request.headers
        first, last = match.groups()
        size = len(body)
        start, stop = (
            (max(0, size - int(last)), size) if not first else (int(first), min(size, int(last) + 1))
        )
        if size == 0 or start >= size:
            return httpx.Response(416, headers={"content-range": f"bytes */{size}"})
        answer = liar(body, start, stop, calls) if liar else None
        if answer is None:
            answer = (206, {"content-range": f"bytes {start}-{stop - 1}/{size}"}, body[start:stop])
        status, headers, content = answer
        # A stream, not content=: like a real transport, so the reader can consume it raw.
        return httpx.Response(status, headers=headers, stream=httpx.ByteStream(content))

    return handle


def _fetch(body: bytes, liar: Liar | None = None, tail_size: int = 64 * 1024) -> FetchedMetadata:
    async def go() -> FetchedMetadata:
        transport = httpx.MockTransport(_handler(body, liar))
        async with httpx.AsyncClient(transport=transport) as client:
            return await fetch_wheel_metadata(
                client, "http://upstream.example/x.whl", NAME, tail_size=tail_size
            )

    return asyncio.run(go())


def test_the_mock_range_server_is_sound() -> None:
    got = _fetch(WHEEL, tail_size=100)
    assert (got.metadata, got.method) == (METADATA, "range")


@pytest.mark.parametrize(
    ("liar", "message"),
    [
        # A suffix answer that stops before the end of the file.
        (lambda b, s, e, n: (206, {"content-range": f"bytes 0-99/{len(b)}"}, b[:100]), "misses the end"),
        # More bytes than the Content-Range announces.
        (lambda b, s, e, n: (206, {"content-range": f"bytes {s}-{e - 1}/{len(b)}"}, b[s:e] + b"x"), "longer"),
        # Fewer bytes than the Content-Range announces (framed honestly by Content-Length).
        (lambda b, s, e, n: (206, {"content-range": f"bytes {s}-{e - 1}/{len(b)}"}, b[s + 1 : e]), "said"),
        (lambda b, s, e, n: (206, {}, b[s:e]), "without a usable Content-Range"),
        (lambda b, s, e, n: (206, {"content-range": f"bytes */{len(b)}"}, b[s:e]), "usable"),
        (lambda b, s, e, n: (206, {"content-range": "bytes 50-10/100"}, b""), "impossible"),
        # The second range comes from a file of another size: it changed under us.
        (
            lambda b, s, e, n: (
                (206, {"content-range": f"bytes {s}-{e - 1}/{len(b) + 1}"}, b[s:e]) if n > 1 else None
            ),
            "asked bytes",
        ),
        # The second range is answered from another offset.
        (
            lambda b, s, e, n: (
                (206, {"content-range": f"bytes 0-{e - s - 1}/{len(b)}"}, b[: e - s]) if n > 1 else None
            ),
            "asked bytes",
        ),
        # Ranges honoured for the tail, then refused.
        (lambda b, s, e, n: (200, {}, b) if n > 1 else None, "answered 200"),
        # A total that is not the real size: the end record no longer lines up.
        (
            lambda b, s, e, n: (206, {"content-range": f"bytes {s}-{e - 1}/{e + 5}"}, b[s:e]),
            "end-of-central-directory|misses the end",
        ),
    ],
)
def test_lying_servers_are_caught(liar: Liar, message: str) -> None:
    with pytest.raises(RemoteZipError, match=message):
        _fetch(WHEEL, liar, tail_size=100)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.binary(max_size=600), tail_size=st.integers(22, 700))
def test_arbitrary_bytes_never_raise_anything_else(body: bytes, tail_size: int) -> None:
    with contextlib.suppress(RemoteZipError):
        _fetch(body, tail_size=tail_size)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    wheel=st.sampled_from([WHEEL, WHEEL64]),
    data=st.data(),
    tail_size=st.sampled_from([22, 64, 300, 1000, 64 * 1024]),
)
def test_corrupted_wheels_give_the_right_metadata_or_remote_zip_error(
    wheel: bytes, data: st.DataObject, tail_size: int
) -> None:
    # Corrupt a few bytes, mostly in the zip structures at the end of the file.
    corrupted = bytearray(wheel)
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(max(0, len(wheel) - 1200), len(wheel) - 1))
        corrupted[at] = data.draw(st.integers(0, 255))
    try:
        got = _fetch(bytes(corrupted), tail_size=tail_size)
    except RemoteZipError:
        return
    # Sizes and CRC-32 are checked against the central directory, so a success is the truth.
    assert got.metadata == METADATA
