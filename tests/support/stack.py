"""Helpers for the HTTP-level tests of ``wheelmeld serve``: the proxy/upstream stack and page readers.

Pages are read with the standard library's HTML parser and ``json``, never with the proxy's own
parsers, so a rendering bug cannot hide behind a matching parsing bug.
"""

from __future__ import annotations

import contextlib
import hashlib
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
from packaging.utils import parse_wheel_filename

from tests.support.fake_index import FakeFile, FakeIndex
from tests.support.proxy import ProxyServer, proxy_config
from tests.support.upstream import UpstreamOptions, UpstreamServer
from tests.support.wheels import build_wheel, metadata_from_fields

__all__ = [
    "JSON",
    "MakeStack",
    "Stack",
    "anchors",
    "raw_get",
    "sha256",
    "single_line",
    "start_stack",
    "wheel",
]

JSON = "application/vnd.pypi.simple.v1+json"


@dataclass(frozen=True, slots=True)
class Stack:
    """One upstream, one proxy in front of it, one client on the proxy."""

    upstream: UpstreamServer
    proxy: ProxyServer
    client: httpx.Client
    cache_dir: Path

    @property
    def base(self) -> str:
        """Proxy path of the upstream's index root, no trailing slash (``/whl/nightly/cu126``)."""
        return self.upstream.options.prefix

    def page(self, project: str) -> str:
        return f"{self.base}/{project}/"

    def file(self, project: str, filename: str, suffix: str = "") -> str:
        # Percent-encoded like the links the proxy serves ('+' as %2B).
        return f"{self.base}/{project}/{httpx.URL('/' + filename).raw_path.decode()[1:]}{suffix}"

    def json_page(self, project: str) -> dict[str, Any]:
        response = self.client.get(self.page(project), headers={"Accept": JSON})
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()
        return data

    def fetch(self, path: str) -> tuple[int | None, bytes]:
        """(status, body) of a GET, or (None, what arrived) when the transfer broke off."""
        received = b""
        try:
            with self.client.stream("GET", path) as response:
                for chunk in response.iter_raw():
                    received += chunk
                return response.status_code, received
        except httpx.HTTPError:
            return None, received

    def requests(self, suffix: str = "") -> list[tuple[str, str, str | None]]:
        """(method, path, range) of each upstream request whose path ends with ``suffix``."""
        return [(r.method, r.path, r.range) for r in self.upstream.requests_for(suffix)]


# What the ``make_stack`` fixture (tests/conftest.py) returns.
MakeStack = Callable[..., Stack]


def _route_prefix(upstream_prefix: str) -> str:
    return "/" + upstream_prefix.strip("/").split("/")[0]


def start_stack(
    stack: contextlib.ExitStack,
    cache_dir: Path,
    index: FakeIndex,
    options: UpstreamOptions,
    route: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
    upstream_host: str = "127.0.0.1",
) -> Stack:
    """Start upstream, proxy and client inside ``stack``; the route mirrors the upstream's first segment."""
    if not options.prefix:
        raise ValueError("give the fake upstream a prefix: the proxy's route mirrors it")
    up = stack.enter_context(UpstreamServer(index, options, host=upstream_host))
    prefix = _route_prefix(options.prefix)
    cfg = proxy_config(cache_dir, {prefix: up.url + prefix}, **(config or {}))
    routes = tuple(replace(r, **(route or {})) for r in cfg.routes)
    proxy = stack.enter_context(ProxyServer(replace(cfg, routes=routes)))
    client = stack.enter_context(httpx.Client(base_url=proxy.url, timeout=20.0, follow_redirects=False))
    return Stack(up, proxy, client, cache_dir)


def wheel(
    filename: str,
    requires: Sequence[str] = (),
    *,
    extras: Sequence[str] = (),
    requires_python: str | None = None,
    payload_size: int = 64,
    **changes: Any,
) -> FakeFile:
    """A fake upstream file: a real tiny wheel whose METADATA declares ``requires``."""
    name, version, _build, _tags = parse_wheel_filename(filename)
    metadata = metadata_from_fields(name, str(version), requires, extras, requires_python)
    content = build_wheel(filename, metadata, payload_size=payload_size)
    return FakeFile(
        filename=filename,
        content=content,
        metadata=metadata,
        requires_python=requires_python,
        **changes,
    )


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def wait_until(condition: Callable[[], object], what: str, timeout: float = 5.0) -> None:
    """Poll ``condition`` briefly: a server's bookkeeping (a commit, a log line) follows the last
    byte it sent by a moment, so a client can see the answer before that is done."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def single_line(body: str) -> bool:
    """A one-line error body: one line of text, a final newline at most, no traceback."""
    return body.strip() != "" and "\n" not in body.rstrip("\n") and "Traceback" not in body


class _Anchors(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[dict[str, str | None]] = []
        self._current: dict[str, str | None] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._current = dict(attrs)
            self._current["#text"] = ""

    def handle_data(self, data: str) -> None:
        if self._current is not None:
            self._current["#text"] = (self._current["#text"] or "") + data

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._current is not None:
            self.found.append(self._current)
            self._current = None


def anchors(html_text: str) -> list[dict[str, str | None]]:
    """Every ``<a>``'s attributes (entities decoded), its text under ``"#text"``."""
    parser = _Anchors()
    parser.feed(html_text)
    parser.close()
    return parser.found


def raw_get(port: int, raw_path: str, method: str = "GET") -> tuple[int, bytes]:
    """Send ``raw_path`` byte for byte (httpx would normalize dot segments); (status, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        request = f"{method} {raw_path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        sock.sendall(request.encode("latin-1"))
        chunks: list[bytes] = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    data = b"".join(chunks)
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, body


def index_of(projects: dict[str, Iterable[FakeFile]]) -> FakeIndex:
    return FakeIndex.from_files(projects)
