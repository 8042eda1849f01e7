"""Render the page model as PEP 503 HTML or PEP 691 JSON (API version 1.1, with PEP 700 fields).

The caller passes pages whose file URLs it has already rewritten. Both renderers advertise core
metadata under the PEP 714 name *and* the legacy PEP 658 name (older installers read only the
latter), keep ``+`` as ``%2B`` in URL paths, and are deterministic.

Built for big pages: each file is formatted once into an HTML and a JSON fragment, memoized on the
``DistFile`` (see ``model._RenderMemo``), and a page is one join of fragments. A page as served
(our links, hashes and advertisements) is rendered from upstream's files by ``file_html`` /
``file_json`` and ``join_project_*``; its caller keeps those fragments (``service/page_views.py``).
A 20,000-file page renders in a few milliseconds once its files have been rendered before, and in
a few tens of milliseconds the first time.

The repository version is the lowest that covers what the page carries: 1.1 (PEP 700), 1.2 with
PEP 708 ``tracks`` / ``alternate-locations``, 1.4 with a PEP 792 project status.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from html import escape
from json.encoder import encode_basestring_ascii as _js

from packaging.utils import canonicalize_name

from ._values import plus_in_path
from .model import DistFile, ProjectList, ProjectPage

__all__ = [
    "Advertised",
    "file_html",
    "file_json",
    "join_project_html",
    "join_project_json",
    "render_list_html",
    "render_list_json",
    "render_project_html",
    "render_project_json",
]

# A file's core-metadata advertisement: False, True, or its hashes.
Advertised = bool | Mapping[str, str]

# PEP 503 fragments carry one hash; sha256 is the one installers check, then the strongest others.
_HASH_PREFERENCE = ("sha256", "sha512", "sha384", "sha224", "blake2b", "blake2s", "sha1", "md5")
_LIST_VERSION = "1.1"

_HTML_HEAD = (
    "<!DOCTYPE html>\n<html>\n  <head>\n"
    '    <meta name="pypi:repository-version" content="{version}">\n'
    "{meta}    <title>{title}</title>\n  </head>\n  <body>\n    <h1>{title}</h1>\n"
)
_HTML_TAIL = "  </body>\n</html>\n"


def _api_version(page: ProjectPage) -> str:
    if page.status is not None:
        return "1.4"
    if page.tracks or page.alternate_locations:
        return "1.2"
    return "1.1"


def _preferred_hash(hashes: Mapping[str, str]) -> tuple[str, str] | None:
    if not hashes:
        return None
    if "sha256" in hashes:  # nearly always: skip the loop
        return "sha256", hashes["sha256"]
    for name in _HASH_PREFERENCE:
        if name in hashes:
            return name, hashes[name]
    name = min(hashes)
    return name, hashes[name]


# --- HTML -------------------------------------------------------------------------------------


def _esc(value: str) -> str:
    """``html.escape`` for attributes and text, skipped when nothing needs it.

    Why: five substring tests cost a third of escape's five replaces, and URLs, hashes and times
    almost never hold a character to escape; on a 20,000-file page that is ~15 ms.
    """
    if "&" in value or "<" in value or ">" in value or '"' in value or "'" in value:
        return escape(value)
    return value


def _metadata_attrs(core_metadata: Advertised) -> str:
    if core_metadata is False:
        return ""
    best = None if core_metadata is True else _preferred_hash(core_metadata)
    value = _esc(f"{best[0]}={best[1]}") if best else "true"
    return f' data-core-metadata="{value}" data-dist-info-metadata="{value}"'


def file_html(f: DistFile, url: str, hashes: Mapping[str, str], core_metadata: Advertised) -> str:
    """``f``'s anchor with this link, hashes and advertisement in place of its own.

    The text a copy of ``f`` with that link, hashes and advertisement renders to, without building
    the copy (a frozen dataclass, per file of pages 15,000 files long); the caller keeps the
    fragment (``service/page_views.py``).
    """
    href = plus_in_path(url)
    best = _preferred_hash(hashes)
    if best:
        href = f"{href}#{best[0]}={best[1]}"
    attrs = ""
    if f.requires_python:
        attrs += f' data-requires-python="{_esc(f.requires_python)}"'
    if f.yanked is not False:
        attrs += f' data-yanked="{_esc(f.yanked) if isinstance(f.yanked, str) else ""}"'
    attrs += _metadata_attrs(core_metadata)
    if f.gpg_sig is not None:
        attrs += ' data-gpg-sig="true"' if f.gpg_sig else ' data-gpg-sig="false"'
    if f.upload_time:
        # Not PEP 503, but harmless: PyTorch writes it, and a proxy of this proxy keeps it.
        attrs += f' data-upload-time="{_esc(f.upload_time)}"'
    if f.size is not None:
        attrs += f' data-size="{int(f.size)}"'  # Not standard either; same reason.
    return f'    <a href="{_esc(href)}"{attrs}>{_esc(f.filename)}</a><br/>\n'


def _memo(f: DistFile, slot: str, build: Callable[[DistFile], str]) -> str:
    """``build(f)``, computed once per DistFile and kept in its memo slot (not a field: see model)."""
    fragment: str | None = getattr(f, slot, None)
    if fragment is None:
        fragment = build(f)
        object.__setattr__(f, slot, fragment)
    return fragment


def _html_fragment(f: DistFile) -> str:
    return file_html(f, f.url, f.hashes, f.core_metadata)


def _html_of(f: DistFile) -> str:
    return _memo(f, "_html_fragment", _html_fragment)


def _project_meta_html(page: ProjectPage) -> str:
    metas: list[tuple[str, str]] = []
    if page.status is not None:
        metas.append(("pypi:project-status", page.status))
        if page.status_reason is not None:
            metas.append(("pypi:project-status-reason", page.status_reason))
    metas.extend(("pypi:tracks", url) for url in page.tracks)
    metas.extend(("pypi:alternate-locations", url) for url in page.alternate_locations)
    return "".join(f'    <meta name="{name}" content="{escape(value)}">\n' for name, value in metas)


def render_project_html(page: ProjectPage) -> bytes:
    """A PEP 503 project page (repository version 1.1+) with every PEP 592/658/714 attribute."""
    return join_project_html(page, map(_html_of, page.files))


def join_project_html(page: ProjectPage, fragments: Iterable[str]) -> bytes:
    """``page`` as ``render_project_html`` writes it, with ``fragments`` (``file_html``'s) as its files."""
    head = _HTML_HEAD.format(
        version=_api_version(page), meta=_project_meta_html(page), title=f"Links for {escape(page.name)}"
    )
    return "".join([head, *fragments, _HTML_TAIL]).encode("utf-8")


# --- JSON -------------------------------------------------------------------------------------
# Fragments are written by hand, every string through the json module's own C escaper: one
# json.dumps per file would cost twice as much, and the output is the same compact ASCII JSON.


def _json_hashes(hashes: Mapping[str, str]) -> str:
    if len(hashes) == 1 and "sha256" in hashes:  # the usual case, at a third of the cost
        return f'{{"sha256":{_js(hashes["sha256"])}}}'
    return "{" + ",".join(f"{_js(k)}:{_js(v)}" for k, v in sorted(hashes.items())) + "}"


def file_json(f: DistFile, url: str, hashes: Mapping[str, str], core_metadata: Advertised) -> str:
    """``f``'s PEP 691 object with this link, hashes and advertisement: see ``file_html``."""
    core = core_metadata
    metadata = "true" if core is True else "false" if core is False else _json_hashes(core)
    if isinstance(f.yanked, str) and f.yanked:
        yanked = _js(f.yanked)
    else:
        yanked = "true" if f.yanked is True or f.yanked == "" else "false"  # "" is still a yank
    requires_python = "null" if f.requires_python is None else _js(f.requires_python)
    size = "" if f.size is None else f',"size":{int(f.size)}'
    upload_time = f',"upload-time":{_js(f.upload_time)}' if f.upload_time else ""
    gpg = "" if f.gpg_sig is None else ',"gpg-sig":true' if f.gpg_sig else ',"gpg-sig":false'
    # One f-string for the whole object: a list of parts and a join cost a third more.
    return (
        f'{{"filename":{_js(f.filename)},"url":{_js(plus_in_path(url))},'
        f'"hashes":{_json_hashes(hashes) if hashes else "{}"},"requires-python":{requires_python},'
        f'"yanked":{yanked},"core-metadata":{metadata},"dist-info-metadata":{metadata}'
        f"{size}{upload_time}{gpg}}}"
    )


def _json_fragment(f: DistFile) -> str:
    return file_json(f, f.url, f.hashes, f.core_metadata)


def _json_of(f: DistFile) -> str:
    return _memo(f, "_json_fragment", _json_fragment)


def _dumps(data: object) -> str:
    # Compact and ASCII-only, like the fragments: smaller pages, bytes independent of any locale.
    return json.dumps(data, separators=(",", ":"))


def render_project_json(page: ProjectPage) -> bytes:
    """A PEP 691 project page (API version 1.1+) with PEP 700 ``versions``, sizes and upload times."""
    return join_project_json(page, map(_json_of, page.files))


def join_project_json(page: ProjectPage, fragments: Iterable[str]) -> bytes:
    """``page`` as ``render_project_json`` writes it, with ``fragments`` (``file_json``'s) as its files."""
    tail: dict[str, object] = {"versions": list(page.versions)}
    if page.status is not None:
        status = {"status": page.status}
        if page.status_reason is not None:
            status["reason"] = page.status_reason
        tail["project-status"] = status
    if page.tracks:
        tail["tracks"] = list(page.tracks)
    if page.alternate_locations:
        tail["alternate-locations"] = list(page.alternate_locations)
    head = f'{{"meta":{{"api-version":"{_api_version(page)}"}},"name":{_js(page.name)},"files":['
    return "".join([head, ",".join(fragments), "],", _dumps(tail)[1:]]).encode("ascii")


# --- project list -----------------------------------------------------------------------------


def _list_anchor(name: str) -> str:
    return f'    <a href="{escape(canonicalize_name(name))}/">{escape(name, quote=False)}</a><br/>\n'


def render_list_html(lst: ProjectList) -> bytes:
    """The PEP 503 root page: one ``<a href="<canonical-name>/">`` per project."""
    head = _HTML_HEAD.format(version=_LIST_VERSION, meta="", title="Simple index")
    return "".join([head, *map(_list_anchor, lst.projects), _HTML_TAIL]).encode("utf-8")


def render_list_json(lst: ProjectList) -> bytes:
    """The PEP 691 root page: ``{"meta": ..., "projects": [{"name": ...}, ...]}``."""
    names = ",".join(f'{{"name":{_js(name)}}}' for name in lst.projects)
    return f'{{"meta":{{"api-version":"{_LIST_VERSION}"}},"projects":[{names}]}}'.encode("ascii")
