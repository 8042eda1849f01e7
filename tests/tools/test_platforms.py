"""Platform names → uv's ``--python-platform`` and wheel tags; lock parsing and selection."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.tools.lockfile import LockError, read_uv_lock, select_files
from proxy.tools.platforms import UnknownPlatform, parse_python_versions, parse_target, parse_targets

_X86 = "torch-2.7.0-cp311-cp311-manylinux_2_28_x86_64.whl"
_ARM = "torch-2.7.0-cp311-cp311-linux_aarch64.whl"
_WIN = "torch-2.7.0-cp311-cp311-win_amd64.whl"
_MAC = "torch-2.7.0-cp311-none-macosx_11_0_arm64.whl"
_OLD = "nccl-2-py3-none-manylinux2014_x86_64.whl"
_NEW = "glib-1-py3-none-manylinux_2_34_x86_64.whl"
_ANY = "pure-1-py3-none-any.whl"
_MUSL = "m-1-cp311-cp311-musllinux_1_2_x86_64.whl"


@pytest.mark.parametrize(
    ("name", "uv_platform", "accepted", "refused"),
    [
        ("linux_x86_64", "x86_64-manylinux_2_28", [_X86, _OLD, _ANY], [_ARM, _WIN, _MAC, _NEW, _MUSL]),
        ("x86_64-manylinux_2_28", "x86_64-manylinux_2_28", [_X86, _OLD], [_NEW, _ARM]),
        ("manylinux_2_34_x86_64", "x86_64-manylinux_2_34", [_X86, _NEW, _OLD], [_ARM]),
        ("manylinux_2_17_x86_64", "x86_64-manylinux_2_17", [_OLD], [_X86, _NEW]),
        ("linux_aarch64", "aarch64-manylinux_2_28", [_ARM, _ANY], [_X86, _WIN, _OLD]),
        ("musllinux_x86_64", "x86_64-unknown-linux-musl", [_MUSL, _ANY], [_X86, _OLD]),
        ("win_amd64", "x86_64-pc-windows-msvc", [_WIN, _ANY], [_X86, _ARM, _MAC]),
        ("x86_64-pc-windows-msvc", "x86_64-pc-windows-msvc", [_WIN], [_X86]),
        ("macosx_arm64", "aarch64-apple-darwin", [_MAC, _ANY], [_X86, _WIN]),
        ("aarch64-apple-darwin", "aarch64-apple-darwin", [_MAC], [_ARM]),
        ("macosx_10_9_x86_64", "x86_64-apple-darwin", [_ANY], [_MAC]),
    ],
)
def test_targets(name: str, uv_platform: str, accepted: list[str], refused: list[str]) -> None:
    target = parse_target(name)
    assert target.uv_platform == uv_platform
    assert [f for f in accepted if target.accepts(f)] == accepted
    assert [f for f in refused if target.accepts(f)] == []


@pytest.mark.parametrize("bad", ["linux_sparc", "solaris", "win64", "macosx_ppc", ""])
def test_unknown_platforms(bad: str) -> None:
    with pytest.raises(UnknownPlatform):
        parse_target(bad)


def test_best_wheel_follows_installer_priority() -> None:
    target = parse_target("linux_x86_64")
    files = [_ANY.replace("pure", "torch"), _X86, "torch-2.7.0-cp312-cp312-manylinux_2_28_x86_64.whl"]
    assert target.best_wheel(files, (3, 11)) == _X86
    assert target.best_wheel(files, (3, 13)) == files[0]
    assert target.best_wheel([_ARM], (3, 11)) is None


def test_lists_and_versions() -> None:
    assert [t.name for t in parse_targets(["linux_x86_64,win_amd64", "linux_x86_64"])] == [
        "linux_x86_64",
        "win_amd64",
    ]
    assert parse_python_versions(["3.11,3.12", "3.11"]) == ((3, 11), (3, 12))
    with pytest.raises(UnknownPlatform):
        parse_python_versions(["3"])


_BASE = "http://127.0.0.1:8000"
_LOCK = """\
version = 1
requires-python = ">=3.11"

[[package]]
name = "demo"
version = "0.1.0"
source = { virtual = "." }

[[package]]
name = "Torch"
version = "2.7.0"
source = { registry = "http://127.0.0.1:8000/whl/nightly/cu126" }
wheels = [
    { url = "{T}torch-2.7.0-cp311-cp311-manylinux_2_28_x86_64.whl", hash = "sha256:AB12", size = 3 },
    { url = "{T}torch-2.7.0-cp311-cp311-win_amd64.whl" },
]

[[package]]
name = "only-sdist-on-arm"
version = "1.0"
source = { registry = "http://127.0.0.1:8000/simple" }
sdist = { url = "{S}only_sdist_on_arm-1.0.tar.gz" }
wheels = [{ url = "{S}only_sdist_on_arm-1.0-py3-none-win_amd64.whl" }]
"""


def test_lock_reading_and_selection(tmp_path: Path) -> None:
    path = tmp_path / "uv.lock"
    text = _LOCK.replace("{T}", _BASE + "/whl/nightly/cu126/torch/")
    path.write_text(text.replace("{S}", _BASE + "/simple/only-sdist-on-arm/"))
    torch, other = read_uv_lock(path)
    assert torch.name == "torch" and torch.registry.endswith("/whl/nightly/cu126")
    assert torch.files[0].sha256 == "ab12" and torch.files[0].size == 3 and torch.files[1].sha256 is None
    linux = parse_targets(["linux_x86_64"])
    assert [f.filename for f in select_files(torch, linux)] == [torch.files[0].filename]
    assert select_files(torch, ()) == torch.files
    # No wheel fits aarch64: the sdist is what that platform builds from.
    assert [f.filename for f in select_files(other, parse_targets(["linux_aarch64"]))] == [
        "only_sdist_on_arm-1.0.tar.gz"
    ]


def test_unreadable_lock(tmp_path: Path) -> None:
    path = tmp_path / "uv.lock"
    path.write_text("this is = = not toml")
    with pytest.raises(LockError):
        read_uv_lock(path)
    with pytest.raises(LockError):
        read_uv_lock(tmp_path / "missing.lock")
