"""Ready answers: warm page and ``.metadata`` responses kept whole, sent again without any handler.

A warm ``uv lock`` or a CI fleet asks the same few hundred URLs over and over. Once a page or a
``.metadata`` answer has been built, the next identical request (same method, path, query,
``Accept`` and kind of client) gets the very same status, headers and body while nothing it was
built from changed. What it was built from is a ``PageView`` (``proxy.service.page_views``): the
page entry in service and the revisions of its advertised hashes. Each answer is kept with its view
and goes when the view does (a new entry, a moved revision); ``PageViews.serves`` says whether a
view still holds (its entry is still fresh and its revisions unmoved). Anything else goes through
the handlers, which build (and offer back) a new answer.

Bodies are shared with the views' renderings, so the memory this costs is bounded by ``_MAX_BYTES``
counted as if nothing were shared.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.types import Message

from proxy.service.page_views import PageView, PageViews

__all__ = ["ReadyAnswer", "ReadyAnswers", "RequestKey"]

# (method, path, query string, Accept header, whether the client checks a PEP 658 file against its
# wheel): everything of a request the index handlers read.
RequestKey = tuple[str, str, bytes, bytes | None, bool]

_MAX_ENTRIES = 8192
_MAX_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ReadyAnswer:
    """One complete answer, as the two ASGI messages that send it, and the view it was built from."""

    start: Message
    body: Message
    size: int  # of the body
    view: PageView  # read before building, so one that moved meanwhile makes the answer stale at once
    notes: dict[str, object]  # what the access log line says of it (route, cache outcome)

    @classmethod
    def of(
        cls,
        status: int,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        view: PageView,
        notes: dict[str, object],
    ) -> ReadyAnswer:
        # Servers and middleware read these messages and never change them (the auth middleware
        # sends a changed copy), so one pair serves every repeat.
        start = {"type": "http.response.start", "status": status, "headers": headers}
        body_message = {"type": "http.response.body", "body": body}
        return cls(start, body_message, len(body), view, notes)


class ReadyAnswers:
    """Answers by request, each kept with its page view and valid while that view holds."""

    def __init__(self, views: PageViews) -> None:
        self._views = views
        self._answers: dict[RequestKey, ReadyAnswer] = {}
        self._by_view: dict[PageView, set[RequestKey]] = {}
        self._bytes = 0
        views.when_dropped(self._forget)

    def get(self, request: RequestKey, ttl: float) -> ReadyAnswer | None:
        answer = self._answers.get(request)
        if answer is not None and self._views.serves(answer.view, ttl):
            return answer
        return None  # the handlers build a new one, which replaces this

    def put(self, request: RequestKey, answer: ReadyAnswer) -> None:
        if not answer.view.live:
            return  # its view was dropped while the answer was built: nothing to keep it with
        self._remove(request)
        if len(self._answers) >= _MAX_ENTRIES or self._bytes + answer.size > _MAX_BYTES:
            # Rare (a lock touches hundreds of URLs, not thousands) and cheap to rebuild: start over.
            self._answers.clear()
            self._by_view.clear()
            self._bytes = 0
        self._answers[request] = answer
        self._by_view.setdefault(answer.view, set()).add(request)
        self._bytes += answer.size

    def _forget(self, view: PageView) -> None:
        for request in self._by_view.pop(view, ()):
            answer = self._answers.get(request)
            if answer is not None and answer.view is view:
                self._remove(request)

    def _remove(self, request: RequestKey) -> None:
        old = self._answers.pop(request, None)
        if old is not None:
            self._bytes -= old.size
