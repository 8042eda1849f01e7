"""Choose the representation of a simple-index page from ``Accept`` and ``?format=`` (PEP 691).

Rules, warehouse-like with the tie-break made explicit:

1. ``?format=<media type>`` (one of ours, or a ``latest`` alias) overrides the header; anything
   else there is ``NoAcceptableFormat``.
2. No header, an empty one, or one with no readable entry: ``text/html`` (PEP 691's default).
3. Each offer takes the q-value of the *most specific* range matching it (exact type, then
   ``type/*``, then ``*/*``; ``application/vnd.pypi.simple.latest+json`` names JSON v1 and
   ``...latest+html`` names HTML v1). ``q=0`` refuses an offer. Nothing left: ``NoAcceptableFormat``.
4. Highest q wins. On equal q an offer the client named exactly beats one it only reached by a
   wildcard; among named offers JSON v1 > HTML v1 > text/html (a client that names JSON can read
   it); among wildcard-only offers text/html > HTML v1 > JSON v1, so ``*/*`` alone gets
   ``text/html`` and ``application/*`` gets HTML v1, never a format nobody asked for by name.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

from .errors import NoAcceptableFormat

__all__ = ["HTML_TEXT", "HTML_V1", "JSON_V1", "NoAcceptableFormat", "choose_content_type"]

JSON_V1 = "application/vnd.pypi.simple.v1+json"
HTML_V1 = "application/vnd.pypi.simple.v1+html"
HTML_TEXT = "text/html"

_ALIASES = {
    JSON_V1: JSON_V1,
    HTML_V1: HTML_V1,
    HTML_TEXT: HTML_TEXT,
    "application/vnd.pypi.simple.latest+json": JSON_V1,
    "application/vnd.pypi.simple.latest+html": HTML_V1,
}
# (rank when named exactly, rank when reached by a wildcard): higher wins a tie.
_RANKS = {JSON_V1: (2, 0), HTML_V1: (1, 1), HTML_TEXT: (0, 2)}


class _Range(NamedTuple):
    kind: str  # "type/subtype", "type/*" or "*/*", lower-cased; aliases already resolved
    q: float


def _parse_q(params: list[str]) -> float | None:
    for param in params:
        key, _, value = param.partition("=")
        if key.strip().lower() == "q":
            try:
                q = float(value.strip())
            except ValueError:
                return None
            return q if 0.0 <= q <= 1.0 else None
    return 1.0


def _ranges(accept: str) -> list[_Range]:
    """Readable entries of an ``Accept`` header; an unreadable entry is skipped, not fatal."""
    ranges: list[_Range] = []
    for entry in accept.split(","):
        kind, *params = entry.split(";")
        kind = kind.strip().lower()
        if kind == "*":
            kind = "*/*"  # Some old clients send a bare '*'.
        if kind.count("/") != 1 or kind.startswith("/") or kind.endswith("/"):
            continue
        q = _parse_q(params)
        if q is not None:
            ranges.append(_Range(_ALIASES.get(kind, kind), q))
    return ranges


def _match(offer: str, ranges: list[_Range]) -> tuple[float, bool] | None:
    """(q, named exactly) from the most specific range matching ``offer``; equal ranges: highest q."""
    family = offer.split("/")[0] + "/*"
    for kind, exact in ((offer, True), (family, False), ("*/*", False)):
        qs = [r.q for r in ranges if r.kind == kind]
        if qs:
            return max(qs), exact
    return None


def choose_content_type(accept: str | None, format_param: str | None = None) -> str:
    """The media type to serve: ``JSON_V1``, ``HTML_V1`` or ``HTML_TEXT``; raises ``NoAcceptableFormat``."""
    # Clients send a handful of distinct Accept headers, each thousands of times: parse each once.
    return _choose(accept, format_param)


@functools.lru_cache(maxsize=256)
def _choose(accept: str | None, format_param: str | None) -> str:
    if format_param:
        chosen = _ALIASES.get(format_param.strip().lower())
        if chosen is None:
            raise NoAcceptableFormat(f"unsupported format {format_param!r}")
        return chosen
    ranges = _ranges(accept or "")
    if not ranges:
        return HTML_TEXT
    best: tuple[float, bool, int] | None = None
    chosen = None
    for offer, (named_rank, wild_rank) in _RANKS.items():
        found = _match(offer, ranges)
        if found is None or found[0] <= 0.0:
            continue
        key = (found[0], found[1], named_rank if found[1] else wild_rank)
        if best is None or key > best:
            best, chosen = key, offer
    if chosen is None:
        raise NoAcceptableFormat(f"none of {JSON_V1}, {HTML_V1}, {HTML_TEXT} is acceptable to {accept!r}")
    return chosen
