"""``serve --offline`` in front of nothing: what the cache lacks is a 404 that says why, at once.

A 503 made pip retry every request (54 s lost on ``pip download flask``) and uv give up after three
retries; a 404 is an answer clients take as it is.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.e2ekit import ClientError, Clients
from tests.support.proxy import ProxyServer, proxy_config
from tests.support.stack import single_line


@pytest.fixture
def offline(tmp_path: Path) -> Iterator[ProxyServer]:
    # Port 9 (discard) on loopback: offline must never get as far as trying it.
    config = proxy_config(tmp_path / "cache", {"/simple": "http://127.0.0.1:9/simple"}, offline=True)
    with ProxyServer(config) as proxy:
        yield proxy


def test_what_the_cache_lacks_offline_is_a_404_saying_so(offline: ProxyServer) -> None:
    with httpx.Client(base_url=offline.url, timeout=10) as client:
        for path in ("/simple/flask/", "/simple/flask/flask-3.0.0-py3-none-any.whl", "/simple/"):
            response = client.get(path)
            assert response.status_code == 404, (path, response.text)
            assert single_line(response.text), response.text
            assert "offline" in response.text and "cache" in response.text, response.text


@pytest.mark.e2e
def test_pip_download_against_an_offline_proxy_fails_at_once(offline: ProxyServer, tmp_path: Path) -> None:
    (tmp_path / "home").mkdir()
    clients = Clients(home=tmp_path / "home", uv_cache=tmp_path / "uv-cache")
    index = f"{offline.url}/simple"
    started = time.monotonic()
    with pytest.raises(ClientError, match="No matching distribution") as failed:
        clients.pip("download", "--no-deps", "--dest", str(tmp_path / "dl"), "--index-url", index, "flask")
    took = time.monotonic() - started
    assert "503" not in str(failed.value)
    # Without retries pip gives up in well under a second (it took 54 s when offline meant 503).
    assert took < 2.0, f"pip download took {took:.1f} s"
