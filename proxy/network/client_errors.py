"""What the HTTP client raises when an upstream's URL or answer is unusable: all of it upstream's fault.

``httpx.HTTPError`` covers transport and protocol failures (``UnsupportedProtocol``,
``LocalProtocolError``...), but a URL httpx cannot even build raises ``httpx.InvalidURL`` (a bad
port, a control character, a URL too long) or a ``UnicodeError`` (an IDNA host the ``idna`` codec
refuses, a lone surrogate in a path), neither of them an ``HTTPError``. Links come from upstream
pages, so every one of these is answered like any upstream failure, never as a 500.
"""

from __future__ import annotations

import aiohttp
import httpx

__all__ = ["HTTP_CLIENT_ERRORS"]

# aiohttp: the client of pages, PEP 658 files and range reads (``range_client``); all it raises
# for transport, protocol, URL, redirect and decoding failures is a ``ClientError``.
HTTP_CLIENT_ERRORS: tuple[type[Exception], ...] = (
    httpx.HTTPError,
    httpx.InvalidURL,
    UnicodeError,
    aiohttp.ClientError,
)
