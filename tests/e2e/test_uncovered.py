"""Issue 13 through the real ``uv``: environments no wheel of a release covers, and files the proxy
does not understand (PEP 825 variant wheels and ``variants.json``).

Class 1: a requirement only for Linux aarch64, where the release has no wheel and no sdist, of a
version never published. Without the meld's "nobody's" rule every served wheel carries it and the
universal lock fails. Class 2: Linux aarch64 has no wheel but an sdist with static metadata (PEP 643)
that needs ``six`` there; the lock must give it ``six``, as the sdist would.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.e2ekit import (
    PLATFORMS,
    Clients,
    Platform,
    lock_packages,
    project_pyproject,
    selected_by_export,
    write_project,
)
from tests.support.fake_index import FakeFile, FakeIndex
from tests.support.proxy import ProxyServer, proxy_config
from tests.support.sdists import build_sdist, pkg_info
from tests.support.stack import wheel
from tests.support.upstream import UpstreamOptions, UpstreamServer
from tests.support.wheels import build_wheel, metadata_from_fields

pytestmark = pytest.mark.e2e

_OPTIONS = UpstreamOptions(
    format="html", pep658=True, ranges=True, hashes=True, link_style="absolute", prefix="/simple"
)
_LINUX, _WIN = "cp311-cp311-manylinux_2_17_x86_64", "cp311-cp311-win_amd64"
_MAC_ARM, _MAC_X86 = "cp311-cp311-macosx_11_0_arm64", "cp311-cp311-macosx_10_9_x86_64"
_GHOST = 'ghost==9.9; platform_system == "Linux" and platform_machine == "aarch64"'
_SDIST_SIX = 'six; platform_machine != "arm64" and python_version < "3.12"'
_VARIANT = "vlib-1.0-py3-none-manylinux_2_28_x86_64-cu126.whl"
_VARIANTS_JSON = b'{"default-priorities": {"namespace": ["nvidia"]}, "variants": {"cu126": {}}}'


def _cp312(tag: str) -> str:
    return tag.replace("cp311", "cp312")


def _on_python(platform: Platform, version: str) -> Platform:
    environment = {**platform.environment, "python_version": version, "python_full_version": f"{version}.0"}
    return Platform(f"{platform.name}-{version}", platform.uv_platform, environment)


def _variant_wheel() -> FakeFile:
    # A variant wheel's dist-info is named like any wheel's: build it as one, list it by its label.
    metadata = metadata_from_fields("vlib", "1.0", ["numpy", "nvidia-thing"])
    members = {"vlib-1.0.dist-info/variant.json": _VARIANTS_JSON}
    content = build_wheel("vlib-1.0-py3-none-manylinux_2_28_x86_64.whl", metadata, extra_members=members)
    return FakeFile(_VARIANT, content=content, metadata=metadata)


def _index() -> FakeIndex:
    return FakeIndex.from_files(
        {
            # Class 1: Linux x86_64 and Windows ask for a ghost==9.9 that only Linux aarch64 could use.
            "gpuish": [
                wheel(f"gpuish-1.0-{_LINUX}.whl", ["numpy", _GHOST]),
                wheel(f"gpuish-1.0-{_WIN}.whl", ["numpy", _GHOST]),
                wheel(f"gpuish-1.0-{_MAC_ARM}.whl", ["numpy"]),
            ],
            "ghost": [wheel("ghost-1.0-py3-none-any.whl")],
            # Class 2: the CPython 3.11 x86_64 wheels need six, the macOS arm64 and all 3.12 wheels
            # do not, Linux aarch64 builds the sdist (which needs six before 3.12).
            "oldlib": [
                *(wheel(f"oldlib-1.0-{tag}.whl", ["six"]) for tag in (_LINUX, _WIN, _MAC_X86)),
                wheel(f"oldlib-1.0-{_MAC_ARM}.whl", []),
                *(wheel(f"oldlib-1.0-{_cp312(tag)}.whl", []) for tag in (_LINUX, _WIN, _MAC_X86, _MAC_ARM)),
                FakeFile(
                    "oldlib-1.0.tar.gz",
                    content=build_sdist("oldlib-1.0.tar.gz", pkg_info("oldlib", "1.0", (_SDIST_SIX,))),
                ),
            ],
            "six": [wheel("six-1.16.0-py2.py3-none-any.whl")],
            "numpy": [wheel("numpy-1.26.0-py3-none-any.whl")],
            "nvidia-thing": [wheel("nvidia_thing-1.0-py3-none-any.whl")],
            # Two ordinary wheels that agree, a variant wheel that says more, the release's
            # variants.json, and a file of a kind nobody knows yet.
            "vlib": [
                wheel(f"vlib-1.0-{_LINUX}.whl", ["numpy"]),
                wheel(f"vlib-1.0-{_MAC_ARM}.whl", ["numpy"]),
                _variant_wheel(),
                FakeFile("vlib-1.0-variants.json", content=_VARIANTS_JSON),
                FakeFile("vlib-1.0.future-format", content=b"\x00future"),
            ],
        }
    )


@pytest.fixture(scope="module")
def upstream() -> Iterator[UpstreamServer]:
    with UpstreamServer(_index(), _OPTIONS) as up:
        yield up


@pytest.fixture(scope="module")
def proxy(upstream: UpstreamServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyServer]:
    config = proxy_config(tmp_path_factory.mktemp("proxy-cache"), {"/simple": f"{upstream.url}/simple"})
    with ProxyServer(config) as server:
        yield server


def _locked(
    clients: Clients, index_url: str, requirement: str, directory: Path, python: str = "==3.11.*"
) -> Path:
    pyproject = project_pyproject("uncovered", [requirement], index_url, requires_python=python)
    project = write_project(directory, pyproject)
    clients.lock(project)
    return project


def test_a_requirement_only_where_nothing_installs_does_not_break_the_lock(
    clients: Clients, proxy: ProxyServer, tmp_path: Path
) -> None:
    project = _locked(clients, f"{proxy.url}/simple", "gpuish==1.0", tmp_path)
    lock = tomllib.loads((project / "uv.lock").read_text(encoding="utf-8"))
    assert "ghost" not in lock_packages(lock)
    for platform in PLATFORMS.values():
        assert ("numpy", "1.26.0") in selected_by_export(clients.export(project), platform)


def test_an_environment_only_the_sdist_serves_gets_what_the_sdist_gives(
    clients: Clients, proxy: ProxyServer, tmp_path: Path
) -> None:
    project = _locked(clients, f"{proxy.url}/simple", "oldlib==1.0", tmp_path, python=">=3.11,<3.13")
    exported = clients.export(project)
    needs_six = {"linux-x86_64": True, "windows-amd64": True, "macos-arm64": False, "linux-aarch64": True}
    for name, wanted in needs_six.items():
        selected = selected_by_export(exported, PLATFORMS[name])
        assert (("six", "1.16.0") in selected) is wanted, (name, sorted(selected))
        on_312 = selected_by_export(exported, _on_python(PLATFORMS[name], "3.12"))
        assert ("six", "1.16.0") not in on_312, (name, "3.12", sorted(on_312))


def _served_statuses(proxy: ProxyServer, upstream: UpstreamServer, project: str) -> dict[str, int]:
    statuses = {}
    with httpx.Client(base_url=f"{proxy.url}/simple/{project}/", timeout=30) as http:
        for file in upstream.index.projects[project]:
            for suffix in ("", ".metadata"):
                statuses[file.filename + suffix] = http.get(file.filename + suffix).status_code
    return statuses


def test_variant_files_pass_through_and_break_nothing(
    clients: Clients, proxy: ProxyServer, upstream: UpstreamServer, tmp_path: Path
) -> None:
    with httpx.Client(timeout=30) as http:
        page = http.get(
            f"{proxy.url}/simple/vlib/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
        )
        listed = {f["filename"] for f in page.json()["files"]}
        assert listed == {f.filename for f in upstream.index.projects["vlib"]}
        variants = http.get(f"{proxy.url}/simple/vlib/vlib-1.0-variants.json")
        assert variants.status_code == 200 and variants.content == _VARIANTS_JSON
        assert variants.headers["cache-control"].startswith("max-age="), "not immutable: revalidated"
        own = http.get(f"{proxy.url}/simple/vlib/{_VARIANT}.metadata")
        assert own.status_code == 200 and own.content == upstream.index.file(_VARIANT).metadata
        assert own.headers["x-wheelmeld-meld"].startswith("variant")
        ordinary = http.get(f"{proxy.url}/simple/vlib/vlib-1.0-{_LINUX}.whl.metadata")
        assert ordinary.headers["x-wheelmeld-meld"] == "agree", "the variant is in no meld"
        assert ordinary.content == upstream.index.file(f"vlib-1.0-{_LINUX}.whl").metadata
    covered = ("linux-x86_64", "macos-arm64")
    direct = {p: clients.compile(["vlib==1.0"], PLATFORMS[p], f"{upstream.url}/simple") for p in covered}
    through = {p: clients.compile(["vlib==1.0"], PLATFORMS[p], f"{proxy.url}/simple") for p in covered}
    assert through == direct
    project = _locked(clients, f"{proxy.url}/simple", "vlib==1.0", tmp_path / "lock")
    for name in covered:
        assert selected_by_export(clients.export(project), PLATFORMS[name]) == direct[name]
    downloads = tmp_path / "downloads"
    clients.pip(
        "download", "--no-deps", "-d", str(downloads), "--index-url", f"{proxy.url}/simple", "vlib==1.0"
    )
    assert [p.name for p in downloads.iterdir()] == [f"vlib-1.0-{_LINUX}.whl"]
    statuses = _served_statuses(proxy, upstream, "vlib")
    assert all(status < 500 for status in statuses.values()), statuses
    assert statuses["vlib-1.0-variants.json"] == statuses["vlib-1.0.future-format"] == 200
