"""The shipped ``deploy/nginx.conf`` run for real in front of a real proxy, for the tier tests.

nginx runs as a foreground child on a free 127.0.0.1 port with its prefix, cache and logs in a
temporary directory; the config is the shipped file with only its deployment facts (listen address,
replica addresses, cache paths, worker user) rewritten, so the rules under test are the ones shipped.
The proxy is the real app under uvicorn, wrapped to count the requests that reach it.
"""

from __future__ import annotations

import getpass
import re
import shutil
import subprocess
import threading
from collections import Counter
from pathlib import Path

from starlette.types import ASGIApp, Receive, Scope, Send

from proxy.config import Config
from proxy.server.app import create_app
from tests.support.child_server import ChildServer, ChildServerError, Started, free_port, start_child
from tests.support.serving import ThreadedServer

__all__ = ["NGINX_CONF", "CountingProxy", "Nginx", "find_nginx", "tier_config"]

NGINX_CONF = Path(__file__).resolve().parents[2] / "deploy" / "nginx.conf"


def find_nginx() -> str | None:
    """Debian installs nginx in /usr/sbin, which a non-root PATH often lacks."""
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")


def _replace_once(text: str, pattern: str, replacement: str) -> str:
    new, count = re.subn(pattern, lambda _: replacement, text, flags=re.MULTILINE)
    if count != 1:
        raise AssertionError(f"deploy/nginx.conf changed shape: {pattern!r} matched {count} times")
    return new


def tier_config(listen_port: int, replica_ports: list[int], root: Path) -> str:
    """The shipped config, aimed at these loopback ports, with every path under ``root``."""
    text = NGINX_CONF.read_text(encoding="utf-8")
    text = _replace_once(text, r"^user \S+;$", f"user {getpass.getuser()};")
    text = _replace_once(text, r"^\s*listen 8080;$", f"        listen 127.0.0.1:{listen_port};")
    servers = "".join(f"        server 127.0.0.1:{p} max_fails=1 fail_timeout=5s;\n" for p in replica_ports)
    text = _replace_once(text, r"(^\s*server wheelmeld-\d:8000 .*\n)+", servers)
    text = text.replace("/var/cache/nginx/", f"{root}/cache/")
    # Debian's compiled-in temporary directories are root's; a test run keeps its own.
    temps = "".join(f"    {kind}_temp_path {root}/{kind};\n" for kind in ("fastcgi", "uwsgi", "scgi"))
    return _replace_once(text, r"^http \{\n", "http {\n" + temps)


class Nginx(ChildServer):
    """``with Nginx(binary, [proxy_port], tmp) as tier: tier.url`` — nginx in the foreground."""

    def __init__(self, binary: str, replica_ports: list[int], root: Path) -> None:
        self._binary, self._replicas, self._root = binary, replica_ports, root
        self._process: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.log = root / "nginx.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Nginx:
        (self._root / "cache").mkdir(parents=True, exist_ok=True)  # nginx makes only the last level
        self.port = free_port()
        conf = self._root / "nginx.conf"
        conf.write_text(tier_config(self.port, self._replicas, self._root), encoding="utf-8")
        argv = [self._binary, "-p", str(self._root), "-c", str(conf)]
        argv += ["-g", f"daemon off; pid {self._root}/nginx.pid;"]
        with self.log.open("wb") as log:
            try:
                self._process = start_child(argv, self.port, log)
            except ChildServerError as exc:
                raise ChildServerError(f"{exc}:\n{self.log.read_text(errors='replace')}") from None
        return self


class _Counting:
    def __init__(self, app: ASGIApp, counts: Counter[str], lock: threading.Lock) -> None:
        self._app, self._counts, self._lock = app, counts, lock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            with self._lock:
                self._counts[scope["path"]] += 1
        await self._app(scope, receive, send)


class CountingProxy(Started):
    """The real proxy app, as ``wheelmeld serve`` runs it, counting requests by path."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._runner: ThreadedServer | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def requests(self, path: str) -> int:
        with self._lock:
            return self._counts[path]

    def total(self) -> int:
        with self._lock:
            return self._counts.total()

    def start(self) -> CountingProxy:
        app = _Counting(create_app(self._config), self._counts, self._lock)
        self._runner = ThreadedServer(app, lifespan="on", name="proxy")
        self.port = self._runner.start()
        return self

    def stop(self) -> None:
        if self._runner is not None:
            self._runner.stop()
        self._runner = None
