"""The fleet's bucket (backend s3, moto's S3 server): ``wheelmeld cache stats|prune|verify`` and
``bundle export|import`` on it, duplicate uploads counted, and a replica killed mid-upload.
"""

from __future__ import annotations

import asyncio
import json
import tarfile
from pathlib import Path
from typing import Any

import httpx
import pytest

from proxy.cache.shared import SharedCounts, SharedKind, SharedTier
from proxy.cli import main
from tests.cache.cachekit import cache_files, serve_process
from tests.support.fake_index import FakeFile, FakeIndex
from tests.support.s3_server import MotoS3
from tests.support.stack import MakeStack, Stack, wait_until, wheel
from tests.support.upstream import UpstreamOptions, UpstreamServer
from tests.support.wheels import metadata_from_fields, write_wheel

pytest.importorskip("aiobotocore", reason="the [s3] extra is not installed (pip install -e '.[test]')")

from proxy.cache.s3 import S3ObjectStore

NAMES = [f"pkg-{v}.0-py3-none-any.whl" for v in (1, 2)]
_SIZE = 1_000_000


@pytest.fixture
def filled(
    make_stack: MakeStack, backend: dict[str, Any], moto: MotoS3, monkeypatch: pytest.MonkeyPatch
) -> Stack:
    """Two files and their metadata fetched through a proxy on backend s3, and the commands' environment
    naming the same bucket."""
    for var in ("WHEELMELD_CACHE_DIR", "WHEELMELD_CACHE_MAX_SIZE", "WHEELMELD_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("WHEELMELD_CACHE_BACKEND", "s3")
    monkeypatch.setenv("WHEELMELD_S3_BUCKET", backend["s3_bucket"])
    monkeypatch.setenv("WHEELMELD_S3_ENDPOINT_URL", moto.endpoint_url)
    monkeypatch.setenv("WHEELMELD_S3_REGION", "us-east-1")
    stack = make_stack(FakeIndex.from_files({"pkg": [wheel(n, ["idna"], payload_size=_SIZE) for n in NAMES]}))
    for name in NAMES:
        assert stack.client.get(f"/simple/pkg/{name}").status_code == 200
        assert stack.client.get(f"/simple/pkg/{name}.metadata").status_code == 200
    for name in NAMES:
        wait_until(lambda n=name: _key(n) + ".sha256" in moto.keys(backend["s3_bucket"]), f"{name} published")
    return stack


pytestmark = pytest.mark.parametrize("backend", ["s3"], indirect=True)


def _key(name: str) -> str:
    return f"v1/simple/pkg/files/{name}"


def _files_in(moto: MotoS3, bucket: str) -> list[str]:
    return [k for k in moto.keys(bucket) if "/files/" in k and not k.endswith(".sha256")]


def test_stats_lists_the_bucket(
    filled: Stack, backend: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["cache", "stats", "--json", "--cache-dir", str(filled.cache_dir)]) == 0
    doc = json.loads(capsys.readouterr().out)
    kinds = doc["bucket"]["routes"]["simple"]
    assert doc["bucket"]["url"] == f"s3://{backend['s3_bucket']}/"
    assert kinds["file"]["entries"] == 2 and kinds["file"]["bytes"] > 2 * _SIZE
    assert kinds["metadata"]["entries"] == 2 and kinds["page"]["entries"] == 0, "pages stay per replica"
    assert kinds["hash"]["entries"] == 4, "a sidecar beside every file and metadata"
    assert main(["cache", "stats", "--cache-dir", str(filled.cache_dir)]) == 0
    assert f"bucket: s3://{backend['s3_bucket']}/" in capsys.readouterr().out


def test_prune_by_size_and_age_and_aborts_stale_uploads(
    filled: Stack, backend: dict[str, Any], moto: MotoS3, capsys: pytest.CaptureFixture[str]
) -> None:
    bucket = backend["s3_bucket"]
    moto.client.create_multipart_upload(Bucket=bucket, Key=_key("pkg-3.0-py3-none-any.whl"))
    prune = ["cache", "prune", "--cache-dir", str(filled.cache_dir)]
    assert main([*prune, "--max-size", "1.5MB", "--stale-uploads", "0"]) == 0
    out = capsys.readouterr().out
    assert "bucket: removed 1 file(s)" in out and "aborted 1 stale upload(s)" in out
    assert len(_files_in(moto, bucket)) == 1 and moto.open_uploads(bucket) == []
    assert main([*prune, "--max-age", "0"]) == 0
    assert _files_in(moto, bucket) == []
    assert not [k for k in moto.keys(bucket) if "/files/" in k], "their sidecars went first"
    assert len([k for k in moto.keys(bucket) if "/metadata/" in k]) == 4, "metadata is never pruned"


def test_verify_rehashes_the_bucket_and_drops_a_corrupt_object(
    filled: Stack, backend: dict[str, Any], moto: MotoS3, capsys: pytest.CaptureFixture[str]
) -> None:
    bucket = backend["s3_bucket"]
    verify = ["cache", "verify", "--cache-dir", str(filled.cache_dir)]
    assert main(verify) == 0
    assert "bucket: checked 4 file(s)" in capsys.readouterr().out  # 2 files, 2 metadata
    moto.client.put_object(Bucket=bucket, Key=_key(NAMES[0]), Body=b"not the wheel")
    moto.client.put_object(Bucket=bucket, Key=_key("half-uploaded.whl"), Body=b"x")
    assert main([*verify, "--keep"]) == 1
    out = capsys.readouterr().out
    assert f"BAD bucket: {_key(NAMES[0])}" in out and "1 object(s) without their sha256" in out
    assert _key(NAMES[0]) in moto.keys(bucket), "--keep keeps it"
    assert main(verify) == 1
    assert _key(NAMES[0]) not in moto.keys(bucket) and _key(NAMES[0]) + ".sha256" not in moto.keys(bucket)


def test_bundle_export_pulls_from_the_bucket_and_import_writes_into_it(
    filled: Stack, moto: MotoS3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive, fresh = tmp_path / "fleet.tar", tmp_path / "fresh-cache"
    assert main(["bundle", "export", str(archive), "--cache-dir", str(fresh)]) == 0
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    assert {_key(n) for n in NAMES} <= names and {_key(n) + ".sha256" for n in NAMES} <= names
    assert [p.read_bytes() for p in cache_files(fresh, NAMES[0])] == [
        p.read_bytes() for p in cache_files(filled.cache_dir, NAMES[0])
    ], "pulled whole and verified into the local disk first"

    other = "wheelmeld-test-import"
    moto.client.create_bucket(Bucket=other)
    monkeypatch.setenv("WHEELMELD_S3_BUCKET", other)
    assert main(["bundle", "import", str(archive), "--cache-dir", str(tmp_path / "site")]) == 0
    keys = moto.keys(other)
    assert {_key(n) for n in NAMES} <= set(keys) and {_key(n) + ".sha256" for n in NAMES} <= set(keys)


def test_a_second_upload_of_one_object_counts_a_duplicate(
    backend: dict[str, Any], moto: MotoS3, tmp_path: Path
) -> None:
    """Two replicas that fetched one object without coordination: the second finds it there."""
    path = tmp_path / "v1" / "simple" / "pkg" / "metadata" / "pkg-1.0-py3-none-any.whl.metadata"

    async def run() -> tuple[SharedCounts, SharedCounts]:
        store = S3ObjectStore(backend["s3_bucket"], endpoint_url=moto.endpoint_url, region="us-east-1")
        async with store:
            first, second = (SharedTier(tmp_path, store, SharedCounts()) for _ in range(2))
            await first.publish(path, b"Metadata-Version: 2.1\n")
            await second.publish(path, b"Metadata-Version: 2.1\n")
            await second.publish(path, b"Metadata-Version: 2.1\n")  # known now: not even asked
            return first.counts, second.counts

    first, second = asyncio.run(run())
    assert (first.uploads[SharedKind.METADATA], first.duplicates[SharedKind.METADATA]) == (1, 0)
    assert (second.uploads[SharedKind.METADATA], second.duplicates[SharedKind.METADATA]) == (0, 1)


def test_a_replica_killed_mid_upload_leaves_no_object_and_prune_aborts_its_upload(
    backend: dict[str, Any], moto: MotoS3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = backend["s3_bucket"]
    metadata = metadata_from_fields("huge", "1.0", ["idna"])
    path = write_wheel(tmp_path, "huge-1.0-py3-none-any.whl", metadata, payload_size=120 * 1000 * 1000)
    huge = FakeFile(path.name, path=path, metadata=metadata)
    s3 = [
        "--cache-backend",
        "s3",
        "--s3-bucket",
        bucket,
        "--s3-endpoint-url",
        moto.endpoint_url,
        "--s3-region",
        "us-east-1",
    ]
    key = "v1/simple/huge/files/" + huge.filename
    with UpstreamServer(FakeIndex.from_files({"huge": [huge]}), UpstreamOptions(prefix="/simple")) as up:
        routes = {"/simple": up.url + "/simple"}
        with serve_process(tmp_path / "cache", routes, *s3) as proxy:
            with httpx.Client(base_url=proxy.url, timeout=60) as client:
                assert client.get(f"/simple/huge/{huge.filename}").status_code == 200
            # The client has the whole verified file; the replica uploads it now, in parts.
            wait_until(lambda: moto.open_uploads(bucket), "the multipart upload started", timeout=30)
            proxy.kill9()
        assert moto.open_uploads(bucket) == [key]
        assert key not in moto.keys(bucket) and key + ".sha256" not in moto.keys(bucket)
        monkeypatch.setenv("WHEELMELD_CACHE_BACKEND", "s3")
        monkeypatch.setenv("WHEELMELD_S3_BUCKET", bucket)
        monkeypatch.setenv("WHEELMELD_S3_ENDPOINT_URL", moto.endpoint_url)
        assert main(["cache", "prune", "--cache-dir", str(tmp_path / "cache"), "--stale-uploads", "0"]) == 0
        assert moto.open_uploads(bucket) == []
        # Nothing half-written is served: another replica fetches the file upstream, whole.
        with (
            serve_process(tmp_path / "other", routes, *s3) as proxy,
            httpx.Client(base_url=proxy.url) as client,
        ):
            assert client.get(f"/simple/huge/{huge.filename}", timeout=60).status_code == 200
        assert len(up.requests_for("/" + huge.filename)) == 2
