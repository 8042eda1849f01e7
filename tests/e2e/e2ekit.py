"""End-to-end helpers: the real ``uv`` and ``pip`` binaries, run hermetically against loopback servers.

Every client call goes through ``Clients``, which starts from a near-empty environment so nothing
on the machine (``UV_DEFAULT_INDEX``, ``PIP_FIND_LINKS``, a pip constraint file, a user ``uv.toml``)
can steer a resolution: ``HOME`` and the XDG directories point into the test's tmp dir, uv never
downloads a Python, and pip reads no configuration file at all.  ``UV_NO_CONFIG`` is deliberately
*not* set — it would make uv ignore ``[[tool.uv.index]]`` and silently bypass the proxy.

The checks the issue asks for are built from three small pure pieces:

* ``PLATFORMS`` — a table of target platforms: uv's ``--python-platform`` name and the full PEP 508
  marker environment of a CPython 3.11 on that platform;
* ``selected_by_export`` — the ``(name, version)`` set a universal lock installs on one platform,
  from ``uv export`` with every line's marker evaluated by ``packaging``;
* ``parse_compile`` — the same set from ``uv pip compile --python-platform``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name
from uv import find_uv_bin

from tests.support.upstream import UpstreamOptions

__all__ = [
    "PLATFORMS",
    "PYTORCH_OPTIONS",
    "ClientError",
    "Clients",
    "Output",
    "Pin",
    "Platform",
    "dependency_markers",
    "lock_packages",
    "parse_compile",
    "seed_pyproject",
    "selected_by_export",
    "venv_python",
    "write_project",
]

# The seed index served like the PyTorch index (same options as ``tests/conftest.py``'s
# ``pytorch_upstream``).
PYTORCH_OPTIONS = UpstreamOptions(
    format="html", pep658=False, ranges=True, hashes=False, link_style="relative", prefix="/whl/nightly/cu126"
)
# Variables that only say *how* to reach a host (TLS roots, an outbound proxy), never *which* index
# to use; the live test needs them to reach the real index from a sandbox.
_TRANSPORT_VARIABLES = (
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
)
_CLIENT_TIMEOUT = 300.0

Pin = tuple[NormalizedName, str]


@dataclass(frozen=True, slots=True)
class Output:
    """What a finished command printed."""

    stdout: str
    stderr: str


class ClientError(AssertionError):
    """A uv or pip command failed; the message carries its command line and output."""


@dataclass(frozen=True, slots=True)
class Platform:
    """A target platform: uv's ``--python-platform`` triple and its PEP 508 marker environment."""

    name: str
    uv_platform: str
    environment: Mapping[str, str]

    def evaluate(self, marker: Marker | None) -> bool:
        """Whether ``marker`` (``None``: no marker) holds on this platform, with no extra active."""
        return marker is None or marker.evaluate(dict(self.environment))

    def evaluate_with_extra(self, marker: Marker | None, extra: str) -> bool:
        """Whether ``marker`` holds on this platform when ``extra`` is requested."""
        return marker is None or marker.evaluate({**self.environment, "extra": extra})


def _cpython311(os_name: str, sys_platform: str, system: str, machine: str) -> Mapping[str, str]:
    # Every PEP 508 variable, so a marker on any of them evaluates instead of raising.  Release
    # and version strings of the OS are unknowable for a foreign platform; empty, as uv assumes.
    return MappingProxyType(
        {
            "implementation_name": "cpython",
            "implementation_version": "3.11.0",
            "os_name": os_name,
            "platform_machine": machine,
            "platform_python_implementation": "CPython",
            "platform_release": "",
            "platform_system": system,
            "platform_version": "",
            "python_full_version": "3.11.0",
            "python_version": "3.11",
            "sys_platform": sys_platform,
        }
    )


PLATFORMS: Mapping[str, Platform] = MappingProxyType(
    {
        p.name: p
        for p in (
            Platform(
                "linux-x86_64", "x86_64-manylinux_2_28", _cpython311("posix", "linux", "Linux", "x86_64")
            ),
            Platform(
                "linux-aarch64", "aarch64-manylinux_2_28", _cpython311("posix", "linux", "Linux", "aarch64")
            ),
            Platform(
                "windows-amd64", "x86_64-pc-windows-msvc", _cpython311("nt", "win32", "Windows", "AMD64")
            ),
            Platform(
                "macos-arm64", "aarch64-apple-darwin", _cpython311("posix", "darwin", "Darwin", "arm64")
            ),
        )
    }
)


@dataclass(frozen=True, slots=True)
class Clients:
    """Runs ``uv`` and ``pip`` with a clean, hermetic environment rooted at ``home``."""

    home: Path
    uv_cache: Path
    uv: str = field(default_factory=find_uv_bin)

    @property
    def env(self) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", os.defpath),
            "HOME": str(self.home),
            "XDG_CONFIG_HOME": str(self.home / ".config"),
            "XDG_CONFIG_DIRS": str(self.home / ".config-dirs"),
            "XDG_CACHE_HOME": str(self.home / ".cache"),
            "XDG_DATA_HOME": str(self.home / ".local" / "share"),
            "UV_PYTHON_DOWNLOADS": "never",
            "UV_PYTHON": sys.executable,
            "UV_CACHE_DIR": str(self.uv_cache),
            "UV_NO_PROGRESS": "1",
            "UV_LINK_MODE": "copy",
            "PIP_CONFIG_FILE": os.devnull,
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "PIP_NO_INPUT": "1",
        }
        env.update({k: os.environ[k] for k in _TRANSPORT_VARIABLES if k in os.environ})
        if any(k.lower().endswith("_proxy") for k in env):
            # Loopback servers must never be sent through an outbound proxy.
            env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
        return env

    def run(self, argv: Sequence[str], *, cwd: Path | None = None, stdin: str | None = None) -> Output:
        """Run a command to completion; raise ``ClientError`` with everything it printed if it fails."""
        done = subprocess.run(
            list(argv),
            cwd=cwd,
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=_CLIENT_TIMEOUT,
            check=False,
        )
        if done.returncode != 0:
            command = " ".join(argv)
            raise ClientError(
                f"{command!r} exited {done.returncode}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
            )
        return Output(done.stdout, done.stderr)

    def uv_run(self, *args: str, cwd: Path | None = None, stdin: str | None = None) -> Output:
        return self.run([self.uv, *args], cwd=cwd, stdin=stdin)

    def lock(self, project: Path) -> dict[str, Any]:
        """``uv lock`` in ``project``; the parsed ``uv.lock``."""
        self.uv_run("lock", cwd=project)
        with (project / "uv.lock").open("rb") as fh:
            return tomllib.load(fh)

    def export(self, project: Path) -> str:
        """The frozen lock as a requirements file with markers (``uv export``)."""
        return self.uv_run(
            "export",
            "--format",
            "requirements-txt",
            "--no-hashes",
            "--frozen",
            "--no-emit-project",
            cwd=project,
        ).stdout

    def compile(self, requirements: Iterable[str], platform: Platform, index_url: str) -> frozenset[Pin]:
        """What ``uv pip compile`` resolves for ``platform`` (CPython 3.11) against ``index_url`` alone."""
        out = self.uv_run(
            "pip",
            "compile",
            "-",
            "--python-platform",
            platform.uv_platform,
            "--python-version",
            "3.11",
            "--index-url",
            index_url,
            "--no-header",
            "--no-annotate",
            stdin="\n".join(requirements) + "\n",
        )
        return parse_compile(out.stdout)

    def new_venv(self, path: Path) -> Path:
        """A fresh, empty virtual environment (no pip inside); its Python."""
        self.run([sys.executable, "-m", "venv", "--without-pip", str(path)])
        return venv_python(path)

    def pip(self, *args: str) -> Output:
        """The project's pip (``pip>=24``, run as ``python -m pip``); aim it with ``--python``."""
        return self.run([sys.executable, "-m", "pip", *args])


# --- pure helpers ------------------------------------------------------------------------------


def seed_pyproject(index_url: str, *, name: str = "torchnightly", requires_python: str = ">=3.11") -> str:
    """The seed reporter's ``pyproject.toml``, with ``index_url`` as both the explicit torch index and
    the default index (the fixture upstream carries every project the torch family needs)."""
    sources = "\n".join(
        f'{p} = [{{ index = "pytorch-nightly-cu126" }}]'
        for p in ("torch", "torchvision", "torchaudio", "torchao")
    )
    return f"""\
[project]
name = "{name}"
version = "0.1.0"
requires-python = "{requires_python}"
dependencies = ["torch", "torchao", "torchaudio", "torchvision"]

[tool.uv.sources]
{sources}

[[tool.uv.index]]
name = "pytorch-nightly-cu126"
url = "{index_url}"
explicit = true

[[tool.uv.index]]
name = "default"
url = "{index_url}"
default = true
"""


def project_pyproject(
    name: str, dependencies: Iterable[str], index_url: str, *, requires_python: str = ">=3.11"
) -> str:
    """A virtual project depending on ``dependencies``, with ``index_url`` as its only (default) index."""
    return f"""\
[project]
name = "{name}"
version = "0.1.0"
requires-python = "{requires_python}"
dependencies = {json.dumps(list(dependencies))}

[[tool.uv.index]]
name = "default"
url = "{index_url}"
default = true
"""


def venv_python(venv: Path) -> Path:
    """The interpreter of the virtual environment at ``venv``."""
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def write_project(directory: Path, pyproject: str) -> Path:
    """A directory holding just ``pyproject.toml`` (a virtual project: nothing to build)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "pyproject.toml").write_text(pyproject, encoding="utf-8")
    return directory


def lock_packages(lock: Mapping[str, object]) -> dict[NormalizedName, list[Mapping[str, Any]]]:
    """``[[package]]`` tables of a parsed ``uv.lock`` by canonical name (a name may fork into several)."""
    packages = lock.get("package", [])
    assert isinstance(packages, list)
    out: dict[NormalizedName, list[Mapping[str, Any]]] = {}
    for package in packages:
        out.setdefault(canonicalize_name(package["name"]), []).append(package)
    return out


def dependency_markers(package: Mapping[str, Any]) -> dict[NormalizedName, Marker | None]:
    """A locked package's dependencies → their marker (``None``: unconditional)."""
    return {
        canonicalize_name(dep["name"]): Marker(dep["marker"]) if "marker" in dep else None
        for dep in package.get("dependencies", [])
    }


def _requirement_lines(text: str) -> Iterator[Requirement]:
    for line in text.splitlines():
        stripped = line.strip()
        # Annotations (``# via``) are comments; options (``--index-url``, ``-e .``) start with ``-``.
        if not stripped or stripped.startswith(("#", "-")):
            continue
        yield Requirement(stripped)


def _pin(requirement: Requirement) -> Pin:
    specs = list(requirement.specifier)
    if len(specs) != 1 or specs[0].operator != "==":
        raise ValueError(f"not a pinned requirement: {str(requirement)!r}")
    return canonicalize_name(requirement.name), specs[0].version


def selected_by_export(export: str, platform: Platform) -> frozenset[Pin]:
    """The pins of a ``uv export`` whose marker holds on ``platform``."""
    return frozenset(_pin(r) for r in _requirement_lines(export) if platform.evaluate(r.marker))


def parse_compile(text: str) -> frozenset[Pin]:
    """The pins of a ``uv pip compile`` output (no markers: it resolved for one platform)."""
    pins = []
    for requirement in _requirement_lines(text):
        if requirement.marker is not None:
            raise ValueError(f"a single-platform compile gave a marker: {str(requirement)!r}")
        pins.append(_pin(requirement))
    return frozenset(pins)
