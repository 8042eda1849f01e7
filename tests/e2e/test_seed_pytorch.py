"""The seed (uv issue 10693) end to end with the real uv and pip: the bug without wheelmeld, gone with it.

One upstream shaped like the PyTorch nightly cu126 index and one proxy in front of it serve the
whole module; the seed project is locked once straight against the upstream and once through the
proxy, with nothing in ``pyproject.toml`` changed but the host, and every test reads those locks.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
from packaging.utils import NormalizedName, canonicalize_name, parse_wheel_filename

from tests.e2e.e2ekit import (
    PLATFORMS,
    Clients,
    dependency_markers,
    lock_packages,
    project_pyproject,
    seed_pyproject,
    selected_by_export,
    venv_python,
    write_project,
)
from tests.support.fake_index import FakeIndex
from tests.support.proxy import ProxyServer
from tests.support.upstream import RequestRecord, UpstreamServer

pytestmark = pytest.mark.e2e

# What the x86_64 torch wheels require and the aarch64 / Windows ones do not (the seed's diff).
CUDA_PACKAGES: tuple[NormalizedName, ...] = tuple(
    canonicalize_name(n)
    for n in (
        "nvidia-cuda-nvrtc-cu12",
        "nvidia-cuda-runtime-cu12",
        "nvidia-cuda-cupti-cu12",
        "nvidia-cudnn-cu12",
        "nvidia-cublas-cu12",
        "nvidia-cufft-cu12",
        "nvidia-curand-cu12",
        "nvidia-cusolver-cu12",
        "nvidia-cusparse-cu12",
        "nvidia-cusparselt-cu12",
        "nvidia-nccl-cu12",
        "nvidia-nvtx-cu12",
        "nvidia-nvjitlink-cu12",
        "pytorch-triton",
    )
)
SEED_REQUIREMENTS = ("torch", "torchao", "torchaudio", "torchvision")
# Platforms the seed index has wheels for (it carries no macOS torch).
SEED_PLATFORMS = ("linux-x86_64", "linux-aarch64", "windows-amd64")
# Every dependency of these is declared identically by all of its wheels.
CONSISTENT_REQUIREMENTS = ("jinja2", "sympy", "networkx", "fsspec", "filelock", "numpy", "pillow")


@dataclass(frozen=True, slots=True)
class Locked:
    """A project directory after ``uv lock``, with its parsed lock."""

    path: Path
    pyproject: str
    lock: dict[str, Any]
    index_url: str
    # What the proxy asked the upstream for while uv locked (empty for the direct lock).
    proxy_requests: tuple[RequestRecord, ...] = ()

    def only(self, name: str) -> dict[str, Any]:
        entries = lock_packages(self.lock).get(canonicalize_name(name), [])
        assert len(entries) == 1, f"expected one locked {name!r}, got {len(entries)}"
        return dict(entries[0])


def _lock(clients: Clients, directory: Path, index_url: str, upstream: UpstreamServer) -> Locked:
    pyproject = seed_pyproject(index_url)
    project = write_project(directory, pyproject)
    before = len(upstream.log)
    lock = clients.lock(project)
    by_proxy = tuple(
        r for r in upstream.log.records()[before:] if r.headers.get("user-agent", "").startswith("wheelmeld")
    )
    return Locked(project, pyproject, lock, index_url, by_proxy)


@pytest.fixture(scope="module")
def direct(
    clients: Clients, seed_upstream: UpstreamServer, tmp_path_factory: pytest.TempPathFactory
) -> Locked:
    """The seed project locked straight against the PyTorch-shaped upstream."""
    index_url = f"{seed_upstream.url}/whl/nightly/cu126"
    return _lock(clients, tmp_path_factory.mktemp("direct"), index_url, seed_upstream)


@pytest.fixture(scope="module")
def proxied(
    clients: Clients,
    seed_proxy: ProxyServer,
    seed_upstream: UpstreamServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Locked:
    """The same project, only the host swapped for wheelmeld's."""
    index_url = f"{seed_proxy.url}/whl/nightly/cu126"
    return _lock(clients, tmp_path_factory.mktemp("proxied"), index_url, seed_upstream)


@pytest.fixture(scope="module")
def expected(clients: Clients, seed_upstream: UpstreamServer) -> dict[str, frozenset[tuple[str, str]]]:
    """Per platform, what ``uv pip compile --python-platform`` resolves against the upstream directly."""
    index_url = f"{seed_upstream.url}/whl/nightly/cu126"
    return {name: clients.compile(SEED_REQUIREMENTS, PLATFORMS[name], index_url) for name in SEED_PLATFORMS}


def test_only_the_host_differs(direct: Locked, proxied: Locked) -> None:
    assert direct.pyproject != proxied.pyproject
    assert direct.pyproject.replace(direct.index_url, proxied.index_url) == proxied.pyproject


def test_every_locked_package_came_through_its_index(direct: Locked, proxied: Locked) -> None:
    # Guards the hermetic setup: had uv used another index (machine config, a default), the
    # sources would say so and every other assertion here would be about the wrong lock.
    for locked in (direct, proxied):
        sources = {p["source"].get("registry") for p in locked.lock["package"] if p["name"] != "torchnightly"}
        assert sources == {locked.index_url}


# --- 1. the bug exists without us ----------------------------------------------------------------


def test_direct_lock_drops_the_cuda_dependencies(direct: Locked) -> None:
    torch_deps = dependency_markers(direct.only("torch"))
    assert set(torch_deps) & set(CUDA_PACKAGES) == set()
    assert set(lock_packages(direct.lock)) & set(CUDA_PACKAGES) == set()
    # ...though the x86_64 wheels that declare them are locked: uv read another wheel's metadata.
    wheels = [unquote(w["url"].rsplit("/", 1)[1]) for w in direct.only("torch")["wheels"]]
    assert any(t.platform.endswith("_x86_64") for w in wheels for t in parse_wheel_filename(w)[3])


# --- 2. fixed through us ---------------------------------------------------------------------------


@pytest.mark.parametrize("package", CUDA_PACKAGES)
def test_proxied_lock_limits_each_cuda_dependency_to_linux_x86_64(proxied: Locked, package: str) -> None:
    assert package in lock_packages(proxied.lock), f"{package} is not locked"
    markers = dependency_markers(proxied.only("torch"))
    assert package in markers, f"torch does not depend on {package} in the lock"
    marker = markers[package]
    assert marker is not None, f"{package} is unconditional: it would install on aarch64 and Windows too"
    assert PLATFORMS["linux-x86_64"].evaluate(marker), str(marker)
    assert not PLATFORMS["linux-aarch64"].evaluate(marker), str(marker)
    assert not PLATFORMS["windows-amd64"].evaluate(marker), str(marker)


def test_proxy_read_each_torch_sibling_with_range_requests(proxied: Locked, seed_index: FakeIndex) -> None:
    # The seed upstream has no PEP 658 files: the meld must read every sibling's METADATA from
    # the wheel itself, with ranges (a real torch wheel is ~900 MB), once per file.
    for file in seed_index.projects["torch"]:
        reads = [r for r in proxied.proxy_requests if unquote(r.path).endswith(f"/{file.filename}")]
        assert reads, f"the proxy never read {file.filename}"
        assert len(reads) <= 2, (file.filename, reads)
        assert all(r.range is not None and r.status == 206 for r in reads), (file.filename, reads)


# --- 3. every platform right ----------------------------------------------------------------------


@pytest.mark.parametrize("platform", SEED_PLATFORMS)
def test_proxied_lock_selects_what_a_single_platform_resolution_selects(
    clients: Clients, proxied: Locked, expected: dict[str, frozenset[tuple[str, str]]], platform: str
) -> None:
    selected = selected_by_export(clients.export(proxied.path), PLATFORMS[platform])
    assert selected == expected[platform], _diff(selected, expected[platform])


def _diff(got: frozenset[tuple[str, str]], want: frozenset[tuple[str, str]]) -> str:
    return f"lock only: {sorted(got - want)}; compile only: {sorted(want - got)}"


def test_the_per_platform_check_catches_the_direct_lock(
    clients: Clients, direct: Locked, expected: dict[str, frozenset[tuple[str, str]]]
) -> None:
    # The check of item 3 is not a tautology: on linux x86_64 the direct lock misses exactly the
    # CUDA packages (and nothing else), and it is right where torch's wheels agree.
    export = clients.export(direct.path)
    missing = expected["linux-x86_64"] - selected_by_export(export, PLATFORMS["linux-x86_64"])
    assert {name for name, _ in missing} == set(CUDA_PACKAGES)
    assert selected_by_export(export, PLATFORMS["windows-amd64"]) == expected["windows-amd64"]


# --- 4. installs -----------------------------------------------------------------------------------


def _installed(clients: Clients, python: Path) -> dict[NormalizedName, str]:
    listing = clients.uv_run("pip", "list", "--python", str(python), "--format", "json").stdout
    return {canonicalize_name(p["name"]): p["version"] for p in json.loads(listing)}


def test_uv_sync_installs_the_cuda_packages(
    clients: Clients, proxied: Locked, expected: dict[str, frozenset[tuple[str, str]]]
) -> None:
    clients.uv_run("sync", "--frozen", cwd=proxied.path)
    installed = _installed(clients, venv_python(proxied.path / ".venv"))
    assert set(CUDA_PACKAGES) <= set(installed)
    # This machine is linux x86_64: the environment is exactly that platform's resolution.
    assert frozenset(installed.items()) == expected["linux-x86_64"]


@pytest.fixture
def fresh_python(clients: Clients, tmp_path: Path) -> Iterator[Path]:
    yield clients.new_venv(tmp_path / "venv")


def test_uv_pip_install_through_the_proxy(
    clients: Clients, seed_proxy: ProxyServer, fresh_python: Path
) -> None:
    index_url = f"{seed_proxy.url}/whl/nightly/cu126"
    clients.uv_run("pip", "install", "--python", str(fresh_python), "--index-url", index_url, "torch")
    installed = _installed(clients, fresh_python)
    assert installed["torch"] == "2.7.0.dev20250116+cu126"
    assert set(CUDA_PACKAGES) <= set(installed)


def test_pip_install_through_the_proxy_verifies_our_metadata(
    clients: Clients, seed_proxy: ProxyServer, fresh_python: Path
) -> None:
    index_url = f"{seed_proxy.url}/whl/nightly/cu126"
    out = clients.pip("--python", str(fresh_python), "install", "-v", "--index-url", index_url, "torch")
    # pip took torch's dependencies from the .metadata file we advertise (and so checked its
    # sha256 against the page: a mismatch fails the install), not from the downloaded wheel.
    wheel = "torch-2.7.0.dev20250116%2Bcu126-cp311-cp311-manylinux_2_28_x86_64.whl"
    assert f"{index_url}/torch/{wheel}.metadata" in out.stdout
    installed = _installed(clients, fresh_python)
    assert set(CUDA_PACKAGES) <= set(installed)


# --- 5. transparent where nothing is wrong ---------------------------------------------------------


def _graph(lock: dict[str, Any]) -> set[tuple[str, str, frozenset[tuple[str, str]], frozenset[str]]]:
    """Each package as (name, version, {(dependency, marker)}, {wheel file names}): the lock minus URLs."""
    graph = set()
    for package in lock["package"]:
        deps = frozenset((d["name"], d.get("marker", "")) for d in package.get("dependencies", []))
        wheels = frozenset(w["url"].rsplit("/", 1)[1] for w in package.get("wheels", []))
        graph.add((package["name"], package["version"], deps, wheels))
    return graph


def test_consistent_project_locks_to_the_same_graph(
    clients: Clients,
    seed_upstream: UpstreamServer,
    seed_proxy: ProxyServer,
    tmp_path: Path,
) -> None:
    graphs = []
    for name, base in (("direct", seed_upstream.url), ("proxied", seed_proxy.url)):
        pyproject = project_pyproject("consistent", CONSISTENT_REQUIREMENTS, f"{base}/whl/nightly/cu126")
        graphs.append(_graph(clients.lock(write_project(tmp_path / name, pyproject))))
    direct_graph, proxied_graph = graphs
    assert len(direct_graph) > len(CONSISTENT_REQUIREMENTS)  # transitive ones (markupsafe, mpmath) too
    assert proxied_graph == direct_graph


@pytest.mark.parametrize("project", ["jinja2", "numpy", "markupsafe", "pillow"])
def test_consistent_wheels_are_served_their_own_metadata_bytes(
    seed_proxy: ProxyServer, seed_index: FakeIndex, project: str
) -> None:
    with httpx.Client(base_url=f"{seed_proxy.url}/whl/nightly/cu126/{project}/", timeout=30) as http:
        for file in seed_index.projects[project]:
            response = http.get(f"{file.filename.replace('+', '%2B')}.metadata")
            assert response.status_code == 200, file.filename
            assert response.content == file.metadata, file.filename


def _diff(got: frozenset[tuple[str, str]], want: frozenset[tuple[str, str]]) -> str:
    return f"lock only: {sorted(got - want)}; compile only: {sorted(want - got)}"
