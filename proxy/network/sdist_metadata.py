"""Read an sdist's ``PKG-INFO`` from upstream without building it, extracting it, or running its code.

A ``.tar.gz`` sdist is streamed and read as it arrives: gzip is inflated in memory and the tar
headers are walked with :mod:`tarfile` (never extracted, never a file on disk) until the member
``<name>-<version>/PKG-INFO`` has been read; the download stops there. Build backends write that
member near the start (setuptools, flit) or at the end (some others): at most ``METADATA_SIZE_CAP``
bytes are read either way, and an archive that has not shown it by then has none we will find. A
``.zip`` sdist keeps a central directory at its end, so it is read with ranges like a wheel
(``remote_zip``). Everything that goes wrong surfaces as ``RemoteZipError`` with a one-line reason.
"""

from __future__ import annotations

import io
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import httpx
from packaging.utils import InvalidSdistFilename, NormalizedName, canonicalize_name, parse_sdist_filename
from packaging.version import InvalidVersion, Version

from proxy.network.client_errors import HTTP_CLIENT_ERRORS
from proxy.network.remote_zip import METADATA_SIZE_CAP, RemoteZipError, fetch_sdist_zip_metadata

__all__ = ["FetchedSdistMetadata", "NoPkgInfo", "fetch_sdist_metadata", "read_local_pkg_info"]

# The tar headers are walked again from the start as bytes arrive: at first as soon as any arrive
# (PKG-INFO usually sits in the first kilobytes), then each time the inflated bytes doubled, at most
# this far apart, so a 16 MiB read walks them a few dozen times, not once per 16 KiB network read.
_REPARSE_STEP = 256 * 1024


@dataclass(frozen=True, slots=True)
class FetchedSdistMetadata:
    metadata: bytes
    requests: int
    bytes_received: int


class NoPkgInfo(RemoteZipError):
    """The archive's bytes (not the transfer) hold no readable ``PKG-INFO``: asking again gives the
    same answer, as the archive never changes."""


class _NeedMore(Exception):
    """The inflated bytes so far end before the member does."""


async def fetch_sdist_metadata(
    client: httpx.AsyncClient, url: str, filename: str, *, cap: int = METADATA_SIZE_CAP
) -> FetchedSdistMetadata:
    """The ``PKG-INFO`` of the sdist ``filename`` (``.tar.gz`` or ``.zip``) at ``url``."""
    try:
        name, version = parse_sdist_filename(filename)
    except (InvalidSdistFilename, InvalidVersion) as exc:
        raise RemoteZipError(f"not an sdist file name: {filename!r}") from exc
    if filename.endswith(".zip"):
        fetched = await fetch_sdist_zip_metadata(client, url, filename, name, version)
        return FetchedSdistMetadata(fetched.metadata, fetched.requests, fetched.bytes_received)
    try:
        return await _read_tar_gz(client, url, filename, name, version, cap)
    except HTTP_CLIENT_ERRORS as exc:
        raise RemoteZipError(f"fetching {url!r} failed: {type(exc).__name__}: {exc}") from exc


class _TarGzReader:
    """Fed an archive's bytes in order; says as soon as they hold the whole ``PKG-INFO``."""

    def __init__(self, filename: str, name: NormalizedName, version: Version, cap: int) -> None:
        self.filename, self.name, self.version, self.cap = filename, name, version, cap
        self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)  # gzip framing
        self._inflated = bytearray()
        self._parsed_at = 0
        self.received = 0

    @property
    def exhausted(self) -> bool:
        """The gzip stream ended or the cap was reached: more bytes would change nothing."""
        return self._inflater.eof or len(self._inflated) > self.cap or self.received > self.cap

    def feed(self, chunk: bytes) -> bytes | None:
        self.received += len(chunk)
        try:
            self._inflated += self._inflater.decompress(chunk, self.cap + 1 - len(self._inflated))
        except zlib.error as exc:
            raise NoPkgInfo(f"corrupt gzip stream in {self.filename!r}: {exc}") from exc
        grown = len(self._inflated) - self._parsed_at
        if self.exhausted or (grown > 0 and grown >= min(self._parsed_at, _REPARSE_STEP)):
            self._parsed_at = len(self._inflated)
            return self._look(complete=self._inflater.eof)
        return None

    def finish(self) -> bytes:
        """Every byte there is was fed (or the cap reached): the member, or why there is none."""
        over_cap = len(self._inflated) > self.cap or self.received > self.cap
        # Cut at the cap, the archive's end is missing: what could be read was looked at in ``feed``.
        found = None if over_cap else self._look(complete=True)
        if found is not None:
            return found
        if over_cap:
            raise NoPkgInfo(f"no PKG-INFO in the first {self.cap} bytes of {self.filename!r}")
        raise NoPkgInfo(f"no {self.name}-{self.version}/PKG-INFO in {self.filename!r}")

    def _look(self, *, complete: bool) -> bytes | None:
        return _pkg_info(bytes(self._inflated), self.filename, self.name, self.version, complete=complete)


async def _read_tar_gz(
    client: httpx.AsyncClient, url: str, filename: str, name: NormalizedName, version: Version, cap: int
) -> FetchedSdistMetadata:
    reader = _TarGzReader(filename, name, version, cap)
    async with client.stream("GET", url, headers={"Accept-Encoding": "identity"}) as resp:
        if resp.status_code != 200:
            raise RemoteZipError(f"upstream answered {resp.status_code} for {url!r}")
        async for chunk in resp.aiter_raw():
            found = reader.feed(chunk)
            if found is not None:
                return FetchedSdistMetadata(found, 1, reader.received)
            if reader.exhausted:
                break
    return FetchedSdistMetadata(reader.finish(), 1, reader.received)


def read_local_pkg_info(path: Path, filename: str, *, cap: int = METADATA_SIZE_CAP) -> bytes | None:
    """``PKG-INFO`` of an sdist the cache holds, or ``None`` (blocking: run it in a thread)."""
    try:
        name, version = parse_sdist_filename(filename)
    except (InvalidSdistFilename, InvalidVersion):
        return None
    try:
        if filename.endswith(".zip"):
            return _zip_pkg_info(path, name, version, cap)
        reader = _TarGzReader(filename, name, version, cap)
        with path.open("rb") as fh:
            while chunk := fh.read(_REPARSE_STEP):
                found = reader.feed(chunk)
                if found is not None:
                    return found
                if reader.exhausted:
                    break
        return reader.finish()
    except (OSError, RemoteZipError, zipfile.BadZipFile):
        return None


def _zip_pkg_info(path: Path, name: NormalizedName, version: Version, cap: int) -> bytes | None:
    with zipfile.ZipFile(path) as zf:
        found = [i for i in zf.infolist() if _is_pkg_info(i.filename, name, version)]
        if len(found) != 1 or found[0].file_size > cap:
            return None
        return zf.read(found[0])


def _pkg_info(
    data: bytes, filename: str, name: NormalizedName, version: Version, *, complete: bool
) -> bytes | None:
    """The member's bytes if ``data`` (the archive's inflated start) holds all of it, else ``None``."""
    try:
        return _walk(data, name, version)
    except _NeedMore:
        return None
    except (tarfile.TarError, EOFError) as exc:
        if not complete:
            return None  # a header cut in half by the end of what arrived so far
        raise NoPkgInfo(f"unreadable tar in {filename!r}: {exc}") from exc


def _walk(data: bytes, name: NormalizedName, version: Version) -> bytes | None:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as archive:
        for member in archive:
            if _is_pkg_info(member.name, name, version) and member.isfile():
                if member.offset_data + member.size > len(data):
                    raise _NeedMore
                handle = archive.extractfile(member)
                assert handle is not None  # a regular file always has one
                return handle.read()
    return None  # not in the archive, or (tarfile reads a cut header as the end) not yet


def _is_pkg_info(path: str, name: NormalizedName, version: Version) -> bool:
    top, _, leaf = path.removeprefix("./").partition("/")
    if leaf != "PKG-INFO":
        return False
    dist, sep, found = top.rpartition("-")
    try:
        return bool(sep) and canonicalize_name(dist) == name and Version(found) == version
    except InvalidVersion:
        return False
