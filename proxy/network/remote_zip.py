"""Read a wheel's ``*.dist-info/METADATA`` out of a remote zip with HTTP range requests (and a zip
sdist's ``<name>-<version>/PKG-INFO`` the same way).

The fallback docs/meld-contract.md names for upstreams without PEP 658 ``.metadata`` files: a wheel is a
zip (PEP 427), whose central directory sits at the tail and names the offset of every member.

1. ``GET`` with a suffix range ``bytes=-<tail_size>``.  A 206 answer carries the file's total size
   in ``Content-Range``, so no ``HEAD`` is needed (pip's ``lazy_wheel`` spends one).
2. Find the end-of-central-directory record (and the ZIP64 locator / record), then the central
   directory; fetch its head with one more range only when it starts before the tail.
3. Pick the unique ``<name>-<version>.dist-info/METADATA`` matching the wheel file name
   (compared with ``packaging``: canonical name, parsed version; the directory's entries are found
   by searching it for that name's bytes, and parsed whole only to explain a missing or doubled
   one), and fetch its local header and
   data in one range, over-fetching a little because the local extra field may be longer than
   the central one; fetch again only if that was short.
4. Inflate (stored or deflate only) and check length and CRC-32.

For small wheels the whole answer is often already in the tail: one request in total.  When the
upstream ignores ``Range`` (200), the body is spooled (in memory up to 8 MiB, then to a temporary
file) and read with ``zipfile`` in a worker thread, never on the event loop.

Siblings of one release are built by one tool and laid out alike, so every read also returns a
``ZipLayout``: where ``METADATA`` sat.  Handed to the next sibling's read it makes that read one
request: a suffix range sized to hold the central directory *and* ``METADATA`` (setuptools,
hatchling, maturin write ``*.dist-info`` last, just before the directory), or, when ``METADATA``
came near the start (meson-python writes it first), a prefix range whose local headers are walked
from offset 0 up to it — every header checked in sequence, the member named exactly, its CRC-32 and
size checked after inflating.  A hint that does not fit costs one request, then the normal path.
The upstream here answers a few hundred range requests a second, fewer as they grow, and each
costs the HTTP client CPU (httpx ~1.3 ms, aiohttp ~0.3: ``range_client``): requests, then bytes,
are what a cold meld of 100 siblings spends.

Everything that can go wrong with the upstream or its bytes surfaces as ``RemoteZipError`` with a
one-line reason; no other exception type escapes for bad input.
"""

from __future__ import annotations

import asyncio
import re
import struct
import tempfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass

from packaging.utils import NormalizedName
from packaging.version import Version

from proxy.network.client_errors import HTTP_CLIENT_ERRORS
from proxy.network.range_client import RangeClient, RangeResponse
from proxy.network.zip_format import (
    EOCD,
    EOCD_SIG,
    FLAG_DATA_DESCRIPTOR,
    LOCAL,
    LOCAL_SIG,
    MAX_COMMENT,
    METADATA_SIZE_CAP,
    ZIP64_EOCD,
    ZIP64_EOCD_SIG,
    ZIP64_LOCATOR,
    ZIP64_LOCATOR_SIG,
    Expected,
    RemoteZipError,
    ZipMember,
    check_member,
    expect,
    extract,
    inflate,
    metadata_entries,
    parse_central_directory,
    pick,
    walk_local_headers,
)

__all__ = [
    "METADATA_SIZE_CAP",
    "FetchedMetadata",
    "RemoteZipError",
    "ZipLayout",
    "fetch_sdist_zip_metadata",
    "fetch_wheel_metadata",
]

_SPOOL_IN_MEMORY = 8 * 1024 * 1024
_SPOOL_WRITE_BATCH = 1024 * 1024
# Local headers usually repeat the central extra field, but not always (zipfile writes ZIP64
# extras only locally); this much slack covers any realistic difference in one request.
_LOCAL_SLACK = 1024
# Inflating more than this inline would stall the event loop noticeably.
_INLINE_INFLATE_LIMIT = 1024 * 1024
# A central directory of thousands of entries (torch has ~15k) takes tens of ms to walk.
_INLINE_PARSE_LIMIT = 256 * 1024

_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+)\s*$", re.IGNORECASE)
# A layout hint never asks for more than this in one range (torch's central directory is ~2 MB).
_HINT_CAP = 4 * 1024 * 1024
# Siblings differ a little (longer names on one platform, a few more files on another). Bytes
# count too: the upstream here serves 400 ranges of 4 KiB a second, but only 240 of 64 KiB.
_HINT_SLACK = 1.15
_HINT_PAD = 4 * 1024
_SUFFIX_PREFERRED = 256 * 1024
_BETWEEN_ALLOWED = 64 * 1024


@dataclass(frozen=True, slots=True)
class ZipLayout:
    """Where one wheel kept ``METADATA``: the guess its siblings' reads start from."""

    tail_span: int  # bytes from the end that held the central directory (and METADATA, if after it)
    head_end: int | None = None  # METADATA's local record ends here, and every header before it is walkable

    def prefix_range(self) -> int | None:
        """Length of the prefix to ask for, when METADATA is expected near the start."""
        if self.head_end is None:
            return None
        want = int(self.head_end * _HINT_SLACK) + _HINT_PAD
        return want if want <= _HINT_CAP else None

    def tail_size(self) -> int:
        return min(_HINT_CAP, int(self.tail_span * _HINT_SLACK) + _HINT_PAD)


@dataclass(frozen=True, slots=True)
class FetchedMetadata:
    """A wheel's METADATA and what reading it cost."""

    metadata: bytes  # the *.dist-info/METADATA member, uncompressed
    requests: int  # HTTP requests made
    bytes_received: int  # body bytes received
    method: str  # "range", "prefix" (local headers walked) or "full"
    layout: ZipLayout | None = None  # where METADATA was: a hint for a sibling's read


async def fetch_wheel_metadata(
    client: RangeClient,
    url: str,
    filename: str,
    *,
    headers: Mapping[str, str] | None = None,
    tail_size: int = 64 * 1024,
    layout: ZipLayout | None = None,
) -> FetchedMetadata:
    """The METADATA of the wheel ``filename`` at ``url``, read with as few requests as possible.

    ``layout``: what a sibling's read returned; it sizes the first request (see the module's doc).
    """
    if tail_size < EOCD.size:
        raise ValueError(f"tail_size must be at least {EOCD.size}, got {tail_size!r}")
    return await _fetch_member(client, url, expect(filename), headers, tail_size, layout)


async def fetch_sdist_zip_metadata(
    client: RangeClient, url: str, filename: str, name: NormalizedName, version: Version
) -> FetchedMetadata:
    """The ``<name>-<version>/PKG-INFO`` of the zip sdist ``filename`` at ``url``, read like a
    wheel's METADATA (``name``/``version``: the release's, as ``packaging`` read the file name)."""
    expected = Expected(filename, name, version, top_suffix="", leaf="PKG-INFO")
    return await _fetch_member(client, url, expected, None, 64 * 1024, None)


async def _fetch_member(
    client: RangeClient,
    url: str,
    expected: Expected,
    headers: Mapping[str, str] | None,
    tail_size: int,
    layout: ZipLayout | None,
) -> FetchedMetadata:
    filename = expected.filename
    fetcher = _Fetcher(client, url, headers or {})
    try:
        if layout is not None:
            prefix = layout.prefix_range()
            if prefix is not None:
                found = await _read_prefix(fetcher, prefix, expected, layout)
                if found is not None:
                    return found
            tail_size = layout.tail_size()
        async with client.stream("GET", url, headers=fetcher.headers(f"bytes=-{tail_size}")) as resp:
            fetcher.requests += 1
            if resp.status_code == 200:
                metadata = await _read_full(resp, fetcher, expected)
                return FetchedMetadata(metadata, fetcher.requests, fetcher.bytes_received, "full")
            if resp.status_code == 416:
                raise RemoteZipError(f"upstream says {filename!r} is empty (416 for a suffix range)")
            _check_status(resp, url)
            start, end, total = _content_range(resp)
            if end != total - 1:
                raise RemoteZipError(f"Content-Range {start}-{end}/{total} of a suffix range misses the end")
            tail = await fetcher.body(resp, end - start + 1)
        window = _Window(start, tail, total)
        metadata, learned = await _read_ranged(fetcher, window, expected)
        return FetchedMetadata(metadata, fetcher.requests, fetcher.bytes_received, "range", learned)
    except (struct.error, zlib.error, UnicodeDecodeError) as exc:
        # Every offset is bounds-checked first; this is the net for a check we missed.
        raise RemoteZipError(f"corrupt zip {filename!r}: {exc}") from exc
    except HTTP_CLIENT_ERRORS as exc:
        raise RemoteZipError(f"fetching {url!r} failed: {type(exc).__name__}: {exc}") from exc


def _check_status(resp: RangeResponse, url: str) -> None:
    if resp.status_code != 206:
        raise RemoteZipError(f"upstream answered {resp.status_code} for {url!r}")


def _content_range(resp: RangeResponse) -> tuple[int, int, int]:
    value = resp.headers.get("content-range", "")
    match = _CONTENT_RANGE.match(value.strip())
    if match is None:
        raise RemoteZipError(f"206 without a usable Content-Range: {value!r}")
    start, end, total = (int(g) for g in match.groups())
    if not start <= end < total:
        raise RemoteZipError(f"impossible Content-Range {value!r}")
    return start, end, total


class _Fetcher:
    """Issues range requests for one URL and counts what they cost."""

    def __init__(self, client: RangeClient, url: str, headers: Mapping[str, str]) -> None:
        self.client, self.url, self._headers = client, url, dict(headers)
        self.requests = 0
        self.bytes_received = 0
        self.total: int | None = None

    def headers(self, byte_range: str) -> dict[str, str]:
        # identity: a compressed answer would make Content-Range count encoded bytes, not the zip's.
        return {**self._headers, "Range": byte_range, "Accept-Encoding": "identity"}

    async def body(self, resp: RangeResponse, expected: int) -> bytes:
        """Exactly ``expected`` body bytes, or ``RemoteZipError`` (never buffers more)."""
        data = bytearray()
        async for chunk in resp.aiter_raw():
            self.bytes_received += len(chunk)
            data += chunk
            if len(data) > expected:
                raise RemoteZipError(
                    f"body longer than its Content-Range ({expected} bytes) from {self.url!r}"
                )
        if len(data) != expected:
            raise RemoteZipError(
                f"body of {len(data)} bytes, Content-Range said {expected}, from {self.url!r}"
            )
        return bytes(data)

    async def range(self, start: int, stop: int) -> bytes:
        """Bytes ``[start, stop)`` of the file, in one request."""
        async with self.client.stream(
            "GET", self.url, headers=self.headers(f"bytes={start}-{stop - 1}")
        ) as resp:
            self.requests += 1
            _check_status(resp, self.url)
            got_start, got_end, total = _content_range(resp)
            if (got_start, got_end) != (start, stop - 1) or total != self.total:
                raise RemoteZipError(
                    f"asked bytes {start}-{stop - 1}/{self.total}, got {got_start}-{got_end}/{total}"
                )
            return await self.body(resp, stop - start)


class _Window:
    """The known tail ``[start, total)`` of the remote file, extended towards its head on demand."""

    def __init__(self, start: int, data: bytes, total: int) -> None:
        self.start, self.data, self.total = start, data, total

    def covers(self, start: int, stop: int) -> bool:
        return self.start <= start <= stop <= self.total

    def get(self, start: int, stop: int) -> bytes:
        return self.data[start - self.start : stop - self.start]

    async def extend_to(self, fetcher: _Fetcher, start: int) -> None:
        if start < self.start:
            self.data = await fetcher.range(start, self.start) + self.data
            self.start = start


async def _read_ranged(fetcher: _Fetcher, window: _Window, expected: Expected) -> tuple[bytes, ZipLayout]:
    fetcher.total = window.total
    cd_offset, cd_size, count = await _locate_central_directory(fetcher, window)
    await window.extend_to(fetcher, cd_offset)
    directory = window.get(cd_offset, cd_offset + cd_size)
    try:
        member = pick([(m.name, m) for m in metadata_entries(directory, expected)], expected)
    except RemoteZipError:
        # Not found, or found twice: read the whole directory, which checks it and says what it holds.
        if cd_size > _INLINE_PARSE_LIMIT:
            members = await asyncio.to_thread(parse_central_directory, directory, count)
        else:
            members = parse_central_directory(directory, count)
        member = pick([(m.name, m) for m in members], expected)
    check_member(member, cd_offset)
    stop = min(cd_offset, member.offset + member.header_span + member.compressed_size + _LOCAL_SLACK)
    if window.covers(member.offset, stop):
        chunk = window.get(member.offset, stop)
    else:
        chunk = await fetcher.range(member.offset, stop)
    if len(chunk) < LOCAL.size or chunk[:4] != LOCAL_SIG:
        raise RemoteZipError(f"no local header at offset {member.offset} for {member.name!r}")
    fields = LOCAL.unpack_from(chunk)
    data_start = LOCAL.size + fields[9] + fields[10]
    need = data_start + member.compressed_size
    if member.offset + need > cd_offset:
        raise RemoteZipError(f"{member.name!r} runs into the central directory")
    if need > len(chunk):
        chunk += await fetcher.range(member.offset + len(chunk), member.offset + need)
    data = chunk[data_start:need]
    layout = _layout_of(member, cd_offset, window.total, member.offset + need)
    return await _inflated(member, data), layout


async def _inflated(member: ZipMember, data: bytes) -> bytes:
    if member.compressed_size > _INLINE_INFLATE_LIMIT:
        return await asyncio.to_thread(inflate, member, data)
    return inflate(member, data)


def _layout_of(member: ZipMember, cd_offset: int, total: int, end: int) -> ZipLayout:
    """What this wheel tells its siblings: read a prefix, or a suffix of this size."""
    cd_span = total - cd_offset
    from_end = total - member.offset
    # Walking local headers needs each one's sizes up front. Writers use data descriptors for all
    # entries or none, so METADATA's own flag speaks for those before it; a sibling's walk checks
    # every header anyway and falls back to the central directory at the first one it cannot pass.
    walkable = not member.flags & FLAG_DATA_DESCRIPTOR
    # The central directory is the authority: a walk of local headers is only worth it when the
    # suffix holding METADATA would be large (a big payload after it).
    if walkable and end < from_end and from_end > _SUFFIX_PREFERRED:
        return ZipLayout(tail_span=cd_span, head_end=end)
    # Covering METADATA too saves a request, unless what lies between it and the directory (RECORD,
    # as long as the directory itself) would double the bytes: then read the directory alone.
    between = from_end - cd_span
    if from_end <= _HINT_CAP and between <= max(_BETWEEN_ALLOWED, cd_span // 4):
        return ZipLayout(tail_span=from_end)
    return ZipLayout(tail_span=cd_span)


async def _read_prefix(
    fetcher: _Fetcher, length: int, expected: Expected, layout: ZipLayout
) -> FetchedMetadata | None:
    """METADATA from the file's first ``length`` bytes, walking local headers; ``None``: read it as usual."""
    async with fetcher.client.stream(
        "GET", fetcher.url, headers=fetcher.headers(f"bytes=0-{length - 1}")
    ) as resp:
        fetcher.requests += 1
        if resp.status_code == 200:
            metadata = await _read_full(resp, fetcher, expected)
            return FetchedMetadata(metadata, fetcher.requests, fetcher.bytes_received, "full")
        _check_status(resp, fetcher.url)
        start, end, total = _content_range(resp)
        if start != 0:
            raise RemoteZipError(f"asked bytes 0-{length - 1}, got Content-Range {start}-{end}/{total}")
        chunk = await fetcher.body(resp, end + 1)
    fetcher.total = total
    found = walk_local_headers(chunk, expected)
    if found is None:
        return None
    member, data_start = found
    need = data_start + member.compressed_size
    if need > total:
        return None
    if need > len(chunk):
        chunk += await fetcher.range(len(chunk), need)
    metadata = await _inflated(member, chunk[data_start:need])
    learned = ZipLayout(tail_span=layout.tail_span, head_end=need)
    return FetchedMetadata(metadata, fetcher.requests, fetcher.bytes_received, "prefix", learned)


async def _locate_central_directory(fetcher: _Fetcher, window: _Window) -> tuple[int, int, int]:
    """(offset, size, entry count) of the central directory, from the (ZIP64) end records."""
    eocd_at = _find_eocd(window)
    if eocd_at is None and window.start > 0 and window.total - window.start < EOCD.size + MAX_COMMENT:
        # A long archive comment can push the record out of a small tail: look once more.
        await window.extend_to(fetcher, max(0, window.total - EOCD.size - MAX_COMMENT))
        eocd_at = _find_eocd(window)
    if eocd_at is None:
        raise RemoteZipError("no end-of-central-directory record: not a zip, or truncated")
    _sig, _disk, _cd_disk, _n_disk, count, cd_size, cd_offset, _comment = EOCD.unpack(
        window.get(eocd_at, eocd_at + EOCD.size)
    )
    limit = eocd_at
    locator_at = eocd_at - ZIP64_LOCATOR.size
    # ZIP64 end records matter only when a classic field is saturated; otherwise both agree, and
    # looking for the locator could cost a request of its own when the tail is small.
    saturated = 0xFFFF in (count, _n_disk) or 0xFFFFFFFF in (cd_size, cd_offset)
    if saturated and locator_at >= 0:
        await window.extend_to(fetcher, locator_at)
        locator = window.get(locator_at, eocd_at)
        if locator[:4] == ZIP64_LOCATOR_SIG:
            _sig, _disk, zip64_at, _disks = ZIP64_LOCATOR.unpack(locator)
            if zip64_at + ZIP64_EOCD.size > locator_at:
                raise RemoteZipError(f"ZIP64 locator points outside the file ({zip64_at})")
            await window.extend_to(fetcher, zip64_at)
            record = window.get(zip64_at, zip64_at + ZIP64_EOCD.size)
            if record[:4] != ZIP64_EOCD_SIG:
                raise RemoteZipError(f"no ZIP64 end record at offset {zip64_at}")
            fields = ZIP64_EOCD.unpack(record)
            count, cd_size, cd_offset, limit = fields[7], fields[8], fields[9], zip64_at
    if cd_offset + cd_size > limit:
        raise RemoteZipError(f"central directory ({cd_offset}+{cd_size}) points outside the file")
    return cd_offset, cd_size, count


def _find_eocd(window: _Window) -> int | None:
    """Absolute offset of the last EOCD signature whose comment length fits the file's end."""
    data = window.data
    pos = len(data)
    while True:
        pos = data.rfind(EOCD_SIG, 0, pos)
        if pos < 0:
            return None
        if pos + EOCD.size <= len(data):
            comment = int.from_bytes(data[pos + 20 : pos + 22], "little")
            if window.start + pos + EOCD.size + comment == window.total:
                return window.start + pos


async def _read_full(resp: RangeResponse, fetcher: _Fetcher, expected: Expected) -> bytes:
    """The upstream ignored Range: spool the whole body, then let zipfile read it off-loop."""
    spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY)  # noqa: SIM115 - closed below
    try:
        batch = bytearray()
        async for chunk in resp.aiter_raw():
            fetcher.bytes_received += len(chunk)
            batch += chunk
            if len(batch) >= _SPOOL_WRITE_BATCH:
                # Past 8 MiB the spool is a disk file: write in a thread, in 1 MiB batches.
                await asyncio.to_thread(spool.write, bytes(batch))
                batch.clear()
        await asyncio.to_thread(spool.write, bytes(batch))
        return await asyncio.to_thread(extract, spool, expected)
    finally:
        await asyncio.to_thread(spool.close)
