"""Decoding a page's or a small file's ``Content-Encoding`` as it arrives, a bounded piece at a time.

Both clients hand over the raw body and this decodes it, so the size caps (``upstream._read_capped``)
count *decoded* bytes while holding at most one ``_PIECE`` more than the cap: a few kilobytes of gzip
that inflate to gigabytes are cut off at the cap (httpx's own decoder inflates each network chunk
whole, up to ~1000x its size, before anyone can count it). What is decoded is what is asked for:
``ACCEPT_ENCODING``, the codings httpx asks for and decodes with this project's dependencies. A
coding nobody asked for, a body that ends inside its compressed stream (httpx keeps the truncated
start) or bytes after its end are a ``ContentDecodingError``, one of ``HTTP_CLIENT_ERRORS``, so
never a page or a metadata file built from half a body.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator

import aiohttp

__all__ = ["ACCEPT_ENCODING", "ContentDecoder", "ContentDecodingError"]

ACCEPT_ENCODING = "gzip, deflate"
_PIECE = 256 * 1024  # decoded bytes per step: the most a cap can be overrun by
_GZIP = zlib.MAX_WBITS | 16
_ZLIB = zlib.MAX_WBITS
_RAW_DEFLATE = -zlib.MAX_WBITS


class ContentDecodingError(aiohttp.ClientPayloadError):
    """The body is not what its ``Content-Encoding`` says (or says a coding that was not asked for)."""


class ContentDecoder:
    """One response body's decoder; ``identity`` (or no header) passes bytes through."""

    def __init__(self, content_encoding: str) -> None:
        codings = [c.strip().lower() for c in content_encoding.split(",") if c.strip()]
        codings = [c for c in codings if c != "identity"]
        if len(codings) > 1 or (codings and codings[0] not in ("gzip", "x-gzip", "deflate")):
            raise ContentDecodingError(f"unsupported Content-Encoding {content_encoding[:40]!r}")
        self._coding = codings[0] if codings else ""
        self._inflate = zlib.decompressobj(_GZIP) if self._coding in ("gzip", "x-gzip") else None
        # "deflate" comes with the zlib wrapper or, from many servers, without (raw): its first
        # two bytes tell which, so they are held until both are here.
        self._head: bytes | None = b"" if self._coding == "deflate" else None
        self._fed = False

    def decode(self, data: bytes) -> Iterator[bytes]:
        """The decoded pieces of ``data`` (each at most ``_PIECE`` bytes), made as they are taken."""
        if self._head is not None:
            data, self._head = self._head + data, None
            if len(data) < 2:
                self._head = data
                return
            wrapped = data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0
            self._inflate = zlib.decompressobj(_ZLIB if wrapped else _RAW_DEFLATE)
        if self._inflate is None:
            yield data
            return
        self._fed = self._fed or bool(data)
        while data:
            if self._inflate.eof:
                if self._coding == "deflate" or data[:2] != b"\x1f\x8b":
                    raise ContentDecodingError("bytes after the end of the compressed body")
                self._inflate = zlib.decompressobj(_GZIP)  # a further gzip member (RFC 1952 allows it)
            try:
                piece = self._inflate.decompress(data, _PIECE)
            except zlib.error as exc:
                raise ContentDecodingError(f"cannot decode the {self._coding} body: {exc}") from exc
            data = self._inflate.unconsumed_tail or self._inflate.unused_data
            if piece:
                yield piece

    def finish(self) -> Iterator[bytes]:
        """The body ended: what zlib still holds, then an error unless its compressed stream ended too."""
        if self._head:
            raise ContentDecodingError("the deflate body ends before its compressed stream")
        if self._inflate is None or not self._fed:
            return
        while not self._inflate.eof and (piece := self._inflate.decompress(b"", _PIECE)):
            yield piece
        if not self._inflate.eof:
            raise ContentDecodingError(f"the {self._coding} body ends before its compressed stream")
