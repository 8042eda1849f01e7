"""The one exception tree of wheelmeld, mapped to HTTP answers at one boundary (``proxy.server.answers``).

``WheelmeldError``               base; ``status`` and a one-line ``reason`` the client sees
 ├── ``ConfigError``             bad configuration: the CLI prints it and exits 2 (never an HTTP answer)
 ├── ``BadRequest``              400: a project or file name that is not one
 ├── ``Unauthorized``            401: no credential, or a wrong one (access control)
 ├── ``Forbidden``               403: a valid credential that may not read this route
 ├── ``NotFound``                404: no such route, project or file
 ├── ``MethodNotAllowed``        405: anything but GET/HEAD
 ├── ``NotAcceptableError``      406: no content type the client accepts
 ├── ``UpstreamError``           502: the upstream failed, refused, or sent something unusable
 │    └── ``BlockedFetch``       502: a link points where the proxy may not fetch (SSRF boundary)
 └── ``OfflineMiss``             404: ``--offline`` and the cache does not hold the answer

Helpers raise the pure modules' own errors (``PageParseError``, ``RemoteZipError``, ``BlockedURL``);
the service layer wraps them ``from`` the cause into one of these, so the server maps exactly one tree.
"""

from __future__ import annotations

from proxy.text import escape_controls

__all__ = [
    "BadRequest",
    "BlockedFetch",
    "ConfigError",
    "Forbidden",
    "MethodNotAllowed",
    "NotAcceptableError",
    "NotFound",
    "OfflineMiss",
    "Unauthorized",
    "UpstreamError",
    "WheelmeldError",
]


class WheelmeldError(Exception):
    """Base of every error wheelmeld answers with; ``str(err)`` is the one-line reason."""

    status: int = 500

    def __init__(self, reason: str) -> None:
        # One printable line, always: a reason is shown in a response body, a log line and a header,
        # and may quote an upstream's or a client's text (control characters become escapes).
        super().__init__(escape_controls(" ".join(reason.split())))

    @property
    def reason(self) -> str:
        return str(self)


class ConfigError(WheelmeldError):
    status = 500


class BadRequest(WheelmeldError):
    status = 400


class Unauthorized(WheelmeldError):
    status = 401


class Forbidden(WheelmeldError):
    status = 403


class NotFound(WheelmeldError):
    status = 404


class MethodNotAllowed(WheelmeldError):
    status = 405


class NotAcceptableError(WheelmeldError):
    status = 406


class UpstreamError(WheelmeldError):
    status = 502


class BlockedFetch(UpstreamError):
    status = 502


class OfflineMiss(WheelmeldError):
    # 404, not 503: offline, what the cache lacks will not appear by asking again, and installers
    # retry a 503 (pip spent 54 s retrying one ``pip download``; uv gave up after three retries).
    status = 404
