"""How one configuration value is read: from TOML (already typed) or from text (a ``WHEELMELD_*``
variable), each check naming where the value came from (``server.port in /etc/wheelmeld.toml``,
``WHEELMELD_PORT``, ``--port``) so a refusal says which line to fix.

A TOML value of the wrong type is refused, never coerced (``bool("off")`` is True: coercing would turn
``offline = "off"`` into offline on). A command-line flag arrives typed by argparse and is checked
like a TOML value.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from proxy.errors import ConfigError
from proxy.text import masked_url

__all__ = [
    "BOOL",
    "HTTP_URL",
    "PATH",
    "PORT",
    "POSITIVE_NUMBER",
    "REDIS_URL",
    "SIZE",
    "TEXT",
    "Kind",
    "at_least",
    "choice",
    "parse_size",
    "refuse_unknown",
    "whole",
]

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?i?B?)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "K": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4}
_MAX_PORT = 65535


@dataclass(frozen=True, slots=True)
class Kind:
    """A key's type: ``typed(value, where)`` checks a TOML or flag value, ``text(value, where)`` parses
    an environment variable; both return the value the ``Config`` field holds."""

    typed: Callable[[Any, str], Any]
    text: Callable[[str, str], Any]
    shown: Callable[[Any], str] = str  # what start-up lines print of a value (no secret in it)


def _parsed(convert: Callable[[str], Any], typed: Callable[[Any, str], Any]) -> Callable[[str, str], Any]:
    """Text made a number by ``convert``, then checked as if typed; text that is no number goes to the
    same check as it is, which refuses it with that check's own message."""

    def parse(value: str, where: str) -> Any:
        try:
            number = convert(value.strip())
        except ValueError:
            number = value
        return typed(number, where)

    return parse


def whole(minimum: int) -> Kind:
    def typed(value: Any, where: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be a whole number, got {value!r}")
        if value < minimum:
            raise ConfigError(f"{where} must be >= {minimum}, got {value}")
        return value

    return Kind(typed=typed, text=_parsed(int, typed))


def _port(value: Any, where: str) -> int:
    # 0 ("any free port") is refused too: the proxy's start-up lines and the URLs clients are given
    # must name the port it listens on.
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= _MAX_PORT:
        raise ConfigError(f"{where} must be a port number from 1 to {_MAX_PORT}, got {value!r}")
    return value


PORT = Kind(typed=_port, text=_parsed(int, _port))


def _positive(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where} must be a number, got {value!r}")
    if not 0 < value < float("inf"):
        raise ConfigError(f"{where} must be a number > 0, got {value!r}")
    return float(value)


POSITIVE_NUMBER = Kind(typed=_positive, text=_parsed(float, _positive))


def at_least(minimum: float) -> Kind:
    """A number of at least ``minimum`` (a lease's ttl: below a second, a renewal would race it)."""

    def typed(value: Any, where: str) -> float:
        number = _positive(value, where)
        if number < minimum:
            raise ConfigError(f"{where} must be a number >= {minimum:g}, got {value!r}")
        return number

    return Kind(typed=typed, text=_parsed(float, typed))


def _not_negative(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where} must be a number, got {value!r}")
    if not 0 <= value < float("inf"):
        raise ConfigError(f"{where} must be a number >= 0, got {value!r}")
    return float(value)


# Where 0 means "off" (a retry delay of none, say).
NUMBER_OR_ZERO = Kind(typed=_not_negative, text=_parsed(float, _not_negative))


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where} must be true or false, got {value!r}")
    return value


def _bool_text(value: str, where: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{where} must be true or false, got {value!r}")


BOOL = Kind(typed=_bool, text=_bool_text)


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{where} must be a string, got {value!r}")
    return value


TEXT = Kind(typed=_text, text=_text)


def choice(*allowed: str) -> Kind:
    def check(value: Any, where: str) -> str:
        if value not in allowed:
            raise ConfigError(f"{where} must be one of {', '.join(map(repr, allowed))}, got {value!r}")
        return str(value)

    return Kind(typed=check, text=check)


def _http_url(value: Any, where: str) -> str:
    """An http(s) URL with a host and no credentials in it (an S3 endpoint's are the AWS chain's)."""
    parts = urlsplit(_text(value, where).strip())
    if parts.username is not None or parts.password is not None:  # said before the URL is ever shown
        raise ConfigError(f"{where} must not hold credentials (they come from the AWS credential chain)")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{where} must be an http(s) URL with a host, got {value!r}")
    return str(value).strip().rstrip("/")


HTTP_URL = Kind(typed=_http_url, text=_http_url)


def _path(value: Any, where: str) -> Path:
    if not isinstance(value, str | Path) or not str(value):
        raise ConfigError(f"{where} must be a path, got {value!r}")
    return Path(value).expanduser()


PATH = Kind(typed=_path, text=_path)

_REDIS_SCHEMES = ("redis", "rediss", "unix")


def _redis_url(value: Any, where: str) -> str | None:
    """A Redis or Valkey URL, or ``None`` for an empty one (no coordination); never echoed whole,
    since it may carry a password."""
    if not isinstance(value, str):
        raise ConfigError(f"{where} must be a redis://, rediss:// or unix:// URL")
    if not value.strip():
        return None
    try:
        parts = urlsplit(value.strip())
        _ = parts.port
    except ValueError:
        raise ConfigError(f"{where} is not a URL: {masked_url(value)!r}") from None
    if parts.scheme not in _REDIS_SCHEMES or not (parts.hostname or (parts.scheme == "unix" and parts.path)):
        raise ConfigError(f"{where} must be a redis://, rediss:// or unix:// URL, got {masked_url(value)!r}")
    return value.strip()


def _shown_url(value: str | None) -> str:
    return masked_url(value) if value else "(none)"


REDIS_URL = Kind(typed=_redis_url, text=_redis_url, shown=_shown_url)


def parse_size(value: str | int, where: str = "size") -> int:
    """``"20GB"``, ``"512MiB"``, ``"1.5T"`` or a number of bytes → bytes."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ConfigError(f"{where} must not be negative: {value!r}")
        return value
    match = _SIZE_RE.match(str(value))
    if not match:
        raise ConfigError(f"{where} is not a size: {value!r} (examples: 0, 500MB, 20GiB)")
    number, unit = float(match.group(1)), (match.group(2) or "").upper()
    binary = "I" in unit
    letter = unit[:1] if unit[:1] in "KMGT" else ""
    scale = 1024 ** "KMGT".index(letter) * 1024 if (binary and letter) else _SIZE_UNITS[letter]
    return int(number * scale)


def _size(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ConfigError(f"{where} must be a size such as 20GB, got {value!r}")
    return parse_size(value, where)


SIZE = Kind(typed=_size, text=_size)


def _positive_size(value: Any, where: str) -> int:
    size = _size(value, where)
    if size < 1:
        raise ConfigError(f"{where} must be at least 1 byte, got {value!r}")
    return size


POSITIVE_SIZE = Kind(typed=_positive_size, text=_positive_size)


def refuse_unknown(found: Iterable[str], allowed: Collection[str], what: str, where: str) -> None:
    """A ``ConfigError`` for the first name not in ``allowed``, with the closest allowed one."""
    unknown = sorted(set(found) - set(allowed))
    if not unknown:
        return
    close = difflib.get_close_matches(unknown[0], allowed, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f" (known: {', '.join(sorted(allowed))})"
    raise ConfigError(f"{where}: unknown {what} {unknown[0]!r}{hint}")
