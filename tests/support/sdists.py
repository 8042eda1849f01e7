"""Tiny valid sdists (``.tar.gz`` and ``.zip``) generated at test time, shaped as build backends
write them: one top directory ``<name>-<version>/`` holding ``PKG-INFO`` (first, as setuptools
writes it, or last), a ``pyproject.toml``, and a payload of incompressible bytes."""

from __future__ import annotations

import io
import os
import tarfile
import zipfile

__all__ = ["build_sdist", "pkg_info"]


def pkg_info(
    name: str,
    version: str,
    requires_dist: tuple[str, ...] = (),
    *,
    metadata_version: str = "2.2",
    dynamic: tuple[str, ...] = (),
) -> bytes:
    """``PKG-INFO`` text; PEP 643 makes ``Requires-Dist`` static from 2.2 unless it is ``Dynamic``."""
    lines = [f"Metadata-Version: {metadata_version}", f"Name: {name}", f"Version: {version}"]
    lines.extend(f"Dynamic: {field}" for field in dynamic)
    lines.extend(f"Requires-Dist: {req}" for req in requires_dist)
    return ("\n".join(lines) + "\n\n").encode()


def build_sdist(
    filename: str, metadata: bytes, *, payload_size: int = 64, pkg_info_last: bool = False
) -> bytes:
    """The bytes of an sdist named ``filename`` whose ``PKG-INFO`` is ``metadata``."""
    top = filename.removesuffix(".tar.gz").removesuffix(".zip")
    members = [(f"{top}/pyproject.toml", b"[build-system]\nrequires = []\n")]
    members.append((f"{top}/src/payload.bin", os.urandom(payload_size)))
    info = (f"{top}/PKG-INFO", metadata)
    members = [*members, info] if pkg_info_last else [info, *members]
    buffer = io.BytesIO()
    if filename.endswith(".zip"):
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, data in members:
                zf.writestr(name, data)
        return buffer.getvalue()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT) as tf:
        for name, data in members:
            entry = tarfile.TarInfo(name)
            entry.size = len(data)
            entry.mtime = 1_700_000_000
            tf.addfile(entry, io.BytesIO(data))
    return buffer.getvalue()
