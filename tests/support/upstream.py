"""A fake upstream simple index (PEP 503 HTML, PEP 691 JSON, PEP 658/714 metadata, PEP 700).

A real HTTP server — a Starlette app run by uvicorn in a background thread on 127.0.0.1 — that
behaves like the indexes wheelmeld fronts, configurable per test (``UpstreamOptions``):

* ``format="html"`` mimics the PyTorch wheel index: static HTML, ``Accept`` ignored, non-standard
  ``data-upload-time``; ``format="json"`` negotiates PEP 691 JSON / HTML by ``Accept``.
* ``pep658`` serves ``<file>.metadata`` and advertises it (``data-core-metadata`` and the legacy
  ``data-dist-info-metadata``) unless ``advertise_pep658`` is off (PyPI as reachable here serves the
  files without saying so); ``hashes`` adds ``#sha256=``; ``ranges`` turns Range support on
  (off: Range is ignored and full 200 bodies are sent).
* Links are ``relative`` (``torch-2.7...%2Bcu126-...whl``, resolving under the project page),
  ``root-relative`` (``<prefix>/torch-...whl``, PyTorch's usual form) or ``absolute``.  Files
  answer at both ``<prefix>/<project>/<file>`` and ``<prefix>/<file>``.
* Pages carry ``ETag`` / ``Last-Modified`` and answer conditional requests with 304.
* Per-request latency, and faults injected by path suffix (status, connection reset mid-body,
  honest truncation, corrupted bytes, slow body).

Every request lands in ``server.log`` (a ``RequestLog``).  Run it by hand with
``python -m tests.support.upstream --fixture pytorch``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import sys
import threading
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from email.utils import format_datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import aiofiles
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from tests.support.child_server import Started
from tests.support.fake_index import FIXTURES_DIR, FakeFile, FakeIndex
from tests.support.raw_http import DrippingHeaders  # re-exported: tests take it from here too
from tests.support.request_log import RequestLog, RequestRecord, _Entry
from tests.support.serving import ServerStartError, ThreadedServer
from tests.support.simple_pages import (
    JSON,
    LAST_MODIFIED,
    TEXT_HTML,
    negotiate,
    not_modified,
    parse_range,
    project_html,
    project_json,
    root_html,
    root_json,
)

__all__ = [
    "PYPI_TORCH_OPTIONS",
    "PYTORCH_OPTIONS",
    "DrippingHeaders",
    "FakeFile",
    "FakeIndex",
    "Fault",
    "RequestLog",
    "RequestRecord",
    "UpstreamError",
    "UpstreamOptions",
    "UpstreamServer",
    "main",
]

_CHUNK = 256 * 1024
_FLIP = bytes(255 - i for i in range(256))


class UpstreamError(RuntimeError):
    """The fake upstream could not start or stop."""


class _ResetConnection(Exception):
    """Raised mid-body so uvicorn drops the connection: the client sees a reset."""


@dataclass(frozen=True, slots=True)
class Fault:
    """What to do instead of (or to) a normal answer, for paths ending with a given suffix.

    ``status``: answer that status with a short text body.  ``reset_after``: send headers and this
    many body bytes, then drop the connection.  ``truncate_to``: serve only the first N body bytes
    with a matching Content-Length (a short file, not a broken connection).  ``wrong_bytes``: same
    length, every byte flipped.  ``chunk_size`` / ``chunk_delay_ms``: a slow body.  ``times``:
    apply to the first N matching requests only (``None``: always).  ``skip``: let this many
    matching requests through untouched first (fail the second range request, not the first).
    ``body``: answer 200 with these bytes as ``content_type`` instead (a hostile page), with
    ``content_encoding`` as its Content-Encoding when set (a compressed, or falsely labelled, body).
    ``no_length``: no Content-Length (uvicorn sends the body chunked); with ``truncate_to`` the body
    then ends early but cleanly, as a static server's EOF-delimited file does.  ``head_delay_ms``:
    wait this long before the status line (a stalled or dripping header). ``location``: with
    ``status``, a ``Location`` header (a redirect). ``hold_until``: answer only once a request for
    a path ending with this has arrived, or after ``hold_seconds`` without one; ``held`` is then set
    if it arrived (the evidence that a client sent it while this answer was still due).
    """

    status: int | None = None
    reset_after: int | None = None
    truncate_to: int | None = None
    wrong_bytes: bool = False
    chunk_size: int | None = None
    chunk_delay_ms: float = 0.0
    times: int | None = None
    skip: int = 0
    body: bytes | None = None
    content_type: str = "text/html; charset=utf-8"
    content_encoding: str = ""
    no_length: bool = False
    head_delay_ms: float = 0.0
    location: str | None = None
    hold_until: str | None = None
    hold_seconds: float = 10.0
    held: threading.Event | None = None


@dataclass(frozen=True, slots=True)
class UpstreamOptions:
    """How the fake upstream behaves; flip at run time with ``UpstreamServer.set_options``."""

    format: Literal["html", "json"] = "html"
    pep658: bool = False
    advertise_pep658: bool = True
    ranges: bool = True
    hashes: bool = True
    link_style: Literal["relative", "root-relative", "absolute"] = "relative"
    # With link_style="absolute": the directory URL files are linked under (default: this server).
    absolute_base: str | None = None
    prefix: str = ""
    upload_time_attr: bool = True
    latency_ms: float = 0.0
    validators: bool = True

    def __post_init__(self) -> None:
        prefix = self.prefix.rstrip("/")
        if prefix and not prefix.startswith("/"):
            raise ValueError(f"prefix must start with '/': {self.prefix!r}")
        object.__setattr__(self, "prefix", prefix)
        if self.format not in ("html", "json"):
            raise ValueError(f"unknown format {self.format!r}")
        if self.link_style not in ("relative", "root-relative", "absolute"):
            raise ValueError(f"unknown link style {self.link_style!r}")


# The seed's index as the PyTorch wheel index serves it: static HTML, no PEP 658 files, ranges,
# relative %2B links, no #sha256 on nightly files, the non-standard data-upload-time.
PYTORCH_OPTIONS = UpstreamOptions(
    format="html",
    pep658=False,
    ranges=True,
    hashes=False,
    link_style="relative",
    prefix="/whl/nightly/cu126",
)
# torch 2.1.0's real metadata as PEP 658 files, real names and hashes on an HTML page, absolute
# links to the files (a package index usually links to a separate file host).
PYPI_TORCH_OPTIONS = UpstreamOptions(
    format="html", pep658=True, ranges=True, hashes=True, link_style="absolute", prefix="/simple"
)


@dataclass(frozen=True, slots=True)
class _Body:
    """A response body: in-memory bytes or a slice of a file on disk."""

    data: bytes | None = None
    path: Path | None = None
    start: int = 0
    length: int = 0

    @classmethod
    def of(cls, data: bytes) -> _Body:
        return cls(data=data, length=len(data))

    async def chunks(self, size: int) -> AsyncIterator[bytes]:
        if self.data is not None:
            for pos in range(0, self.length, size):
                yield self.data[pos : pos + size]
            return
        assert self.path is not None
        async with aiofiles.open(self.path, "rb") as fh:
            await fh.seek(self.start)
            remaining = self.length
            while remaining:
                chunk = await fh.read(min(size, remaining))
                if not chunk:
                    raise _ResetConnection(f"{self.path} shrank while being served")
                remaining -= len(chunk)
                yield chunk


class _Reply:
    """An ASGI response that counts what it sends and applies a fault, if any."""

    def __init__(
        self,
        log: RequestLog,
        entry: _Entry,
        status: int,
        headers: Mapping[str, str],
        body: _Body,
        *,
        head: bool = False,
        fault: Fault | None = None,
    ) -> None:
        self._log, self._entry, self._status, self._body = log, entry, status, body
        self._headers, self._head, self._fault = dict(headers), head, fault or Fault()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self._answer(send)
        finally:
            self._log.close(self._entry)

    async def _answer(self, send: Send) -> None:
        fault, body = self._fault, self._body
        if fault.truncate_to is not None and fault.truncate_to < body.length:
            body = dataclasses.replace(body, data=body.data and body.data[: fault.truncate_to])
            body = dataclasses.replace(body, length=fault.truncate_to)
        headers = dict(self._headers)
        if not fault.no_length:
            headers["content-length"] = str(body.length)
        if fault.head_delay_ms:
            await asyncio.sleep(fault.head_delay_ms / 1000)
        self._log.set_status(self._entry, self._status)
        await send(
            {
                "type": "http.response.start",
                "status": self._status,
                "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()],
            }
        )
        if not self._head:
            await self._send_body(send, body, fault)
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _send_body(self, send: Send, body: _Body, fault: Fault) -> None:
        sent = 0
        async for chunk in body.chunks(fault.chunk_size or _CHUNK):
            if fault.wrong_bytes:
                chunk = chunk.translate(_FLIP)
            if fault.reset_after is not None and sent + len(chunk) > fault.reset_after:
                chunk = chunk[: fault.reset_after - sent]
                self._log.add_bytes(self._entry, len(chunk))
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                raise _ResetConnection(f"fault: reset after {fault.reset_after} bytes")
            self._log.add_bytes(self._entry, len(chunk))
            sent += len(chunk)
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            if fault.chunk_delay_ms:
                await asyncio.sleep(fault.chunk_delay_ms / 1000)


class _HideResets(logging.Filter):
    """Drops uvicorn's traceback for an injected reset: it is the test's intent, not a bug."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], _ResetConnection))


class UpstreamServer(Started):
    """The fake upstream as a context manager: ``with UpstreamServer(index, options) as up: up.url``."""

    def __init__(
        self,
        index: FakeIndex,
        options: UpstreamOptions | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self._index = index
        self._options = options or UpstreamOptions()
        self._host, self._requested_port = host, port
        self._lock = threading.Lock()
        self._faults: dict[str, list[Any]] = {}
        self._digests: dict[str, str] = {}
        self.log = RequestLog()
        self._runner: ThreadedServer | None = None
        self._port = 0
        self._log_filter = _HideResets()

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> UpstreamServer:
        """Bind, start serving in a background thread, and wait until ready."""
        if self._runner is not None:
            raise UpstreamError("already started")
        app = Starlette(routes=[Route("/{path:path}", self._endpoint, methods=["GET", "HEAD"])])
        runner = ThreadedServer(app, host=self._host, port=self._requested_port, name="fake upstream")
        logging.getLogger("uvicorn.error").addFilter(self._log_filter)
        try:
            self._port = runner.start()
        except ServerStartError as exc:
            logging.getLogger("uvicorn.error").removeFilter(self._log_filter)
            raise UpstreamError(str(exc)) from exc
        self._runner = runner
        return self

    def stop(self) -> None:
        """Stop serving and join the thread; idempotent."""
        if self._runner is not None:
            self._runner.stop()
        logging.getLogger("uvicorn.error").removeFilter(self._log_filter)
        self._runner = None

    # --- what tests use ----------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``, no trailing slash."""
        return f"http://{self._host}:{self._port}"

    @property
    def index_url(self) -> str:
        """The root list page: ``<url><prefix>/``."""
        return f"{self.url}{self._options.prefix}/"

    @property
    def options(self) -> UpstreamOptions:
        return self._options

    @property
    def index(self) -> FakeIndex:
        return self._index

    def set_options(self, **changes: Any) -> UpstreamOptions:
        """Change options while serving (e.g. turn ranges off); returns the new options."""
        with self._lock:
            self._options = dataclasses.replace(self._options, **changes)
            return self._options

    def set_index(self, index: FakeIndex) -> None:
        """Serve another index from now on (e.g. a nightly vanished upstream)."""
        with self._lock:
            self._index = index
            self._digests.clear()  # its files may be other bytes under the same names

    def inject_fault(self, path_suffix: str, fault: Fault) -> None:
        """Apply ``fault`` to requests whose decoded path ends with ``path_suffix``."""
        with self._lock:
            self._faults[path_suffix] = [fault, fault.times, fault.skip]

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def file_url(self, filename: str) -> str:
        """Absolute URL of a file, as this server's relative links resolve."""
        found = self._index.find(filename)
        if found is None:
            raise KeyError(filename)
        return f"{self.url}{self._options.prefix}/{found[0]}/{quote(filename, safe='')}"

    def requests_for(self, path_suffix: str = "") -> tuple[RequestRecord, ...]:
        return self.log.requests_for(path_suffix)

    def bytes_sent_total(self, path_suffix: str = "") -> int:
        return self.log.bytes_sent_total(path_suffix)

    # --- serving -----------------------------------------------------------------------------

    async def _endpoint(self, request: Request) -> _Reply:
        path = request.url.path
        headers = {k.lower(): v for k, v in request.headers.items()}
        entry = self.log.open(request.method, path, request.url.query, headers)
        with self._lock:
            options, index, fault = self._options, self._index, self._take_fault(path)
        try:
            return await self._reply(request, entry, headers, options, index, fault)
        except BaseException:  # no _Reply will close it: a client gone during the latency, a bug
            self.log.close(entry)
            raise

    async def _reply(
        self,
        request: Request,
        entry: _Entry,
        headers: Mapping[str, str],
        options: UpstreamOptions,
        index: FakeIndex,
        fault: Fault | None,
    ) -> _Reply:
        path = request.url.path
        if options.latency_ms:
            await asyncio.sleep(options.latency_ms / 1000)
        if fault is not None and fault.hold_until is not None:
            arrived = await asyncio.to_thread(self.log.wait_for, fault.hold_until, fault.hold_seconds)
            if arrived and fault.held is not None:
                fault.held.set()
        head = request.method == "HEAD"
        if fault is not None and fault.status is not None:
            body = _Body.of(f"fault: {fault.status}\n".encode())
            out = {"content-type": "text/plain"} | ({"location": fault.location} if fault.location else {})
            return _Reply(self.log, entry, fault.status, out, body, head=head)
        if fault is not None and fault.body is not None:
            hostile = _Body.of(fault.body)
            out = {"content-type": fault.content_type}
            if fault.content_encoding:
                out["content-encoding"] = fault.content_encoding
            return _Reply(self.log, entry, 200, out, hostile, head=head)
        status, out_headers, body = self._route(path, headers, dict(request.query_params), options, index)
        return _Reply(self.log, entry, status, out_headers, body, head=head, fault=fault)

    def _take_fault(self, path: str) -> Fault | None:
        for suffix, slot in self._faults.items():
            if not path.endswith(suffix):
                continue
            if slot[2] > 0:
                slot[2] -= 1
                return None
            if slot[1] is None or slot[1] > 0:
                if slot[1] is not None:
                    slot[1] -= 1
                fault: Fault = slot[0]
                return fault
        return None

    def _route(
        self,
        path: str,
        headers: Mapping[str, str],
        query: Mapping[str, str],
        options: UpstreamOptions,
        index: FakeIndex,
    ) -> tuple[int, dict[str, str], _Body]:
        prefix = options.prefix
        if path != prefix and not path.startswith(prefix + "/"):
            return _not_found()
        parts = [p for p in path[len(prefix) :].split("/") if p]
        if not parts:
            return self._page(None, headers, query, options, index)
        if len(parts) == 1 and parts[0] in index.projects:
            return self._page(parts[0], headers, query, options, index)
        if len(parts) > 2 or (len(parts) == 2 and parts[0] not in index.projects):
            return _not_found()
        name = parts[-1]
        want_metadata = name.endswith(".metadata")
        found = index.find(name.removesuffix(".metadata") if want_metadata else name)
        if found is None or (len(parts) == 2 and found[0] != parts[0]):
            return _not_found()
        file = found[1]
        if want_metadata:
            if not options.pep658 or file.metadata is None:
                return _not_found()
            return _ranged(_Body.of(file.metadata), headers, options, "application/octet-stream")
        if file.content is not None:
            body = _Body.of(file.content)
        else:
            assert file.path is not None
            body = _Body(path=file.path, length=file.body_size)
        return _ranged(body, headers, options, "application/octet-stream")

    def _page(
        self,
        project: str | None,
        headers: Mapping[str, str],
        query: Mapping[str, str],
        options: UpstreamOptions,
        index: FakeIndex,
    ) -> tuple[int, dict[str, str], _Body]:
        content_type = TEXT_HTML
        out: dict[str, str] = {}
        if options.format == "json":
            content_type = negotiate(query.get("format") or headers.get("accept", ""))
            out["vary"] = "Accept"
        as_json = content_type == JSON
        if project is None:
            names = sorted(index.projects)
            data = root_json(names) if as_json else root_html(names)
        else:
            files = index.projects[project]
            links = [(f, self._href(project, f, options)) for f in files]
            render = project_json if as_json else project_html
            data = render(project, links, options, self._advertised_hashes)
        out["content-type"] = content_type if as_json else f"{content_type}; charset=utf-8"
        if options.validators:
            etag = f'"{hashlib.sha256(data).hexdigest()[:32]}"'
            out["etag"] = etag
            out["last-modified"] = format_datetime(LAST_MODIFIED, usegmt=True)
            if not_modified(headers, etag):
                return 304, out, _Body.of(b"")
        return 200, out, _Body.of(data)

    def _href(self, project: str, file: FakeFile, options: UpstreamOptions) -> str:
        name = quote(file.filename, safe="")
        if options.link_style == "relative":
            return name
        if options.link_style == "root-relative":
            return f"{options.prefix}/{name}"
        base = options.absolute_base or f"{self.url}{options.prefix}/{project}"
        return f"{base.rstrip('/')}/{name}"

    def _advertised_hashes(self, file: FakeFile) -> dict[str, str]:
        if file.hashes is not None:
            return dict(file.hashes)
        with self._lock:
            cached = self._digests.get(file.filename)
        if cached is None:
            digest = hashlib.sha256()
            if file.content is not None:
                digest.update(file.content)
            else:
                assert file.path is not None
                with file.path.open("rb") as fh:
                    for chunk in iter(lambda: fh.read(_CHUNK * 4), b""):
                        digest.update(chunk)
            cached = digest.hexdigest()
            with self._lock:
                self._digests[file.filename] = cached
        return {"sha256": cached}


# --- pure helpers: HTTP ----------------------------------------------------------------------------


def _not_found() -> tuple[int, dict[str, str], _Body]:
    return 404, {"content-type": "text/plain"}, _Body.of(b"not found\n")


def _ranged(
    body: _Body, headers: Mapping[str, str], options: UpstreamOptions, content_type: str
) -> tuple[int, dict[str, str], _Body]:
    out = {"content-type": content_type}
    if not options.ranges:
        return 200, out, body
    out["accept-ranges"] = "bytes"
    wanted = parse_range(headers.get("range"), body.length)
    if wanted is None:
        return 200, out, body
    if wanted == "unsatisfiable":
        out["content-range"] = f"bytes */{body.length}"
        return 416, out, _Body.of(b"")
    start, end = wanted
    out["content-range"] = f"bytes {start}-{end}/{body.length}"
    if body.data is not None:
        return 206, out, _Body.of(body.data[start : end + 1])
    return 206, out, dataclasses.replace(body, start=body.start + start, length=end - start + 1)


# --- a server a person can run ----------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """``python -m tests.support.upstream --fixture pytorch|pypi-torch [options]``."""
    parser = argparse.ArgumentParser(prog="python -m tests.support.upstream", description=__doc__)
    parser.add_argument("--fixture", choices=("pytorch", "pypi-torch"), default="pytorch")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--format", choices=("html", "json"), default="html")
    parser.add_argument("--pep658", action="store_true", help="serve and advertise <file>.metadata")
    parser.add_argument("--no-ranges", action="store_true", help="ignore Range, always send 200")
    parser.add_argument("--no-hashes", action="store_true", help="no #sha256 on links")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--link-style", choices=("relative", "root-relative", "absolute"), default="relative")
    parser.add_argument("--prefix", default=None, help="default: /whl/nightly/cu126 or /simple")
    args = parser.parse_args(argv)
    if args.fixture == "pytorch":
        index = FakeIndex.from_pytorch_fixture(FIXTURES_DIR / "pytorch-nightly-cu126.json")
        prefix = "/whl/nightly/cu126" if args.prefix is None else args.prefix
    else:
        index = FakeIndex.from_pypi_torch_fixture(FIXTURES_DIR / "pypi-torch-2.1.0")
        prefix = "/simple" if args.prefix is None else args.prefix
    options = UpstreamOptions(
        format=args.format,
        pep658=args.pep658,
        ranges=not args.no_ranges,
        hashes=not args.no_hashes,
        latency_ms=args.latency_ms,
        link_style=args.link_style,
        prefix=prefix,
    )
    with UpstreamServer(index, options, port=args.port) as up:
        print(f"fake upstream ({args.fixture}) serving {up.index_url}  (Ctrl-C to stop)", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
