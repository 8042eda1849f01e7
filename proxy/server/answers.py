"""Answers the edge builds itself: errors as a status and one line, page headers, header values."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.responses import PlainTextResponse, Response
from starlette.types import Message, Send

from proxy.errors import WheelmeldError
from proxy.text import escape_controls

__all__ = ["error_response", "header_value", "headers_only", "page_headers"]


def error_response(exc: WheelmeldError, headers: Mapping[str, str] | None = None) -> Response:
    """The one mapping of an error to an answer: its status, its reason, never cached; ``headers``
    adds what the status calls for (a 401's ``WWW-Authenticate``)."""
    return PlainTextResponse(
        exc.reason + "\n", status_code=exc.status, headers={"Cache-Control": "no-store", **(headers or {})}
    )


def headers_only(send: Send) -> Send:
    """``send`` for a HEAD: the answer's start (its Content-Length that of the GET), then no body."""

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            await send(message)
        elif not message.get("more_body", False):
            await send({"type": "http.response.body", "body": b""})

    return sending


def page_headers(ttl: float, stale_reason: str | None) -> dict[str, str]:
    headers = {
        "Vary": "Accept",
        "Cache-Control": f"max-age={int(ttl)}",
        "X-Wheelmeld-Cache": "stale" if stale_reason else "fresh",
    }
    if stale_reason:
        headers["X-Wheelmeld-Stale"] = header_value(stale_reason)
        headers["Warning"] = '110 wheelmeld "Response is stale"'
    return headers


def header_value(text: str, limit: int = 500) -> str:
    """Text an upstream or a client had a hand in, made safe for a header: one line, printable ASCII
    (anything else as its backslash escape: a header is Latin-1 on the wire, and h11 refuses control
    characters), bounded. Every such header value goes through here."""
    flat = escape_controls(" ".join(text.split()))
    return flat.encode("ascii", "backslashreplace").decode("ascii")[:limit]
