"""Ready answers: warm page and ``.metadata`` responses kept whole, sent again without any handler.

A warm ``uv lock`` or a CI fleet asks the same few hundred URLs over and over. Once a page or a
``.metadata`` answer has been built, the next identical request (same method, path, query and
``Accept``) gets the very same status, headers and body while nothing it was built from changed:
the page entry is still the one in service and still fresh, and no advertised hash of that page
changed since (a meld, a committed file, a metadata file read: the revisions the page's renderings
are kept by). Anything else goes through the handlers, which build (and offer back) a new answer.

Bodies are shared with the page entries' own renderings, so the memory this costs is bounded by
``_MAX_BYTES`` counted as if nothing were shared.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass

from starlette.types import Message

from proxy.cache.store import PageKey
from proxy.service.pages import PageEntry, PageService

__all__ = ["ReadyAnswer", "ReadyAnswers", "RequestKey"]

# (method, path, query string, Accept header, whether the client checks a PEP 658 file against its
# wheel): everything of a request the index handlers read.
RequestKey = tuple[str, str, bytes, bytes | None, bool]

_MAX_ENTRIES = 8192
_MAX_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ReadyAnswer:
    """One complete answer, as the two ASGI messages that send it, and what it was built from."""

    start: Message
    body: Message
    size: int  # of the body
    # The page entry in service when the answer was built, weakly: an answer nobody asks again must
    # not keep a replaced 20,000-file page in memory.
    entry: weakref.ref[PageEntry]
    revisions: tuple[int, int]  # (metadata, files) revisions of that page, read before building
    notes: dict[str, object]  # what the access log line says of it (route, cache outcome)

    @classmethod
    def of(
        cls,
        status: int,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        entry: PageEntry,
        revisions: tuple[int, int],
        notes: dict[str, object],
    ) -> ReadyAnswer:
        # Servers and middleware read these messages and never change them (the auth middleware
        # sends a changed copy), so one pair serves every repeat.
        start = {"type": "http.response.start", "status": status, "headers": headers}
        body_message = {"type": "http.response.body", "body": body}
        return cls(start, body_message, len(body), weakref.ref(entry), revisions, notes)


class ReadyAnswers:
    """Answers by request, each valid while its page entry is in service, fresh and unchanged."""

    def __init__(
        self,
        pages: PageService,
        revisions: Callable[[PageKey], tuple[int, int]],
    ) -> None:
        self._pages = pages
        self._revisions = revisions
        self._answers: dict[RequestKey, ReadyAnswer] = {}
        self._bytes = 0

    def get(self, request: RequestKey, ttl: float) -> ReadyAnswer | None:
        answer = self._answers.get(request)
        if answer is None:
            return None
        entry = answer.entry()
        if (
            entry is not None
            and self._pages.in_service(entry, ttl)
            and self._revisions(entry.key) == answer.revisions
        ):
            return answer
        return None  # the handlers build a new one, which replaces this

    def put(self, request: RequestKey, answer: ReadyAnswer) -> None:
        old = self._answers.pop(request, None)
        if old is not None:
            self._bytes -= old.size
        if len(self._answers) >= _MAX_ENTRIES or self._bytes + answer.size > _MAX_BYTES:
            # Rare (a lock touches hundreds of URLs, not thousands) and cheap to rebuild: start over.
            self._answers.clear()
            self._bytes = 0
        self._answers[request] = answer
        self._bytes += answer.size
