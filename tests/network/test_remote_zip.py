"""Reading METADATA out of remote wheels, against the fake upstream on 127.0.0.1."""

from __future__ import annotations

import asyncio
import io
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from proxy.network.remote_zip import METADATA_SIZE_CAP, FetchedMetadata, RemoteZipError, fetch_wheel_metadata
from tests.support.upstream import FakeFile, FakeIndex, Fault, UpstreamServer
from tests.support.wheels import build_wheel, metadata_from_fields, write_wheel

NAME = "demo_pkg-2.0.0+local-cp312-cp312-manylinux_2_28_x86_64.whl"
METADATA = metadata_from_fields(
    "demo-pkg", "2.0.0+local", ["filelock", 'nvidia-nccl-cu12; extra == "cuda"'], ["cuda"]
)
KIB = 1024

MakeUpstream = Callable[..., UpstreamServer]


def _fetch(up: UpstreamServer, filename: str = NAME, **kwargs: object) -> FetchedMetadata:
    async def go() -> FetchedMetadata:
        async with httpx.AsyncClient() as client:
            return await fetch_wheel_metadata(client, up.file_url(filename), filename, **kwargs)  # type: ignore[arg-type]

    return asyncio.run(go())


def _serve(
    make_upstream: MakeUpstream, content: bytes, filename: str = NAME, **options: object
) -> UpstreamServer:
    return make_upstream(FakeIndex.from_files({"demo-pkg": [FakeFile(filename, content=content)]}), **options)


def _many_files(count: int) -> dict[str, bytes]:
    return {f"demo_pkg/sub/module_with_a_long_name_{i:05d}.py": b"x = 1\n" for i in range(count)}


# (id, wheel factory, requests with ranges on)
SHAPES: list[tuple[str, Callable[[], bytes], int]] = [
    ("tiny", lambda: build_wheel(NAME, METADATA), 1),
    (
        "large-stored",
        lambda: build_wheel(NAME, METADATA, payload_size=3_000_000, compression=zipfile.ZIP_STORED),
        1,
    ),
    ("zip64", lambda: build_wheel(NAME, METADATA, payload_size=300_000, force_zip64=True), 1),
    # A central directory (and RECORD) larger than the tail: tail, then the directory's head,
    # then METADATA's local header + data.
    ("big-central-dir", lambda: build_wheel(NAME, METADATA, extra_members=_many_files(3000)), 3),
    (
        "vendored-dist-info",
        lambda: build_wheel(
            NAME,
            METADATA,
            extra_members={
                "demo_pkg/_vendor/six-1.16.0.dist-info/METADATA": b"Name: six\n",
                "other_pkg-2.0.0+local.dist-info/METADATA": b"Name: other-pkg\n",
                "demo_pkg-1.0.dist-info/METADATA": b"Name: demo-pkg\nVersion: 1.0\n",
            },
        ),
        1,
    ),
]


@pytest.mark.parametrize(("shape", "make", "range_requests"), SHAPES, ids=[s[0] for s in SHAPES])
@pytest.mark.parametrize("ranges", [True, False])
def test_reads_metadata(
    make_upstream: MakeUpstream, shape: str, make: Callable[[], bytes], range_requests: int, ranges: bool
) -> None:
    wheel = make()
    up = _serve(make_upstream, wheel, ranges=ranges)
    got = _fetch(up)
    assert got.metadata == METADATA
    # The reader's own accounting agrees with what the upstream saw.
    assert got.requests == len(up.log)
    assert got.bytes_received == up.bytes_sent_total()
    if ranges:
        assert (got.method, got.requests) == ("range", range_requests)
        assert got.bytes_received <= min(len(wheel), 64 * KIB + 2 * 300 * KIB)
        assert up.log.records()[0].range == f"bytes=-{64 * KIB}"
    else:
        assert (got.method, got.requests, got.bytes_received) == ("full", 1, len(wheel))


@pytest.mark.parametrize("force_zip64", [False, True])
@pytest.mark.parametrize("tail_size", [22, 60, 100, 500, 1500, 4000, 64 * KIB])
def test_any_tail_size_works(make_upstream: MakeUpstream, tail_size: int, force_zip64: bool) -> None:
    wheel = build_wheel(NAME, METADATA, payload_size=20_000, force_zip64=force_zip64)
    up = _serve(make_upstream, wheel)
    got = _fetch(up, tail_size=tail_size)
    assert got.metadata == METADATA
    assert got.method == "range"
    assert got.requests <= 5
    assert got.bytes_received == up.bytes_sent_total()
    if tail_size >= len(wheel):
        assert got.requests == 1


def test_large_wheel_on_disk_costs_one_tail(make_upstream: MakeUpstream, tmp_path: Path) -> None:
    path = write_wheel(tmp_path, NAME, METADATA, payload_size=50 * 1024 * 1024)
    up = make_upstream(FakeIndex.from_files({"demo-pkg": [FakeFile(NAME, path=path)]}))
    got = _fetch(up)
    assert (got.metadata, got.requests, got.bytes_received) == (METADATA, 1, 64 * KIB)


def test_local_extra_longer_than_central_is_refetched(make_upstream: MakeUpstream) -> None:
    # The local header's extra field is 4 KiB longer than the central one: the first local
    # fetch (1 KiB of slack) comes up short and the reader asks for the rest.
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("demo_pkg/__init__.py", b"")
        info = zipfile.ZipInfo("demo_pkg-2.0.0+local.dist-info/METADATA")
        info.compress_type = zipfile.ZIP_DEFLATED
        info.extra = struct.pack("<HH", 0xCAFE, 4096) + bytes(4096)
        zf.writestr(info, METADATA)
        info.extra = b""  # the central directory is written at close, from this object
    up = _serve(make_upstream, buffer.getvalue())
    got = _fetch(up, tail_size=100)
    assert got.metadata == METADATA
    assert got.requests == 4  # tail, central directory, local header (short), the rest


def test_small_tail_prefers_one_extra_range_for_the_central_directory(make_upstream: MakeUpstream) -> None:
    wheel = build_wheel(NAME, METADATA, payload_size=200_000, compression=zipfile.ZIP_STORED)
    up = _serve(make_upstream, wheel)
    got = _fetch(up, tail_size=30)
    assert got.metadata == METADATA
    ranges = [r.range for r in up.log.records()]
    assert ranges[0] == "bytes=-30" and len(ranges) == 3
    assert got.bytes_received < 4 * KIB


def _corrupt_eocd(wheel: bytes, cd_offset: int) -> bytes:
    at = wheel.rfind(b"PK\x05\x06")
    return wheel[: at + 16] + struct.pack("<L", cd_offset) + wheel[at + 20 :]


def _bzip2_wheel() -> bytes:
    return build_wheel(NAME, METADATA, compression=zipfile.ZIP_BZIP2)


def _mentioning_wheel(*, real: bool) -> bytes:
    """A zip whose entries' comments, extras and longer names spell METADATA's name; ``real`` adds
    the actual entry last. The central directory is searched for names by bytes: only real names count."""
    mention = b"demo_pkg-2.0.0+local.dist-info/METADATA"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        commented = zipfile.ZipInfo("demo_pkg/__init__.py")
        commented.comment = b"see " + mention
        zf.writestr(commented, b"")
        extra = zipfile.ZipInfo("demo_pkg/data.txt")
        extra.extra = struct.pack("<HH", 0xCAFE, len(mention)) + mention
        zf.writestr(extra, b"x")
        zf.writestr("demo_pkg-2.0.0+local.dist-info/METADATA.orig", b"not it")
        if real:
            zf.writestr("demo_pkg-2.0.0+local.dist-info/METADATA", METADATA)
    return buffer.getvalue()


def test_only_real_entry_names_are_metadata(make_upstream: MakeUpstream) -> None:
    got = _fetch(_serve(make_upstream, _mentioning_wheel(real=True)))
    assert (got.metadata, got.method, got.requests) == (METADATA, "range", 1)


BAD: list[tuple[str, Callable[[], bytes], str]] = [
    ("not-a-zip", lambda: bytes(range(256)) * 40, "end-of-central-directory|not a zip|corrupt"),
    (
        "truncated",
        lambda: build_wheel(NAME, METADATA, payload_size=5000)[:3000],
        "end-of-central-directory|corrupt",
    ),
    (
        "no-metadata",
        lambda: build_wheel("other-1.0-py3-none-any.whl", b"Name: other\n"),
        "no demo-pkg-2.0.0\\+local",
    ),
    (
        "two-candidates",
        lambda: build_wheel(NAME, METADATA, extra_members={"Demo.Pkg-2.0.0+local.dist-info/METADATA": b"x"}),
        "several candidates",
    ),
    (
        "outside",
        lambda: _corrupt_eocd(build_wheel(NAME, METADATA), 10**9),
        "outside the file|corrupt|unreadable",
    ),
    ("named-only-in-a-comment", lambda: _mentioning_wheel(real=False), "no demo-pkg-2.0.0\\+local"),
    ("bzip2", _bzip2_wheel, "compression method 12"),
    ("too-big", lambda: build_wheel(NAME, b"A" * (METADATA_SIZE_CAP + 1)), "over the"),
]


@pytest.mark.parametrize(("case", "make", "message"), BAD, ids=[b[0] for b in BAD])
@pytest.mark.parametrize("ranges", [True, False])
def test_bad_wheels_raise_remote_zip_error(
    make_upstream: MakeUpstream, case: str, make: Callable[[], bytes], message: str, ranges: bool
) -> None:
    up = _serve(make_upstream, make(), ranges=ranges)
    with pytest.raises(RemoteZipError, match=message) as info:
        _fetch(up)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        (Fault(status=500), "answered 500"),
        (Fault(status=403), "answered 403"),
        (Fault(reset_after=10), "failed: RemoteProtocolError"),
        (Fault(wrong_bytes=True), "end-of-central-directory|corrupt|CRC"),
    ],
)
@pytest.mark.parametrize("ranges", [True, False])
def test_upstream_failures_raise_remote_zip_error(
    make_upstream: MakeUpstream, fault: Fault, message: str, ranges: bool
) -> None:
    up = _serve(make_upstream, build_wheel(NAME, METADATA), ranges=ranges)
    up.inject_fault(".whl", fault)
    with pytest.raises(RemoteZipError, match=message):
        _fetch(up)


@pytest.mark.parametrize("skip", [1, 2])
def test_a_failure_on_a_later_range_is_reported(make_upstream: MakeUpstream, skip: int) -> None:
    wheel = build_wheel(NAME, METADATA, payload_size=200_000, compression=zipfile.ZIP_STORED)
    up = _serve(make_upstream, wheel)
    up.inject_fault(".whl", Fault(status=503, skip=skip))
    with pytest.raises(RemoteZipError, match="answered 503"):
        _fetch(up, tail_size=30)
    assert [r.status for r in up.log.records()] == [206] * skip + [503]


def test_missing_file_and_empty_file(make_upstream: MakeUpstream) -> None:
    up = _serve(make_upstream, b"")
    with pytest.raises(RemoteZipError, match="empty"):
        _fetch(up)

    async def missing() -> None:
        async with httpx.AsyncClient() as client:
            await fetch_wheel_metadata(client, up.url + "/demo-pkg/nope-1.0-py3-none-any.whl", NAME)

    with pytest.raises(RemoteZipError, match="answered 404"):
        asyncio.run(missing())


@pytest.mark.parametrize("filename", ["demo.zip", "demo-1.0.tar.gz", "demo-1.0-py3-none.whl"])
def test_bad_file_name(filename: str) -> None:
    async def go() -> None:
        async with httpx.AsyncClient() as client:
            await fetch_wheel_metadata(client, "http://127.0.0.1:9/x", filename)

    with pytest.raises(RemoteZipError, match="not a wheel file name"):
        asyncio.run(go())


def test_headers_are_sent_on_every_request(make_upstream: MakeUpstream) -> None:
    up = _serve(
        make_upstream, build_wheel(NAME, METADATA, payload_size=200_000, compression=zipfile.ZIP_STORED)
    )
    _fetch(up, tail_size=30, headers={"Authorization": "Bearer t0ken"})
    records = up.log.records()
    assert len(records) == 3
    assert all(r.headers.get("authorization") == "Bearer t0ken" for r in records)
    assert all(r.headers.get("accept-encoding") == "identity" for r in records)


# -- layout hints: a sibling's read in one request -------------------------------------------------

SIBLING = "demo_pkg-2.0.0+local-cp313-cp313-manylinux_2_28_x86_64.whl"

# (id, wheel factory taking a file name, how the hint reads a sibling)
LAYOUTS: list[tuple[str, Callable[[str], bytes], str]] = [
    ("dist-info-last", lambda n: build_wheel(n, METADATA, payload_size=3_000_000), "range"),
    (
        "dist-info-last, big central directory",
        lambda n: build_wheel(n, METADATA, payload_size=1_000_000, extra_members=_many_files(3000)),
        "range",
    ),
    (
        "dist-info-first",
        lambda n: build_wheel(n, METADATA, payload_size=3_000_000, dist_info_first=True),
        "prefix",
    ),
    (
        "dist-info-first, big central directory",
        lambda n: build_wheel(
            n, METADATA, payload_size=1_000_000, extra_members=_many_files(3000), dist_info_first=True
        ),
        "prefix",
    ),
    ("tiny", lambda n: build_wheel(n, METADATA), "range"),
]


@pytest.mark.parametrize(("shape", "make", "method"), LAYOUTS, ids=[s[0] for s in LAYOUTS])
def test_a_siblings_layout_makes_a_read_one_request(
    make_upstream: MakeUpstream, shape: str, make: Callable[[str], bytes], method: str
) -> None:
    files = [FakeFile(NAME, content=make(NAME)), FakeFile(SIBLING, content=make(SIBLING))]
    up = make_upstream(FakeIndex.from_files({"demo-pkg": files}))
    first = _fetch(up)
    assert first.metadata == METADATA and first.layout is not None
    up.log.reset()
    sibling = _fetch(up, SIBLING, layout=first.layout)
    assert (sibling.metadata, sibling.method, sibling.requests) == (METADATA, method, 1)
    assert sibling.bytes_received == up.bytes_sent_total()
    assert sibling.bytes_received < 512 * KIB, "a hint never asks for the payload"
    assert sibling.layout is not None


@pytest.mark.parametrize(("given", "make_given", "_m"), LAYOUTS, ids=[s[0] for s in LAYOUTS])
@pytest.mark.parametrize(("actual", "make_actual", "_n"), LAYOUTS, ids=[s[0] for s in LAYOUTS])
def test_a_hint_that_does_not_fit_costs_at_most_one_request(
    make_upstream: MakeUpstream,
    given: str,
    make_given: Callable[[str], bytes],
    actual: str,
    make_actual: Callable[[str], bytes],
    _m: str,
    _n: str,
) -> None:
    files = [FakeFile(NAME, content=make_given(NAME)), FakeFile(SIBLING, content=make_actual(SIBLING))]
    up = make_upstream(FakeIndex.from_files({"demo-pkg": files}))
    hint = _fetch(up).layout
    plain = _fetch(up, SIBLING)
    up.log.reset()
    hinted = _fetch(up, SIBLING, layout=hint)
    assert hinted.metadata == METADATA
    assert hinted.requests <= plain.requests + 1
    assert hinted.requests == len(up.log)


def _unseekable_wheel(filename: str) -> bytes:
    """A wheel written to a pipe-like stream: zipfile then puts every size in a data descriptor."""

    class Sink(io.RawIOBase):
        def __init__(self) -> None:
            self.data = bytearray()

        def writable(self) -> bool:
            return True

        def write(self, b: object) -> int:
            self.data += bytes(b)  # type: ignore[call-overload]
            return len(bytes(b))  # type: ignore[call-overload]

    sink = Sink()
    dist_info = "demo_pkg-2.0.0+local.dist-info"
    with zipfile.ZipFile(sink, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(f"{dist_info}/METADATA", METADATA)
        zf.writestr("demo_pkg/_payload.bin", bytes(200_000))
        zf.writestr(f"{dist_info}/RECORD", b"")
    assert zipfile.ZipFile(io.BytesIO(bytes(sink.data))).infolist()[0].flag_bits & 0x8
    return bytes(sink.data)


def test_a_prefix_hint_never_walks_past_a_data_descriptor(make_upstream: MakeUpstream) -> None:
    first = build_wheel(NAME, METADATA, payload_size=3_000_000, dist_info_first=True)
    files = [FakeFile(NAME, content=first), FakeFile(SIBLING, content=_unseekable_wheel(SIBLING))]
    up = make_upstream(FakeIndex.from_files({"demo-pkg": files}))
    hint = _fetch(up).layout
    assert hint is not None and hint.prefix_range() is not None
    up.log.reset()
    got = _fetch(up, SIBLING, layout=hint)
    assert (got.metadata, got.method) == (METADATA, "range"), "the central directory decides"
    assert got.layout is not None and got.layout.prefix_range() is None, "and no prefix is suggested"


def test_a_prefix_hint_upstream_without_ranges_reads_the_whole_file(make_upstream: MakeUpstream) -> None:
    content = build_wheel(SIBLING, METADATA, payload_size=300_000, dist_info_first=True)
    hint_source = _serve(
        make_upstream, build_wheel(NAME, METADATA, payload_size=300_000, dist_info_first=True)
    )
    hint = _fetch(hint_source).layout
    up = _serve(make_upstream, content, SIBLING, ranges=False)
    got = _fetch(up, SIBLING, layout=hint)
    assert (got.metadata, got.method, got.requests, got.bytes_received) == (METADATA, "full", 1, len(content))


@pytest.mark.parametrize("corrupt_at", [0, 4, 40])
def test_a_damaged_local_header_falls_back_or_fails_cleanly(
    make_upstream: MakeUpstream, corrupt_at: int
) -> None:
    good = build_wheel(NAME, METADATA, payload_size=300_000, dist_info_first=True)
    bad = bytearray(build_wheel(SIBLING, METADATA, payload_size=300_000, dist_info_first=True))
    bad[corrupt_at] ^= 0xFF
    files = [FakeFile(NAME, content=good), FakeFile(SIBLING, content=bytes(bad))]
    up = make_upstream(FakeIndex.from_files({"demo-pkg": files}))
    hint = _fetch(up).layout
    try:
        got = _fetch(up, SIBLING, layout=hint)
    except RemoteZipError as exc:
        assert "\n" not in str(exc)
    else:
        assert got.metadata == METADATA
