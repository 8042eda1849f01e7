"""Field-level normalizers shared by the HTML and JSON page parsers (PEP 503/592/658/700/714).

Both parsers funnel every attribute through these, so one page reads the same whichever wire
format it came in, and a parse -> render -> parse round trip is exact.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from email.message import Message
from urllib.parse import urldefrag, urljoin, urlsplit

__all__ = [
    "core_metadata_value",
    "decode_body",
    "hashes_from_fragment",
    "hashes_from_pairs",
    "is_plain_filename",
    "major_version",
    "media_type",
    "plus_in_path",
    "resolve_http_url",
    "resolve_url",
    "size_value",
    "upload_time_value",
    "yanked_value",
]

# Names hashlib always has: the only ones an installer can verify, so the only ones worth keeping.
_HASH_NAMES = frozenset(hashlib.algorithms_guaranteed)
_HEX = re.compile(r"[0-9a-fA-F]+")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def media_type(content_type: str) -> tuple[str, str | None]:
    """Split a ``Content-Type`` header into its lower-case media type and its charset (if any)."""
    message = Message()
    message["content-type"] = content_type or "application/octet-stream"
    charset = message.get_param("charset")
    return message.get_content_type(), charset if isinstance(charset, str) else None


def decode_body(body: bytes, charset: str | None) -> str:
    """Decode with the declared charset, else UTF-8; bad bytes become U+FFFD instead of an error."""
    text: str | None = None
    # An unknown charset name is upstream's mistake, not a reason to fail the page.
    with contextlib.suppress(LookupError):
        text = body.decode(charset or "utf-8", errors="replace")
    if text is None:
        text = body.decode("utf-8", errors="replace")
    # A byte-order mark would make json.loads refuse an otherwise good page.
    return text.removeprefix("\ufeff")


def hashes_from_pairs(pairs: Iterable[tuple[object, object]]) -> dict[str, str]:
    """Keep the ``(name, hex)`` pairs an installer can verify; names and digests lower-cased."""
    hashes: dict[str, str] = {}
    for name, value in pairs:
        if isinstance(name, str) and isinstance(value, str) and _HEX.fullmatch(value):
            name = name.strip().lower()
            if name in _HASH_NAMES:
                hashes[name] = value.lower()
    return hashes


def hashes_from_fragment(fragment: str) -> dict[str, str]:
    """``sha256=abc...`` (PEP 503 URL fragment; ``&``-joined pairs tolerated) -> ``{"sha256": "abc..."}``."""
    # Nearly every link of an HTML page, and its core-metadata attribute, is one lower-case sha256.
    if len(fragment) == 71 and fragment.startswith("sha256=") and _SHA256_HEX.fullmatch(fragment, 7):
        return {"sha256": fragment[7:]}
    return hashes_from_pairs(pair.partition("=")[::2] for pair in fragment.split("&") if "=" in pair)


def core_metadata_value(raw: object) -> bool | dict[str, str]:
    """A PEP 658/714 advertisement (HTML attribute text or JSON value) -> ``False``/``True``/hashes.

    ``True`` / ``"true"`` -> True; ``{"sha256": ...}`` / ``"sha256=..."`` -> hashes; ``False`` or
    absent -> False. A present but unreadable value still says "a .metadata file exists", so True.
    """
    if raw is None or raw is False:
        return False
    if raw is True:
        return True
    if isinstance(raw, str):
        text = raw.strip()
        if text.lower() == "false":
            return False
        return hashes_from_fragment(text) or True
    if isinstance(raw, Mapping):
        return hashes_from_pairs(raw.items()) or True
    return True


def yanked_value(raw: object) -> bool | str:
    """PEP 592 / 691 yanked -> False, True, or a non-empty reason (an empty reason says nothing more)."""
    if isinstance(raw, str):
        return raw if raw.strip() else True
    return raw is True


def upload_time_value(raw: object) -> str | None:
    """Any ISO 8601 date-time (or Unix epoch seconds) -> PEP 700 ``YYYY-MM-DDTHH:MM:SS[.ffffff]Z``.

    A time without an offset is taken as UTC (PyTorch's ``data-upload-time`` may lack one);
    anything unreadable gives None rather than a value ``exclude-newer`` would choke on.
    """
    if not isinstance(raw, str) or not raw.strip():
        return None
    text = raw.strip()
    if len(text) == 19 and _NAIVE_SECONDS.fullmatch(text):
        # PyTorch's form, which only lacks the Z: it is canonical when it reads back the same.
        try:
            naive = datetime.fromisoformat(text)
        except ValueError:
            return None
        if naive.isoformat() == text:
            return text + "Z"
    if _CANONICAL_TIME.fullmatch(text):
        # Already in the form we write (every PEP 700 index's): only check that it is a real
        # moment. strftime alone cost a fifth of parsing a 15,000-file page.
        try:
            datetime.fromisoformat(text)
        except ValueError:
            return None
        return text
    try:
        if _EPOCH.fullmatch(text):
            moment = datetime.fromtimestamp(float(text), tz=UTC)
        else:
            moment = datetime.fromisoformat(text)
            moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except (ValueError, OverflowError, OSError):
        return None
    if moment.year < 1000:
        return None  # Not a real upload time, and strftime would not pad it to four digits.
    pattern = "%Y-%m-%dT%H:%M:%S.%fZ" if moment.microsecond else "%Y-%m-%dT%H:%M:%SZ"
    return moment.strftime(pattern)


_EPOCH = re.compile(r"\d{9,11}(\.\d+)?")
_NAIVE_SECONDS = re.compile(r"[1-9][0-9]{3}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}")
# What ``upload_time_value`` writes: a year from 1000, and six fraction digits only when not all 0.
_CANONICAL_TIME = re.compile(r"[1-9]\d{3}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.(?!0{6})\d{6})?Z")


def plus_in_path(url: str) -> str:
    """Write ``+`` as ``%2B`` before any query: S3-style file hosts (PyTorch's) read ``+`` as a space."""
    if "+" not in url:
        return url
    cut = len(url)
    for mark in ("?", "#"):
        at = url.find(mark)
        if at != -1:
            cut = min(cut, at)
    return url[:cut].replace("+", "%2B") + url[cut:]


def resolve_url(base: str, href: str) -> tuple[str, str]:
    """``href`` made absolute against ``base`` -> (URL without fragment, fragment)."""
    if (
        href.startswith(("https://", "http://"))
        and "#" not in href
        and "/." not in href
        and href.isprintable()
    ):
        return href, ""  # Already absolute and clean (most JSON pages): urljoin would change nothing.
    return urldefrag(urljoin(base, href))


def resolve_http_url(base: str, href: str) -> tuple[str, str, str] | None:
    """``resolve_url``, with the resolved URL's path: (URL, fragment, path); None unless http(s).

    A root-relative ``href`` (``/whl/cu126/torch-...whl#sha256=...``, every link of a PyTorch index
    page) is joined to the base's origin by hand when ``urljoin`` could change nothing in it (no
    dot segment, query, parameters or character ``urlsplit`` strips): the two ``urlsplit`` calls of
    ``urljoin`` and ``urldefrag`` and the one for the path were half of parsing a 20,000-file page.
    ``tests/index`` checks the two ways agree on generated links.
    """
    if href[:1] == "/" and href[1:2] != "/" and _is_plain_root_relative(href):
        origin = _http_origin(base)
        if origin is not None:
            path, _, fragment = href.partition("#")
            return origin + path, fragment, path
    url, fragment = resolve_url(base, href)
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"}:
        return None
    return url, fragment, parts.path


def _is_plain_root_relative(href: str) -> bool:
    return "/." not in href and "?" not in href and ";" not in href and href.isprintable()


@functools.lru_cache(maxsize=64)
def _http_origin(base: str) -> str | None:
    """``scheme://netloc`` of an http(s) base URL, else None (a page's links share one base)."""
    parts = urlsplit(base)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme in {"http", "https"} else None


def is_plain_filename(name: str) -> bool:
    """True when ``name`` is one safe path segment: the proxy later uses it as a URL and cache name.

    Printable (no control characters, no lone surrogates a path cannot encode) and short enough
    that the cache's ``<name>.metadata`` / ``<name>.sha256`` still fit a file system's 255 bytes;
    that bound also keeps any version number in it within what ``packaging`` can hold as an int.
    """
    # What nearly every file is called (ASCII, no leading dot, short) needs no more checks.
    return _COMMON_NAME.fullmatch(name) is not None or _plain_by_rules(name)


def _plain_by_rules(name: str) -> bool:
    return (
        bool(name)
        and name not in {".", ".."}
        and name.isprintable()
        and (len(name) <= _MAX_NAME_BYTES // 4 or len(name.encode()) <= _MAX_NAME_BYTES)
        and _UNSAFE_IN_NAME.search(name) is None
    )


_UNSAFE_IN_NAME = re.compile(r"[/\\\x00]")
_COMMON_NAME = re.compile(r"[A-Za-z0-9_+~-][A-Za-z0-9._+~!-]{0,239}")
_MAX_NAME_BYTES = 240


def major_version(text: str) -> int | None:
    """The major number of a ``1.0``-style version (PEP 629 / 691), or None when there is none.

    ASCII digits only, and few of them: ``int()`` refuses past 4300 digits and reads ``²`` as
    no digit at all, and either would escape the parser as a bare ``ValueError``.
    """
    major = text.strip().partition(".")[0]
    if not (major.isascii() and major.isdigit()) or len(major) > _MAX_DIGITS:
        return None
    return int(major)


def size_value(text: str | None) -> int | None:
    """A byte count written as text (``data-size``), or None when it is not one a file can have."""
    if text is None:
        return None
    text = text.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > _MAX_DIGITS:
        return None
    return int(text)


# More digits than any real version major or file size has (2**64 has 20).
_MAX_DIGITS = 20
