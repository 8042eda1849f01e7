"""``proxy.config.load_config``: defaults < TOML < ``WHEELMELD_*`` < CLI, routes, bad values, secrets.

Pure: every test passes its own ``environ`` and writes its TOML under ``tmp_path``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from proxy.config import KEYS, PYTORCH_INDEX_URL, CliOverrides, Config, load_config
from proxy.errors import ConfigError

UP = "https://upstream.example/simple"
ROUTE = f"/simple={UP}"


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "wheelmeld.toml"
    path.write_text(text, encoding="utf-8")
    return path


# -- defaults --------------------------------------------------------------------------------------


def test_defaults_with_a_route() -> None:
    config = load_config(CliOverrides(routes=[ROUTE]), environ={})
    assert (config.host, config.port, config.workers) == ("127.0.0.1", 8000, 1)
    assert config.offline is False
    assert config.log_format == "text"
    assert config.cache_max_size == 0
    assert [(r.prefix, r.upstream) for r in config.routes] == [("/simple", UP)]
    route = config.routes[0]
    assert route.meld is True and route.page_ttl > 0 and route.credentials is None


def test_default_routes_follow_the_users_tooling() -> None:
    config = load_config(CliOverrides(), environ={"UV_DEFAULT_INDEX": "https://mirror.example/simple/"})
    routes = {r.prefix: r.upstream for r in config.routes}
    assert routes == {"/simple": "https://mirror.example/simple", "/whl": PYTORCH_INDEX_URL}
    assert any("UV_DEFAULT_INDEX" in note for note in config.notes)


def test_default_cache_dir_is_the_user_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert Config().cache_dir == tmp_path / "xdg" / "wheelmeld"


# -- precedence ------------------------------------------------------------------------------------

# (field, TOML line in its section, env variable and value, CLI override, expected per layer)
_LAYERS: list[tuple[str, str, tuple[str, str], dict[str, Any], tuple[Any, Any, Any]]] = [
    ("port", "[server]\nport = 9001", ("WHEELMELD_PORT", "9002"), {"port": 9003}, (9001, 9002, 9003)),
    ("host", '[server]\nhost = "127.0.0.2"', ("WHEELMELD_HOST", "127.0.0.3"), {"host": "127.0.0.4"},
     ("127.0.0.2", "127.0.0.3", "127.0.0.4")),
    ("workers", "[server]\nworkers = 2", ("WHEELMELD_WORKERS", "3"), {"workers": 4}, (2, 3, 4)),
    ("offline", "[server]\noffline = true", ("WHEELMELD_OFFLINE", "0"), {"offline": True},
     (True, False, True)),
    ("log_format", '[server]\nlog_format = "json"', ("WHEELMELD_LOG_FORMAT", "text"), {"log_format": "json"},
     ("json", "text", "json")),
    ("cache_dir", '[cache]\ndir = "/c/toml"', ("WHEELMELD_CACHE_DIR", "/c/env"),
     {"cache_dir": Path("/c/cli")},
     (Path("/c/toml"), Path("/c/env"), Path("/c/cli"))),
    ("redis_url", '[coordination]\nredis_url = "redis://r1:6379"', ("WHEELMELD_REDIS_URL", "rediss://r2"),
     {"redis_url": "unix:///run/valkey.sock"}, ("redis://r1:6379", "rediss://r2", "unix:///run/valkey.sock")),
    ("cache_backend", '[cache]\nbackend = "s3"\n[cache.s3]\nbucket = "b"',
     ("WHEELMELD_CACHE_BACKEND", "local"), {"cache_backend": "s3"}, ("s3", "local", "s3")),
    ("s3_endpoint_url", '[cache.s3]\nendpoint_url = "http://127.0.0.1:9000"',
     ("WHEELMELD_S3_ENDPOINT_URL", "https://s3.example/"), {"s3_endpoint_url": "http://127.0.0.1:9002"},
     ("http://127.0.0.1:9000", "https://s3.example", "http://127.0.0.1:9002")),
    ("s3_bucket", '[cache.s3]\nbucket = "toml"', ("WHEELMELD_S3_BUCKET", "env"), {"s3_bucket": "cli"},
     ("toml", "env", "cli")),
    ("s3_prefix", '[cache.s3]\nprefix = "toml"', ("WHEELMELD_S3_PREFIX", "env"), {"s3_prefix": "cli"},
     ("toml", "env", "cli")),
    ("s3_region", '[cache.s3]\nregion = "eu-1"', ("WHEELMELD_S3_REGION", "eu-2"), {"s3_region": "eu-3"},
     ("eu-1", "eu-2", "eu-3")),
]  # fmt: skip


@pytest.mark.parametrize(("field", "toml", "env", "cli", "expected"), _LAYERS, ids=[x[0] for x in _LAYERS])
def test_precedence(
    tmp_path: Path,
    field: str,
    toml: str,
    env: tuple[str, str],
    cli: dict[str, Any],
    expected: tuple[Any, Any, Any],
) -> None:
    path = _toml(tmp_path, toml)
    key = next(k for k in KEYS if k.field == field)
    default = load_config(CliOverrides(routes=[ROUTE]), environ={})
    from_file = load_config(CliOverrides(config_file=path, routes=[ROUTE]), environ={})
    from_env = load_config(CliOverrides(config_file=path, routes=[ROUTE]), environ=dict([env]))
    from_cli = load_config(CliOverrides(config_file=path, routes=[ROUTE], **cli), environ=dict([env]))
    assert getattr(from_file, field) == expected[0] != getattr(default, field)
    assert getattr(from_env, field) == expected[1]
    assert getattr(from_cli, field) == expected[2]
    assert default.origin(key.toml) is None
    assert (from_file.origin(key.toml), from_env.origin(key.toml), from_cli.origin(key.toml)) == (
        str(path),
        env[0],
        key.flag,
    )


def test_every_key_has_a_variable_and_a_line_in_the_example() -> None:
    example = (Path(__file__).resolve().parents[2] / "config.example.toml").read_text(encoding="utf-8")
    for key in KEYS:
        assert key.env.startswith("WHEELMELD_"), key
        section, _, name = key.toml.rpartition(".")
        assert f"[{section}]" in example and f"{name} = " in example and key.env in example, key


@pytest.mark.parametrize(
    ("environ", "refused"),
    [
        ({"WHEELMELD_CACHE_BACKEND": "s3"}, "needs cache.s3.bucket"),
        ({"WHEELMELD_CACHE_BACKEND": "disk"}, "must be one of 'local', 's3'"),
        ({"WHEELMELD_S3_ENDPOINT_URL": "ftp://127.0.0.1"}, "must be an http(s) URL"),
        ({"WHEELMELD_S3_ENDPOINT_URL": "http://key:hunter2@127.0.0.1"}, "must not hold credentials"),
    ],
)
def test_s3_settings_are_checked(environ: dict[str, str], refused: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(refused)) as caught:
        load_config(CliOverrides(routes=[ROUTE]), environ=environ)
    assert "hunter2" not in str(caught.value)


def test_config_file_from_environment(tmp_path: Path) -> None:
    path = _toml(tmp_path, "[server]\nport = 9100\n")
    config = load_config(CliOverrides(routes=[ROUTE]), environ={"WHEELMELD_CONFIG": str(path)})
    assert config.port == 9100


def test_route_precedence_keeps_file_settings(tmp_path: Path) -> None:
    path = _toml(
        tmp_path,
        '[[routes]]\nprefix = "/simple"\nupstream = "https://a.example/simple"\n'
        "page_ttl = 42\nmeld = false\n",
    )
    from_file = load_config(CliOverrides(config_file=path), environ={})
    assert [(r.upstream, r.page_ttl, r.meld) for r in from_file.routes] == [
        ("https://a.example/simple", 42, False)
    ]
    env = {"WHEELMELD_ROUTES": "/simple=https://b.example/simple,/extra=https://c.example/x"}
    from_env = load_config(CliOverrides(config_file=path), environ=env)
    assert [(r.prefix, r.upstream, r.page_ttl, r.meld) for r in from_env.routes] == [
        ("/simple", "https://b.example/simple", 42, False),
        ("/extra", "https://c.example/x", 600.0, True),
    ]
    cli = CliOverrides(config_file=path, routes=["/simple=https://d.example/simple"])
    from_cli = load_config(cli, environ=env)
    assert [(r.prefix, r.upstream) for r in from_cli.routes] == [
        ("/simple", "https://d.example/simple"),
        ("/extra", "https://c.example/x"),
    ]
    assert from_cli.routes[0].page_ttl == 42
    assert [from_cli.origin(p) for p in ("/simple", "/extra")] == ["--route", "WHEELMELD_ROUTES"]


def test_full_toml(tmp_path: Path) -> None:
    path = _toml(
        tmp_path,
        """
[server]
host = "0.0.0.0"
port = 8123
workers = 2
log_format = "json"

[cache]
dir = "~/wm-cache"
max_size = "20GB"

[upstream]
timeout = 12.5
concurrency = 8

[[routes]]
prefix = "/whl"
upstream = "https://files.example/whl/"
extra_file_hosts = ["https://cdn.example"]
allow_public_hosts = false
keep_pruned = true
""",
    )
    config = load_config(CliOverrides(config_file=path), environ={})
    assert (config.host, config.port, config.workers, config.log_format) == ("0.0.0.0", 8123, 2, "json")
    assert config.cache_dir == Path("~/wm-cache").expanduser()
    assert config.cache_max_size == 20 * 1000**3
    assert (config.upstream_timeout, config.upstream_concurrency) == (12.5, 8)
    (route,) = config.routes
    assert route.upstream == "https://files.example/whl"
    assert route.extra_file_hosts == ("https://cdn.example",)
    assert route.allow_public_hosts is False and route.keep_pruned is True


# -- --route parsing -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "prefix", "upstream"),
    [
        ("/simple=https://upstream.example/simple/", "/simple", "https://upstream.example/simple"),
        ("simple=https://upstream.example/simple", "/simple", "https://upstream.example/simple"),
        ("/simple/=https://upstream.example/simple", "/simple", "https://upstream.example/simple"),
        (
            "/whl/nightly=http://127.0.0.1:9000/whl/nightly",
            "/whl/nightly",
            "http://127.0.0.1:9000/whl/nightly",
        ),
        ("/a=https://upstream.example/x=y", "/a", "https://upstream.example/x=y"),
        ("/pt=https://upstream.example", "/pt", "https://upstream.example"),
    ],
)
def test_route_parsing(spec: str, prefix: str, upstream: str) -> None:
    (route,) = load_config(CliOverrides(routes=[spec]), environ={}).routes
    assert (route.prefix, route.upstream) == (prefix, upstream)


def test_route_userinfo_becomes_credentials() -> None:
    spec = "/simple=https://alice:p%40ss-w0rd@upstream.example/simple"
    (route,) = load_config(CliOverrides(routes=[spec]), environ={}).routes
    assert route.upstream == "https://upstream.example/simple"
    assert route.credentials == ("alice", "p@ss-w0rd")


@pytest.mark.parametrize(
    "spec",
    [
        "/simple",
        "/simple https://upstream.example/simple",
        "=https://upstream.example/simple",
        "/simple=",
        "/simple=upstream.example/simple",
        "/simple=ftp://upstream.example/simple",
        "/simple=https:///simple",
        "/simple=https://upstream.example/simple?token=1",
        "/simple=https://upstream.example/simple#frag",
        "/simple=https://[::1/simple",
        "/simple=https://upstream.example:99999/simple",
        "/simple=https://upstream\\.example/simple",
        "/sim ple=https://upstream.example/simple",
        "/../etc=https://upstream.example/simple",
        "/healthz=https://upstream.example/simple",
        "/metrics=https://upstream.example/simple",
    ],
)
def test_bad_route_specs(spec: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(CliOverrides(routes=[spec]), environ={})
    assert "\n" not in str(info.value) and str(info.value)


def test_two_routes_with_one_prefix_replace_each_other_on_the_command_line() -> None:
    config = load_config(
        CliOverrides(routes=["/simple=https://a.example/simple", "/simple=https://b.example/simple"]),
        environ={},
    )
    assert [r.upstream for r in config.routes] == ["https://b.example/simple"]


# -- bad values ------------------------------------------------------------------------------------


def _route(extra: str = "", prefix: str = "/simple") -> str:
    return f'[[routes]]\nprefix = "{prefix}"\nupstream = "{UP}"\n{extra}'


_BAD_TOML = {
    "syntax": "[server\nport = 1",
    "unknown-section": "[srever]\nport = 1",
    "unknown-server-key": "[server]\nprot = 1",
    "unknown-cache-key": "[cache]\ndirectory = '/x'",
    "unknown-upstream-key": "[upstream]\ntimout = 3",
    "port-text": '[server]\nport = "eighty"',
    "port-negative": "[server]\nport = -1",
    "workers-zero": "[server]\nworkers = 0",
    "log-format": '[server]\nlog_format = "xml"',
    "max-size": '[cache]\nmax_size = "12 parsecs"',
    "max-size-negative": "[cache]\nmax_size = -5",
    "concurrency-zero": "[upstream]\nconcurrency = 0",
    "routes-not-array": '[routes]\nprefix = "/simple"',
    "route-no-upstream": '[[routes]]\nprefix = "/simple"',
    "route-unknown-key": _route("page_tll = 3"),
    "route-ttl-negative": _route("page_ttl = -1"),
    "route-bad-prefix": _route(prefix="/a b"),
    "route-bad-upstream": '[[routes]]\nprefix = "/simple"\nupstream = "file:///etc"',
    "route-bad-file-host": _route('extra_file_hosts = ["ht tp://x"]'),
    "route-secret-unset": _route('credentials_env = "NOPE_UNSET"'),
}

# Bad values the loader once let through (each was a bug in proxy/config.py).
_BAD_TOML.update(
    {
        "timeout-text": '[upstream]\ntimeout = "soon"',
        "timeout-negative": "[upstream]\ntimeout = -1",
        "offline-text": '[server]\noffline = "false"',
        "port-too-big": "[server]\nport = 70000",
        "route-ttl-text": _route('page_ttl = "ten"'),
        "route-ttl-bool": _route("page_ttl = true"),
        "route-file-hosts-string": _route('extra_file_hosts = "cdn"'),
        "route-file-hosts-number": _route("extra_file_hosts = [1]"),
        # _merge_routes keys routes by prefix, so a file's duplicate was silently dropped.
        "two-routes-one-prefix": _route(prefix="/s") + _route(prefix="/s/"),
        # Route booleans were not type-checked: meld = "off" stayed truthy, melding stayed on.
        "route-meld-text": _route('meld = "off"'),
        "route-keep-pruned-number": _route("keep_pruned = 1"),
        "route-public-hosts-text": _route('allow_public_hosts = "no"'),
        "route-run-ahead-text": _route('run_ahead = "off"'),
        "route-not-table": "routes = [1]",
    }
)


def _bad_toml_cases() -> list[Any]:
    return [pytest.param(text, id=name) for name, text in _BAD_TOML.items()]


@pytest.mark.parametrize("text", _bad_toml_cases())
def test_bad_toml_values_are_one_line_config_errors(tmp_path: Path, text: str) -> None:
    path = _toml(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(CliOverrides(config_file=path, routes=[ROUTE]), environ={})
    assert str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "environ",
    [
        {"WHEELMELD_PORT": "http"},
        {"WHEELMELD_WORKERS": "0"},
        {"WHEELMELD_OFFLINE": "maybe"},
        {"WHEELMELD_CACHE_MAX_SIZE": "lots"},
        {"WHEELMELD_LOG_FORMAT": "yaml"},
        {"WHEELMELD_ROUTES": "/simple"},
        {"WHEELMELD_ROUTES": "/simple=gopher://upstream.example/"},
        {"WHEELMELD_CONFIG": "/definitely/not/here.toml"},
    ],
)
def test_bad_environment_values_are_one_line_config_errors(environ: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(CliOverrides(routes=[ROUTE]), environ=environ)
    assert str(info.value) and "\n" not in str(info.value)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(CliOverrides(config_file=tmp_path / "absent.toml", routes=[ROUTE]), environ={})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("500", 500),
        ("500MB", 500 * 1000**2),
        ("20GiB", 20 * 1024**3),
        ("1.5K", 1500),
        ("2 tb", 2 * 1000**4),
    ],
)
def test_cache_max_size_units(tmp_path: Path, text: str, expected: int) -> None:
    path = _toml(tmp_path, f'[cache]\nmax_size = "{text}"')
    assert load_config(CliOverrides(config_file=path, routes=[ROUTE]), environ={}).cache_max_size == expected


# -- secrets ---------------------------------------------------------------------------------------


def test_credentials_from_env_never_in_repr(tmp_path: Path) -> None:
    secret = "s3cr3t-t0ken-value"
    path = _toml(
        tmp_path, f'[[routes]]\nprefix = "/simple"\nupstream = "{UP}"\ncredentials_env = "MY_INDEX_AUTH"\n'
    )
    config = load_config(CliOverrides(config_file=path), environ={"MY_INDEX_AUTH": f"alice:{secret}"})
    (route,) = config.routes
    assert route.credentials == ("alice", secret)
    assert route.credentials_env == "MY_INDEX_AUTH"
    for text in (repr(config), str(config), repr(route), str(config.routes)):
        assert secret not in text


def test_inline_credentials_never_in_repr() -> None:
    config = load_config(
        CliOverrides(routes=["/simple=https://bob:hunter2-pw@upstream.example/simple"]), environ={}
    )
    assert config.routes[0].credentials == ("bob", "hunter2-pw")
    assert "hunter2-pw" not in repr(config)
    assert "hunter2-pw" not in config.routes[0].upstream


@pytest.mark.parametrize(
    ("extra", "field", "expected"),
    [
        ("meld = false", "meld", False),
        ("keep_pruned = true", "keep_pruned", True),
        ("run_ahead = false", "run_ahead", False),
        ("allow_public_hosts = false", "allow_public_hosts", False),
        ("page_ttl = 5", "page_ttl", 5.0),
        ("page_ttl = 0.5", "page_ttl", 0.5),
        ('extra_file_hosts = ["https://files.example"]', "extra_file_hosts", ("https://files.example",)),
    ],
)
def test_typed_route_values_are_taken_as_written(
    tmp_path: Path, extra: str, field: str, expected: Any
) -> None:
    config = load_config(CliOverrides(config_file=_toml(tmp_path, _route(extra))), environ={})
    assert getattr(config.routes[0], field) == expected


# -- [meld] ------------------------------------------------------------------------------------------


def test_meld_limits_from_the_file_and_the_environment(tmp_path: Path) -> None:
    default = load_config(CliOverrides(routes=[ROUTE]), environ={})
    assert (default.meld_max_requirements, default.meld_max_metadata_size) == (5000, 16 * 1024**2)
    assert default.meld_incomplete_retry == 60.0
    path = _toml(tmp_path, '[meld]\nmax_requirements = 50\nmax_metadata_size = "1MiB"\nincomplete_retry = 0')
    from_file = load_config(CliOverrides(config_file=path, routes=[ROUTE]), environ={})
    assert (from_file.meld_max_requirements, from_file.meld_max_metadata_size) == (50, 1024**2)
    assert from_file.meld_incomplete_retry == 0.0
    environ = {
        "WHEELMELD_MELD_MAX_REQUIREMENTS": "7",
        "WHEELMELD_MELD_MAX_METADATA_SIZE": "2MB",
        "WHEELMELD_MELD_INCOMPLETE_RETRY": "5",
    }
    from_env = load_config(CliOverrides(config_file=path, routes=[ROUTE]), environ=environ)
    assert (from_env.meld_max_requirements, from_env.meld_max_metadata_size) == (7, 2 * 1000**2)
    assert from_env.meld_incomplete_retry == 5.0


@pytest.mark.parametrize(
    ("toml", "environ"),
    [
        ("[meld]\nmax_requirements = 0", {}),
        ("[meld]\nmax_metadata_size = 0", {}),
        ("[meld]\nincomplete_retry = -1", {}),
        ("[meld]\nmax_lines = 3", {}),
        ("", {"WHEELMELD_MELD_MAX_REQUIREMENTS": "many"}),
        ("", {"WHEELMELD_MELD_INCOMPLETE_RETRY": "soon"}),
    ],
)
def test_bad_meld_limits_are_one_line_config_errors(
    tmp_path: Path, toml: str, environ: dict[str, str]
) -> None:
    path = _toml(tmp_path, toml)
    with pytest.raises(ConfigError) as info:
        load_config(CliOverrides(config_file=path, routes=[ROUTE]), environ=environ)
    assert str(info.value) and "\n" not in str(info.value)


def test_upstream_limits_from_the_file_and_the_environment(tmp_path: Path) -> None:
    path = _toml(
        tmp_path,
        """
[upstream]
max_page_bytes = "8MiB"
file_idle_timeout = 12
file_min_rate = "1KiB"
""",
    )
    config = load_config(CliOverrides(config_file=path), environ={})
    assert (config.upstream_max_page_bytes, config.upstream_file_idle_timeout) == (8 * 1024**2, 12.0)
    assert config.upstream_file_min_rate == 1024
    env = {"WHEELMELD_UPSTREAM_MAX_PAGE_BYTES": "1MB", "WHEELMELD_UPSTREAM_FILE_IDLE_TIMEOUT": "0.5"}
    overridden = load_config(CliOverrides(config_file=path), environ=env)
    assert (overridden.upstream_max_page_bytes, overridden.upstream_file_idle_timeout) == (10**6, 0.5)
    with pytest.raises(ConfigError, match="WHEELMELD_UPSTREAM_MAX_PAGE_BYTES"):
        load_config(CliOverrides(config_file=path), environ={"WHEELMELD_UPSTREAM_MAX_PAGE_BYTES": "0"})


# -- [coordination] ----------------------------------------------------------------------------------


def test_coordination_from_the_file_and_the_environment(tmp_path: Path) -> None:
    default = load_config(CliOverrides(routes=[ROUTE]), environ={})
    assert (default.redis_url, default.lease_ttl) == (None, 30.0)
    path = _toml(tmp_path, '[coordination]\nredis_url = "redis://valkey:6379/0"\nlease_ttl = 10')
    from_file = load_config(CliOverrides(config_file=path, routes=[ROUTE]), environ={})
    assert (from_file.redis_url, from_file.lease_ttl) == ("redis://valkey:6379/0", 10.0)
    environ = {"WHEELMELD_REDIS_URL": "", "WHEELMELD_LEASE_TTL": "2.5"}
    from_env = load_config(CliOverrides(config_file=path, routes=[ROUTE]), environ=environ)
    assert (from_env.redis_url, from_env.lease_ttl) == (None, 2.5), "an empty variable turns leases off"


@pytest.mark.parametrize("value", ["0.5", "0", "-1", "soon"])
def test_a_lease_ttl_under_a_second_is_refused(value: str) -> None:
    with pytest.raises(ConfigError, match="WHEELMELD_LEASE_TTL"):
        load_config(CliOverrides(routes=[ROUTE]), environ={"WHEELMELD_LEASE_TTL": value})


SECRET = "s3cr3t-never-shown"


@pytest.mark.parametrize(
    "url",
    [
        f"http://:{SECRET}@valkey:6379",
        f"redis://:{SECRET}@valkey:port",
        f"redis://:{SECRET}@",
        f"valkey://user:{SECRET}@valkey",
        f"rediss://user:{SECRET}@[::1",
    ],
)
def test_a_bad_redis_url_is_refused_without_its_password(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(CliOverrides(routes=[ROUTE]), environ={"WHEELMELD_REDIS_URL": url})
    message = str(info.value)
    assert "WHEELMELD_REDIS_URL" in message and "\n" not in message
    assert SECRET not in message


def test_the_redis_url_is_in_no_repr() -> None:
    config = load_config(CliOverrides(routes=[ROUTE], redis_url=f"redis://:{SECRET}@valkey"), environ={})
    assert SECRET not in repr(config)
    assert SECRET not in repr(CliOverrides(redis_url=f"redis://:{SECRET}@valkey"))
