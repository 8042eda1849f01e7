"""Target platforms for prefetch: a user's platform name → uv's ``--python-platform`` and wheel tags.

A name is a wheel-style family (``linux_x86_64``, ``manylinux_2_17_aarch64``, ``musllinux_x86_64``,
``macosx_arm64``, ``macosx_14_0_x86_64``, ``win_amd64``, ``win_arm64``, ``win32``) or one of uv's own
``--python-platform`` names (``x86_64-manylinux_2_28``, ``aarch64-apple-darwin``, …). Each becomes a
``Target`` holding the wheel platform tags an installer there accepts, most preferred first, built the
way ``packaging.tags`` orders them (``mac_platforms`` itself for macOS); the interpreter half of a tag
comes from ``packaging.tags.cpython_tags`` / ``compatible_tags``, never from hand-written rules.

Generic Linux names mean glibc 2.28 (musl 1.2), the default uv assumes for ``x86_64-manylinux_2_28``
and for its plain ``*-unknown-linux-gnu`` names; name a ``manylinux_2_X`` family to choose another.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from packaging.tags import Tag, compatible_tags, cpython_tags, mac_platforms
from packaging.utils import parse_wheel_filename

__all__ = ["Target", "UnknownPlatform", "parse_python_versions", "parse_target", "parse_targets"]

_LINUX_ARCHES = ("x86_64", "aarch64", "i686", "ppc64le", "s390x", "armv7l", "riscv64")
# manylinux1 / 2010 / 2014 are PEP 600's aliases of glibc 2.5 / 2.12 / 2.17 (x86 arches only for the
# first two): a wheel may carry only the legacy name, so the alias sits beside its glibc version.
_LEGACY_ALIASES = {(2, 17): "manylinux2014", (2, 12): "manylinux2010", (2, 5): "manylinux1"}
_LEGACY_ARCHES = {"manylinux2014": _LINUX_ARCHES, "manylinux2010": ("x86_64", "i686"),
                  "manylinux1": ("x86_64", "i686")}  # fmt: skip
# The oldest glibc each arch's manylinux wheels exist for (aarch64 and friends start at 2014 = 2.17).
_OLDEST_GLIBC = {"x86_64": 5, "i686": 5}
_DEFAULT_GLIBC = 28
_DEFAULT_MUSL = 2
_DEFAULT_MACOS = (13, 0)  # uv's assumption for an unversioned macOS target: the oldest supported one

_WINDOWS = {
    "win_amd64": "x86_64-pc-windows-msvc",
    "win_arm64": "aarch64-pc-windows-msvc",
    "win32": "i686-pc-windows-msvc",
}
_UV_WINDOWS = {uv: tag for tag, uv in _WINDOWS.items()}
_MAC_ARCH = {"arm64": "aarch64", "x86_64": "x86_64"}  # wheel arch → uv's spelling

_MANYLINUX_RE = re.compile(r"^manylinux_2_(\d+)_(\w+)$")
_MUSLLINUX_RE = re.compile(r"^musllinux(?:_1_(\d+))?_(\w+)$")
_MACOS_RE = re.compile(r"^macosx(?:_(\d+)_(\d+))?_(arm64|x86_64)$")
_UV_LINUX_RE = re.compile(r"^(\w+?)-(?:manylinux_2_(\d+)|unknown-linux-gnu)$")
_UV_MUSL_RE = re.compile(r"^(\w+?)-unknown-linux-musl$")
_UV_MAC_RE = re.compile(r"^(aarch64|x86_64)-apple-darwin$")


class UnknownPlatform(ValueError):
    """A ``--platform`` / ``--python`` value that names nothing we can map to wheel tags."""


@dataclass(frozen=True, slots=True)
class Target:
    """One platform to prefetch for: its name, uv's name for it, its wheel platform tags (best first)."""

    name: str
    uv_platform: str
    platforms: tuple[str, ...]

    def accepts(self, filename: str) -> bool:
        """Whether a wheel could be installed on this platform by some Python (``any`` always can)."""
        accepted = set(self.platforms)
        return any(t.platform == "any" or t.platform in accepted for t in _wheel_tags(filename))

    def tags(self, python: tuple[int, int]) -> tuple[Tag, ...]:
        """Every tag a CPython ``python`` here accepts, most preferred first (what an installer ranks by)."""
        interpreter = f"cp{python[0]}{python[1]}"
        platforms = list(self.platforms)
        return (*cpython_tags(python, platforms=platforms), *compatible_tags(python, interpreter, platforms))

    def best_wheel(self, filenames: Iterable[str], python: tuple[int, int]) -> str | None:
        """The wheel an installer would pick among ``filenames`` for ``python`` here, if any fits."""
        rank = {tag: i for i, tag in enumerate(self.tags(python))}
        best: tuple[int, str] | None = None
        for filename in filenames:
            ranks = [rank[t] for t in _wheel_tags(filename) if t in rank]
            if ranks and (best is None or min(ranks) < best[0]):
                best = (min(ranks), filename)
        return best[1] if best else None


def _wheel_tags(filename: str) -> frozenset[Tag]:
    try:
        return parse_wheel_filename(filename)[3]
    except ValueError:
        return frozenset()


def _manylinux(arch: str, glibc_minor: int) -> tuple[str, ...]:
    out: list[str] = []
    for minor in range(glibc_minor, _OLDEST_GLIBC.get(arch, 17) - 1, -1):
        out.append(f"manylinux_2_{minor}_{arch}")
        legacy = _LEGACY_ALIASES.get((2, minor))
        if legacy and arch in _LEGACY_ARCHES[legacy]:
            out.append(f"{legacy}_{arch}")
    out.append(f"linux_{arch}")
    return tuple(out)


def _musllinux(arch: str, musl_minor: int) -> tuple[str, ...]:
    return (*(f"musllinux_1_{m}_{arch}" for m in range(musl_minor, -1, -1)), f"linux_{arch}")


def _linux_target(name: str, arch: str, glibc_minor: int) -> Target:
    if arch not in _LINUX_ARCHES:
        raise UnknownPlatform(
            f"unknown Linux machine {arch!r} in {name!r} (known: {', '.join(_LINUX_ARCHES)})"
        )
    return Target(name, f"{arch}-manylinux_2_{glibc_minor}", _manylinux(arch, glibc_minor))


def _musl_target(name: str, arch: str, musl_minor: int) -> Target:
    if arch not in _LINUX_ARCHES:
        raise UnknownPlatform(f"unknown Linux machine {arch!r} in {name!r}")
    return Target(name, f"{arch}-unknown-linux-musl", _musllinux(arch, musl_minor))


def _mac_target(name: str, arch: str, version: tuple[int, int]) -> Target:
    return Target(name, f"{_MAC_ARCH[arch]}-apple-darwin", tuple(mac_platforms(version, arch)))


def parse_target(name: str) -> Target:
    """One platform name (see the module docstring) → its ``Target``."""
    text = name.strip()
    if text in _WINDOWS:
        return Target(text, _WINDOWS[text], (text,))
    if text in _UV_WINDOWS:
        tag = _UV_WINDOWS[text]
        return Target(text, text, (tag,))
    if text.startswith("linux_"):
        return _linux_target(text, text.removeprefix("linux_"), _DEFAULT_GLIBC)
    if match := _MANYLINUX_RE.match(text):
        return _linux_target(text, match.group(2), int(match.group(1)))
    if match := _MUSLLINUX_RE.match(text):
        return _musl_target(text, match.group(2), int(match.group(1) or _DEFAULT_MUSL))
    if match := _MACOS_RE.match(text):
        version = (int(match.group(1)), int(match.group(2))) if match.group(1) else _DEFAULT_MACOS
        return _mac_target(text, match.group(3), version)
    if match := _UV_LINUX_RE.match(text):
        return _linux_target(text, match.group(1), int(match.group(2) or _DEFAULT_GLIBC))
    if match := _UV_MUSL_RE.match(text):
        return _musl_target(text, match.group(1), _DEFAULT_MUSL)
    if match := _UV_MAC_RE.match(text):
        return _mac_target(text, "arm64" if match.group(1) == "aarch64" else "x86_64", _DEFAULT_MACOS)
    raise UnknownPlatform(
        f"unknown platform {name!r}; use e.g. linux_x86_64, linux_aarch64, manylinux_2_17_x86_64, "
        "musllinux_x86_64, macosx_arm64, macosx_14_0_x86_64, win_amd64, or uv's x86_64-manylinux_2_28"
    )


def parse_targets(values: Sequence[str]) -> tuple[Target, ...]:
    """``--platform`` values (repeatable, each comma-separated) → targets, duplicates dropped."""
    seen: dict[str, Target] = {}
    for value in values:
        for part in value.split(","):
            if part.strip():
                target = parse_target(part)
                seen.setdefault(target.name, target)
    return tuple(seen.values())


def parse_python_versions(values: Sequence[str]) -> tuple[tuple[int, int], ...]:
    """``--python`` values such as ``3.11,3.12`` → ``((3, 11), (3, 12))``."""
    out: dict[tuple[int, int], None] = {}
    for value in values:
        for part in value.split(","):
            text = part.strip()
            if not text:
                continue
            major, sep, minor = text.partition(".")
            if not sep or not major.isdigit() or not minor.isdigit():
                raise UnknownPlatform(f"a Python version looks like 3.12, got {text!r}")
            out[(int(major), int(minor))] = None
    return tuple(out)
