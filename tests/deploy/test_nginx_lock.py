"""The seed project locked by the real uv through nginx -> proxy, as it locks straight on the proxy."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy.conftest import MakeTier
from tests.e2e.e2ekit import Clients, seed_pyproject, write_project
from tests.support.fake_index import FakeIndex
from tests.support.upstream import PYTORCH_OPTIONS

pytestmark = pytest.mark.e2e


def _lock(tmp_path: Path, name: str, index_url: str) -> str:
    home = tmp_path / name / "home"
    home.mkdir(parents=True)
    clients = Clients(home=home, uv_cache=tmp_path / name / "uv-cache")
    project = write_project(tmp_path / name / "project", seed_pyproject(index_url))
    clients.lock(project)
    return (project / "uv.lock").read_text(encoding="utf-8").replace(index_url, "<index>")


def test_the_seed_locks_through_the_tier_as_through_the_proxy(
    make_tier: MakeTier, pytorch_index: FakeIndex, tmp_path: Path
) -> None:
    tier = make_tier(pytorch_index, PYTORCH_OPTIONS)
    through_tier = _lock(tmp_path, "tier", f"{tier.nginx.url}/whl/nightly/cu126")
    direct = _lock(tmp_path, "direct", f"{tier.proxy.url}/whl/nightly/cu126")
    assert "<index>" in through_tier
    assert through_tier == direct
    assert "nvidia-cudnn-cu12" in through_tier  # the meld made it through the tier
    # Another machine with a cold uv cache: the tier answers every request itself.
    before = tier.proxy.total()
    assert _lock(tmp_path, "again", f"{tier.nginx.url}/whl/nightly/cu126") == through_tier
    assert tier.proxy.total() == before
