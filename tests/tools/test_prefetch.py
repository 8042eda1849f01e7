"""``wheelmeld prefetch`` from requirements (resolved by the real uv through the proxy) and its errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.cli import main
from tests.support.upstream import UpstreamServer


def _wheel_gets(upstream: UpstreamServer) -> set[str]:
    return {
        r.path.rsplit("/", 1)[-1]
        for r in upstream.log.records()
        if r.method == "GET" and r.path.endswith(".whl") and r.range is None
    }


@pytest.mark.e2e
def test_requirements_resolved_per_platform_fetch_what_each_installs(
    pytorch_upstream: UpstreamServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["prefetch", "jinja2", "torchao", "--platform", "linux_x86_64,win_amd64", "--python", "3.12"]
    argv += ["--cache-dir", str(tmp_path), "--route", f"/whl={pytorch_upstream.url}/whl"]
    argv += ["--index", "/whl/nightly/cu126"]
    assert main(argv) == 0
    assert "prefetch:" in capsys.readouterr().err
    # The seed lists jinja2's one wheel under two spellings of the name: either one will do.
    assert {n.lower() for n in _wheel_gets(pytorch_upstream)} == {
        "jinja2-3.1.4-py3-none-any.whl",
        "markupsafe-2.1.5-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        "markupsafe-2.1.5-cp312-cp312-win_amd64.whl",
        # torchao: the x86_64 build is what Linux picks; Windows has only the pure wheel.
        "torchao-0.8.0.dev20250116+cu126-cp39-abi3-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl",
        "torchao-0.8.0.dev20250116-py3-none-any.whl",
    }
    assert len(_wheel_gets(pytorch_upstream)) == 5
    pytorch_upstream.log.reset()
    assert main(argv) == 0
    assert _wheel_gets(pytorch_upstream) == set()


def test_unroutable_lock_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lock = tmp_path / "uv.lock"
    lock.write_text(
        'version = 1\n[[package]]\nname = "x"\nversion = "1"\n'
        'source = { registry = "https://elsewhere.example/simple" }\n'
        'wheels = [{ url = "https://elsewhere.example/x/x-1-py3-none-any.whl" }]\n'
    )
    argv = ["prefetch", "--lock", str(lock), "--cache-dir", str(tmp_path / "c")]
    assert main([*argv, "--route", "/whl=http://127.0.0.1:9/whl"]) == 2
    assert "served by no route" in capsys.readouterr().err


def test_requirements_need_a_platform(tmp_path: Path) -> None:
    argv = [
        "prefetch",
        "jinja2",
        "--cache-dir",
        str(tmp_path),
        "--route",
        "/simple=http://127.0.0.1:9/simple",
    ]
    assert main(argv) == 2
