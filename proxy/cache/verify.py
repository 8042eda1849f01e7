"""``wheelmeld cache verify``: re-hash every cached file; report and drop the ones that do not match.

A file is good when its sha256 equals its ``<file>.sha256`` sidecar (written at commit, only after the
download matched upstream's hash or every length upstream stated) and, where the cached page
advertises a sha256 or a size for that file name, those too. A file without a sidecar was never
checked against anything upstream said (no hash, no length): it is reported, never vouched for.
Bit rot, a hand-copied cache or an upstream that re-published a file under the same name all show
up here. A hash left without its file is dropped quietly.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from proxy.cache.inventory import Entry, scan
from proxy.cache.page_file import load_page
from proxy.cache.store import CacheStore
from proxy.index.errors import PageParseError
from proxy.index.parse import parse_project_page

__all__ = ["BadFile", "Progress", "VerifyReport", "verify"]

_JSON = "application/vnd.pypi.simple.v1+json"
_CHUNK = 1024 * 1024

# (files done, files in all, bytes done, bytes in all)
Progress = Callable[[int, int, int, int], None]


@dataclass(frozen=True, slots=True)
class BadFile:
    path: Path
    reason: str


@dataclass(frozen=True, slots=True)
class VerifyReport:
    checked: int
    size: int
    bad: tuple[BadFile, ...]
    dropped: bool
    orphan_hashes: int = 0


@dataclass(frozen=True, slots=True)
class _Listed:
    sha256: str | None
    size: int | None


def _advertised(page_json: Path) -> dict[str, _Listed]:
    """File name -> what the cached page says of it (empty when the page is missing or unreadable)."""
    try:
        stored = load_page(page_json.read_bytes())
        page = parse_project_page(stored.body, _JSON, stored.url)
    except (OSError, ValueError, PageParseError):
        return {}
    return {f.filename: _Listed((f.hashes.get("sha256") or "").lower() or None, f.size) for f in page.files}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _problem(entry: Entry, pages: dict[Path, dict[str, _Listed]]) -> str | None:
    files_dir = entry.path.parent
    page_json = files_dir.parent / "page.json"
    if page_json not in pages:
        pages[page_json] = _advertised(page_json)
    try:
        actual = _sha256(entry.path)
    except OSError as exc:
        return f"unreadable: {exc}"
    sidecar = entry.path.with_name(entry.path.name + ".sha256")
    try:
        recorded = sidecar.read_text().strip().lower()
    except OSError:
        recorded = ""
    listed = pages[page_json].get(entry.path.name, _Listed(None, None))
    if recorded and actual != recorded:
        return f"sha256 {actual} does not match its recorded {recorded}"
    if listed.sha256 and actual != listed.sha256:
        return f"sha256 {actual} does not match the page's {listed.sha256}"
    if listed.size is not None and entry.size != listed.size:
        return f"{entry.size} bytes, not the page's {listed.size}"
    if not recorded and not listed.sha256:
        return "never verified: upstream stated no sha256 and no length to check it against"
    return None


def verify(store: CacheStore, *, drop: bool = True, progress: Progress | None = None) -> VerifyReport:
    """Check every cached file (blocking; hashes whole files). ``drop`` removes the bad ones."""
    entries = list(scan(store.data_root))
    files = [e for e in entries if e.kind == "file"]
    total_bytes = sum(f.size for f in files)
    pages: dict[Path, dict[str, _Listed]] = {}
    bad: list[BadFile] = []
    done_bytes = 0
    for number, entry in enumerate(files, 1):
        problem = _problem(entry, pages)
        if problem is not None:
            bad.append(BadFile(entry.path, problem))
            if drop:
                for path in (entry.path, entry.path.with_name(entry.path.name + ".sha256")):
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()
        done_bytes += entry.size
        if progress is not None:
            progress(number, len(files), done_bytes, total_bytes)
    orphans = 0
    for entry in entries:
        if entry.kind == "hash" and not entry.path.with_name(entry.path.name[: -len(".sha256")]).exists():
            orphans += 1
            if drop:
                with contextlib.suppress(FileNotFoundError):
                    entry.path.unlink()
    return VerifyReport(len(files), total_bytes, tuple(bad), drop, orphans)
