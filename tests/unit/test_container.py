"""The container files, checked without Docker (none on these machines; the image is built elsewhere).

* ``Dockerfile``: its instructions say non-root, a cache volume, a health check, ``wheelmeld serve``;
  and its entrypoint, run here as a subprocess with the environment the Dockerfile sets, starts and
  answers ``/healthz``, which the Dockerfile's own ``HEALTHCHECK`` command then reports healthy.
* ``docker-compose.yml``: valid against the compose specification's JSON schema (the copy vendored
  in check-jsonschema), and consistent with the Dockerfile; the configuration it mounts loads.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from tests.support.child_server import stop_child

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"
BIN = Path(sys.executable).parent


@dataclass(frozen=True, slots=True)
class Instruction:
    keyword: str
    arguments: str

    def exec_form(self) -> list[str]:
        """The JSON array of an exec-form instruction (``CMD ["a", "b"]``)."""
        value = json.loads(self.arguments)
        assert isinstance(value, list) and all(isinstance(v, str) for v in value), self
        return value


def _instructions(text: str) -> list[Instruction]:
    """The Dockerfile's instructions, continuation lines joined and comments dropped."""
    found: list[Instruction] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1].rstrip() + " "
            continue
        keyword, _, arguments = (pending + line).strip().partition(" ")
        found.append(Instruction(keyword.upper(), arguments.strip()))
        pending = ""
    return found


def _final_stage(instructions: list[Instruction]) -> list[Instruction]:
    starts = [i for i, ins in enumerate(instructions) if ins.keyword == "FROM"]
    assert starts, "no FROM"
    return instructions[starts[-1] :]


def _one(stage: list[Instruction], keyword: str) -> Instruction:
    matches = [ins for ins in stage if ins.keyword == keyword]
    assert len(matches) == 1, (keyword, matches)
    return matches[0]


def _env(stage: list[Instruction]) -> dict[str, str]:
    env: dict[str, str] = {}
    for ins in stage:
        if ins.keyword == "ENV":
            for pair in shlex.split(ins.arguments):
                key, sep, value = pair.partition("=")
                assert sep, f"use ENV KEY=VALUE, got {pair!r}"
                env[key] = value
    return env


@pytest.fixture(scope="module")
def stage() -> list[Instruction]:
    return _final_stage(_instructions(DOCKERFILE.read_text(encoding="utf-8")))


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = YAML(typ="safe").load(COMPOSE.read_text(encoding="utf-8"))
    return data


# -- the Dockerfile's instructions ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            'FROM a\nRUN x \\\n    && y\n# c\nCMD ["s"]\n',
            [("FROM", "a"), ("RUN", "x && y"), ("CMD", '["s"]')],
        ),
        ("ENV A=1 \\\n    B=2\n", [("ENV", "A=1 B=2")]),
        ("\n\n# only comments\n", []),
    ],
)
def test_instruction_reader(text: str, expected: list[tuple[str, str]]) -> None:
    assert [(i.keyword, i.arguments) for i in _instructions(text)] == expected


def test_the_image_is_small_and_runs_as_a_non_root_user(stage: list[Instruction]) -> None:
    base = stage[0].arguments.split()[0]
    assert base.endswith(("-slim", "-alpine")), base
    user = _one(stage, "USER").arguments.split(":")[0]
    assert user not in ("root", "0", "")
    keywords = [ins.keyword for ins in stage]
    assert keywords.index("USER") < keywords.index("ENTRYPOINT")
    # The build tooling of the first stage does not reach the final one.
    assert not any(ins.keyword == "COPY" and "proxy" in ins.arguments.split() for ins in stage)


def test_the_cache_is_a_volume(stage: list[Instruction]) -> None:
    env = _env(stage)
    volumes = _one(stage, "VOLUME").exec_form()
    assert env["WHEELMELD_CACHE_DIR"] in volumes


def test_the_entrypoint_is_wheelmeld_serve_with_a_health_check(stage: list[Instruction]) -> None:
    assert _one(stage, "ENTRYPOINT").exec_form() == ["wheelmeld"]
    assert _one(stage, "CMD").exec_form() == ["serve"]
    healthcheck = _one(stage, "HEALTHCHECK").arguments
    assert "--interval=" in healthcheck and "--timeout=" in healthcheck and " CMD [" in healthcheck
    assert _one(stage, "EXPOSE").arguments == _env(stage)["WHEELMELD_PORT"]


def test_what_the_build_copies_exists(stage: list[Instruction]) -> None:
    for ins in _instructions(DOCKERFILE.read_text(encoding="utf-8")):
        if ins.keyword == "COPY" and not ins.arguments.startswith("--from"):
            *sources, _target = ins.arguments.split()
            for source in sources:
                assert (ROOT / source).exists(), source


# -- the entrypoint, run -----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _healthcheck(stage: list[Instruction]) -> list[str]:
    arguments = _one(stage, "HEALTHCHECK").arguments
    command = json.loads(arguments[arguments.index(" CMD ") + len(" CMD ") :])
    assert command[0] == "python", command
    return [sys.executable, *command[1:]]


def _image_env(stage: list[Instruction], tmp_path: Path, **extra: str) -> dict[str, str]:
    """The Dockerfile's environment, on a free loopback port (a test listens on 127.0.0.1 only)."""
    env = {
        **_env(stage),
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": str(tmp_path / "home"),  # an image has no user configuration: neither does this run
        "PIP_CONFIG_FILE": os.devnull,
        "WHEELMELD_HOST": "127.0.0.1",
        "WHEELMELD_PORT": str(_free_port()),
        "WHEELMELD_CACHE_DIR": str(tmp_path / "cache"),
        **extra,
    }
    (tmp_path / "home").mkdir(exist_ok=True)
    return env


@pytest.fixture
def running(stage: list[Instruction], tmp_path: Path) -> Iterator[Mapping[str, str]]:
    """``ENTRYPOINT`` + ``CMD`` as a subprocess with the image's environment; yields that environment."""
    env = _image_env(stage, tmp_path)
    entrypoint = [str(BIN / _one(stage, "ENTRYPOINT").exec_form()[0]), *_one(stage, "CMD").exec_form()]
    yield from _serve(entrypoint, env)


def _serve(argv: list[str], env: Mapping[str, str], port: int | None = None) -> Iterator[Mapping[str, str]]:
    """Run ``argv`` until the caller's loop ends; it must answer ``/healthz`` on ``port`` (default:
    ``WHEELMELD_PORT``)."""
    process = subprocess.Popen(
        argv, env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        url = f"http://127.0.0.1:{port or env['WHEELMELD_PORT']}/healthz"
        deadline = time.monotonic() + 20
        while True:
            if process.poll() is not None:
                output = process.stdout.read() if process.stdout else ""
                pytest.fail(f"wheelmeld exited {process.returncode}:\n{output}")
            try:
                with urllib.request.urlopen(url, timeout=1) as response:
                    assert response.read() == b"ok\n"
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("wheelmeld did not answer /healthz")
                time.sleep(0.1)
        yield env
    finally:
        stop_child(process)
        if process.stdout:
            process.stdout.close()


def test_the_entrypoint_serves_and_the_healthcheck_says_healthy(
    stage: list[Instruction], running: Mapping[str, str]
) -> None:
    done = subprocess.run(
        _healthcheck(stage), env=dict(running), capture_output=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
    assert Path(running["WHEELMELD_CACHE_DIR"]).is_dir()


def test_the_healthcheck_fails_when_nothing_answers(stage: list[Instruction], tmp_path: Path) -> None:
    env = _image_env(stage, tmp_path)  # a free port nobody listens on
    done = subprocess.run(_healthcheck(stage), env=env, capture_output=True, timeout=30, check=False)
    assert done.returncode != 0


# -- docker-compose.yml ------------------------------------------------------------------------------


def _check_jsonschema(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_compose_file_is_valid_against_the_compose_spec() -> None:
    done = _check_jsonschema(COMPOSE)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_schema_check_can_fail(tmp_path: Path) -> None:
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE.read_text(encoding="utf-8").replace("restart:", "restrat:"), encoding="utf-8")
    assert _check_jsonschema(broken).returncode != 0


def _service(compose: dict[str, Any]) -> dict[str, Any]:
    service: dict[str, Any] = compose["services"]["wheelmeld"]
    return service


def _mounts(service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Container path → the mount in compose's long form (short ``SOURCE:TARGET[:ro]`` specs read into it)."""
    mounts = {}
    for spec in service["volumes"]:
        if isinstance(spec, str):
            source, target, *mode = spec.split(":")
            spec = {"source": source, "target": target, "read_only": mode == ["ro"]}
        mounts[spec["target"]] = spec
    return mounts


def test_compose_keeps_the_cache_on_a_named_volume(compose: dict[str, Any], stage: list[Instruction]) -> None:
    mounts = _mounts(_service(compose))
    cache = mounts[_env(stage)["WHEELMELD_CACHE_DIR"]]["source"]
    assert cache in compose["volumes"]
    container_port = _service(compose)["ports"][0].rsplit(":", 1)[1]
    assert container_port == _env(stage)["WHEELMELD_PORT"]


def test_compose_mounts_the_copy_its_instructions_say_to_edit(
    compose: dict[str, Any], stage: list[Instruction], tmp_path: Path
) -> None:
    service = _service(compose)
    mount = _mounts(service)[service["environment"]["WHEELMELD_CONFIG"]]
    assert mount["read_only"] is True
    # The header says: copy config.example.toml to config.toml and edit that. The copy is mounted.
    header = COMPOSE.read_text(encoding="utf-8").split("services:")[0]
    assert "Copy config.example.toml to config.toml" in header
    assert mount["source"] == "./config.toml"
    # Never made by Docker as an empty directory when the copy is missing: compose refuses instead.
    assert mount.get("bind", {}).get("create_host_path") is False
    assert "/config.toml" in (ROOT / ".gitignore").read_text(encoding="utf-8").split()
    # Such a copy, edited, is what the container serves: the image's environment, compose's on top.
    example = (ROOT / "config.example.toml").read_text(encoding="utf-8")
    copy = tmp_path / "config.toml"
    copy.write_text(
        example + '\n[[routes]]\nprefix = "/edited"\nupstream = "https://upstream.example/simple"\n'
    )
    env = _image_env(stage, tmp_path, **{**service["environment"], "WHEELMELD_CONFIG": str(copy)})
    for _ in _serve([str(BIN / "wheelmeld"), "serve"], env):
        with urllib.request.urlopen(f"http://127.0.0.1:{env['WHEELMELD_PORT']}/", timeout=5) as response:
            assert b"/edited/" in response.read()


def test_a_flag_given_to_the_image_beats_its_environment(stage: list[Instruction], tmp_path: Path) -> None:
    """`docker run wheelmeld serve --port N`: the image's WHEELMELD_PORT must not win over the flag."""
    env = _image_env(stage, tmp_path, WHEELMELD_ROUTES="/simple=https://upstream.example/simple")
    flag_port = _free_port()
    argv = [str(BIN / _one(stage, "ENTRYPOINT").exec_form()[0]), *_one(stage, "CMD").exec_form()]
    for _ in _serve([*argv, "--port", str(flag_port)], env, port=flag_port):
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{env['WHEELMELD_PORT']}/healthz", timeout=2)


# -- the fleet profile -------------------------------------------------------------------------------

FLEET = {"wheelmeld-1", "wheelmeld-2", "minio", "bucket", "valkey", "nginx"}
# Variables the proxy reads besides the KEYS table's: the config file and the routes.
_OTHER_VARIABLES = {"WHEELMELD_CONFIG", "WHEELMELD_ROUTES"}


def _profiled(compose: dict[str, Any], profile: str | None) -> set[str]:
    """The services a ``--profile`` starts besides the unprofiled ones (``None``: the unprofiled)."""
    services = compose["services"].items()
    return {
        name
        for name, service in services
        if list(service.get("profiles", [])) == ([profile] if profile else [])
    }


def test_a_plain_compose_up_is_the_single_node_and_the_fleet_profile_the_fleet(
    compose: dict[str, Any],
) -> None:
    assert _profiled(compose, None) == {"wheelmeld"}
    assert _profiled(compose, "fleet") == FLEET
    for name in FLEET:
        for needed in compose["services"][name].get("depends_on", {}):
            assert needed in FLEET, f"{name} depends on {needed}, outside the profile"


def test_every_wheelmeld_variable_compose_sets_is_a_real_setting(compose: dict[str, Any]) -> None:
    from proxy.config import KEYS

    known = {key.env for key in KEYS} | _OTHER_VARIABLES
    for name, service in compose["services"].items():
        for variable in service.get("environment", {}):
            assert not variable.startswith("WHEELMELD_") or variable in known, (name, variable)


def test_the_replicas_share_a_bucket_and_valkey_and_keep_their_own_caches(
    compose: dict[str, Any], stage: list[Instruction]
) -> None:
    from proxy.config import CliOverrides, load_config

    one, two = compose["services"]["wheelmeld-1"], compose["services"]["wheelmeld-2"]
    assert one["environment"] == two["environment"]
    caches = [_mounts(s)[_env(stage)["WHEELMELD_CACHE_DIR"]]["source"] for s in (one, two)]
    assert len(set(caches)) == 2 and set(caches) <= set(compose["volumes"])
    # Their environment, as the image's entrypoint reads it, is a configuration that loads.
    environ = {k: v for k, v in one["environment"].items() if k != "WHEELMELD_CONFIG"}
    config = load_config(CliOverrides(routes=["/simple=https://upstream.example/simple"]), environ=environ)
    assert config.redis_url == "redis://valkey:6379/0"
    assert config.redis_url.split("//")[1].split(":")[0] in compose["services"]
    # The image they run is built with the extras that backend needs, and those extras exist.
    extras = set(one["build"]["args"]["EXTRAS"].split(","))
    optional = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert extras == {"s3", "coordination"} <= set(optional["optional-dependencies"])
    assert any(ins.keyword == "ARG" and ins.arguments.startswith("EXTRAS=") for ins in stage)


def test_the_tier_is_the_shipped_nginx_conf_in_front_of_both_replicas(
    compose: dict[str, Any], stage: list[Instruction]
) -> None:
    nginx = compose["services"]["nginx"]
    conf_mount = _mounts(nginx)["/etc/nginx/nginx.conf"]
    assert conf_mount["source"] == "./deploy/nginx.conf" and conf_mount["read_only"] is True
    conf = (ROOT / "deploy" / "nginx.conf").read_text(encoding="utf-8")
    upstream = conf[conf.index("upstream wheelmeld {") :].split("}", 1)[0]
    servers = re.findall(r"^\s*server ([\w.-]+):(\d+)", upstream, flags=re.MULTILINE)
    assert {host for host, _ in servers} == {"wheelmeld-1", "wheelmeld-2"} == set(nginx["depends_on"])
    assert {port for _, port in servers} == {_env(stage)["WHEELMELD_PORT"]}
    listen = re.search(r"^\s*listen (\d+);", conf, flags=re.MULTILINE)
    assert listen is not None and nginx["ports"][0].rsplit(":", 1)[1] == listen.group(1)
