"""``wheelmeld serve`` / ``python -m proxy serve``: argument errors, the self-route refusal, and a real
start that answers ``/healthz`` and proxies a fake upstream on 127.0.0.1.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from proxy.cli import main
from proxy.commands import serve
from tests.support.upstream import UpstreamServer
from tests.unit.cli_run import REPO, clean_env, free_port, run

# -- in-process: errors that stop before anything is served ---------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["serve", "--route", "nonsense"],
        ["serve", "--route", "/simple=ftp://upstream.example/simple"],
        ["serve", "--route", "/healthz=https://upstream.example/simple"],
        ["serve", "--config", "/definitely/not/here.toml", "--route", "/simple=https://upstream.example/s"],
    ],
)
def test_bad_arguments_exit_2_with_one_line(
    argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.startswith("WHEELMELD_"):
            monkeypatch.delenv(name)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("wheelmeld serve: error: ")
    assert "\n" not in err and "Traceback" not in err


def test_unknown_option_is_an_argparse_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["serve", "--no-such-flag"])
    assert info.value.code == 2
    assert "--no-such-flag" in capsys.readouterr().err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith("wheelmeld ")


# -- subprocess: the real command ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "upstream_host"),
    [("127.0.0.1", "127.0.0.1"), ("127.0.0.1", "localhost"), ("0.0.0.0", "127.0.0.1")],
)
def test_serve_refuses_a_route_to_itself(tmp_path: Path, host: str, upstream_host: str) -> None:
    port = free_port()
    result = run(
        [
            "serve",
            "--host",
            host,
            "--port",
            str(port),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--route",
            f"/simple=http://{upstream_host}:{port}/simple",
        ],
        tmp_path,
    )
    assert result.returncode == 2, result.stderr
    assert "points at this proxy itself" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "cache").exists(), "refused before touching anything"


def test_serve_refuses_a_default_index_pointing_at_itself(tmp_path: Path) -> None:
    port = free_port()
    args = ["serve", "--port", str(port), "--cache-dir", str(tmp_path / "cache")]
    env = clean_env(tmp_path) | {"UV_DEFAULT_INDEX": f"http://127.0.0.1:{port}/simple"}
    result = subprocess.run(
        [sys.executable, "-m", "proxy", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "itself" in result.stderr


def test_serve_starts_and_answers(tmp_path: Path, small_upstream: UpstreamServer) -> None:
    port = free_port()
    cache = tmp_path / "cache"
    args = [
        "serve",
        "--port",
        str(port),
        "--cache-dir",
        str(cache),
        "--route",
        f"/simple={small_upstream.url}/simple",
    ]
    process = subprocess.Popen(
        [sys.executable, "-m", "proxy", *args],
        cwd=REPO,
        env=clean_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 15
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            while True:
                try:
                    health = client.get("/healthz")
                    break
                except httpx.TransportError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise AssertionError(f"wheelmeld did not start: {process.communicate()[1]}") from None
                    time.sleep(0.05)
            assert health.status_code == 200
            page = client.get("/simple/tiny/")
            assert page.status_code == 200
            assert "tiny-1.0-py3-none-any.whl" in page.text
            wheel = client.get("/simple/tiny/tiny-1.0-py3-none-any.whl")
            assert wheel.status_code == 200
    finally:
        process.terminate()
        try:
            _out, err = process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            _out, err = process.communicate()
    assert f"/simple/ -> {small_upstream.url}/simple/" in err
    assert str(cache) in err
    assert cache.is_dir()


# A serving process, as one worker or as each of several, with uvicorn's run recorded instead of made.
_COLLECTOR_PROBE = """
import gc, os, sys
import uvicorn
from proxy.cli import main
from proxy.commands import serve
seen = []
uvicorn.run = lambda *a, **k: seen.append(gc.get_threshold())
main(["serve", "--port", sys.argv[1], "--cache-dir", sys.argv[2], "--route", "/simple=http://127.0.0.1:9/s"])
config = serve.load_config(serve.CliOverrides(cache_dir=sys.argv[2], routes=["/simple=http://127.0.0.1:9/s"]))
os.environ[serve._RESOLVED_ENV] = str(serve._write_resolved(config))
gc.set_threshold(700, 10, 10)
serve.app_from_environment()
seen.append(gc.get_threshold())
print(seen)
"""


def test_a_serving_process_collects_cycles_rarely(tmp_path: Path) -> None:
    # Served pages are hundreds of thousands of long-lived acyclic objects: at CPython's default
    # thresholds the cyclic collector rescans them all through a cold lock (issue 17).
    done = subprocess.run(
        [sys.executable, "-c", _COLLECTOR_PROBE, str(free_port()), str(tmp_path / "cache")],
        env=clean_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    tuned = serve._COLLECTOR_THRESHOLDS
    assert tuned[0] > 700, "fewer collections than CPython's default"
    assert done.stdout.strip() == str([tuned, tuned]), "the one worker, then a worker of several"
