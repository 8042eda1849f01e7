"""``wheelmeld audit`` against PyTorch-shaped and PEP 658 test upstreams on 127.0.0.1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from proxy.cache.store import CacheStore, PageKey
from proxy.cli import main
from proxy.tools.audit import platform_summary, wheel_platforms
from tests.support.upstream import UpstreamServer

_CUDA = {
    "nvidia-cuda-nvrtc-cu12", "nvidia-cuda-runtime-cu12", "nvidia-cuda-cupti-cu12", "nvidia-cudnn-cu12",
    "nvidia-cublas-cu12", "nvidia-cufft-cu12", "nvidia-curand-cu12", "nvidia-cusolver-cu12",
    "nvidia-cusparse-cu12", "nvidia-cusparselt-cu12", "nvidia-nccl-cu12", "nvidia-nvtx-cu12",
    "nvidia-nvjitlink-cu12", "pytorch-triton",
}  # fmt: skip


def _audit(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(["audit", *argv])
    return code, capsys.readouterr().out


def test_audit_torch_names_the_missing_requirements_per_platform(
    pytorch_upstream: UpstreamServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    index = f"{pytorch_upstream.url}/whl/nightly/cu126"
    code, out = _audit(capsys, "torch", "--index", index, "--cache-dir", str(tmp_path), "--json")
    assert code == 1
    doc = json.loads(out)
    assert doc["inconsistent_releases"] == 1
    (release,) = doc["releases"]
    assert release["version"] == "2.7.0.dev20250116+cu126"
    missing = {d["requirement"].split("==")[0]: d for d in release["differences"]}
    assert set(missing) == _CUDA
    for diff in missing.values():
        assert {p.split("-", 1)[1] for p in diff["missing_on"]} == {"linux_aarch64", "win_amd64"}
        assert {p.split("-", 1)[1] for p in diff["declared_on"]} == {"manylinux_2_28_x86_64"}

    code, table = _audit(capsys, "torch", "--index", index, "--cache-dir", str(tmp_path))
    assert code == 1
    assert "INCONSISTENT" in table and "missing on linux_aarch64 (cp311, cp312, cp313), win_amd64" in table
    assert "nvidia-cudnn-cu12" in table


def test_audit_fills_the_cache_the_server_reads(
    pytorch_upstream: UpstreamServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    index = f"{pytorch_upstream.url}/whl/nightly/cu126"
    config = tmp_path / "wheelmeld.toml"
    config.write_text(f'[[routes]]\nprefix = "/whl"\nupstream = "{pytorch_upstream.url}/whl"\n')
    _audit(capsys, "torch", "--index", index, "--cache-dir", str(tmp_path), "--config", str(config))
    store = CacheStore(tmp_path)
    key = PageKey("whl", ("nightly", "cu126", "torch"))
    assert store.page_path(key).is_file()
    assert len(list((store.project_dir(key) / "metadata").iterdir())) == 11
    # A second audit reads only the cache: the page is fresh and metadata is immutable.
    pytorch_upstream.log.reset()
    assert (
        _audit(capsys, "torch", "--index", index, "--cache-dir", str(tmp_path), "--config", str(config))[0]
        == 1
    )
    assert pytorch_upstream.log.records() == ()


@pytest.mark.parametrize("project", ["markupsafe", "numpy", "jinja2", "filelock"])
def test_audit_consistent_project_reports_none(
    pytorch_upstream: UpstreamServer, tmp_path: Path, capsys: pytest.CaptureFixture[str], project: str
) -> None:
    index = f"{pytorch_upstream.url}/whl/nightly/cu126"
    code, out = _audit(capsys, project, "--index", index, "--cache-dir", str(tmp_path), "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["releases"] == [] and doc["inconsistent_releases"] == 0 and doc["releases_checked"] >= 1


def test_audit_versions_filter_and_pep658_upstream(
    pypi_torch_upstream: UpstreamServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    index = f"{pypi_torch_upstream.url}/simple"
    code, out = _audit(capsys, "torch", "--index", index, "--cache-dir", str(tmp_path), "--json")
    doc = json.loads(out)
    assert doc["releases_checked"] == 1
    # Every request was a PEP 658 file or the page: no wheel bytes were read.
    assert all(r.path.endswith((".metadata", "/")) for r in pypi_torch_upstream.log.records())
    assert code == (1 if doc["inconsistent_releases"] else 0)
    code, out = _audit(
        capsys, "torch", "--index", index, "--cache-dir", str(tmp_path), "--versions", "<2", "--json"
    )
    assert code == 0 and json.loads(out)["releases_checked"] == 0


def test_bad_versions_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--index", "http://127.0.0.1:9/simple", "--cache-dir", str(tmp_path), "--versions", "not a spec"]
    assert _audit(capsys, "torch", *argv)[0] == 2


@pytest.mark.parametrize(
    ("filenames", "short", "summary"),
    [
        (["t-1-cp311-cp311-linux_aarch64.whl"], ["cp311-linux_aarch64"], "linux_aarch64 (cp311)"),
        (
            [
                "m-1-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
                "m-1-cp311-cp311-win_amd64.whl",
            ],
            ["cp312-manylinux2014_x86_64.manylinux_2_17_x86_64", "cp311-win_amd64"],
            "manylinux2014_x86_64 (cp312), manylinux_2_17_x86_64 (cp312), win_amd64 (cp311)",
        ),
        (["p-1-py3-none-any.whl"], ["py3-any"], "any (py3)"),
    ],
)
def test_platform_names(filenames: list[str], short: list[str], summary: str) -> None:
    assert wheel_platforms(filenames) == short
    assert platform_summary(filenames) == summary


def test_two_unrouted_indexes_never_share_a_cached_page(
    pytorch_upstream: UpstreamServer,
    pypi_torch_upstream: UpstreamServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    first = _audit(capsys, "torch", "--index", f"{pytorch_upstream.url}/whl/nightly/cu126",
                   "--cache-dir", str(tmp_path), "--json")  # fmt: skip
    second = _audit(capsys, "torch", "--index", f"{pypi_torch_upstream.url}/simple",
                    "--cache-dir", str(tmp_path), "--json")  # fmt: skip
    assert json.loads(first[1])["releases"][0]["version"].startswith("2.7.0")
    assert all(r["version"] == "2.1.0" for r in json.loads(second[1])["releases"])
    assert any(r.path.endswith("/simple/torch/") for r in pypi_torch_upstream.log.records())
