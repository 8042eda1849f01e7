"""Tiny but valid wheels (PEP 427 / binary distribution format) built at test time.

The layout follows what real build backends write, because the remote-zip reader and the
installers both depend on it: the package payload first, then
``<dist>-<version>.dist-info/METADATA``, ``WHEEL`` and ``RECORD`` last, with correct
``sha256=``/size lines.  The dist-info directory name is taken verbatim from the wheel file
name (``torch-2.7.0.dev20250116+cu126.dist-info``), as installers expect.

``write_wheel`` streams to a path so benchmark wheels of hundreds of megabytes never sit in
memory; ``build_wheel`` returns bytes for the small wheels tests use.  Both produce
byte-identical output for identical input (fixed timestamps), so hashes are stable across runs.
"""

from __future__ import annotations

import base64
import hashlib
import io
import random
import struct
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import BinaryIO

from packaging.utils import canonicalize_name, parse_wheel_filename

__all__ = [
    "WheelBuildError",
    "build_wheel",
    "dist_info_dir",
    "metadata_from_fields",
    "write_wheel",
]

# 1980-01-01 is the earliest date a zip can hold; a fixed stamp makes the bytes reproducible.
_EPOCH = (1980, 1, 1, 0, 0, 0)
_CHUNK = 1024 * 1024


class WheelBuildError(ValueError):
    """The requested wheel cannot be built (bad file name, bad option)."""


def metadata_from_fields(
    name: str,
    version: str,
    requires_dist: Iterable[str] = (),
    provides_extra: Iterable[str] = (),
    requires_python: str | None = None,
    *,
    summary: str = "A tiny generated test wheel",
) -> bytes:
    """Core metadata 2.1 text with the given fields, in the order build backends write them."""
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}", f"Summary: {summary}"]
    if requires_python:
        lines.append(f"Requires-Python: {requires_python}")
    lines.extend(f"Provides-Extra: {extra}" for extra in provides_extra)
    lines.extend(f"Requires-Dist: {req}" for req in requires_dist)
    return ("\n".join(lines) + "\n\n").encode("utf-8")


def dist_info_dir(filename: str) -> str:
    """``<dist>-<version>.dist-info`` for a wheel file name, spelled as the file name spells it."""
    _parse(filename)
    dist, version = filename.split("-")[:2]
    return f"{dist}-{version}.dist-info"


def build_wheel(
    filename: str,
    metadata: bytes,
    *,
    payload_size: int = 64,
    compression: int = zipfile.ZIP_DEFLATED,
    extra_members: Mapping[str, bytes] | None = None,
    force_zip64: bool = False,
    dist_info_first: bool = False,
) -> bytes:
    """The bytes of a valid wheel named ``filename`` whose METADATA is ``metadata``.

    ``extra_members`` are written after the payload and before the dist-info files (vendored
    packages, a second ``*.dist-info``, many small files to grow the central directory).
    ``force_zip64`` writes ZIP64 extra fields in local headers and ZIP64 end records, the shape
    of wheels larger than 4 GiB, without needing 4 GiB. ``dist_info_first`` writes METADATA and
    WHEEL before everything else, as meson-python does (RECORD still comes last).
    """
    buffer = io.BytesIO()
    _write(
        buffer,
        filename,
        metadata,
        payload_size,
        compression,
        extra_members or {},
        force_zip64,
        dist_info_first,
    )
    return buffer.getvalue()


def write_wheel(
    path: Path,
    filename: str,
    metadata: bytes,
    *,
    payload_size: int = 64,
    compression: int = zipfile.ZIP_STORED,
    extra_members: Mapping[str, bytes] | None = None,
    force_zip64: bool = False,
) -> Path:
    """Like ``build_wheel`` but streamed to ``path`` (a file or a directory to put ``filename`` in).

    The payload is written in 1 MiB chunks, so a 100 MB wheel costs 1 MiB of memory.
    """
    target = path / filename if path.is_dir() else path
    with target.open("w+b") as fh:
        _write(fh, filename, metadata, payload_size, compression, extra_members or {}, force_zip64)
    return target


def _parse(filename: str) -> tuple[str, str]:
    try:
        name, version, _build, _tags = parse_wheel_filename(filename)
    except ValueError as exc:
        raise WheelBuildError(f"not a wheel file name: {filename!r}") from exc
    return name, str(version)


def _write(
    fh: BinaryIO,
    filename: str,
    metadata: bytes,
    payload_size: int,
    compression: int,
    extra_members: Mapping[str, bytes],
    force_zip64: bool,
    dist_info_first: bool = False,
) -> None:
    if payload_size < 0:
        raise WheelBuildError(f"payload_size must be >= 0, got {payload_size!r}")
    name, version = _parse(filename)
    package = canonicalize_name(name).replace("-", "_")
    dist_info = dist_info_dir(filename)
    records: list[tuple[str, str, int]] = []
    with zipfile.ZipFile(fh, "w", compression=compression) as zf:

        def dist_info_files() -> None:
            _add(zf, f"{dist_info}/METADATA", [metadata], records, force_zip64)
            _add(zf, f"{dist_info}/WHEEL", [_wheel_file(filename)], records, force_zip64)

        if dist_info_first:
            dist_info_files()
        init = f'"""Generated test package {name} {version}."""\n__version__ = "{version}"\n'.encode()
        _add(zf, f"{package}/__init__.py", [init], records, force_zip64)
        if payload_size:
            _add(zf, f"{package}/_payload.bin", _payload_chunks(payload_size), records, force_zip64)
        for member, data in extra_members.items():
            _add(zf, member, [data], records, force_zip64)
        if not dist_info_first:
            dist_info_files()
        record = "".join(f"{path},sha256={digest},{size}\n" for path, digest, size in records)
        record += f"{dist_info}/RECORD,,\n"
        _add(zf, f"{dist_info}/RECORD", [record.encode()], [], force_zip64)
    if force_zip64:
        _rewrite_end_as_zip64(fh)


def _add(
    zf: zipfile.ZipFile,
    member: str,
    chunks: Iterable[bytes],
    records: list[tuple[str, str, int]],
    force_zip64: bool,
) -> None:
    info = zipfile.ZipInfo(member, date_time=_EPOCH)
    info.compress_type = zf.compression
    info.external_attr = 0o644 << 16
    digest = hashlib.sha256()
    size = 0
    with zf.open(info, "w", force_zip64=force_zip64) as out:
        for chunk in chunks:
            out.write(chunk)
            digest.update(chunk)
            size += len(chunk)
    encoded = base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()
    records.append((member, encoded, size))


def _payload_chunks(size: int) -> Iterable[bytes]:
    # Pseudo-random, seeded bytes: incompressible like real binaries, yet reproducible.
    block = random.Random(size).randbytes(min(size, _CHUNK))
    remaining = size
    while remaining:
        step = min(remaining, len(block))
        yield block[:step]
        remaining -= step


def _wheel_file(filename: str) -> bytes:
    tags = sorted(str(tag) for tag in parse_wheel_filename(filename)[3])
    pure = all(tag.endswith("-none-any") for tag in tags)
    lines = [
        "Wheel-Version: 1.0",
        "Generator: wheelmeld-tests (0)",
        f"Root-Is-Purelib: {'true' if pure else 'false'}",
        *(f"Tag: {tag}" for tag in tags),
    ]
    return ("\n".join(lines) + "\n\n").encode()


# --- ZIP64 end records --------------------------------------------------------------------------
# zipfile writes ZIP64 end records only past 65535 entries or 4 GiB.  Real large wheels (torch
# is close to 1 GB, some CUDA wheels pass 2 GiB) may carry them, so the builder can rewrite a
# finished small zip into that shape: a ZIP64 end record + locator before a classic end record
# whose counts and offsets are all saturated, and central entries whose local-header offset
# moved into a ZIP64 extra field.  zipfile itself reads the result (tests check that).

_EOCD = struct.Struct("<4s4H2LH")
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_CENTRAL = struct.Struct("<4s6H3L5H2L")


def _rewrite_end_as_zip64(fh: BinaryIO) -> None:
    fh.seek(0)
    data = fh.read()
    eocd_at = data.rfind(b"PK\x05\x06")
    _sig, _d, _cd_disk, _n_disk, count, cd_size, cd_offset, _comment = _EOCD.unpack_from(data, eocd_at)
    central = _zip64_central(data[cd_offset : cd_offset + cd_size], count)
    zip64_at = cd_offset + len(central)
    zip64 = _ZIP64_EOCD.pack(b"PK\x06\x06", 44, 45, 45, 0, 0, count, count, len(central), cd_offset)
    locator = _ZIP64_LOCATOR.pack(b"PK\x06\x07", 0, zip64_at, 1)
    eocd = _EOCD.pack(b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    fh.seek(cd_offset)
    fh.truncate()
    fh.write(central + zip64 + locator + eocd)


def _zip64_central(central: bytes, count: int) -> bytes:
    out = bytearray()
    pos = 0
    for _ in range(count):
        fields: Sequence[int | bytes] = _CENTRAL.unpack_from(central, pos)
        name_len, extra_len, comment_len = fields[10], fields[11], fields[12]
        assert isinstance(name_len, int) and isinstance(extra_len, int) and isinstance(comment_len, int)
        end = pos + _CENTRAL.size + name_len + extra_len + comment_len
        name = central[pos + _CENTRAL.size : pos + _CENTRAL.size + name_len]
        extra = central[pos + _CENTRAL.size + name_len : pos + _CENTRAL.size + name_len + extra_len]
        comment = central[end - comment_len : end]
        offset = fields[16]
        # Only the offset moves into the ZIP64 field: sizes fit, and the field order is fixed by
        # the spec (sizes first only when they are saturated), so this is a valid, minimal form.
        extra += struct.pack("<HHQ", 0x0001, 8, offset)
        patched = [*fields[:11], len(extra), *fields[12:16], 0xFFFFFFFF]
        patched[2] = max(int(patched[2]), 45)  # version needed to extract: ZIP64 is 4.5
        out += _CENTRAL.pack(*patched) + name + extra + comment
        pos = end
    return bytes(out)
