"""The whole fleet on 127.0.0.1: the shipped nginx tier in front of two ``wheelmeld serve`` replicas
sharing one bucket (moto's S3 server) and one Redis; a replica killed with ``-9`` in the middle of a
real ``uv lock`` of the seed, and the lock still succeeds and equals the single-node lock.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

import pytest

from tests.cache.cachekit import serve_process
from tests.deploy.tier import Nginx
from tests.e2e.e2ekit import Clients, seed_pyproject, write_project
from tests.support.fake_index import FakeIndex
from tests.support.fleet import fleet_toml
from tests.support.proxy import ProxyServer, proxy_config
from tests.support.redis_server import RedisServer
from tests.support.s3_server import MotoS3
from tests.support.stack import wait_until
from tests.support.upstream import PYTORCH_OPTIONS, UpstreamServer

pytest.importorskip("aiobotocore", reason="the [s3] extra is not installed (pip install -e '.[test]')")
pytest.importorskip("redis", reason="the [coordination] extra is not installed (pip install -e '.[test]')")

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("aws_env")]


def _lock(tmp_path: Path, name: str, index_url: str) -> str:
    home = tmp_path / name / "home"
    home.mkdir(parents=True)
    project = write_project(tmp_path / name / "project", seed_pyproject(index_url))
    Clients(home=home, uv_cache=tmp_path / name / "uv-cache").lock(project)
    return (project / "uv.lock").read_text(encoding="utf-8").replace(index_url, "<index>")


def _metadata_reads(upstream: UpstreamServer) -> int:
    """Upstream requests that are not pages: the ranges of wheels a meld reads."""
    return sum(not r.path.endswith("/") for r in upstream.log.records())


def test_the_seed_locks_through_the_fleet_with_a_replica_killed_mid_lock(
    tmp_path: Path,
    nginx_binary: str,
    pytorch_index: FakeIndex,
    moto: MotoS3,
    bucket: str,
    redis_server: RedisServer,
) -> None:
    # A little latency per upstream answer, so the lock is still under way when the replica dies.
    options = replace(PYTORCH_OPTIONS, latency_ms=20)
    config = fleet_toml(tmp_path / "fleet.toml", moto, bucket, redis_server, lease_ttl=2.0)
    with UpstreamServer(pytorch_index, options) as up:
        routes = {"/whl": up.url + "/whl"}
        with ProxyServer(proxy_config(tmp_path / "single", routes)) as single:
            single_lock = _lock(tmp_path, "single", f"{single.url}/whl/nightly/cu126")
        before = _metadata_reads(up)
        with (
            serve_process(tmp_path / "cache-a", routes, "--config", str(config)) as a,
            serve_process(tmp_path / "cache-b", routes, "--config", str(config)) as b,
            Nginx(nginx_binary, [a.port, b.port], tmp_path / "nginx") as tier,
        ):
            locked: dict[str, str] = {}
            lock = threading.Thread(
                target=lambda: locked.update(fleet=_lock(tmp_path, "fleet", f"{tier.url}/whl/nightly/cu126"))
            )
            lock.start()
            try:
                wait_until(lambda: _metadata_reads(up) >= before + 5, "the lock began reading metadata", 60)
                a.kill9()
                at_kill = _metadata_reads(up)
            finally:
                lock.join(timeout=180)
            assert "fleet" in locked, "uv lock through the tier failed with a replica killed"
            assert "Traceback" not in b.log()
    assert locked["fleet"] == single_lock, "the fleet's lock is the single node's"
    assert "nvidia-cudnn-cu12" in locked["fleet"], "the meld made it through"
    assert _metadata_reads(up) > at_kill, "the lock went on after the kill, on the other replica"
