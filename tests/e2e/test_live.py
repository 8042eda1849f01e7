"""Opt-in, on the real network: lock real releases whose wheels disagree through wheelmeld's ``/simple``.

Runs only with ``WHEELMELD_LIVE=1``.  The ``/simple`` route fronts the index this machine's uv/pip
already use (``discover_default_index``), so no registry is named here.  For each case the
universal lock through the proxy must select, on every platform, exactly what
``uv pip compile --python-platform`` resolves against that same index directly.  Both sides run
within seconds of each other, so they see the same newest versions of the dependencies.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from packaging.metadata import Metadata
from packaging.utils import canonicalize_name

from proxy.default_index import discover_default_index
from tests.e2e.e2ekit import (
    PLATFORMS,
    Clients,
    lock_packages,
    project_pyproject,
    selected_by_export,
    write_project,
)
from tests.support.proxy import ProxyServer, proxy_config

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.live,
    pytest.mark.skipif(os.environ.get("WHEELMELD_LIVE") != "1", reason="set WHEELMELD_LIVE=1 to run"),
]


@dataclass(frozen=True, slots=True)
class LiveCase:
    """A real release whose wheels declare different Requires-Dist, and how to lock it."""

    project: str
    version: str
    requires_python: str  # the releases' own CPython range, narrowed to our 3.11 interpreter

    @property
    def requirement(self) -> str:
        return f"{self.project}=={self.version}"


# torch 2.1.0: the linux x86_64 wheels alone list 11 nvidia-* and triton; the linux aarch64 wheels
# alone have the ``dynamo`` extra; macOS and Windows list neither.
CASES = (LiveCase("torch", "2.1.0", "==3.11.*"),)


@pytest.fixture(scope="module")
def index_url() -> str:
    return discover_default_index().url


@pytest.fixture(scope="module")
def live_proxy(index_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyServer]:
    config = proxy_config(tmp_path_factory.mktemp("live-cache"), {"/simple": index_url})
    with ProxyServer(config) as proxy:
        yield proxy


@pytest.fixture(scope="module", params=CASES, ids=lambda c: c.requirement)
def case(request: pytest.FixtureRequest) -> LiveCase:
    param: LiveCase = request.param
    return param


@pytest.fixture(scope="module")
def locked(
    clients: Clients, live_proxy: ProxyServer, case: LiveCase, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, Any]]:
    pyproject = project_pyproject(
        f"live-{case.project}",
        [case.requirement],
        f"{live_proxy.url}/simple",
        requires_python=case.requires_python,
    )
    project = write_project(tmp_path_factory.mktemp("live"), pyproject)
    return project, clients.lock(project)


def test_every_wheel_is_served_the_same_requirements(
    live_proxy: ProxyServer, locked: tuple[Path, dict[str, Any]], case: LiveCase
) -> None:
    _, lock = locked
    (package,) = lock_packages(lock)[canonicalize_name(case.project)]
    names = [w["url"].rsplit("/", 1)[1] for w in package["wheels"]]
    assert len(names) > 1
    served = set()
    with httpx.Client(base_url=f"{live_proxy.url}/simple/{case.project}/", timeout=60) as http:
        for name in names:
            response = http.get(f"{name}.metadata")
            assert response.status_code == 200, name
            parsed = Metadata.from_email(response.content, validate=False)
            served.add(frozenset(parsed.requires_dist or ()))
    assert len(served) == 1


@pytest.mark.parametrize("platform", list(PLATFORMS))
def test_proxied_lock_selects_what_a_single_platform_resolution_selects(
    clients: Clients, index_url: str, locked: tuple[Path, dict[str, Any]], case: LiveCase, platform: str
) -> None:
    project, _ = locked
    want = clients.compile([case.requirement], PLATFORMS[platform], index_url)
    got = selected_by_export(clients.export(project), PLATFORMS[platform])
    assert got == want, f"lock only: {sorted(got - want)}; compile only: {sorted(want - got)}"


def test_lock_sources_are_the_proxy(live_proxy: ProxyServer, locked: tuple[Path, dict[str, Any]]) -> None:
    project, _ = locked
    lock = tomllib.loads((project / "uv.lock").read_text(encoding="utf-8"))
    registries = {p["source"].get("registry") for p in lock["package"] if "registry" in p["source"]}
    assert registries == {f"{live_proxy.url}/simple"}
