"""Clients that check a wheel's PEP 658 file against the wheel itself, through the real ``pip``.

pip (26.3 and later) compares the ``.metadata`` it resolved with the METADATA inside the wheel it
downloads, and refuses the install when Requires-Dist or Provides-Extra differ. A melded wheel's file
differs by design, so without care every pip install of such a wheel fails through the proxy. pip
resolves for one environment, where the wheel's own metadata is exactly what the meld gives, so it is
served the wheel's own (docs/meld-contract.md, "Clients that check metadata against the wheel"); a
universal resolver (uv) still gets the meld from the same URL.

The release: the wheel for this machine requires ``numpy``; the Windows one also requires ``colorama``
with no marker, so the meld adds ``colorama; sys_platform == "win32"`` to this machine's wheel.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from packaging.requirements import Requirement
from packaging.tags import sys_tags

from tests.e2e.e2ekit import Clients, lock_packages, project_pyproject, write_project
from tests.support.fake_index import FakeIndex
from tests.support.proxy import ProxyServer, proxy_config
from tests.support.stack import wheel
from tests.support.upstream import UpstreamOptions, UpstreamServer

pytestmark = pytest.mark.e2e

_OPTIONS = UpstreamOptions(
    format="html", pep658=True, ranges=True, hashes=True, link_style="absolute", prefix="/simple"
)
# The most specific tag this interpreter installs (cp311-cp311-manylinux_…_x86_64 here): pip picks it.
_HERE = str(next(iter(sys_tags())))
_HERE_WHEEL = f"winlib-1.0-{_HERE}.whl"
_WIN_WHEEL = "winlib-1.0-cp311-cp311-win_amd64.whl"
_PIP_UA = 'pip/26.3 {"installer":{"name":"pip","version":"26.3"}}'
_UV_UA = "uv/0.9.0"


def _index() -> FakeIndex:
    return FakeIndex.from_files(
        {
            "winlib": [
                wheel(_HERE_WHEEL, ["numpy"]),
                wheel(_WIN_WHEEL, ["numpy", "colorama"]),
            ],
            "numpy": [wheel("numpy-1.26.0-py3-none-any.whl")],
            "colorama": [wheel("colorama-0.4.6-py2.py3-none-any.whl")],
        }
    )


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyServer]:
    with UpstreamServer(_index(), _OPTIONS) as upstream:
        cache = tmp_path_factory.mktemp("sidecar-cache")
        with ProxyServer(proxy_config(cache, {"/simple": f"{upstream.url}/simple"})) as server:
            yield server


def _metadata(proxy: ProxyServer, user_agent: str) -> httpx.Response:
    url = f"{proxy.url}/simple/winlib/{_HERE_WHEEL.replace('+', '%2B')}.metadata"
    return httpx.get(url, headers={"User-Agent": user_agent}, timeout=30)


def _requires(body: bytes) -> dict[str, Requirement]:
    lines = body.decode().split("\n\n", 1)[0].splitlines()
    found = [Requirement(line.split(":", 1)[1]) for line in lines if line.startswith("Requires-Dist:")]
    return {requirement.name: requirement for requirement in found}


def test_pip_installs_a_wheel_the_meld_rewrote(clients: Clients, proxy: ProxyServer, tmp_path: Path) -> None:
    venv = clients.new_venv(tmp_path / "venv")
    out = clients.pip("--python", str(venv), "install", "--index-url", f"{proxy.url}/simple", "winlib")
    assert "inconsistent" not in out.stdout + out.stderr
    listed = clients.pip("--python", str(venv), "list", "--format", "freeze").stdout
    assert "winlib==1.0" in listed and "numpy==" in listed and "colorama" not in listed


def test_each_client_gets_its_answer_and_shared_caches_keep_them_apart(proxy: ProxyServer) -> None:
    melded, own = _metadata(proxy, _UV_UA), _metadata(proxy, _PIP_UA)
    assert melded.status_code == own.status_code == 200
    meld, mine = _requires(melded.content), _requires(own.content)
    assert set(meld) == {"numpy", "colorama"} and set(mine) == {"numpy"}
    marker = meld["colorama"].marker
    assert marker is not None
    assert marker.evaluate({"sys_platform": "win32", "platform_machine": "AMD64"})
    assert not marker.evaluate({"sys_platform": "linux", "platform_machine": "x86_64"})
    assert melded.headers["x-wheelmeld-meld"] == "melded"
    assert own.headers["x-wheelmeld-meld"].startswith("own")
    for answer in (melded, own):
        assert answer.headers["vary"] == "User-Agent"
    # Asked again (ready answers are kept per client kind), each still gets its own.
    assert _metadata(proxy, _PIP_UA).content == own.content
    assert _metadata(proxy, _UV_UA).content == melded.content


def _core_metadata(proxy: ProxyServer, project: str) -> dict[str, object]:
    page = httpx.get(
        f"{proxy.url}/simple/{project}/",
        headers={"Accept": "application/vnd.pypi.simple.v1+json", "User-Agent": _UV_UA},
        timeout=30,
    ).json()
    return {f["filename"]: f.get("core-metadata") for f in page["files"]}


def test_a_rewritten_file_is_advertised_without_a_hash(proxy: ProxyServer) -> None:
    _metadata(proxy, _UV_UA)  # the meld is known, so the page could name a hash
    # Both wheels' lines changed (this one gains colorama, Windows' colorama gains a marker): no
    # single hash is true of what each client is served.
    assert _core_metadata(proxy, "winlib") == {_HERE_WHEEL: True, _WIN_WHEEL: True}
    # A file served as it is keeps its hash.
    (numpy,) = _core_metadata(proxy, "numpy").values()
    assert isinstance(numpy, dict) and numpy["sha256"]


def test_uv_still_locks_the_meld(clients: Clients, proxy: ProxyServer, tmp_path: Path) -> None:
    pyproject = project_pyproject(
        "sidecar", ["winlib==1.0"], f"{proxy.url}/simple", requires_python="==3.11.*"
    )
    project = write_project(tmp_path, pyproject)
    clients.lock(project)
    lock = tomllib.loads((project / "uv.lock").read_text(encoding="utf-8"))
    assert "colorama" in lock_packages(lock)
