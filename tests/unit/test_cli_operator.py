"""An operator's first hour with the real ``wheelmeld`` command: precedence of settings, ports, cache
directories it cannot use, prefetch without uv, secrets, and the lines it prints.

Every test runs the real command in a subprocess (``tests/unit/cli_run.py``); servers listen on
127.0.0.1 and are stopped when their test ends.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import httpx
import pytest

from proxy.secret_hash import SecretHash
from tests.support.upstream import UpstreamServer
from tests.unit.cli_run import REPO, clean_env, free_port, run, serving

UP = "http://127.0.0.1:9/simple"  # a route's upstream where nothing is fetched


def _one_error_line(done: subprocess.CompletedProcess[str], command: str) -> str:
    """The single line a refused command prints, checked for the common form; returns its reason."""
    assert done.returncode == 2, (done.returncode, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    prefix = f"wheelmeld {command}: error: "
    assert lines[0].startswith(prefix), lines[0]
    return lines[0][len(prefix) :]


# -- item 4: defaults < file < WHEELMELD_* < flags ------------------------------------------------------


def test_a_flag_beats_the_environment_a_docker_style_run(tmp_path: Path) -> None:
    """The image sets WHEELMELD_PORT/HOST/CACHE_DIR/LOG_FORMAT: flags given to `serve` still win."""
    env_port, flag_port = free_port(), free_port()
    env = clean_env(
        tmp_path,
        WHEELMELD_PORT=str(env_port),
        WHEELMELD_HOST="0.0.0.0",
        WHEELMELD_CACHE_DIR=str(tmp_path / "env-cache"),
        WHEELMELD_LOG_FORMAT="json",
    )
    args = ["--port", str(flag_port), "--host", "127.0.0.1", "--cache-dir", str(tmp_path / "flag-cache")]
    with (
        serving([*args, "--route", f"/simple={UP}"], env, flag_port) as served,
        pytest.raises(httpx.TransportError),
    ):
        httpx.get(f"http://127.0.0.1:{env_port}/healthz", timeout=2, trust_env=False)
    assert (tmp_path / "flag-cache").is_dir() and not (tmp_path / "env-cache").exists()
    assert f"server.port = {flag_port} (from --port)" in served.stderr
    assert "server.host = 127.0.0.1 (from --host)" in served.stderr
    assert "server.log_format = json (from WHEELMELD_LOG_FORMAT)" in served.stderr
    assert f"cache in {tmp_path / 'flag-cache'} (from --cache-dir)" in served.stderr
    assert "/simple/ -> http://127.0.0.1:9/simple/ (from --route)" in served.stderr


def test_the_environment_beats_the_config_file(tmp_path: Path) -> None:
    file_port, env_port = free_port(), free_port()
    config = tmp_path / "wheelmeld.toml"
    config.write_text(f'[server]\nport = {file_port}\nworkers = 1\n[cache]\ndir = "{tmp_path / "c"}"\n')
    env = clean_env(tmp_path, WHEELMELD_PORT=str(env_port), WHEELMELD_ROUTES=f"/simple={UP}")
    with serving(["--config", str(config)], env, env_port) as served:
        pass
    assert f"server.port = {env_port} (from WHEELMELD_PORT)" in served.stderr
    assert f"server.workers = 1 (from {config})" in served.stderr
    assert "(from WHEELMELD_ROUTES)" in served.stderr


@pytest.mark.parametrize("where", ["serve --help", "config.example.toml", "README.md"])
def test_the_precedence_is_written_down(tmp_path: Path, where: str) -> None:
    if where.endswith("--help"):
        text = run(where.split(), tmp_path).stdout
    else:
        text = (REPO / where).read_text(encoding="utf-8")
    assert "defaults < config file < WHEELMELD_* environment < command-line flags" in " ".join(text.split())


# -- item 5: ports ------------------------------------------------------------------------------------


@pytest.mark.parametrize("port", ["99999", "65536", "-5", "0"])
def test_a_port_out_of_range_is_refused_naming_the_flag(tmp_path: Path, port: str) -> None:
    done = run(["serve", "--port", port, "--route", f"/simple={UP}"], tmp_path)
    reason = _one_error_line(done, "serve")
    assert reason == f"--port must be a port number from 1 to 65535, got {port}"


def test_a_port_out_of_range_is_refused_naming_the_variable(tmp_path: Path) -> None:
    env = clean_env(tmp_path, WHEELMELD_PORT="70000")
    reason = _one_error_line(run(["serve", "--route", f"/simple={UP}"], tmp_path, env=env), "serve")
    assert reason == "WHEELMELD_PORT must be a port number from 1 to 65535, got 70000"


def test_a_port_out_of_range_is_refused_naming_the_file(tmp_path: Path) -> None:
    config = tmp_path / "wheelmeld.toml"
    config.write_text("[server]\nport = 0\n")
    reason = _one_error_line(
        run(["serve", "--config", str(config), "--route", f"/simple={UP}"], tmp_path), "serve"
    )
    assert reason == f"server.port in {config} must be a port number from 1 to 65535, got 0"


# -- item 3: a cache directory that cannot be used ------------------------------------------------


def _cache_commands(cache: Path, tmp_path: Path) -> list[tuple[str, list[str]]]:
    archive = tmp_path / "bundle.tar"
    return [
        (
            "serve",
            ["serve", "--cache-dir", str(cache), "--route", f"/simple={UP}", "--port", str(free_port())],
        ),
        ("cache prune", ["cache", "prune", "--max-size", "1GB", "--cache-dir", str(cache)]),
        ("bundle import", ["bundle", "import", str(archive), "--cache-dir", str(cache)]),
    ]


@pytest.mark.parametrize("which", [0, 1, 2], ids=["serve", "cache-prune", "bundle-import"])
def test_a_cache_under_a_regular_file_is_one_line(tmp_path: Path, which: int) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    cache = tmp_path / "a-file" / "cache"
    command, args = _cache_commands(cache, tmp_path)[which]
    reason = _one_error_line(run(args, tmp_path), command)
    assert reason == f"cannot use cache directory {cache}: {tmp_path / 'a-file'} is a file, not a directory"


def _read_only(directory: Path) -> list[str]:
    """A command prefix that runs the rest with ``directory`` mounted read-only (a private mount)."""
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("needs unshare(1) to mount a directory read-only")
    script = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" "$0" && exec "$@"'
    probe = subprocess.run([unshare, "-rm", "sh", "-c", script, str(directory), "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot make a read-only mount here: {probe.stderr.decode().strip()}")
    return [unshare, "-rm", "sh", "-c", script, str(directory)]


@pytest.mark.parametrize("which", [1, 2], ids=["cache-prune", "bundle-import"])
def test_a_read_only_cache_is_one_line_for_commands_that_write(tmp_path: Path, which: int) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    command, args = _cache_commands(cache, tmp_path)[which]
    done = subprocess.run(
        [*_read_only(cache), sys.executable, "-m", "proxy", *args],
        cwd=REPO, env=clean_env(tmp_path), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    reason = _one_error_line(done, command)
    assert reason.startswith(f"cannot use cache directory {cache}: it is not writable"), reason


def test_serve_starts_on_a_read_only_cache_with_a_warning(tmp_path: Path) -> None:
    cache, port = tmp_path / "cache", free_port()
    cache.mkdir()
    args = ["--cache-dir", str(cache), "--route", f"/simple={UP}", "--port", str(port)]
    with serving(args, clean_env(tmp_path), port, wrapper=_read_only(cache)) as served:
        pass
    assert f"wheelmeld serve: warning: cache directory {cache} is read-only: serving what it holds" in (
        served.stderr
    )


# -- item 6: prefetch without uv ------------------------------------------------------------------


def test_prefetch_requirements_without_uv_says_how_to_get_it(tmp_path: Path) -> None:
    # A plain install: no uv package beside wheelmeld (its import fails) and none on PATH.
    program = "import sys; sys.modules['uv'] = None; from proxy.cli import main; sys.exit(main(sys.argv[1:]))"
    args = ["prefetch", "tiny", "--platform", "linux_x86_64", "--route", f"/simple={UP}"]
    env = clean_env(tmp_path, PATH=str(tmp_path / "empty-bin"))
    done = subprocess.run(
        [sys.executable, "-c", program, *args, "--cache-dir", str(tmp_path / "cache")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    reason = _one_error_line(done, "prefetch")
    assert "pip install 'wheelmeld[prefetch]'" in reason and "--uv PATH" in reason
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(re.match(r"uv\b", dep) for dep in extras["prefetch"])


# -- item 9: secrets ---------------------------------------------------------------------------------


def test_auth_hash_reads_the_secret_from_stdin(tmp_path: Path) -> None:
    done = run(["auth", "hash"], tmp_path, stdin="from stdin\n")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    printed = done.stdout.strip()
    assert "from stdin" not in printed and SecretHash.parse(printed).matches("from stdin")


def test_auth_token_prints_a_token_and_its_hash(tmp_path: Path) -> None:
    done = run(["auth", "token"], tmp_path)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    fields = dict(line.split(":", 1) for line in done.stdout.splitlines())
    token, secret = fields["token"].strip(), fields["secret"].strip()
    assert len(token) >= 32 and SecretHash.parse(secret).matches(token)


def test_auth_hash_refuses_an_empty_secret(tmp_path: Path) -> None:
    assert _one_error_line(run(["auth", "hash"], tmp_path, stdin="\n"), "auth hash") == (
        "refusing to hash an empty secret"
    )


@pytest.mark.parametrize("where", ["README.md", "config.example.toml"])
def test_the_docs_name_the_subcommands(where: str) -> None:
    text = (REPO / where).read_text(encoding="utf-8")
    assert "wheelmeld auth hash" in text and "wheelmeld auth token" in text
    assert "python -m proxy.server.auth" not in text


# -- item 11: what the command says -------------------------------------------------------------------


def test_serve_offline_says_so_and_names_no_upstream(tmp_path: Path) -> None:
    port = free_port()
    args = ["--offline", "--port", str(port), "--cache-dir", str(tmp_path / "c"), "--route", f"/simple={UP}"]
    with serving(args, clean_env(tmp_path), port) as served:
        pass
    assert "offline (from --offline): serving /simple/ from the cache only" in served.stderr
    assert UP not in served.stderr


@pytest.mark.parametrize(
    ("toml", "reason"),
    [
        ("[server]\nprot = 1\n", "{path}: unknown key 'server.prot'; did you mean 'server.port'?"),
        ("[srever]\n", "{path}: unknown section 'srever'; did you mean 'server'?"),
        ('[server]\nport = "eighty"\n',
         "server.port in {path} must be a port number from 1 to 65535, got 'eighty'"),
        ('[server]\nworkers = "two"\n', "server.workers in {path} must be a whole number, got 'two'"),
        ('[[routes]]\nprefix = "/-"\nupstream = "https://upstream.example/simple"\n',
         "{path} routes[0]: route prefix '/-' is reserved for wheelmeld's own pages "
         "(/-/status, /-/release/…)"),
        ('[[routes]]\nprefix = "/s"\nupstrem = "https://upstream.example/simple"\n',
         "{path} routes[0]: unknown route key 'upstrem'; did you mean 'upstream'?"),
    ],
)  # fmt: skip
def test_a_config_file_mistake_names_the_file_and_the_fix(tmp_path: Path, toml: str, reason: str) -> None:
    config = tmp_path / "wheelmeld.toml"
    config.write_text(toml)
    assert _one_error_line(run(["serve", "--config", str(config)], tmp_path), "serve") == reason.format(
        path=config
    )


def test_every_command_reports_a_config_error_in_one_form(tmp_path: Path) -> None:
    config = tmp_path / "wheelmeld.toml"
    config.write_text("[server]\nprot = 1\n")
    for command in ("serve", "cache stats", "audit tiny", "prefetch --lock uv.lock", "bundle export x.tar"):
        words = command.split()
        done = run([*words, "--config", str(config)], tmp_path)
        name = " ".join(
            w for w in words if w in ("serve", "cache", "stats", "audit", "prefetch", "bundle", "export")
        )
        assert _one_error_line(done, name).endswith("did you mean 'server.port'?")


def test_audit_of_an_unrouted_index_leaves_a_named_cache_route(
    tmp_path: Path, small_upstream: UpstreamServer
) -> None:
    cache = tmp_path / "cache"
    done = run(
        ["audit", "tiny", "--index", f"{small_upstream.url}/simple", "--cache-dir", str(cache)], tmp_path
    )
    assert done.returncode == 0, done.stderr
    stats = run(["cache", "stats", "--cache-dir", str(cache)], tmp_path)
    host = small_upstream.url.split("://", 1)[1].replace(":", "_")
    assert re.search(rf"^audit-{re.escape(host)}-simple-[0-9a-f]{{6}}\s", stats.stdout, re.M), stats.stdout
    assert "wheelmeld audit --index" in stats.stdout


def test_cache_stats_columns_line_up(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    page = cache / "v1" / "a-route-name-longer-than-sixteen" / "tiny" / "page.json"
    page.parent.mkdir(parents=True)
    page.write_text("{}")
    lines = run(["cache", "stats", "--cache-dir", str(cache)], tmp_path).stdout.splitlines()
    header = next(ln for ln in lines if ln.startswith("route"))
    row = next(ln for ln in lines if ln.startswith("a-route-name"))
    assert len(header) == len(row)
    # Each kind's name ends where its column of sizes ends.
    for kind in ("page", "file", "hash", "metadata", "meld", "other"):
        end = header.index(kind) + len(kind)
        assert row[end - 1] != " " and (end == len(row) or row[end] == " "), (kind, header, row)
