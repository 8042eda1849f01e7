"""The Starlette side of answers read from files: a cached file, a download followed, a project list."""

from __future__ import annotations

import contextlib
import logging
import os
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
from starlette.responses import FileResponse, RedirectResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from proxy.errors import UpstreamError
from proxy.service.files import CachedFile, FileAnswer, RedirectedFile
from proxy.service.project_lists import ListBody
from proxy.text import escape_controls

__all__ = ["file_response", "list_response"]

log = logging.getLogger("wheelmeld")


def file_response(answer: FileAnswer) -> Response:
    if isinstance(answer, RedirectedFile):
        # no-store: the URL is a bearer token that expires; no cache in between may keep it.
        return RedirectResponse(answer.url, status_code=307, headers={"Cache-Control": "no-store"})
    if isinstance(answer, CachedFile):
        # FileResponse answers Range, If-Range and HEAD itself; its own ETag is replaced by the hash.
        return _TrackedFileResponse(
            answer.path, answer.in_use, answer.stat, headers=answer.headers, media_type=answer.media_type
        )
    if answer.chunks is None:
        return HeadResponse(answer.headers, media_type=answer.media_type)
    return FollowingResponse(answer.chunks, answer.headers, media_type=answer.media_type)


def list_response(body: ListBody, headers: dict[str, str], media_type: str) -> Response:
    """A project list's answer: ``body`` streamed (headers only, for a HEAD); it closes the file."""
    return _ListResponse(body, {**headers, "Content-Length": str(body.length)}, media_type)


class _ListResponse(StreamingResponse):
    """Streams a ``ListBody`` and closes its file however the answer ends (sent, or the client left
    before the first byte, when the body's generator never even starts)."""

    def __init__(self, body: ListBody, headers: dict[str, str], media_type: str) -> None:
        super().__init__(body.chunks(), headers=headers, media_type=media_type)
        self._fh = body.fh

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            if scope["method"] == "HEAD":  # the headers say the length; the file need not be read
                await send(
                    {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
                )
                await send({"type": "http.response.body", "body": b""})
            else:
                await super().__call__(scope, receive, send)
        finally:
            self._fh.close()


class _TrackedFileResponse(FileResponse):
    """A cached file's response that counts itself as "in use" while it sends, so eviction spares it."""

    def __init__(
        self, path: Path, in_use: Counter[Path], stat: os.stat_result | None, **kwargs: object
    ) -> None:
        super().__init__(path, stat_result=stat, **kwargs)  # type: ignore[arg-type]
        self._in_use, self._tracked = in_use, path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._in_use[self._tracked] += 1
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._in_use[self._tracked] -= 1
            if self._in_use[self._tracked] <= 0:
                del self._in_use[self._tracked]


class FollowingResponse(Response):
    """Streams a download as it grows; a failed download breaks the connection, never ends cleanly.

    Raising out of the app would make the server log a traceback; returning without the final body
    message makes it close the connection: a client sees a short read or a broken chunked body.
    """

    def __init__(self, chunks: AsyncIterator[bytes], headers: dict[str, str], media_type: str) -> None:
        super().__init__(None, headers=headers, media_type=media_type)
        _unknown_length(self, headers)
        self._chunks = chunks

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        async with contextlib.aclosing(self._chunks), anyio.create_task_group() as group:  # type: ignore[type-var]

            async def stream() -> None:
                try:
                    async for chunk in self._chunks:
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
                except UpstreamError as exc:
                    log.warning("aborted %s: %s", escape_controls(scope.get("path", "?")), exc.reason)
                else:
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                group.cancel_scope.cancel()

            async def watch_disconnect() -> None:
                # A client that hangs up stops its reader; the download itself goes on for the others.
                while (await receive())["type"] != "http.disconnect":
                    pass
                group.cancel_scope.cancel()

            group.start_soon(stream)
            group.start_soon(watch_disconnect)


class HeadResponse(Response):
    """The headers of a GET of a download, no body; no Content-Length unless upstream stated one."""

    def __init__(self, headers: dict[str, str], media_type: str) -> None:
        super().__init__(b"", headers=headers, media_type=media_type)
        _unknown_length(self, headers)


def _unknown_length(response: Response, headers: dict[str, str]) -> None:
    """Starlette states the length of the empty body it was given, 0: drop that unless it is ours."""
    if "Content-Length" not in headers:
        response.raw_headers = [(k, v) for k, v in response.raw_headers if k != b"content-length"]
