"""The tiny wheel builder: layout, RECORD, tags, ZIP64, streaming, and real installers."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.metadata import parse_email

from tests.support.wheels import (
    WheelBuildError,
    build_wheel,
    dist_info_dir,
    metadata_from_fields,
    write_wheel,
)

TORCH = "torch-2.7.0.dev20250116+cu126-cp311-cp311-manylinux_2_28_x86_64.whl"
UV = Path(sys.executable).with_name("uv")


def _metadata(name: str = "torch", version: str = "2.7.0.dev20250116+cu126") -> bytes:
    return metadata_from_fields(name, version, ["filelock", 'x>=1; extra == "a"'], ["a"], ">=3.9")


@pytest.mark.parametrize(
    ("filename", "dist_info", "tags", "purelib"),
    [
        (TORCH, "torch-2.7.0.dev20250116+cu126.dist-info", ["cp311-cp311-manylinux_2_28_x86_64"], "false"),
        ("Jinja2-3.1.4-py3-none-any.whl", "Jinja2-3.1.4.dist-info", ["py3-none-any"], "true"),
        (
            "nvidia_nccl_cu12-2.21.5-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl",
            "nvidia_nccl_cu12-2.21.5.dist-info",
            ["py3-none-manylinux2014_x86_64", "py3-none-manylinux_2_17_x86_64"],
            "false",
        ),
        ("six-1.16.0-py2.py3-none-any.whl", "six-1.16.0.dist-info", ["py2-none-any", "py3-none-any"], "true"),
    ],
)
def test_layout_and_wheel_file(filename: str, dist_info: str, tags: list[str], purelib: str) -> None:
    data = build_wheel(filename, _metadata())
    assert dist_info_dir(filename) == dist_info
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = zf.namelist()
        assert zf.testzip() is None
        wheel = zf.read(f"{dist_info}/WHEEL").decode()
    # A payload first, the dist-info files after it, RECORD last: as build backends write them.
    assert names[0].endswith("/__init__.py")
    assert names[-3:] == [f"{dist_info}/METADATA", f"{dist_info}/WHEEL", f"{dist_info}/RECORD"]
    assert [line[5:] for line in wheel.splitlines() if line.startswith("Tag: ")] == tags
    assert f"Root-Is-Purelib: {purelib}" in wheel


@pytest.mark.parametrize("force_zip64", [False, True])
@pytest.mark.parametrize("compression", [zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED])
def test_record_matches_every_member(force_zip64: bool, compression: int) -> None:
    data = build_wheel(
        TORCH, _metadata(), payload_size=5000, compression=compression, force_zip64=force_zip64
    )
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        record = zf.read(f"{dist_info_dir(TORCH)}/RECORD").decode().splitlines()
        rows = {path: (digest, size) for path, digest, size in (line.split(",") for line in record)}
        assert set(rows) == set(zf.namelist())
        for name in zf.namelist():
            digest, size = rows[name]
            if name.endswith("RECORD"):
                assert (digest, size) == ("", "")
                continue
            body = zf.read(name)
            expected = base64.urlsafe_b64encode(hashlib.sha256(body).digest()).rstrip(b"=").decode()
            assert (digest, int(size)) == (f"sha256={expected}", len(body))


def test_metadata_is_kept_verbatim_and_parses() -> None:
    metadata = _metadata()
    data = build_wheel(TORCH, metadata)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.read(f"{dist_info_dir(TORCH)}/METADATA") == metadata
    raw, unparsed = parse_email(metadata)
    assert unparsed == {}
    assert raw["name"] == "torch"
    assert raw["requires_dist"] == ["filelock", 'x>=1; extra == "a"']
    assert raw["provides_extra"] == ["a"]
    assert raw["requires_python"] == ">=3.9"


def test_builds_are_reproducible() -> None:
    assert build_wheel(TORCH, _metadata()) == build_wheel(TORCH, _metadata())
    assert build_wheel(TORCH, _metadata()) != build_wheel(TORCH, _metadata(), payload_size=65)


def test_zip64_end_records_are_written_and_readable() -> None:
    plain = build_wheel(TORCH, _metadata())
    zip64 = build_wheel(TORCH, _metadata(), force_zip64=True)
    assert b"PK\x06\x06" in zip64[-200:] and b"PK\x06\x07" in zip64[-200:]
    assert b"PK\x06\x06" not in plain
    with zipfile.ZipFile(io.BytesIO(zip64)) as z64, zipfile.ZipFile(io.BytesIO(plain)) as z:
        assert z64.testzip() is None
        assert [(i.filename, z64.read(i)) for i in z64.infolist()] == [
            (i.filename, z.read(i)) for i in z.infolist()
        ]


def test_streamed_wheel_equals_in_memory_wheel(tmp_path: Path) -> None:
    kwargs = {"payload_size": 3 * 1024 * 1024 + 7, "compression": zipfile.ZIP_STORED}
    path = write_wheel(tmp_path, TORCH, _metadata(), **kwargs)
    assert path == tmp_path / TORCH
    assert path.read_bytes() == build_wheel(TORCH, _metadata(), **kwargs)


@pytest.mark.parametrize("filename", ["torch.whl", "torch-1.0.tar.gz", "torch-1.0-py3-none.whl"])
def test_bad_file_names_are_refused(filename: str) -> None:
    with pytest.raises(WheelBuildError, match="not a wheel file name"):
        build_wheel(filename, b"")


def test_negative_payload_is_refused() -> None:
    with pytest.raises(WheelBuildError, match="payload_size"):
        build_wheel(TORCH, b"", payload_size=-1)


@pytest.mark.parametrize("force_zip64", [False, True])
def test_real_installers_install_it(tmp_path: Path, force_zip64: bool) -> None:
    filename = "tiny_pkg-1.2.3-py3-none-any.whl"
    wheel = tmp_path / filename
    wheel.write_bytes(build_wheel(filename, _metadata("tiny-pkg", "1.2.3"), force_zip64=force_zip64))
    env = {
        **os.environ,
        "UV_CACHE_DIR": str(tmp_path / "uv-cache"),
        "UV_PYTHON_DOWNLOADS": "never",
        "UV_NO_CONFIG": "1",  # nothing here may consult an index: isolate from any user config
        "PIP_CONFIG_FILE": os.devnull,
    }
    uv_target, pip_target = tmp_path / "uv", tmp_path / "pip"
    subprocess.run(
        [str(UV), "pip", "install", "--offline", "--no-index", "--no-deps", "--python", sys.executable,
         "--target", str(uv_target), str(wheel)],
        check=True, env=env, capture_output=True,
    )  # fmt: skip
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", "--disable-pip-version-check",
         "--target", str(pip_target), str(wheel)],
        check=True, env=env, capture_output=True,
    )  # fmt: skip
    for target in (uv_target, pip_target):
        assert (target / "tiny_pkg" / "__init__.py").read_text().endswith('__version__ = "1.2.3"\n')
        assert (target / "tiny_pkg-1.2.3.dist-info" / "METADATA").read_bytes() == _metadata(
            "tiny-pkg", "1.2.3"
        )
