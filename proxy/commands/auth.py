"""``wheelmeld auth hash|token``: make the hashed secrets ``[[auth.users]]`` and ``[[auth.tokens]]`` store.

``hash`` reads one secret from standard input (a pipe or a file, so it never shows in the shell's
history or ``ps``) and prints its ``scrypt$…`` hash; ``token`` makes a new random token and prints it
with its hash. Exit status: 0 done; 2 an empty secret.
"""

from __future__ import annotations

import argparse
import secrets
import sys

from proxy.errors import ConfigError
from proxy.secret_hash import SecretHashError, hash_secret

__all__ = ["register", "run_hash", "run_token"]

_TOKEN_BYTES = 32


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    auth = commands.add_parser("auth", help="hash secrets for the [auth] section of the configuration")
    actions = auth.add_subparsers(dest="auth_command", required=True, metavar="ACTION")
    hashing = actions.add_parser(
        "hash", help="print the scrypt hash of a secret read from standard input",
        description="Print the scrypt$... hash of the first line of standard input, for a "
        "'secret = ...' line of [[auth.users]] or [[auth.tokens]]. Example: wheelmeld auth hash < secret.txt",
    )  # fmt: skip
    hashing.set_defaults(run=run_hash)
    token = actions.add_parser("token", help="make a new random token and print it with its hash")
    token.set_defaults(run=run_token)


def run_hash(args: argparse.Namespace) -> int:
    secret = sys.stdin.readline().rstrip("\r\n")
    try:
        print(hash_secret(secret))
    except SecretHashError as exc:
        raise ConfigError(str(exc)) from exc
    return 0


def run_token(args: argparse.Namespace) -> int:
    token = secrets.token_urlsafe(_TOKEN_BYTES)
    print(f"token:  {token}\nsecret: {hash_secret(token)}")
    return 0
