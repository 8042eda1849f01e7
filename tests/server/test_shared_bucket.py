"""``backend = "s3"``: replicas share one bucket (moto's real S3 server on 127.0.0.1) in front of the
fake upstream. Each replica here has its own upstream server (the same index), so each one's request
log says exactly what that replica fetched upstream.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.fake_index import FakeIndex
from tests.support.s3_server import ACCESS_KEY, SECRET_KEY, MotoS3
from tests.support.stack import MakeStack, Stack, sha256, wait_until, wheel

pytest.importorskip("aiobotocore", reason="the [s3] extra is not installed (pip install -e '.[test]')")

pytestmark = pytest.mark.usefixtures("aws_env")

LINUX = "dis-1.0-py3-none-manylinux_2_17_x86_64.whl"
WINDOWS = "dis-1.0-py3-none-win_amd64.whl"


def _index() -> FakeIndex:
    # Wheels that disagree: their .metadata is a meld, made from both wheels' metadata.
    return FakeIndex.from_files(
        {"dis": [wheel(LINUX, ["idna"], payload_size=4096), wheel(WINDOWS, ["colorama"], payload_size=4096)]}
    )


def _s3(moto: MotoS3, bucket: str, **more: Any) -> dict[str, Any]:
    return {
        "cache_backend": "s3",
        "s3_bucket": bucket,
        "s3_endpoint_url": moto.endpoint_url,
        "s3_region": "us-east-1",
        "s3_prefix": "fleet",
        **more,
    }


def _replica(
    make_stack: MakeStack,
    moto: MotoS3,
    bucket: str,
    index: FakeIndex,
    hashes: bool = True,
    cache_dir: Path | None = None,
    **more: Any,
) -> Stack:
    return make_stack(index, hashes=hashes, cache_dir=cache_dir, config=_s3(moto, bucket, **more))


def _published(moto: MotoS3, bucket: str, key: str) -> None:
    """A replica uploads a file after its last byte went to the client: wait for its commit mark."""
    wait_until(lambda: key + ".sha256" in moto.keys(bucket), f"{key} was not published")


def _filled(
    make_stack: MakeStack, moto: MotoS3, bucket: str, index: FakeIndex
) -> tuple[Stack, bytes, httpx.Response]:
    """A first replica fetches the Linux wheel and its melded .metadata: (it, the wheel, the answer)."""
    first = _replica(make_stack, moto, bucket, index)
    wheel_bytes = first.client.get(first.file("dis", LINUX)).content
    _published(moto, bucket, "fleet/v1/simple/dis/files/" + LINUX)
    melded = first.client.get(first.file("dis", LINUX, ".metadata"))
    assert melded.status_code == 200 and "melded" in melded.headers["x-wheelmeld-meld"]

    # The meld too is uploaded after its answer (``proxy.service.uploads``).
    def meld_published() -> bool:
        return any(
            k.startswith("fleet/v1/simple/dis/meld/") and k.endswith(".sha256") for k in moto.keys(bucket)
        )

    wait_until(meld_published, "the meld was not published")
    return first, wheel_bytes, melded


def _metric(stack: Stack, line: str) -> int:
    text = stack.client.get("/metrics").text
    return int(next(row for row in text.splitlines() if row.startswith(line + " ")).split()[-1])


def test_a_second_replica_serves_a_wheel_and_its_meld_from_the_bucket(
    make_stack: MakeStack, moto: MotoS3, bucket: str
) -> None:
    index = _index()
    first, wheel_bytes, melded = _filled(make_stack, moto, bucket, index)
    assert sha256(wheel_bytes) == sha256(index.file(LINUX).content or b"")
    keys = moto.keys(bucket)
    assert "fleet/v1/simple/dis/files/" + LINUX in keys
    assert "fleet/v1/simple/dis/files/" + LINUX + ".sha256" in keys
    assert any(k.startswith("fleet/v1/simple/dis/meld/") and k.endswith(".json.sha256") for k in keys)

    second = _replica(make_stack, moto, bucket, index)  # an empty local cache, the same bucket
    assert second.client.get(second.file("dis", LINUX)).content == wheel_bytes
    again = second.client.get(second.file("dis", LINUX, ".metadata"))
    assert (again.status_code, again.content, again.headers["etag"]) == (
        200,
        melded.content,
        melded.headers["etag"],
    )
    fetched = [
        r.path for r in second.upstream.requests_for("") if "/dis/" in r.path and r.path != "/simple/dis/"
    ]
    assert fetched == [], "the second replica fetched the wheel or metadata upstream"
    assert _metric(second, 'wheelmeld_shared_hits_total{kind="files"}') == 1
    assert _metric(second, 'wheelmeld_shared_hits_total{kind="meld"}') == 1
    assert _metric(first, 'wheelmeld_shared_uploads_total{kind="files"}') == 1


@pytest.mark.parametrize("hashes", [True, False], ids=["page-hash", "no-page-hash"])
def test_corrupt_bytes_in_the_bucket_are_never_served_as_verified(
    make_stack: MakeStack, moto: MotoS3, bucket: str, hashes: bool
) -> None:
    """With or without a hash on the page (nightlies have none), the bucket's sidecar decides."""
    index = _index()
    first = _replica(make_stack, moto, bucket, index, hashes)
    good = first.client.get(first.file("dis", LINUX)).content
    key = "fleet/v1/simple/dis/files/" + LINUX
    _published(moto, bucket, key)
    bad = bytes(b ^ 0xFF for b in good)  # same size, other bytes
    moto.client.put_object(Bucket=bucket, Key=key, Body=bad)

    second = _replica(make_stack, moto, bucket, index, hashes)
    status, received = second.fetch(second.file("dis", LINUX))
    assert status is None, "a body that failed its sha256 must break off, not end"
    assert received != bad and len(received) < len(bad)
    assert not [p for p in second.cache_dir.rglob(LINUX) if p.is_file()], "nothing corrupt was kept"
    # The bad object is gone from the bucket: the next request fetches the file upstream.
    assert key not in moto.keys(bucket)
    assert second.client.get(second.file("dis", LINUX)).content == good
    assert len(second.upstream.requests_for("/" + LINUX)) == 1


def test_file_downloads_redirect_to_the_bucket_once_committed(
    make_stack: MakeStack, moto: MotoS3, bucket: str
) -> None:
    index = _index()
    stack = _replica(make_stack, moto, bucket, index, s3_redirect_files=True, s3_presign_expiry=60.0)
    first = stack.client.get(stack.file("dis", LINUX))
    assert first.status_code == 200, "not in the bucket yet: streamed through the replica"
    _published(moto, bucket, "fleet/v1/simple/dis/files/" + LINUX)
    redirected = stack.client.get(stack.file("dis", LINUX))
    assert redirected.status_code == 307
    assert redirected.headers["cache-control"] == "no-store"
    location = redirected.headers["location"]
    assert location.startswith(moto.endpoint_url) and SECRET_KEY not in location
    followed = httpx.get(location)
    assert followed.status_code == 200 and followed.content == first.content
    assert sha256(followed.content) == sha256(index.file(LINUX).content or b"")
    assert stack.client.head(stack.file("dis", LINUX)).status_code == 307


def test_credentials_never_appear_in_logs_status_or_errors(
    make_stack: MakeStack, moto: MotoS3, bucket: str, caplog: pytest.LogCaptureFixture
) -> None:
    index = _index()
    stack = _replica(make_stack, moto, bucket, index)
    stack.client.get(stack.file("dis", LINUX))
    _published(moto, bucket, "fleet/v1/simple/dis/files/" + LINUX)  # nothing uploading any more
    # A bucket error on the way (the bucket is gone): logged, served as a miss, nothing secret said.
    for key in moto.keys(bucket):
        moto.client.delete_object(Bucket=bucket, Key=key)
    moto.client.delete_bucket(Bucket=bucket)
    served = stack.client.get(stack.file("dis", WINDOWS))
    assert served.status_code == 200
    pages = [stack.client.get("/").text, stack.client.get("/metrics").text, caplog.text]
    assert _metric(stack, 'wheelmeld_shared_errors_total{kind="files"}') >= 1
    for text in pages:
        assert SECRET_KEY not in text and ACCESS_KEY not in text


def test_an_offline_replica_serves_what_the_bucket_holds(
    make_stack: MakeStack, moto: MotoS3, bucket: str
) -> None:
    """Offline means no upstream index; the fleet's bucket is the replica's own storage."""
    index = _index()
    _, wheel_bytes, melded = _filled(make_stack, moto, bucket, index)
    pages_only = _replica(make_stack, moto, bucket, index)
    assert pages_only.client.get(pages_only.page("dis")).status_code == 200
    pages_only.proxy.stop()
    offline = _replica(make_stack, moto, bucket, index, offline=True, cache_dir=pages_only.cache_dir)
    assert offline.client.get(offline.file("dis", LINUX)).content == wheel_bytes
    assert offline.client.get(offline.file("dis", LINUX, ".metadata")).content == melded.content
    assert offline.client.get(offline.file("dis", WINDOWS)).status_code == 404, "in no cache and no bucket"
    assert offline.upstream.requests_for("") == ()
