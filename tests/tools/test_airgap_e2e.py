"""Issue 6 end to end: lock online, ``prefetch --lock`` for two platforms, ``bundle export``, ``bundle
import`` into a second cache, stop the upstream, serve that cache ``--offline`` and install from it with
the real uv (``uv sync`` of the seed project; ``uv pip install torch`` for linux x86_64).

The offline proxy listens on the port the lock was made against, because a lock names its index by URL.
"""

from __future__ import annotations

import sys
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.utils import parse_wheel_filename

from proxy.cli import main
from proxy.tools.lockfile import read_uv_lock
from tests.e2e.e2ekit import PYTORCH_OPTIONS, Clients, seed_pyproject, write_project
from tests.support.fake_index import FIXTURES_DIR, FakeIndex
from tests.support.proxy import ProxyServer, proxy_config
from tests.support.upstream import UpstreamServer

pytestmark = pytest.mark.e2e

PLATFORMS = ("linux_x86_64", "linux_aarch64")


@dataclass(slots=True)
class World:
    tmp: Path
    upstream: UpstreamServer
    port: int  # the online proxy's port: the lock's URLs name it
    project: Path
    lock: Path

    def route(self) -> str:
        return f"/whl={self.upstream.url}/whl"


def _clients(root: Path) -> Clients:
    (root / "home").mkdir(parents=True, exist_ok=True)
    return Clients(home=root / "home", uv_cache=root / "uv-cache")


def _full_wheel_gets(upstream: UpstreamServer) -> list[str]:
    """Wheel downloads on the upstream: GETs of a ``.whl`` without Range (range reads are metadata)."""
    return sorted(
        r.path.rsplit("/", 1)[-1]
        for r in upstream.log.records()
        if r.method == "GET" and r.path.endswith(".whl") and r.range is None
    )


def _wanted(lock: Path) -> list[str]:
    """The lock's wheels for linux x86_64 or aarch64, decided here from the file names alone."""
    out = []
    for package in read_uv_lock(lock):
        for f in package.files:
            platforms = {t.platform for t in parse_wheel_filename(f.filename)[3]}
            linux = {p for p in platforms if p.startswith(("manylinux", "linux_"))}
            if "any" in platforms or any(p.endswith(("_x86_64", "_aarch64")) for p in linux):
                out.append(f.filename)
    return sorted(out)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("airgap")
    index = FakeIndex.from_pytorch_fixture(FIXTURES_DIR / "pytorch-nightly-cu126.json")
    with UpstreamServer(index, PYTORCH_OPTIONS) as upstream:
        online = proxy_config(tmp / "cache-online", {"/whl": f"{upstream.url}/whl"})
        with ProxyServer(online) as proxy:
            project = write_project(tmp / "project", seed_pyproject(f"{proxy.url}/whl/nightly/cu126"))
            _clients(tmp / "lock-client").lock(project)
            port = proxy.port
        upstream.log.reset()
        yield World(tmp, upstream, port, project, project / "uv.lock")


def test_prefetch_fetches_exactly_the_two_platforms_wheels_then_nothing(world: World) -> None:
    cache = world.tmp / "cache-prefetch"
    argv = ["prefetch", "--lock", str(world.lock), "--platform", ",".join(PLATFORMS)]
    argv += ["--cache-dir", str(cache), "--route", world.route()]
    world.upstream.log.reset()
    assert main(argv) == 0
    fetched = _full_wheel_gets(world.upstream)
    wanted = _wanted(world.lock)
    assert len(wanted) > 20 and fetched == wanted
    assert any("win_amd64" in w for p in read_uv_lock(world.lock) for w in (f.filename for f in p.files))
    assert not any("win_amd64" in w for w in fetched)

    world.upstream.log.reset()
    assert main(argv) == 0
    assert world.upstream.log.records() == ()


def test_bundle_then_offline_install_with_the_upstream_stopped(world: World, tmp_path: Path) -> None:
    cache = world.tmp / "cache-prefetch"
    if not cache.exists():  # run alone: fill it as the previous test does
        argv = ["prefetch", "--lock", str(world.lock), "--platform", ",".join(PLATFORMS)]
        assert main([*argv, "--cache-dir", str(cache), "--route", world.route()]) == 0
    archive = tmp_path / "cache.tar"
    assert main(["bundle", "export", str(archive), "--cache-dir", str(cache), "--route", world.route()]) == 0
    carried = tmp_path / "cache-airgap"
    assert main(["bundle", "import", str(archive), "--cache-dir", str(carried)]) == 0

    world.upstream.stop()
    offline = proxy_config(carried, {"/whl": f"{world.upstream.url}/whl"}, offline=True, port=world.port)
    with ProxyServer(offline):
        clients = _clients(tmp_path / "offline-client")
        clients.uv_run("sync", cwd=world.project)
        venv_python = world.project / ".venv" / "bin" / "python"
        assert venv_python.exists()
        listed = clients.uv_run("pip", "list", "--python", str(venv_python)).stdout
        assert "torch" in listed and "nvidia-cudnn-cu12" in listed

        target = tmp_path / "target"
        clients.uv_run(
            "pip", "install", "torch", "--python-platform", "x86_64-manylinux_2_28",
            "--python-version", f"{sys.version_info[0]}.{sys.version_info[1]}",
            "--index-url", f"http://127.0.0.1:{world.port}/whl/nightly/cu126", "--target", str(target),
        )  # fmt: skip
        installed = {p.name.split("-", 1)[0].lower() for p in target.glob("*.dist-info")}
        assert "torch" in installed and "nvidia_cudnn_cu12" in installed and "pytorch_triton" in installed


def test_bundle_export_of_a_lock_carries_only_what_its_platform_needs(world: World, tmp_path: Path) -> None:
    cache = world.tmp / "cache-prefetch"
    if not cache.exists():
        argv = ["prefetch", "--lock", str(world.lock), "--platform", ",".join(PLATFORMS)]
        assert main([*argv, "--cache-dir", str(cache), "--route", world.route()]) == 0
    archive = tmp_path / "x86.tar"
    argv = ["bundle", "export", str(archive), "--lock", str(world.lock), "--platform", "linux_x86_64"]
    assert main([*argv, "--cache-dir", str(cache), "--route", world.route()]) == 0
    with tarfile.open(archive) as tar:
        names = [m.name for m in tar.getmembers()]
    files = {n.rsplit("/", 1)[-1] for n in names if "/files/" in n and not n.endswith(".sha256")}
    assert "v1/whl/nightly/cu126/torch/page.json" in names
    assert any(n.startswith("v1/whl/nightly/cu126/torch/meld/") for n in names)
    assert any("manylinux_2_28_x86_64" in f and f.startswith("torch-") for f in files)
    assert not any("aarch64" in f for f in files)
    # Asking for a platform the cache was not filled for: written, but the missing files are reported.
    argv = [
        "bundle",
        "export",
        str(tmp_path / "win.tar"),
        "--lock",
        str(world.lock),
        "--platform",
        "win_amd64",
    ]
    assert main([*argv, "--cache-dir", str(cache), "--route", world.route()]) == 1
