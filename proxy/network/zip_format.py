"""The zip format as far as reading one metadata member needs it: records, entries, inflating.

Pure (bytes in, values or ``RemoteZipError`` out); ``remote_zip`` decides which bytes to fetch.
"""

from __future__ import annotations

import struct
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TypeVar

from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import InvalidVersion, Version

from proxy.errors import UpstreamError
from proxy.index.filenames import wheel_identity

METADATA_SIZE_CAP = 16 * 1024 * 1024
_T = TypeVar("_T")

EOCD = struct.Struct("<4s4H2LH")
ZIP64_LOCATOR = struct.Struct("<4sLQL")
ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")
CENTRAL = struct.Struct("<4s6H3L5H2L")
LOCAL = struct.Struct("<4s5H3L2H")
EOCD_SIG, ZIP64_LOCATOR_SIG, ZIP64_EOCD_SIG = b"PK\x05\x06", b"PK\x06\x07", b"PK\x06\x06"
CENTRAL_SIG, LOCAL_SIG = b"PK\x01\x02", b"PK\x03\x04"
MAX_COMMENT = 0xFFFF
STORED, DEFLATED = 0, 8
FLAG_ENCRYPTED, FLAG_DATA_DESCRIPTOR, FLAG_UTF8 = 0x1, 0x8, 0x800


class RemoteZipError(Exception):
    """The metadata could not be read: bad zip, missing member, or upstream failure."""


@dataclass(frozen=True, slots=True)
class ZipMember:
    name: str
    flags: int
    method: int
    crc: int
    compressed_size: int
    size: int
    offset: int
    header_span: int  # 30 + name + central extra: the local header's likely length


@dataclass(frozen=True, slots=True)
class Expected:
    filename: str
    name: NormalizedName
    version: Version
    # A wheel keeps its metadata in ``<name>-<version>.dist-info/METADATA``; an sdist zip in
    # ``<name>-<version>/PKG-INFO``, the top directory named as the archive is.
    top_suffix: str = ".dist-info"
    leaf: str = "METADATA"

    @property
    def entry_suffix(self) -> bytes:
        """What the central directory's entry of the member ends with (searched as bytes)."""
        return f"{self.top_suffix}/{self.leaf}".encode()


def expect(filename: str) -> Expected:
    identity = wheel_identity(filename)  # a PEP 825 variant wheel's dist-info is named alike
    if identity is None:
        raise RemoteZipError(f"not a wheel file name: {filename!r}")
    return Expected(filename, *identity)


def walk_local_headers(chunk: bytes, expected: Expected) -> tuple[ZipMember, int] | None:
    """METADATA's local header and data offset, stepping header by header from offset 0.

    ``None`` whenever the chain is not plain (a prefix before the first header, a data descriptor,
    ZIP64 sizes, a header past the chunk): the central directory then decides, as it always may.
    """
    pos = 0
    while pos + LOCAL.size <= len(chunk) and chunk[pos : pos + 4] == LOCAL_SIG:
        fields = LOCAL.unpack_from(chunk, pos)
        flags, method, crc, csize, size, name_len, extra_len = fields[2], fields[3], *fields[6:11]
        name_at = pos + LOCAL.size
        data_start = name_at + name_len + extra_len
        if data_start > len(chunk) or flags & FLAG_DATA_DESCRIPTOR or 0xFFFFFFFF in (csize, size):
            return None
        raw_name = chunk[name_at : name_at + name_len]
        name = raw_name.decode("utf-8" if flags & FLAG_UTF8 else "cp437", errors="replace")
        if is_metadata_for(name, expected):
            member = ZipMember(name, flags, method, crc, csize, size, pos, data_start - pos)
            check_member(member, cd_offset=None)
            return member, data_start
        pos = data_start + csize
    return None


def parse_central_directory(data: bytes, count: int) -> list[ZipMember]:
    members: list[ZipMember] = []
    pos = 0
    while pos < len(data):
        member, pos = parse_entry(data, pos)
        members.append(member)
    if len(members) != count:
        raise RemoteZipError(f"central directory lists {len(members)} entries, end record says {count}")
    return members


def parse_entry(data: bytes, pos: int) -> tuple[ZipMember, int]:
    """The central-directory entry at ``pos``, and where the next one starts."""
    if pos + CENTRAL.size > len(data) or data[pos : pos + 4] != CENTRAL_SIG:
        raise RemoteZipError(f"bad central directory entry at +{pos}")
    fields = CENTRAL.unpack_from(data, pos)
    flags, method, crc, csize, size = fields[3], fields[4], fields[7], fields[8], fields[9]
    name_len, extra_len, comment_len, offset = fields[10], fields[11], fields[12], fields[16]
    end = pos + CENTRAL.size + name_len + extra_len + comment_len
    if end > len(data):
        raise RemoteZipError("truncated central directory")
    raw_name = data[pos + CENTRAL.size : pos + CENTRAL.size + name_len]
    extra = data[pos + CENTRAL.size + name_len : pos + CENTRAL.size + name_len + extra_len]
    # Bit 11: the name is UTF-8; otherwise the zip spec's legacy code page 437.
    name = raw_name.decode("utf-8" if flags & FLAG_UTF8 else "cp437")
    size, csize, offset = apply_zip64_extra(extra, size, csize, offset)
    span = LOCAL.size + name_len + extra_len
    return ZipMember(name, flags, method, crc, csize, size, offset, span), end


def metadata_entries(data: bytes, expected: Expected) -> list[ZipMember]:
    """The central directory's entries named ``*.dist-info/METADATA``, found by their names.

    Parsing every entry in Python was the largest CPU cost of a cold meld (numpy's wheels list
    1,500 files, torch's 15,000, and a meld reads a hundred directories); a byte search finds the
    few that matter. A match counts only where an entry's signature precedes it and that entry's
    name ends exactly at the match.
    """
    found: list[ZipMember] = []
    suffix = expected.entry_suffix
    at = data.find(suffix)
    while at != -1:
        end = at + len(suffix)
        low = max(0, end - CENTRAL.size - 0xFFFF)
        sig = data.rfind(CENTRAL_SIG, low, at)
        while sig != -1:
            if (
                sig + CENTRAL.size <= len(data)
                and sig + CENTRAL.size + CENTRAL.unpack_from(data, sig)[10] == end
            ):
                found.append(parse_entry(data, sig)[0])
                break
            sig = data.rfind(CENTRAL_SIG, low, sig)
        at = data.find(suffix, end)
    return found


def apply_zip64_extra(extra: bytes, size: int, csize: int, offset: int) -> tuple[int, int, int]:
    """Replace saturated 32-bit fields with their ZIP64 extra values (fixed order by the spec)."""
    if 0xFFFFFFFF not in (size, csize, offset):
        return size, csize, offset
    pos = 0
    while pos + 4 <= len(extra):
        tag, length = struct.unpack_from("<HH", extra, pos)
        body = extra[pos + 4 : pos + 4 + length]
        if tag == 0x0001:
            values = [v for (v,) in struct.iter_unpack("<Q", body[: len(body) // 8 * 8])]
            out = []
            for field in (size, csize, offset):
                if field == 0xFFFFFFFF:
                    if not values:
                        raise RemoteZipError("ZIP64 extra field too short")
                    field = values.pop(0)
                out.append(field)
            return out[0], out[1], out[2]
        pos += 4 + length
    raise RemoteZipError("saturated zip fields without a ZIP64 extra field")


def is_metadata_for(name: str, expected: Expected) -> bool:
    top, _, leaf = name.partition("/")
    if leaf != expected.leaf or not top.endswith(expected.top_suffix):
        return False
    dist, sep, version = top.removesuffix(expected.top_suffix).rpartition("-")
    if not sep:
        return False
    try:
        return canonicalize_name(dist) == expected.name and Version(version) == expected.version
    except InvalidVersion:
        return False


def pick(names: Sequence[tuple[str, _T]], expected: Expected) -> _T:
    found = [item for name, item in names if is_metadata_for(name, expected)]
    if len(found) == 1:
        return found[0]
    wanted = f"{expected.name}-{expected.version}{expected.top_suffix}/{expected.leaf}"
    if not found:
        tops = sorted({n.split("/")[0] for n, _ in names if n.split("/")[0].endswith(expected.top_suffix)})
        raise RemoteZipError(f"no {wanted} in {expected.filename!r} (top directories: {tops[:20]})")
    matching = [n for n, _ in names if is_metadata_for(n, expected)]
    raise RemoteZipError(f"several candidates for {wanted} in {expected.filename!r}: {matching}")


def check_member(member: ZipMember, cd_offset: int | None) -> None:
    if member.flags & FLAG_ENCRYPTED:
        raise RemoteZipError(f"{member.name!r} is encrypted")
    if member.method not in (STORED, DEFLATED):
        raise RemoteZipError(f"{member.name!r} uses compression method {member.method}, not stored/deflate")
    if member.size > METADATA_SIZE_CAP or member.compressed_size > METADATA_SIZE_CAP:
        raise RemoteZipError(f"{member.name!r} is {member.size} bytes, over the {METADATA_SIZE_CAP} cap")
    if cd_offset is not None and member.offset + LOCAL.size + member.compressed_size > cd_offset:
        raise RemoteZipError(f"{member.name!r} at offset {member.offset} points outside the file")


def inflate(member: ZipMember, data: bytes) -> bytes:
    if member.method == STORED:
        out = data
    else:
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        out = inflater.decompress(data, METADATA_SIZE_CAP + 1)
        if len(out) > METADATA_SIZE_CAP:
            raise RemoteZipError(f"{member.name!r} inflates past the {METADATA_SIZE_CAP} cap")
        if not inflater.eof:
            raise RemoteZipError(f"{member.name!r}: truncated deflate stream")
    if len(out) != member.size or zlib.crc32(out) != member.crc:
        raise RemoteZipError(f"{member.name!r}: size or CRC-32 does not match the central directory")
    return out


def extract(spool: IO[bytes], expected: Expected) -> bytes:
    try:
        with zipfile.ZipFile(spool) as zf:
            info = pick([(i.filename, i) for i in zf.infolist()], expected)
            if info.compress_type not in (STORED, DEFLATED):
                raise RemoteZipError(f"{info.filename!r} uses compression method {info.compress_type}")
            if info.file_size > METADATA_SIZE_CAP:
                raise RemoteZipError(f"{info.filename!r} is {info.file_size} bytes, over the cap")
            with zf.open(info) as member:
                return member.read(METADATA_SIZE_CAP + 1)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, zlib.error) as exc:
        raise RemoteZipError(f"corrupt zip {expected.filename!r}: {exc}") from exc
    except (NotImplementedError, RuntimeError, ValueError) as exc:
        raise RemoteZipError(f"unreadable zip {expected.filename!r}: {exc}") from exc


def read_local_metadata(path: Path, filename: str) -> bytes | None:
    """``*.dist-info/METADATA`` of a wheel the cache holds (blocking: run in a thread); ``None``
    when ``path`` is no readable wheel of that name.

    Read under the cap remote reads have: a small wheel can hold a METADATA that inflates to
    gigabytes, and its declared size may lie, so at most one byte past the cap is ever inflated.

    Not ``extract``, on purpose: that one reads bytes just fetched and refuses, with a reason, what
    the ranged reader refuses (several candidates, a method other than stored or deflate); this one
    is the cache's quiet fast path for a verified wheel, where ``None`` sends the read upstream. A
    cached wheel with two matching ``.dist-info`` directories or an LZMA METADATA is read here and
    refused there; making them one would change that answer.
    """
    if wheel_identity(filename) is None:
        return None
    expected = expect(filename)
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if is_metadata_for(info.filename, expected):
                    data = b""
                    if info.file_size <= METADATA_SIZE_CAP:
                        with zf.open(info) as member:
                            data = member.read(METADATA_SIZE_CAP + 1)
                    if info.file_size > METADATA_SIZE_CAP or len(data) > METADATA_SIZE_CAP:
                        raise UpstreamError(
                            f"METADATA of {filename} is over the {METADATA_SIZE_CAP} byte cap"
                        )
                    return data
    except (OSError, zipfile.BadZipFile, ValueError, NotImplementedError, EOFError, zlib.error):
        return None
    return None
