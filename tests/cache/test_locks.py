"""Locks made through the proxy keep working from its cache: a file upstream pruned still syncs (with
``keep_pruned``), and a lock is reproduced byte for byte with the upstream stopped and after a restart
with ``--offline``. Drives the real ``uv`` (hermetic: see ``tests/e2e/e2ekit.py``).
"""

from __future__ import annotations

import contextlib
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.e2ekit import ClientError, Clients, project_pyproject, seed_pyproject, write_project
from tests.support.fake_index import FIXTURES_DIR, FakeIndex
from tests.support.proxy import ProxyServer, proxy_config
from tests.support.stack import start_stack, wheel
from tests.support.upstream import PYTORCH_OPTIONS, UpstreamOptions, UpstreamServer

pytestmark = pytest.mark.e2e

OLD = "demo-1.0-py3-none-any.whl"
NEW = "demo-2.0-py3-none-any.whl"


def _clients(root: Path, name: str) -> Clients:
    """A hermetic uv with a cache of its own: every lock and sync really asks the proxy."""
    (root / f"home-{name}").mkdir(parents=True, exist_ok=True)
    return Clients(home=root / f"home-{name}", uv_cache=root / f"uv-cache-{name}")


def _installed(project: Path) -> set[str]:
    return {p.name for p in project.glob(".venv/lib/python*/site-packages/*.dist-info")}


@pytest.mark.parametrize("keep_pruned", [True, False], ids=["keep-pruned", "drop-pruned"])
def test_a_file_upstream_pruned_still_syncs_with_keep_pruned(
    tmp_path: Path, keep_pruned: bool, backend: dict[str, Any]
) -> None:
    first = FakeIndex.from_files({"demo": [wheel(OLD)], "idna": [wheel("idna-3.10-py3-none-any.whl")]})
    options = UpstreamOptions(prefix="/simple", hashes=True)
    with contextlib.ExitStack() as stack:
        route = {"page_ttl": 0.0, "keep_pruned": keep_pruned}
        s = start_stack(stack, tmp_path / "cache", first, options, route, backend)
        project = write_project(
            tmp_path / "project", project_pyproject("pinned", ["demo"], f"{s.proxy.url}/simple")
        )
        clients = _clients(tmp_path, "first")
        clients.lock(project)
        clients.uv_run("sync", "--frozen", cwd=project)
        assert "demo-1.0.dist-info" in _installed(project)

        # Upstream keeps only its newest build, as the PyTorch nightly index does.
        s.upstream.set_index(FakeIndex.from_files({"demo": [wheel(NEW)]}))
        page = s.client.get("/simple/demo/").text
        assert NEW in page
        assert (OLD in page) is keep_pruned
        assert s.client.get(f"/simple/demo/{OLD}").status_code == (200 if keep_pruned else 404)

        shutil.rmtree(project / ".venv")
        fresh = _clients(tmp_path, "fresh")
        if keep_pruned:
            fresh.uv_run("sync", "--frozen", cwd=project)
            assert "demo-1.0.dist-info" in _installed(project)
        else:
            with pytest.raises(ClientError):
                fresh.uv_run("sync", "--frozen", cwd=project)


def test_a_lock_is_reproduced_with_upstream_stopped_and_offline(tmp_path: Path) -> None:
    seed = FakeIndex.from_pytorch_fixture(FIXTURES_DIR / "pytorch-nightly-cu126.json")
    options = PYTORCH_OPTIONS
    cache = tmp_path / "cache"
    locks: dict[str, bytes] = {}

    def lock_through(proxy: ProxyServer, name: str) -> None:
        project = write_project(tmp_path / name, seed_pyproject(f"{proxy.url}/whl/nightly/cu126"))
        _clients(tmp_path, name).lock(project)
        locks[name] = (project / "uv.lock").read_bytes()

    upstream = UpstreamServer(seed, options).start()
    try:
        config = proxy_config(cache, {"/whl": f"{upstream.url}/whl"})
        # Pages expire at once, so the second lock really meets the stopped upstream (stale pages).
        config = replace(config, routes=tuple(replace(r, page_ttl=0.0) for r in config.routes))
        with ProxyServer(config) as proxy:
            lock_through(proxy, "online")
            upstream.stop()
            lock_through(proxy, "upstream-stopped")
            page = httpx.get(f"{proxy.url}/whl/nightly/cu126/torch/", timeout=10)
            assert page.headers["x-wheelmeld-cache"] == "stale", "the upstream really was gone"
            port = proxy.port
        with ProxyServer(replace(config, port=port, offline=True)) as proxy:
            lock_through(proxy, "offline")
    finally:
        upstream.stop()
    assert b"nvidia-cublas-cu12" in locks["online"], "the melded CUDA dependencies are in the lock"
    assert locks["upstream-stopped"] == locks["online"]
    assert locks["offline"] == locks["online"]
