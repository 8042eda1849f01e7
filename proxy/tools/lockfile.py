"""What a ``uv.lock`` references: registry packages, their index, and every sdist and wheel file.

Only packages from a registry (an index) are of interest: path, git and virtual sources never pass
through a proxy. File names come from the last segment of each URL (uv keeps ``+`` as ``%2B``).
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from packaging.utils import NormalizedName, canonicalize_name

from proxy.tools.platforms import Target

__all__ = ["LockError", "LockedFile", "LockedPackage", "read_uv_lock", "select_files"]


class LockError(ValueError):
    """The lock file cannot be read or is not shaped like a ``uv.lock``."""


@dataclass(frozen=True, slots=True)
class LockedFile:
    url: str
    filename: str
    sha256: str | None  # lower-case hex, when the lock recorded one
    size: int | None

    @property
    def is_wheel(self) -> bool:
        return self.filename.endswith(".whl")


@dataclass(frozen=True, slots=True)
class LockedPackage:
    name: NormalizedName
    version: str
    registry: str  # the index URL the package was resolved from (no trailing slash)
    files: tuple[LockedFile, ...]


def _file(entry: Any, where: str) -> LockedFile:
    if not isinstance(entry, dict) or not isinstance(entry.get("url"), str):
        raise LockError(f"{where}: a file entry without a url: {entry!r}")
    url = entry["url"]
    filename = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    digest = entry.get("hash")
    sha256 = None
    if isinstance(digest, str) and digest.startswith("sha256:"):
        sha256 = digest.removeprefix("sha256:").lower()
    size = entry.get("size")
    return LockedFile(url, filename, sha256, size if isinstance(size, int) else None)


def read_uv_lock(path: Path) -> tuple[LockedPackage, ...]:
    """Every registry package of the lock with its files, in lock order."""
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise LockError(f"cannot read lock file {str(path)!r}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise LockError(f"lock file {str(path)!r} is not TOML: {exc}") from exc
    packages = data.get("package", [])
    if not isinstance(packages, list):
        raise LockError(f"lock file {str(path)!r} has no [[package]] array")
    out: list[LockedPackage] = []
    for i, package in enumerate(packages):
        where = f"{path}: package[{i}]"
        source = package.get("source", {}) if isinstance(package, dict) else {}
        registry = source.get("registry") if isinstance(source, dict) else None
        if not isinstance(registry, str) or not registry.startswith(("http://", "https://")):
            continue  # virtual, editable, path or git: nothing an index serves
        files = [_file(package["sdist"], where)] if "sdist" in package else []
        files += [_file(w, where) for w in package.get("wheels", [])]
        out.append(
            LockedPackage(
                canonicalize_name(str(package.get("name", ""))),
                str(package.get("version", "")),
                registry.rstrip("/"),
                tuple(files),
            )
        )
    return tuple(out)


def select_files(package: LockedPackage, targets: Sequence[Target]) -> tuple[LockedFile, ...]:
    """The files ``targets`` need: all of them without targets; else each target's wheels, or the
    sdist for a target no wheel fits (it would build from source there)."""
    if not targets:
        return package.files
    wheels = [f for f in package.files if f.is_wheel]
    sdists = [f for f in package.files if not f.is_wheel]
    chosen: dict[str, LockedFile] = {}
    for target in targets:
        fitting = [f for f in wheels if target.accepts(f.filename)]
        for f in fitting or sdists:
            chosen.setdefault(f.filename, f)
    return tuple(f for f in package.files if f.filename in chosen)
