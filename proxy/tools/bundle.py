"""``wheelmeld bundle``: carry a cache (or the part a lock needs) into an air-gapped site as one tar.

Archive layout: the first member is ``wheelmeld-bundle.json``, the manifest::

    {"format": "wheelmeld-bundle", "version": 1, "layout": "v1",
     "members": [{"name": "v1/<route>/<path…>/files/<f>", "sha256": "<hex>", "size": <bytes>}, ...]}

then one regular-file member per manifest entry, named by its path below the cache root (only the
``v1/`` data tree: ``tmp/`` and ``locks/`` are per-machine). Import trusts nothing in the archive:
every member must be a regular file, listed once in the manifest, with a relative name of safe
components under ``v1/``; all of them are written to a temp directory inside the cache and checked
against the manifest's size and sha256 *before* the first one is moved into place (each move an
atomic rename). Any mismatch, extra or missing member, link, device or traversal → ``BundleError``
and the cache is untouched.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import tarfile
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

from proxy.cache.store import CacheStore, PageKey, is_safe_component
from proxy.config import RouteConfig
from proxy.tools.local_proxy import route_path
from proxy.tools.lockfile import LockedPackage, select_files
from proxy.tools.platforms import Target

__all__ = ["BundleError", "BundleSummary", "export_bundle", "import_bundle", "lock_folders", "lock_members"]

MANIFEST_NAME = "wheelmeld-bundle.json"
_FORMAT = "wheelmeld-bundle"
_VERSION = 1
_LAYOUT = "v1"
_CHUNK = 1024 * 1024
_MANIFEST_LIMIT = 256 * 1024 * 1024  # a manifest of a million files is ~150 MB; refuse absurd ones


class BundleError(ValueError):
    """The archive is not a bundle we can import, or does not match its manifest (nothing imported)."""


@dataclass(frozen=True, slots=True)
class BundleSummary:
    members: int
    bytes: int
    missing: tuple[str, ...] = ()  # export --lock: locked files the cache does not hold
    names: tuple[str, ...] = ()  # import: the members now in the cache (their paths below its root)


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_name(name: str) -> PurePosixPath:
    """A member name as the cache would write it, or ``BundleError``."""
    if not name or "\\" in name or "\x00" in name or name.startswith("/"):
        raise BundleError(f"unsafe member name {name!r}")
    path = PurePosixPath(name)
    parts = path.parts
    if path.is_absolute() or len(parts) < 2 or parts[0] != _LAYOUT or "/".join(parts) != name:
        raise BundleError(f"unsafe member name {name!r}: not a path below {_LAYOUT}/")
    for part in parts[1:]:
        # Only what the cache itself would create; anything else in an archive was not written by one.
        if not is_safe_component(part):
            raise BundleError(f"unsafe component {part!r} in member {name!r}")
    return path


# -- export -------------------------------------------------------------------------------------------


def _all_members(root: Path) -> Iterator[str]:
    data = root / _LAYOUT
    for dirpath, dirnames, filenames in os.walk(data):
        dirnames.sort()
        for filename in sorted(filenames):
            full = Path(dirpath) / filename
            if full.is_file() and not full.is_symlink():
                yield full.relative_to(root).as_posix()


def _locked_key(package: LockedPackage, routes: tuple[RouteConfig, ...]) -> PageKey | None:
    """The page a locked package's files are cached under; ``None`` for a name the cache cannot hold."""
    routed = route_path(package.registry, routes)
    if routed is None:
        raise BundleError(f"lock index {package.registry!r} is served by no configured route")
    index = routed.key()
    return PageKey(index.route, (*index.path, package.name)) if is_safe_component(package.name) else None


def lock_folders(
    store: CacheStore, packages: Sequence[LockedPackage], routes: tuple[RouteConfig, ...]
) -> list[Path]:
    """The cache folder of each locked project (what the fleet's bucket fills before an export)."""
    return [store.project_dir(key) for p in packages if (key := _locked_key(p, routes)) is not None]


def lock_members(
    store: CacheStore,
    packages: Sequence[LockedPackage],
    targets: Sequence[Target],
    routes: tuple[RouteConfig, ...],
) -> tuple[list[str], list[str]]:
    """Cache members a lock needs (page, all original metadata and melds of each locked project, and the
    locked files ``targets`` select) and the locked files the cache lacks."""
    wanted: dict[str, None] = {}
    missing: list[str] = []
    for package in packages:
        # A name the cache could not hold is in no cached page: missing, with all its files.
        key = _locked_key(package, routes)
        for path in store.metadata_and_melds(key) if key is not None else ():
            wanted[path.relative_to(store.root).as_posix()] = None
        page = store.page_path(key) if key is not None else None
        if page is not None and page.is_file():
            wanted[page.relative_to(store.root).as_posix()] = None
        else:
            missing.append(f"{package.name}: page")
        for locked in select_files(package, targets):
            cached = (
                store.file_path(key, locked.filename)
                if key is not None and is_safe_component(locked.filename)
                else None
            )
            if cached is not None and cached.is_file():
                wanted[cached.relative_to(store.root).as_posix()] = None
                sidecar = store.hash_path(cached)
                if sidecar.is_file():
                    wanted[sidecar.relative_to(store.root).as_posix()] = None
            else:
                missing.append(locked.filename)
    return list(wanted), missing


def export_bundle(root: Path, out: Path, members: Iterable[str] | None = None) -> BundleSummary:
    """Write ``members`` (default: the whole data tree) of the cache at ``root`` to the tar ``out``."""
    names = list(members) if members is not None else list(_all_members(root))
    entries: list[dict[str, Any]] = []
    for name in names:
        _check_name(name)
        path = root / name
        entries.append({"name": name, "sha256": _sha256_file(path), "size": path.stat().st_size})
    manifest = json.dumps({"format": _FORMAT, "version": _VERSION, "layout": _LAYOUT, "members": entries},
                          indent=1).encode()  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".part")
    try:
        with (
            os.fdopen(fd, "wb") as raw,
            tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar,
        ):
            info = tarfile.TarInfo(MANIFEST_NAME)
            info.size = len(manifest)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(manifest))
            for entry in entries:
                info = tarfile.TarInfo(entry["name"])
                info.size = entry["size"]
                info.mode = 0o644
                with (root / entry["name"]).open("rb") as fh:
                    tar.addfile(info, fh)
        os.replace(tmp_name, out)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    return BundleSummary(len(entries), sum(e["size"] for e in entries))


# -- import -------------------------------------------------------------------------------------------


def _read_manifest(tar: tarfile.TarFile, first: tarfile.TarInfo | None) -> dict[str, tuple[str, int]]:
    if first is None or first.name != MANIFEST_NAME or not first.isreg():
        raise BundleError(f"not a wheelmeld bundle: the first member must be {MANIFEST_NAME}")
    if first.size > _MANIFEST_LIMIT:
        raise BundleError("manifest too large")
    fh = tar.extractfile(first)
    assert fh is not None
    try:
        doc = json.loads(fh.read())
    except ValueError as exc:
        raise BundleError(f"manifest is not JSON: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("format") != _FORMAT:
        raise BundleError("manifest is not a wheelmeld bundle manifest")
    if doc.get("version") != _VERSION or doc.get("layout") != _LAYOUT:
        raise BundleError(f"unsupported bundle version {doc.get('version')!r} / layout {doc.get('layout')!r}")
    expected: dict[str, tuple[str, int]] = {}
    for entry in doc.get("members", []):
        try:
            name, sha256, size = str(entry["name"]), str(entry["sha256"]).lower(), int(entry["size"])
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"bad manifest entry {entry!r}") from exc
        _check_name(name)
        if name in expected:
            raise BundleError(f"manifest lists {name!r} twice")
        if not re.fullmatch(r"[0-9a-f]{64}", sha256) or size < 0:
            raise BundleError(f"bad manifest entry for {name!r}")
        expected[name] = (sha256, size)
    return expected


def _copy_verified(source: IO[bytes], dest: Path, name: str, sha256: str, size: int) -> None:
    digest = hashlib.sha256()
    written = 0
    with dest.open("wb") as out:
        for chunk in iter(lambda: source.read(_CHUNK), b""):
            written += len(chunk)
            if written > size:
                raise BundleError(f"{name}: larger than the manifest's {size} bytes")
            digest.update(chunk)
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    if written != size:
        raise BundleError(f"{name}: {written} bytes, the manifest says {size}")
    if digest.hexdigest() != sha256:
        raise BundleError(f"{name}: sha256 {digest.hexdigest()} does not match the manifest's {sha256}")


def import_bundle(archive: Path, store: CacheStore) -> BundleSummary:
    """Verify every member of ``archive`` against its manifest, then merge them into ``store``.

    Nothing in the cache changes unless the whole archive verifies.
    """
    # Staged inside the cache (same file system: the final moves are renames). Not ``prepare()``:
    # that empties tmp/, and a server using this cache may be writing there right now.
    (store.root / "tmp").mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=store.root / "tmp", prefix="import-"))
    try:
        try:
            tar = tarfile.open(archive, mode="r:*")  # noqa: SIM115 (closed by the with below)
        except (OSError, tarfile.TarError) as exc:
            raise BundleError(f"cannot read {str(archive)!r} as a tar archive: {exc}") from exc
        with tar:
            try:
                expected = _read_manifest(tar, tar.next())
                seen: set[str] = set()
                for member in iter(tar.next, None):
                    name = member.name
                    if name not in expected:
                        raise BundleError(f"member {name!r} is not in the manifest")
                    if not member.isreg():
                        raise BundleError(
                            f"member {name!r} is not a regular file (link, device or directory)"
                        )
                    if name in seen:
                        raise BundleError(f"member {name!r} appears twice")
                    seen.add(name)
                    sha256, size = expected[name]
                    if member.size != size:
                        raise BundleError(f"{name}: {member.size} bytes, the manifest says {size}")
                    source = tar.extractfile(member)
                    assert source is not None
                    dest = staging / name
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    _copy_verified(source, dest, name, sha256, size)
            except (tarfile.TarError, OSError, EOFError) as exc:
                raise BundleError(f"damaged archive {str(archive)!r}: {exc}") from exc
        absent = sorted(set(expected) - seen)
        if absent:
            raise BundleError(
                f"{len(absent)} manifest member(s) missing from the archive, e.g. {absent[0]!r}"
            )
        # Everything verified: move into place, one atomic rename per file.
        for name in expected:
            CacheStore.commit(staging / name, store.root / name)
        return BundleSummary(
            len(expected), sum(size for _sha, size in expected.values()), names=tuple(expected)
        )
    finally:
        shutil.rmtree(staging, ignore_errors=True)
