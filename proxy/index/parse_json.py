"""PEP 691 JSON simple pages (any 1.x ``api-version``) -> the page model.

Also reads PEP 700 (``versions``, ``size``, ``upload-time``), PEP 714 (``core-metadata`` preferred
over ``dist-info-metadata``), PEP 592 ``yanked`` as bool or reason, PEP 708 ``tracks`` /
``alternate-locations`` and PEP 792 ``project-status``. Structure a client relies on (an object,
a known major version, each file's ``filename`` and ``url``) is checked strictly; a stray type in an
optional field is dropped instead, so one odd value cannot make a whole project uninstallable.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from packaging.utils import canonicalize_name

from ._values import (
    core_metadata_value,
    hashes_from_fragment,
    hashes_from_pairs,
    is_plain_filename,
    major_version,
    plus_in_path,
    resolve_url,
    upload_time_value,
    yanked_value,
)
from .errors import PageParseError
from .model import DistFile, ProjectList, ProjectPage, versions_from_files
from .parse_html import project_name_from_url

__all__ = ["parse_json_project_list", "parse_json_project_page"]

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def _load(text: str, page_url: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError; absurd nesting
        raise PageParseError(f"bad JSON page {page_url!r}: {exc}") from exc
    if not isinstance(data, dict):
        raise PageParseError(f"JSON page {page_url!r} is a {type(data).__name__}, not an object")
    meta = data.get("meta", {})
    if not isinstance(meta, dict):
        raise PageParseError(f"JSON page {page_url!r}: 'meta' is not an object")
    version = meta.get("api-version", "1.0")
    major = major_version(version) if isinstance(version, str) else None
    if major is None:
        raise PageParseError(f"JSON page {page_url!r}: bad api-version {str(version)[:40]!r}")
    if major != 1:
        raise PageParseError(f"JSON page {page_url!r}: unsupported api-version {version!r}")
    return data


def _str_list(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(v for v in value if isinstance(v, str))


def _where(page_url: str, index: int) -> str:
    return f"JSON page {page_url!r}: files[{index}]"


def _hashes(raw: Mapping[object, object]) -> dict[str, str]:
    # Nearly every index sends exactly {"sha256": "<64 lower-case hex>"}: keep it without a loop.
    if len(raw) == 1:
        digest = raw.get("sha256")
        if isinstance(digest, str) and _SHA256_HEX.fullmatch(digest):
            return {"sha256": digest}
    return hashes_from_pairs(raw.items())


def _dist_file(entry: object, index: int, page_url: str) -> DistFile:
    # Called once per file of pages up to 20,000 files long: the common case stays on a short path
    # (error messages are built only when raised), measured at a third of the time it once took.
    if not isinstance(entry, dict):
        raise PageParseError(f"{_where(page_url, index)} is not an object")
    filename, url = entry.get("filename"), entry.get("url")
    if not isinstance(filename, str) or not filename:
        raise PageParseError(f"{_where(page_url, index)} has no 'filename'")
    if not isinstance(url, str) or not url:
        raise PageParseError(f"{_where(page_url, index)} ({filename!r}) has no 'url'")
    if not is_plain_filename(filename):
        raise PageParseError(f"{_where(page_url, index)}: {filename!r} is not a plain file name")
    url, fragment = resolve_url(page_url, url.strip())
    # The prefix test answers for nearly every URL; urlsplit (a fifth of this function) for the rest.
    if not url.startswith(("https://", "http://")) and urlsplit(url).scheme not in {"http", "https"}:
        raise PageParseError(f"{_where(page_url, index)} ({filename!r}): not an http(s) URL {url!r}")
    raw_hashes = entry.get("hashes", {})
    if not isinstance(raw_hashes, dict | Mapping):  # dict first: no ABC check for the usual case
        raise PageParseError(f"{_where(page_url, index)} ({filename!r}): 'hashes' is not an object")
    hashes = _hashes(raw_hashes)
    if fragment:
        # A fragment on a JSON url is not standard, but its hash is as good as one in "hashes".
        hashes = {**hashes_from_fragment(fragment), **hashes}
    metadata = entry["core-metadata"] if "core-metadata" in entry else entry.get("dist-info-metadata")
    requires_python = entry.get("requires-python")
    size = entry.get("size")
    gpg = entry.get("gpg-sig")
    yanked = entry.get("yanked", False)
    # Positional, in DistFile's field order: keywords cost a frozen dataclass twice the time.
    return DistFile(
        filename,
        plus_in_path(url),
        hashes,
        requires_python if isinstance(requires_python, str) and requires_python else None,
        False if yanked is False else yanked_value(yanked),
        # A dict is nearly always one sha256: ``_hashes`` keeps that without a loop.
        (_hashes(metadata) or True) if type(metadata) is dict else core_metadata_value(metadata),
        size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else None,
        upload_time_value(entry.get("upload-time")),
        gpg if isinstance(gpg, bool) else None,
    )


def parse_json_project_page(text: str, page_url: str) -> ProjectPage:
    """Parse a decoded PEP 691 project page fetched from ``page_url``."""
    data = _load(text, page_url)
    entries = data.get("files", [])
    if not isinstance(entries, list):
        raise PageParseError(f"JSON page {page_url!r}: 'files' is not a list")
    files = tuple(_dist_file(entry, i, page_url) for i, entry in enumerate(entries))
    name = data.get("name")
    versions = data.get("versions")
    status = data.get("project-status")
    status = status if isinstance(status, dict) and isinstance(status.get("status"), str) else {}
    return ProjectPage(
        name=canonicalize_name(name) if isinstance(name, str) and name else project_name_from_url(page_url),
        files=files,
        versions=(
            _str_list(versions)
            if isinstance(versions, list)
            else versions_from_files(f.filename for f in files)
        ),
        status=status.get("status"),
        status_reason=status["reason"] if isinstance(status.get("reason"), str) else None,
        tracks=_str_list(data.get("tracks")),
        alternate_locations=_str_list(data.get("alternate-locations")),
    )


def parse_json_project_list(text: str, page_url: str) -> ProjectList:
    """Parse a decoded PEP 691 root page (``{"projects": [{"name": ...}, ...]}``)."""
    data = _load(text, page_url)
    entries = data.get("projects")
    if not isinstance(entries, list):
        raise PageParseError(f"JSON page {page_url!r}: 'projects' is not a list")
    names: list[str] = []
    for index, entry in enumerate(entries):
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not name:
            raise PageParseError(f"JSON page {page_url!r}: projects[{index}] has no 'name'")
        names.append(name)
    return ProjectList(projects=tuple(names))
