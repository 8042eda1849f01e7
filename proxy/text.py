"""Text from clients and upstreams made safe to show: in a log line, a header, an error's reason."""

from __future__ import annotations

__all__ = ["escape_controls"]


def escape_controls(text: str) -> str:
    """``text`` with every non-printable character written as its Python escape (``\\n``, ``\\x1b``,
    ``\\u202e``): a request path or an upstream's text can then neither start a forged log line, nor
    send a terminal escape, nor reorder what an operator reads."""
    if text.isprintable():
        return text  # nearly always: one C-level scan, no copy
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
