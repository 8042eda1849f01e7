"""What the proxy tells its operator: ``/healthz``, Prometheus ``/metrics``, the status page at ``/``,
and one structured access-log line per request.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from urllib.parse import quote

import pytest

from tests.support.fake_index import FakeIndex
from tests.support.stack import MakeStack, Stack, wait_until

TORCH = "torch-2.7.0.dev20250116+cu126"
AARCH64 = f"{TORCH}-cp311-cp311-linux_aarch64.whl"
FILELOCK = "filelock-3.16.1-py3-none-any.whl"
_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="[^"]*",?)*\})? (\S+)$')


def _samples(text: str) -> dict[str, float]:
    """``name{labels}`` → value; asserts the Prometheus text format and a TYPE for every family."""
    typed: set[str] = set()
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if not line:
            continue
        if line.startswith("# TYPE "):
            typed.add(line.split()[2])
            continue
        if line.startswith("#"):
            assert line.startswith("# HELP "), line
            continue
        match = _SAMPLE.match(line)
        assert match, f"not a Prometheus sample line: {line!r}"
        assert match.group(1) in typed, f"{match.group(1)} has no # TYPE line before it"
        samples[match.group(1) + (match.group(2) or "")] = float(match.group(3))
    return samples


def test_healthz(shared_seed: Stack) -> None:
    response = shared_seed.client.get("/healthz")
    assert response.status_code == 200
    assert shared_seed.client.head("/healthz").status_code == 200


def test_metrics_count_requests_cache_upstream_and_melds(seed: Stack) -> None:
    assert seed.client.get(seed.page("torch")).status_code == 200
    assert seed.client.get(seed.file("torch", AARCH64, ".metadata")).status_code == 200
    assert seed.client.get(seed.file("filelock", FILELOCK)).status_code == 200
    assert seed.client.get(seed.file("filelock", FILELOCK)).status_code == 200
    assert seed.client.get("/whl/nightly/cu126/no-such-thing/").status_code == 404
    response = seed.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = _samples(response.text)
    assert samples['wheelmeld_requests_total{route="/whl",status="200"}'] >= 4
    assert samples['wheelmeld_requests_total{route="/whl",status="404"}'] == 1
    assert samples['wheelmeld_cache_total{outcome="hit"}'] >= 1
    assert samples['wheelmeld_cache_total{outcome="miss"}'] >= 1
    assert "wheelmeld_cache_total" + '{outcome="stale"}' in samples
    upstream = {k: v for k, v in samples.items() if k.startswith("wheelmeld_upstream_requests_total")}
    assert sum(upstream.values()) >= 11, upstream  # at least one per torch sibling, plus the file
    assert samples["wheelmeld_upstream_bytes_total"] > 0
    assert samples["wheelmeld_melds_total"] == 1
    assert samples["wheelmeld_melds_disagreed_total"] == 1
    assert "wheelmeld_meld_conflicts_total" in samples
    assert samples["wheelmeld_blocked_fetches_total"] == 0
    # The asked torch wheel's probe missed (the seed upstream has no PEP 658 files); none other was sent.
    assert samples['wheelmeld_metadata_probes_total{outcome="missing"}'] == 1
    assert samples['wheelmeld_metadata_probes_total{outcome="found"}'] == 0


def test_status_page_lists_routes_and_recent_melds(seed: Stack) -> None:
    before = seed.client.get("/")
    assert before.status_code == 200
    assert before.headers["content-type"].startswith("text/html")
    assert "/whl/" in before.text
    assert seed.upstream.url + "/whl" in before.text
    assert "nvidia-cudnn-cu12" not in before.text
    assert seed.client.get(seed.file("torch", AARCH64, ".metadata")).status_code == 200
    after = seed.client.get("/").text
    assert "torch" in after and "2.7.0.dev20250116+cu126" in after, "the release that needed melding"
    for added in ("nvidia-cudnn-cu12", "nvidia-nccl-cu12", "pytorch-triton"):
        assert added in after, f"the status page does not show the added {added}"


def test_agreeing_release_is_not_listed_as_melded(make_stack: MakeStack, pytorch_index: FakeIndex) -> None:
    stack = make_stack(pytorch_index, prefix="/whl/nightly/cu126", hashes=False)
    name = "numpy-2.1.2-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
    response = stack.client.get(stack.file("numpy", name, ".metadata"))
    assert response.status_code == 200
    assert response.headers["x-wheelmeld-meld"] == "agree"
    assert "numpy" not in stack.client.get("/").text.split("Recent releases")[-1]
    assert "2.1.2" not in stack.client.get("/").text


def _access_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "wheelmeld.access"]


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_one_access_log_line_per_request(
    make_stack: MakeStack, pytorch_index: FakeIndex, caplog: pytest.LogCaptureFixture, fmt: str
) -> None:
    stack = make_stack(pytorch_index, prefix="/whl/nightly/cu126", hashes=False, config={"log_format": fmt})
    # ProxyServer quiets the access log; at_level turns it up for this test and back down after.
    with caplog.at_level(logging.INFO, logger="wheelmeld.access"):
        stack.client.get(stack.page("torch") + "?token=s3cret")
        stack.client.get(stack.file("filelock", FILELOCK))
        stack.client.get("/nope/")
        wait_until(lambda: len(_access_lines(caplog)) >= 3, "three access-log lines")
    lines = _access_lines(caplog)
    assert len(lines) == 3, lines
    assert all("s3cret" not in line for line in lines), "the query string never reaches the log"
    if fmt == "json":
        # A line is written once its response is sent: order them by path, not by arrival.
        records = {r["path"]: r for r in map(json.loads, lines)}
        for record in records.values():
            assert {"time", "method", "path", "status", "bytes", "ms", "cache", "upstream_ms"} <= set(record)
            arrived = datetime.fromisoformat(record["time"])
            assert arrived.tzinfo is not None
            assert abs((datetime.now(UTC) - arrived).total_seconds()) < 60
        assert records[stack.page("torch")]["status"] == 200
        assert records["/nope/"]["status"] == 404
        file_record = records[f"{stack.base}/filelock/{FILELOCK}"]
        assert file_record["status"] == 200
        assert file_record["cache"] == "miss"
        assert file_record["bytes"] == len(pytorch_index.file(FILELOCK).content or b"")
    else:
        assert all(
            re.match(r"time=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z method=", line) for line in lines
        ), lines
        assert sum("status=200" in line and "method=GET" in line for line in lines) == 2
        assert sum("status=404" in line for line in lines) == 1


_FORGED = "\ntime=2026-01-01T00:00:00.000Z method=GET path=/admin status=200"


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_control_characters_in_a_path_cannot_forge_a_log_line(
    make_stack: MakeStack, pytorch_index: FakeIndex, caplog: pytest.LogCaptureFixture, fmt: str
) -> None:
    stack = make_stack(pytorch_index, prefix="/whl/nightly/cu126", hashes=False, config={"log_format": fmt})
    forged = quote(_FORGED + "\x1b[2J\u202e", safe="=:/")
    paths = [f"/nope{forged}/", f"{stack.page('torch')}{forged}.whl", f"{stack.base}/no{forged}/"]
    with caplog.at_level(logging.INFO, logger="wheelmeld"), caplog.at_level(logging.INFO, "wheelmeld.access"):
        for path in paths:
            assert stack.client.get(path).status_code in (301, 400, 404, 502), path
        wait_until(lambda: len(_access_lines(caplog)) >= len(paths), "an access-log line per request")
    for record in caplog.records:
        message = record.getMessage()
        assert message.isprintable(), (record.name, message)
    lines = _access_lines(caplog)
    if fmt == "json":
        assert all(json.loads(line)["path"].startswith("/") for line in lines)
    else:
        assert all("\\ntime=2026-01-01" in line for line in lines), lines


def test_the_log_tells_a_page_fetch_from_a_hit_and_a_revalidation(
    make_stack: MakeStack, pytorch_index: FakeIndex, caplog: pytest.LogCaptureFixture
) -> None:
    stack = make_stack(pytorch_index, prefix="/whl/nightly/cu126", hashes=False, route={"page_ttl": 0.0})
    with caplog.at_level(logging.INFO, logger="wheelmeld.access"):
        for _ in range(2):
            assert stack.client.get(stack.page("torch")).status_code == 200
        for _ in range(2):  # a meld read from upstream, then the meld the cache holds
            assert stack.client.get(stack.file("torch", AARCH64, ".metadata")).status_code == 200
        wait_until(lambda: len(_access_lines(caplog)) >= 4, "four access-log lines")
    fetched, revalidated, melded, cached = _access_lines(caplog)
    assert "cache=miss" in melded and "cache=hit" in cached, (melded, cached)
    assert "cache=miss" in fetched and "cache=revalidated" in revalidated, (fetched, revalidated)
    for line in (fetched, revalidated):
        upstream_ms = line.split("upstream_ms=")[1].split()[0]
        assert upstream_ms != "-" and float(upstream_ms) > 0, line
    samples = _samples(stack.client.get("/metrics").text)
    assert samples['wheelmeld_upstream_requests_total{kind="page"}'] == 4
    assert samples['wheelmeld_cache_total{outcome="revalidated"}'] == 1
    # Every body byte upstream sent (pages, range reads of the wheels) is counted; a 404's is not.
    not_found = sum(r.bytes_sent for r in stack.upstream.log.records() if r.status == 404)
    assert samples["wheelmeld_upstream_bytes_total"] == stack.upstream.bytes_sent_total() - not_found
