"""Secrets stored hashed: ``scrypt$<n>$<r>$<p>$<salt>$<hash>`` (salt and hash in unpadded URL-safe
base64, one random salt per secret).

Below the configuration (which checks every configured hash parses) and the server (which verifies
presented secrets); ``wheelmeld auth hash|token`` (``proxy.commands.auth``) makes them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from dataclasses import dataclass

__all__ = ["SecretHash", "SecretHashError", "hash_secret"]

_SCHEME = "scrypt"
# 16 MiB and ~40 ms per derivation on a laptop: the stdlib default cost OWASP suggests for scrypt.
_N, _R, _P = 2**14, 8, 1
_SALT_BYTES = 16
_HASH_BYTES = 32
_MAX_MEMORY = 64 * 1024 * 1024


class SecretHashError(ValueError):
    """A configured secret is not in the ``scrypt$n$r$p$salt$hash`` format."""


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class SecretHash:
    """A parsed ``scrypt$n$r$p$salt$hash`` string."""

    n: int
    r: int
    p: int
    salt: bytes
    digest: bytes

    @classmethod
    def parse(cls, text: str) -> SecretHash:
        parts = text.split("$")
        if len(parts) != 6 or parts[0] != _SCHEME:
            # Do not echo the value: an operator may have pasted a plain-text secret here.
            raise SecretHashError(
                f"a secret must be stored hashed as {_SCHEME}$n$r$p$salt$hash "
                "(make one with: wheelmeld auth hash)"
            )
        try:
            n, r, p = (int(x) for x in parts[1:4])
            salt, digest = _b64decode(parts[4]), _b64decode(parts[5])
        except (ValueError, binascii.Error) as exc:
            raise SecretHashError(f"malformed {_SCHEME} hash: {exc}") from exc
        if n < 2 or n & (n - 1) or r < 1 or p < 1 or 128 * r * n * p > _MAX_MEMORY:
            raise SecretHashError(f"unusable {_SCHEME} parameters n={n} r={r} p={p}")
        if len(salt) < 8 or len(digest) < 16:
            raise SecretHashError(f"{_SCHEME} salt or hash too short")
        return cls(n, r, p, salt, digest)

    def __str__(self) -> str:
        return f"{_SCHEME}${self.n}${self.r}${self.p}${_b64encode(self.salt)}${_b64encode(self.digest)}"

    def _derive(self, secret: str) -> bytes:
        return hashlib.scrypt(
            secret.encode(), salt=self.salt, n=self.n, r=self.r, p=self.p,
            maxmem=_MAX_MEMORY + 1024 * 1024, dklen=len(self.digest),
        )  # fmt: skip

    def matches(self, secret: str) -> bool:
        """Whether ``secret`` is the hashed one; constant time in the compare (blocking: ~40 ms)."""
        return hmac.compare_digest(self._derive(secret), self.digest)


def hash_secret(secret: str, *, n: int = _N, r: int = _R, p: int = _P) -> str:
    """The ``scrypt$…`` string to put in the config for ``secret``, with a fresh random salt."""
    if not secret:
        raise SecretHashError("refusing to hash an empty secret")
    salt = secrets.token_bytes(_SALT_BYTES)
    shell = SecretHash(n, r, p, salt, b"\0" * _HASH_BYTES)
    return str(SecretHash(n, r, p, salt, shell._derive(secret)))
