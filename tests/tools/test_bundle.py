"""``wheelmeld bundle``: export/import round trip; every kind of bad archive refused, nothing imported."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from proxy.cache.store import CacheStore
from proxy.cli import main
from proxy.tools.bundle import MANIFEST_NAME, BundleError, export_bundle, import_bundle

_DIR = "v1/whl/nightly/cu126/torch"
_WHEEL = "torch-2.7.0+cu126-cp311-cp311-linux_x86_64.whl"
_FILES = {
    f"{_DIR}/page.json": b'{"kind": "project"}',
    f"{_DIR}/files/{_WHEEL}": b"PK wheel bytes" * 50,
    f"{_DIR}/files/{_WHEEL}.sha256": b"ab" * 32,
    f"{_DIR}/metadata/{_WHEEL}.metadata": b"Name: torch\n",
}


def _cache(root: Path) -> Path:
    for name, data in _FILES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    (root / "tmp").mkdir()
    (root / "tmp" / "part-x").write_bytes(b"half a download")  # never exported
    return root


def _snapshot(root: Path) -> dict[str, bytes]:
    if not root.exists():
        return {}
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and "tmp" not in p.relative_to(root).parts
    }


def test_round_trip_merges_into_an_existing_cache(tmp_path: Path) -> None:
    source = _cache(tmp_path / "a")
    archive = tmp_path / "a.tar"
    summary = export_bundle(source, archive)
    assert summary.members == len(_FILES)
    target = tmp_path / "b"
    (target / "v1" / "simple" / "other").mkdir(parents=True)
    (target / "v1" / "simple" / "other" / "page.json").write_bytes(b"kept")
    import_bundle(archive, CacheStore(target))
    assert _snapshot(target) == {**_FILES, "v1/simple/other/page.json": b"kept"}
    assert not list((target / "tmp").iterdir())  # the staging directory is gone


def _rewrite(archive: Path, out: Path, edit: Callable[[list[tuple[tarfile.TarInfo, bytes]]], None]) -> None:
    with tarfile.open(archive) as tar:
        members = [(m, tar.extractfile(m).read() if m.isreg() else b"") for m in tar.getmembers()]  # type: ignore[union-attr]
    edit(members)
    with tarfile.open(out, "w") as tar:
        for info, data in members:
            info.size = len(data) if info.isreg() else 0
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)


def _flip_a_byte(members: list[tuple[tarfile.TarInfo, bytes]]) -> None:
    info, data = members[2]
    members[2] = (info, bytes([data[0] ^ 1]) + data[1:])


def _add(name: str, kind: bytes = tarfile.REGTYPE, listed: bool = False) -> Callable[..., None]:
    def edit(members: list[tuple[tarfile.TarInfo, bytes]]) -> None:
        info = tarfile.TarInfo(name)
        info.type = kind
        if kind == tarfile.SYMTYPE:
            info.linkname = "/etc/passwd"
        data = b"evil" if kind == tarfile.REGTYPE else b""
        if listed:
            manifest = json.loads(members[0][1])
            manifest["members"].append(
                {"name": name, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
            )
            members[0] = (members[0][0], json.dumps(manifest).encode())
        members.append((info, data))

    return edit


def _drop_last(members: list[tuple[tarfile.TarInfo, bytes]]) -> None:
    members.pop()


def _manifest_lies_about_size(members: list[tuple[tarfile.TarInfo, bytes]]) -> None:
    manifest = json.loads(members[0][1])
    manifest["members"][0]["size"] += 1
    members[0] = (members[0][0], json.dumps(manifest).encode())


def _no_manifest(members: list[tuple[tarfile.TarInfo, bytes]]) -> None:
    members.pop(0)


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (_flip_a_byte, "sha256"),
        (_add("v1/whl/extra/page.json"), "not in the manifest"),
        (_add("../outside.txt", listed=True), "unsafe"),
        (_add("/etc/cron.d/x", listed=True), "unsafe"),
        (_add("v1/whl/torch/files/../../../../x", listed=True), "unsafe"),
        (_add("v1/whl/link", tarfile.SYMTYPE, listed=True), "regular file"),
        (_add("v1/whl/dir", tarfile.DIRTYPE, listed=True), "regular file"),
        (_drop_last, "missing"),
        (_manifest_lies_about_size, "bytes"),
        (_no_manifest, "first member"),
    ],
)
def test_bad_archive_imports_nothing(tmp_path: Path, edit: Callable[..., None], reason: str) -> None:
    archive, bad = tmp_path / "good.tar", tmp_path / "bad.tar"
    export_bundle(_cache(tmp_path / "a"), archive)
    _rewrite(archive, bad, edit)
    target = tmp_path / "b"
    (target / "v1" / "simple" / "x").mkdir(parents=True)
    (target / "v1" / "simple" / "x" / "page.json").write_bytes(b"before")
    before = _snapshot(target)
    with pytest.raises(BundleError, match=reason):
        import_bundle(bad, CacheStore(target))
    assert _snapshot(target) == before
    assert not (tmp_path / "outside.txt").exists()


def test_cli_refuses_a_tampered_archive_loudly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    archive, bad = tmp_path / "good.tar", tmp_path / "bad.tar"
    source = _cache(tmp_path / "a")
    assert (
        main(
            [
                "bundle",
                "export",
                str(archive),
                "--cache-dir",
                str(source),
                "--route",
                "/whl=http://u.example/whl",
            ]
        )
        == 0
    )
    _rewrite(archive, bad, _flip_a_byte)
    target = tmp_path / "b"
    assert main(["bundle", "import", str(bad), "--cache-dir", str(target)]) == 1
    assert "REFUSED" in capsys.readouterr().err
    assert _snapshot(target) == {}
    assert main(["bundle", "import", str(archive), "--cache-dir", str(target)]) == 0
    assert _snapshot(target) == _FILES


def test_manifest_is_the_first_member_and_lists_sizes(tmp_path: Path) -> None:
    archive = tmp_path / "a.tar"
    export_bundle(_cache(tmp_path / "a"), archive)
    with tarfile.open(archive) as tar:
        first = tar.next()
        assert first is not None and first.name == MANIFEST_NAME
        manifest = json.loads(tar.extractfile(first).read())  # type: ignore[union-attr]
    assert manifest["format"] == "wheelmeld-bundle" and manifest["version"] == 1
    assert {m["name"]: m["size"] for m in manifest["members"]} == {n: len(d) for n, d in _FILES.items()}
