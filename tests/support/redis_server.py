"""Debian's ``redis-server`` as a child process on 127.0.0.1, for tests: ``with RedisServer() as r:
r.url``. Nothing is persisted (no RDB, no AOF); ``client()`` is a synchronous client on it, to look
at what the code under test left there.
"""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

from tests.support.child_server import ChildServer, ChildServerError, free_port, start_child

__all__ = ["TEST_PASSWORD", "RedisServer", "RedisUnavailable"]

# What a test Redis may require: whatever shows its URL must show this masked.
TEST_PASSWORD = "lease-test-password-never-shown"


class RedisUnavailable(RuntimeError):
    """redis-server is not installed or did not start."""


class RedisServer(ChildServer):
    def __init__(self, port: int = 0, password: str | None = None) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        self.port = port
        self.password = password

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RedisUnavailable("redis-server is not installed (Debian: apt-get install redis-server)")
        self.port = self.port or free_port()
        argv = [binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no"]
        if self.password:
            argv += ["--requirepass", self.password]
        try:
            self._process = start_child(argv, self.port, subprocess.DEVNULL)
        except ChildServerError as exc:
            raise RedisUnavailable(f"redis-server did not start: {exc}") from None
        return self

    def client(self) -> Any:
        import redis

        return redis.Redis.from_url(self.url, socket_timeout=5)
