"""torch 2.1.0's real metadata (as a package index publishes it) locked through wheelmeld with the real uv.

The fixture upstream serves the 20 real torch 2.1.0 METADATA files as PEP 658 ``.metadata`` beside
their real file names and hashes.  It holds only ``torch``, so this module adds tiny stub projects
for everything torch 2.1.0 needs — py3-none-any where the real project is pure, the real platform
tags where it is not (numpy, markupsafe, the CUDA wheels, triton) — at the versions torch pins.
The universal lock through the proxy must then select, on each of four platforms, exactly what
``uv pip compile --python-platform`` resolves against the upstream directly.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from packaging.metadata import Metadata
from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name, parse_wheel_filename

from tests.e2e.e2ekit import (
    PLATFORMS,
    Clients,
    dependency_markers,
    lock_packages,
    project_pyproject,
    selected_by_export,
    write_project,
)
from tests.support.fake_index import FIXTURES_DIR, FakeFile, FakeIndex
from tests.support.proxy import ProxyServer, proxy_config
from tests.support.upstream import UpstreamOptions, UpstreamServer
from tests.support.wheels import build_wheel, metadata_from_fields

pytestmark = pytest.mark.e2e

# The PyPI shape: HTML page, PEP 658 files advertised with their hashes, absolute file links.
_OPTIONS = UpstreamOptions(
    format="html", pep658=True, ranges=True, hashes=True, link_style="absolute", prefix="/simple"
)
_CP311 = {
    "linux-x86_64": "cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64",
    "linux-aarch64": "cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64",
    "windows-amd64": "cp311-cp311-win_amd64",
    "macos-arm64": "cp311-cp311-macosx_11_0_arm64",
}
_CUDA_TAGS = ("py3-none-manylinux1_x86_64", "py3-none-win_amd64")

# (distribution, version, wheel tags, Requires-Dist), after the real releases of autumn 2023.
_STUBS: tuple[tuple[str, str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("filelock", "3.12.4", ("py3-none-any",), ()),
    ("typing_extensions", "4.8.0", ("py3-none-any",), ()),
    ("sympy", "1.12", ("py3-none-any",), ("mpmath>=0.19",)),
    ("mpmath", "1.3.0", ("py3-none-any",), ()),
    ("networkx", "3.1", ("py3-none-any",), ()),
    ("Jinja2", "3.1.2", ("py3-none-any",), ("MarkupSafe>=2.0",)),
    ("MarkupSafe", "2.1.3", tuple(_CP311.values()), ()),
    ("fsspec", "2023.9.2", ("py3-none-any",), ()),
    ("opt_einsum", "3.3.0", ("py3-none-any",), ("numpy>=1.7",)),
    ("numpy", "1.26.0", tuple(_CP311.values()), ()),
    ("nvidia_cuda_nvrtc_cu12", "12.1.105", _CUDA_TAGS, ()),
    ("nvidia_cuda_runtime_cu12", "12.1.105", _CUDA_TAGS, ()),
    ("nvidia_cuda_cupti_cu12", "12.1.105", _CUDA_TAGS, ()),
    ("nvidia_cudnn_cu12", "8.9.2.26", ("py3-none-manylinux1_x86_64",), ("nvidia-cublas-cu12",)),
    ("nvidia_cublas_cu12", "12.1.3.1", _CUDA_TAGS, ()),
    ("nvidia_cufft_cu12", "11.0.2.54", _CUDA_TAGS, ()),
    ("nvidia_curand_cu12", "10.3.2.106", _CUDA_TAGS, ()),
    (
        "nvidia_cusolver_cu12",
        "11.4.5.107",
        _CUDA_TAGS,
        ("nvidia-cublas-cu12", "nvidia-nvjitlink-cu12", "nvidia-cusparse-cu12"),
    ),
    ("nvidia_cusparse_cu12", "12.1.0.106", _CUDA_TAGS, ("nvidia-nvjitlink-cu12",)),
    ("nvidia_nccl_cu12", "2.18.1", ("py3-none-manylinux1_x86_64",), ()),
    ("nvidia_nvtx_cu12", "12.1.105", _CUDA_TAGS, ()),
    ("nvidia_nvjitlink_cu12", "12.2.140", _CUDA_TAGS, ()),
    ("triton", "2.1.0", ("0-cp311-cp311-manylinux2014_x86_64.manylinux_2_17_x86_64",), ("filelock",)),
)
# torch 2.1.0 ships CPython 3.8-3.11 only; the extra pulls in one more project (opt-einsum → numpy).
_REQUIREMENTS = ("torch[opt-einsum]==2.1.0",)
_X86_64_WHEEL = "torch-2.1.0-cp311-cp311-manylinux1_x86_64.whl"
_AARCH64_WHEEL = "torch-2.1.0-cp311-cp311-manylinux2014_aarch64.whl"


def _stub_files(name: str, version: str, tags: tuple[str, ...], requires: tuple[str, ...]) -> list[FakeFile]:
    metadata = metadata_from_fields(name, version, requires)
    files = []
    for tag in tags:
        filename = f"{name}-{version}-{tag}.whl"
        parse_wheel_filename(filename)  # a typo in the table fails here, not deep inside uv
        files.append(FakeFile(filename=filename, content=build_wheel(filename, metadata), metadata=metadata))
    return files


def pypi_torch_index() -> FakeIndex:
    """The real torch 2.1.0 files plus the stub dependency projects, in one index."""
    torch = FakeIndex.from_pypi_torch_fixture(FIXTURES_DIR / "pypi-torch-2.1.0")
    projects: dict[str, list[FakeFile]] = {"torch": list(torch.projects["torch"])}
    for name, version, tags, requires in _STUBS:
        projects.setdefault(canonicalize_name(name), []).extend(_stub_files(name, version, tags, requires))
    return FakeIndex.from_files(projects)


@pytest.fixture(scope="module")
def upstream() -> Iterator[UpstreamServer]:
    with UpstreamServer(pypi_torch_index(), _OPTIONS) as up:
        yield up


@pytest.fixture(scope="module")
def proxy(upstream: UpstreamServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyServer]:
    config = proxy_config(tmp_path_factory.mktemp("proxy-cache"), {"/simple": f"{upstream.url}/simple"})
    with ProxyServer(config) as server:
        yield server


@pytest.fixture(scope="module")
def proxied_project(clients: Clients, proxy: ProxyServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    index_url = f"{proxy.url}/simple"
    pyproject = project_pyproject("torch21", _REQUIREMENTS, index_url, requires_python="==3.11.*")
    project = write_project(tmp_path_factory.mktemp("torch21"), pyproject)
    clients.lock(project)
    return project


def _requirements(index: FakeIndex, filename: str) -> set[Requirement]:
    metadata = index.file(filename).metadata
    assert metadata is not None
    return set(Metadata.from_email(metadata, validate=False).requires_dist or ())


def _cuda(index: FakeIndex) -> set[NormalizedName]:
    """What the real x86_64 wheel requires and the real aarch64 wheel does not: 11 nvidia-* and triton."""
    x86_64, aarch64 = _requirements(index, _X86_64_WHEEL), _requirements(index, _AARCH64_WHEEL)
    return {canonicalize_name(r.name) for r in x86_64} - {canonicalize_name(r.name) for r in aarch64}


def test_stubs_cover_every_requirement_torch_can_need(upstream: UpstreamServer) -> None:
    # Without a project for each, the lock could not resolve and the tests below would say nothing.
    needed = {
        canonicalize_name(r.name)
        for f in upstream.index.projects["torch"]
        for r in _requirements(upstream.index, f.filename)
        if any(p.evaluate_with_extra(r.marker, "opt-einsum") for p in PLATFORMS.values())
    }
    assert needed <= set(upstream.index.projects)
    assert len(_cuda(upstream.index)) == 12


def test_proxied_lock_limits_cuda_to_linux_x86_64(proxied_project: Path, upstream: UpstreamServer) -> None:
    lock = tomllib.loads((proxied_project / "uv.lock").read_text(encoding="utf-8"))
    (torch,) = lock_packages(lock)["torch"]
    markers = dependency_markers(torch)
    cuda = _cuda(upstream.index)
    assert set(markers) >= cuda
    for name in cuda:
        marker = markers[name]
        assert marker is not None, name
        assert PLATFORMS["linux-x86_64"].evaluate(marker), (name, str(marker))
        for other in ("linux-aarch64", "windows-amd64", "macos-arm64"):
            assert not PLATFORMS[other].evaluate(marker), (name, other, str(marker))


def test_every_torch_wheel_is_served_the_same_requirements(
    proxy: ProxyServer, upstream: UpstreamServer
) -> None:
    # Which wheel uv reads for a universal lock depends on the machine it runs on (on linux x86_64
    # uv 0.13 happens to read an x86_64 wheel of torch 2.1.0, elsewhere it does not); through the
    # proxy the answer must not depend on it.  Requirements compare as parsed objects: the proxy
    # may keep a wheel's own lines (``(>=3.3)``) and their order.
    files = upstream.index.projects["torch"]
    assert len({frozenset(_requirements(upstream.index, f.filename)) for f in files}) > 1
    served = set()
    with httpx.Client(base_url=f"{proxy.url}/simple/torch/", timeout=30) as http:
        for file in files:
            response = http.get(f"{file.filename}.metadata")
            assert response.status_code == 200, file.filename
            parsed = Metadata.from_email(response.content, validate=False)
            extras = frozenset(canonicalize_name(e) for e in parsed.provides_extra or ())
            served.add((frozenset(parsed.requires_dist or ()), extras))
    assert len(served) == 1, served


@pytest.mark.parametrize("platform", list(PLATFORMS))
def test_proxied_lock_selects_what_a_single_platform_resolution_selects(
    clients: Clients, upstream: UpstreamServer, proxied_project: Path, platform: str
) -> None:
    want = clients.compile(_REQUIREMENTS, PLATFORMS[platform], f"{upstream.url}/simple")
    got = selected_by_export(clients.export(proxied_project), PLATFORMS[platform])
    assert got == want, f"lock only: {sorted(got - want)}; compile only: {sorted(want - got)}"
