"""Text from clients and upstreams made safe to show: in a log line, a header, an error's reason."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit

__all__ = ["escape_controls", "masked_url"]


def escape_controls(text: str) -> str:
    """``text`` with every non-printable character written as its Python escape (``\\n``, ``\\x1b``,
    ``\\u202e``): a request path or an upstream's text can then neither start a forged log line, nor
    send a terminal escape, nor reorder what an operator reads."""
    if text.isprintable():
        return text  # nearly always: one C-level scan, no copy
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def masked_url(url: str) -> str:
    """``url`` with its password, if any, written ``***`` (``redis://:***@cache:6379/0``): what a log
    line, an error or a status page may show of a URL that can carry a secret (in its userinfo or,
    as Redis clients accept, as a ``password=`` query parameter)."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # not a URL at all: show nothing of what may follow the scheme
        return url.partition(":")[0] + "://***"
    query = parse_qsl(parts.query, keep_blank_values=True)
    if password is None and all(name != "password" for name, _ in query):
        return url
    netloc = parts.netloc
    if password is not None:
        userinfo, _, host = netloc.rpartition("@")
        netloc = f"{userinfo.partition(':')[0]}:***@{host}"
    masked = urlencode([(name, "***" if name == "password" else value) for name, value in query], safe="*")
    # Written out rather than ``urlunsplit``, which drops the ``//`` of ``unix:///path``.
    return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{masked}" if masked else "")
