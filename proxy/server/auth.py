"""Access control for a shared mirror: hashed secrets, HTTP Basic (RFC 7617) and Bearer (RFC 6750).

Secrets are stored only hashed (``proxy.secret_hash``; ``wheelmeld auth hash`` makes one).

Who may pass, per request:

* ``/healthz`` is always open (container and load-balancer health checks carry no credentials);
* below a route prefix, a credential that lists that prefix (or ``*``); a valid credential without it
  gets 403, a missing or wrong one 401 with ``WWW-Authenticate: Basic realm="wheelmeld"``;
* everything else (``/``, ``/-/…``, ``/metrics``) needs any valid credential; the status pages then
  show only the routes that credential may read;
* answers to admitted requests say ``Cache-Control: private`` where they said ``public``, so a shared
  HTTP cache in front of the proxy never serves one credential's answer to another client.

A user is ``Authorization: Basic`` with its name and password. A token is ``Authorization: Bearer``,
or Basic with any user name and the token as the password: that is what uv and pip send for an index
URL written ``https://__token__:<token>@host/…``.

scrypt costs tens of milliseconds on purpose, far too much for every one of thousands of requests
a second, so each verdict is kept in memory for ``cache_ttl`` seconds under a keyed BLAKE2 hash of the
presented header (never the secret itself), and concurrent requests with one credential share one
verification. Verifications run off the event loop, a few at a time.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from proxy.errors import Forbidden, Unauthorized, WheelmeldError
from proxy.secret_hash import SecretHash, hash_secret
from proxy.server.answers import error_response

if TYPE_CHECKING:
    from proxy.config import AuthConfig, Config

__all__ = [
    "ANYONE",
    "AuthMiddleware",
    "Principal",
    "principal_of",
]

_REALM = "wheelmeld"
_SCOPE_KEY = "wheelmeld_principal"
_CACHE_LIMIT = 4096  # remembered verdicts; past this the expired ones go, then all of them
_CONCURRENT_VERIFICATIONS = 4  # a flood of wrong secrets must not take every worker thread


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request is: a user or token name and the route prefixes it may read (``*``: all)."""

    name: str
    routes: frozenset[str]

    def may_read(self, prefix: str) -> bool:
        return "*" in self.routes or prefix in self.routes


# What every request is when access control is off.
ANYONE = Principal("-", frozenset({"*"}))


def principal_of(scope: Scope) -> Principal | None:
    """The principal the middleware admitted this request as; ``None`` if it never ran (deny then)."""
    found = scope.get("state", {}).get(_SCOPE_KEY)
    return found if isinstance(found, Principal) else None


@dataclass(frozen=True, slots=True)
class _Entry:
    name: str
    secret: SecretHash
    routes: frozenset[str]


@dataclass(frozen=True, slots=True)
class _Presented:
    """What one ``Authorization`` header offers: a user name (Basic) or ``None`` (Bearer), a secret."""

    user: str | None
    secret: str


def _parse_authorization(value: str) -> _Presented | None:
    scheme, _, rest = value.strip().partition(" ")
    rest = rest.strip()
    if scheme.lower() == "bearer" and rest:
        return _Presented(None, rest)
    if scheme.lower() != "basic" or not rest:
        return None
    try:
        raw = base64.b64decode(rest, validate=True)
    except (binascii.Error, ValueError):
        return None
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        text = raw.decode("latin-1")  # RFC 7617's historical default
    user, sep, password = text.partition(":")
    return _Presented(user, password) if sep and password else None


class _Verifier:
    """Checks presented credentials against the configured hashes, remembering verdicts briefly."""

    def __init__(self, auth: AuthConfig) -> None:
        self._users = {
            c.name: _Entry(c.name, SecretHash.parse(c.secret_hash), frozenset(c.routes))
            for c in auth.credentials
            if c.kind == "user"
        }
        self._tokens = tuple(
            _Entry(c.name, SecretHash.parse(c.secret_hash), frozenset(c.routes))
            for c in auth.credentials
            if c.kind == "token"
        )
        self._ttl = auth.cache_ttl
        # Verdicts live under a keyed hash of the header: a memory dump shows no reusable secret.
        self._key = secrets.token_bytes(32)
        self._verdicts: dict[bytes, tuple[Principal | None, float]] = {}
        self._pending: dict[bytes, asyncio.Future[Principal | None]] = {}
        self._gate: asyncio.Semaphore | None = None
        # Stands in for the hash of a user name nobody has: derived like a real user's hash, with
        # the same parameters (their cost), so timing does not tell which names exist.
        model = next(iter(self._users.values()), None)
        self._decoy = (
            None
            if model is None
            else SecretHash.parse(
                hash_secret(secrets.token_urlsafe(16), n=model.secret.n, r=model.secret.r, p=model.secret.p)
            )
        )

    async def principal(self, header: str) -> Principal | None:
        digest = hashlib.blake2b(header.encode("utf-8", "surrogateescape"), key=self._key).digest()
        now = time.monotonic()
        verdict = self._verdicts.get(digest)
        if verdict is not None and verdict[1] > now:
            return verdict[0]
        pending = self._pending.get(digest)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Principal | None] = asyncio.get_running_loop().create_future()
        self._pending[digest] = future
        try:
            presented = _parse_authorization(header)
            found = None if presented is None else await self._verify_off_loop(presented)
            self._remember(digest, found, time.monotonic())
            future.set_result(found)
            return found
        except asyncio.CancelledError:
            future.cancel()  # the waiters see it cancelled too; their clients retry
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # retrieved here, so an unawaited future does not warn
            raise
        finally:
            del self._pending[digest]

    async def _verify_off_loop(self, presented: _Presented) -> Principal | None:
        if self._gate is None:
            self._gate = asyncio.Semaphore(_CONCURRENT_VERIFICATIONS)
        async with self._gate:
            return await asyncio.to_thread(self._verify, presented)

    def _verify(self, presented: _Presented) -> Principal | None:
        # A wrong credential costs the same whatever it names: one derivation for the user (the
        # named one's hash, else the decoy: for an unknown name, and for a Bearer token too) and one
        # per token. Skipping the user for unknown names made a known name cost a derivation more.
        user = self._users.get(presented.user) if presented.user is not None else None
        hashed = user.secret if user is not None else self._decoy
        if hashed is not None and hashed.matches(presented.secret) and user is not None:
            return Principal(user.name, user.routes)
        for entry in self._tokens:
            if entry.secret.matches(presented.secret):
                return Principal(entry.name, entry.routes)
        return None

    def _remember(self, digest: bytes, found: Principal | None, now: float) -> None:
        if len(self._verdicts) >= _CACHE_LIMIT:
            self._verdicts = {k: v for k, v in self._verdicts.items() if v[1] > now}
            if len(self._verdicts) >= _CACHE_LIMIT:
                self._verdicts.clear()
        self._verdicts[digest] = (found, now + self._ttl)


_CHALLENGE = {"WWW-Authenticate": f'Basic realm="{_REALM}", charset="UTF-8"'}


async def _refuse(scope: Scope, receive: Receive, send: Send, exc: WheelmeldError) -> None:
    """Answer ``exc`` as every error is answered (``error_response``), before any handler runs."""
    response = error_response(exc, _CHALLENGE if isinstance(exc, Unauthorized) else None)
    await response(scope, receive, send)


class AuthMiddleware:
    """Admits a request as a ``Principal`` (see the module docstring) or answers 401 / 403 itself."""

    def __init__(self, app: ASGIApp, config: Config) -> None:
        self.app = app
        self._config = config
        self._verifier = _Verifier(config.auth) if config.auth.enabled else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        if self._verifier is None:
            state[_SCOPE_KEY] = ANYONE
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path == "/healthz":
            await self.app(scope, receive, send)
            return
        header = _header(scope["headers"], b"authorization")
        principal = None if header is None else await self._verifier.principal(header)
        if principal is None:
            reason = "authentication required" if header is None else "wrong credentials"
            await _refuse(scope, receive, send, Unauthorized(reason))
            return
        route = self._config.route_for(path)
        if route is not None and not principal.may_read(route.prefix):
            await _refuse(scope, receive, send, Forbidden(f"this credential may not read {route.prefix}/"))
            return
        state[_SCOPE_KEY] = principal
        await self.app(scope, receive, _private(send))


def _private(send: Send) -> Send:
    """``send`` with every cacheable ``Cache-Control`` made ``private``: what one credential may read, a
    shared cache in front of the proxy must not hand to the next client (RFC 9111, section 3.5)."""

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [
                (key, _privatize(value) if key.lower() == b"cache-control" else value)
                for key, value in message.get("headers", ())
            ]
            message = {**message, "headers": headers}
        await send(message)

    return sending


def _privatize(value: bytes) -> bytes:
    """``private`` said outright, ``public`` never: a tier that caches whatever a plain ``max-age``
    allows (nginx's ``proxy_cache`` does not look at ``Authorization``) must not share it either."""
    directives = [d.strip() for d in value.split(b",") if d.strip()]
    kept = [d for d in directives if d.lower() != b"public"]
    if any(d.lower() in (b"private", b"no-store") for d in kept):
        return b", ".join(kept)
    return b", ".join([b"private", *kept])


def _header(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None
