"""The ``<file>.metadata`` the proxy serves (PEP 658): melded bytes, from the cheapest source, once.

Upstream request logs are the evidence: which paths the proxy asked for, with which ``Range``, and
how many bytes came back.
"""

from __future__ import annotations

from dataclasses import replace

import httpx
import pytest
from packaging.markers import default_environment
from packaging.metadata import parse_email
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.support.fake_index import FakeFile, FakeIndex
from tests.support.proxy import ProxyServer
from tests.support.stack import MakeStack, Stack, sha256, wheel
from tests.support.upstream import Fault
from tests.support.wheels import build_wheel, metadata_from_fields

TORCH = "torch-2.7.0.dev20250116+cu126"
AARCH64 = f"{TORCH}-cp311-cp311-linux_aarch64.whl"
X86_64 = f"{TORCH}-cp311-cp311-manylinux_2_28_x86_64.whl"
X86_64_312 = f"{TORCH}-cp312-cp312-manylinux_2_28_x86_64.whl"
WIN = f"{TORCH}-cp312-cp312-win_amd64.whl"


def _requirements(body: bytes) -> list[Requirement]:
    raw, unparsed = parse_email(body)
    assert "requires_dist" not in unparsed
    return [Requirement(r) for r in raw.get("requires_dist", [])]


def _names(body: bytes) -> set[str]:
    return {canonicalize_name(r.name) for r in _requirements(body)}


def _wanted(body: bytes, env: dict[str, str]) -> set[str]:
    """Canonical ``name+specifier`` of each requirement that applies in ``env`` (no extras asked)."""
    out = set()
    for req in _requirements(body):
        if req.marker is None or req.marker.evaluate({**env, "extra": ""}):
            out.add(f"{canonicalize_name(req.name)}{req.specifier}")
    return out


def _env(sys_platform: str, machine: str, python: str) -> dict[str, str]:
    env = dict(default_environment())
    system = {"linux": "Linux", "win32": "Windows", "darwin": "Darwin"}[sys_platform]
    env.update(
        sys_platform=sys_platform,
        platform_system=system,
        platform_machine=machine,
        python_version=python,
        python_full_version=python + ".0",
        implementation_name="cpython",
        platform_python_implementation="CPython",
        os_name="nt" if sys_platform == "win32" else "posix",
    )
    return env


def _metadata(stack: Stack, project: str, filename: str) -> tuple[bytes, dict[str, str]]:
    response = stack.client.get(stack.file(project, filename, ".metadata"))
    assert response.status_code == 200, response.text
    return response.content, dict(response.headers)


def _disagreeing_index(*, payload_size: int = 64) -> FakeIndex:
    """Three wheels of one release; only the Linux one needs ``nvidia-thing``."""
    return FakeIndex.from_files(
        {
            "gpu-lib": [
                wheel(
                    "gpu_lib-1.0-cp311-cp311-manylinux_2_17_x86_64.whl",
                    ["numpy", "nvidia-thing==1.2"],
                    payload_size=payload_size,
                ),
                wheel("gpu_lib-1.0-cp311-cp311-macosx_11_0_arm64.whl", ["numpy"], payload_size=payload_size),
                wheel("gpu_lib-1.0-cp311-cp311-win_amd64.whl", ["numpy"], payload_size=payload_size),
            ]
        }
    )


GPU_LINUX = "gpu_lib-1.0-cp311-cp311-manylinux_2_17_x86_64.whl"
GPU_MAC = "gpu_lib-1.0-cp311-cp311-macosx_11_0_arm64.whl"
GPU_WIN = "gpu_lib-1.0-cp311-cp311-win_amd64.whl"


# -- the seed's torch ------------------------------------------------------------------------------


def test_seed_torch_is_melded(seed: Stack, pytorch_index: FakeIndex) -> None:
    aarch64, headers = _metadata(seed, "torch", AARCH64)
    assert headers["x-wheelmeld-meld"] == "melded"
    assert headers["etag"].strip('"') == sha256(aarch64)
    own_x86 = pytorch_index.file(X86_64).metadata
    assert own_x86 is not None
    nvidia = {n for n in _names(own_x86) if n.startswith("nvidia-")}
    assert len(nvidia) == 13
    assert nvidia | {"pytorch-triton"} <= _names(aarch64)
    x86, _ = _metadata(seed, "torch", X86_64)
    assert x86 == own_x86, "the x86_64 wheel already tells the whole story: upstream's bytes"
    # Consistency: every wheel of the release serves the same requirement list.
    lists = set()
    for f in pytorch_index.projects["torch"]:
        body, _ = _metadata(seed, "torch", f.filename)
        lists.add(frozenset(str(r) for r in _requirements(body)))
    assert len(lists) == 1
    # Fidelity: where each wheel is picked, the meld asks for what the wheel itself asks for.
    cases = [(AARCH64, _env("linux", "aarch64", "3.11")), (X86_64, _env("linux", "x86_64", "3.11"))]
    cases.append((WIN, _env("win32", "AMD64", "3.12")))
    for filename, env in cases:
        own = pytorch_index.file(filename).metadata
        assert own is not None
        assert _wanted(aarch64, env) == _wanted(own, env), filename


def test_metadata_head_and_unknown_files(seed: Stack) -> None:
    body, _ = _metadata(seed, "torch", AARCH64)
    head = seed.client.head(seed.file("torch", AARCH64, ".metadata"))
    assert head.status_code == 200
    assert head.content == b""
    assert int(head.headers["content-length"]) == len(body)
    missing = seed.client.get(seed.file("torch", "torch-0.0.1-py3-none-any.whl", ".metadata"))
    assert missing.status_code == 404


def test_sdist_has_no_metadata(make_stack: MakeStack) -> None:
    from tests.support.fake_index import FakeFile

    index = FakeIndex.from_files(
        {"plain": [wheel("plain-1.0-py3-none-any.whl"), FakeFile("plain-1.0.tar.gz", content=b"x" * 10)]}
    )
    stack = make_stack(index)
    assert stack.client.get(stack.file("plain", "plain-1.0.tar.gz", ".metadata")).status_code == 404
    assert stack.client.get(stack.file("plain", "plain-1.0-py3-none-any.whl", ".metadata")).status_code == 200


# -- sources, cheapest first -----------------------------------------------------------------------


def test_pep658_files_are_used_and_wheels_untouched(make_stack: MakeStack) -> None:
    stack = make_stack(_disagreeing_index(), pep658=True, ranges=True)
    body, headers = _metadata(stack, "gpu-lib", GPU_MAC)
    assert headers["x-wheelmeld-meld"] == "melded"
    assert "nvidia-thing" in _names(body)
    assert stack.requests(".whl") == [], "no wheel byte was needed"
    fetched = sorted(p for _m, p, _r in stack.requests(".metadata"))
    assert fetched == sorted(f"/simple/gpu-lib/{n}.metadata" for n in (GPU_LINUX, GPU_MAC, GPU_WIN))


@pytest.mark.parametrize("range_client", ["aiohttp", "httpx"])
def test_range_requests_read_a_few_kilobytes(make_stack: MakeStack, range_client: str) -> None:
    size = 3 * 1024 * 1024
    index = _disagreeing_index(payload_size=size)
    stack = make_stack(index, pep658=False, ranges=True, config={"upstream_range_client": range_client})
    body, headers = _metadata(stack, "gpu-lib", GPU_WIN)
    assert headers["x-wheelmeld-meld"] == "melded"
    assert "nvidia-thing" in _names(body)
    for name in (GPU_LINUX, GPU_MAC, GPU_WIN):
        wheel_requests = stack.upstream.requests_for("/" + name)
        probes = stack.upstream.requests_for("/" + name + ".metadata")
        assert wheel_requests and len(wheel_requests) + len(probes) <= 4, (name, stack.requests())
        assert all(r.range for r in wheel_requests), "every wheel request is a range request"
        sent = stack.upstream.bytes_sent_total("/" + name)
        assert sent < 200 * 1024 < index.file(name).body_size, (name, sent)


def test_upstream_without_range_support_falls_back_to_full_download(
    make_stack: MakeStack, pytorch_index: FakeIndex
) -> None:
    stack = make_stack(pytorch_index, prefix="/whl/nightly/cu126", pep658=False, ranges=False, hashes=False)
    body, headers = _metadata(stack, "torch", AARCH64)
    assert headers["x-wheelmeld-meld"] == "melded"
    assert {n for n in _names(body) if n.startswith("nvidia-")}
    x86, _ = _metadata(stack, "torch", X86_64)
    assert x86 == pytorch_index.file(X86_64).metadata


def test_second_request_needs_no_upstream(seed: Stack) -> None:
    first, _ = _metadata(seed, "torch", AARCH64)
    seed.upstream.log.reset()
    again, _ = _metadata(seed, "torch", AARCH64)
    sibling, _ = _metadata(seed, "torch", WIN)
    assert again == first
    assert _names(sibling) == _names(first)
    assert seed.requests() == []


def test_metadata_survives_a_restart_without_upstream_traffic(seed: Stack) -> None:
    first, _ = _metadata(seed, "torch", AARCH64)
    seed.upstream.log.reset()
    # Port 8000 means "pick a free one" to ProxyServer; the cache directory is the same.
    with (
        ProxyServer(replace(seed.proxy.config, port=8000)) as again,
        httpx.Client(base_url=again.url, timeout=20) as client,
    ):
        response = client.get(seed.file("torch", AARCH64, ".metadata"))
    assert response.status_code == 200
    assert response.content == first
    assert seed.requests() == [], "immutable metadata and a fresh page come from the disk cache"


def test_agreeing_siblings_need_no_sibling_fetch(make_stack: MakeStack) -> None:
    requires = ["idna>=3", 'colorama; sys_platform == "win32"']
    names = [
        "same-2.0-cp311-cp311-manylinux_2_17_x86_64.whl",
        "same-2.0-cp311-cp311-macosx_11_0_arm64.whl",
        "same-2.0-cp311-cp311-win_amd64.whl",
    ]
    index = FakeIndex.from_files({"same": [wheel(n, requires) for n in names]})
    stack = make_stack(index, pep658=True, format="json")
    body, headers = _metadata(stack, "same", names[1])
    assert body == index.file(names[1]).metadata
    assert headers["x-wheelmeld-meld"] == "agree"
    others = [n for n in names if n != names[1]]
    assert not [p for _m, p, _r in stack.requests() if any(o in p for o in others)]
    assert [p for _m, p, _r in stack.requests(".metadata")] == [f"/simple/same/{names[1]}.metadata"]
    assert stack.requests(".whl") == []


def test_sibling_error_serves_own_metadata_and_is_not_cached(seed: Stack, pytorch_index: FakeIndex) -> None:
    seed.upstream.inject_fault("/" + X86_64_312, Fault(status=500))
    body, headers = _metadata(seed, "torch", AARCH64)
    assert headers["x-wheelmeld-meld"].startswith("unavailable")
    assert body == pytorch_index.file(AARCH64).metadata, "never worse than no proxy: its own metadata"
    metrics = seed.client.get("/metrics").text
    assert "wheelmeld_melds_unavailable_total 1" in metrics
    seed.upstream.clear_faults()
    healed, headers = _metadata(seed, "torch", AARCH64)
    assert headers["x-wheelmeld-meld"] == "melded"
    assert "nvidia-nccl-cu12" in _names(healed)


def test_meld_off_serves_each_wheels_own_metadata(make_stack: MakeStack) -> None:
    stack = make_stack(_disagreeing_index(), pep658=True, route={"meld": False})
    body, headers = _metadata(stack, "gpu-lib", GPU_MAC)
    assert headers["x-wheelmeld-meld"] == "off"
    assert "nvidia-thing" not in _names(body)
    assert [p for _m, p, _r in stack.requests(".metadata")] == [f"/simple/gpu-lib/{GPU_MAC}.metadata"]


def test_a_new_sibling_upstream_makes_a_new_meld(make_stack: MakeStack) -> None:
    index = _disagreeing_index()
    stack = make_stack(index, pep658=True, route={"page_ttl": 0.0})
    before, _ = _metadata(stack, "gpu-lib", GPU_MAC)
    assert "extra-tool" not in _names(before)
    newcomer = wheel("gpu_lib-1.0-cp311-cp311-manylinux_2_17_aarch64.whl", ["numpy", "extra-tool"])
    stack.upstream.set_index(FakeIndex.from_files({"gpu-lib": [*index.projects["gpu-lib"], newcomer]}))
    assert stack.client.get(stack.page("gpu-lib")).status_code == 200  # page_ttl 0: revalidated
    after, headers = _metadata(stack, "gpu-lib", GPU_MAC)
    assert headers["x-wheelmeld-meld"] == "melded"
    assert {"extra-tool", "nvidia-thing"} <= _names(after)


def test_a_malformed_name_sharing_a_release_head_stays_out_of_the_meld(make_stack: MakeStack) -> None:
    # Pages group wheels by the "name-version-" head of their file names; only names packaging
    # reads as wheels of the release take part in its meld.
    index = _disagreeing_index()
    stray = replace(index.file(GPU_WIN), filename="gpu_lib-1.0-cp311.whl")
    index = FakeIndex.from_files({"gpu-lib": [*index.projects["gpu-lib"], stray]})
    stack = make_stack(index, pep658=False)
    body, headers = _metadata(stack, "gpu-lib", GPU_MAC)
    assert headers["x-wheelmeld-meld"] == "melded", headers["x-wheelmeld-meld"]
    assert "nvidia-thing" in _names(body)
    assert not [p for _m, p, _r in stack.requests() if "gpu_lib-1.0-cp311.whl" in p]


@pytest.mark.parametrize("dist_info_first", [False, True], ids=["dist-info-last", "dist-info-first"])
def test_a_cold_meld_reads_each_sibling_with_one_range_request(
    make_stack: MakeStack, dist_info_first: bool
) -> None:
    # Without PEP 658 files, a wheel whose central directory outgrows the 64 KiB tail costs three
    # range requests; one wheel per platform pays that and tells its siblings where to look.
    pythons = ("cp310", "cp311", "cp312", "cp313")
    platforms = ("manylinux_2_28_x86_64", "win_amd64")
    names = [f"big_lib-1.0-{py}-{py}-{plat}.whl" for py in pythons for plat in platforms]
    files = []
    for name in names:
        requires = ["numpy", "nvidia-thing==1.2"] if "linux" in name else ["numpy"]
        metadata = metadata_from_fields("big-lib", "1.0", requires)
        content = build_wheel(
            name,
            metadata,
            payload_size=400_000,
            extra_members=_many_modules(3000),
            dist_info_first=dist_info_first,
        )
        files.append(FakeFile(name, content=content, metadata=metadata))
    stack = make_stack(FakeIndex.from_files({"big-lib": files}), pep658=False, ranges=True)
    asked = names[-1]
    body, headers = _metadata(stack, "big-lib", asked)
    assert headers["x-wheelmeld-meld"] == "melded"
    assert "nvidia-thing" in _names(body)
    probes = stack.requests(".metadata")
    assert [p for _m, p, _r in probes] == [f"/simple/big-lib/{asked}.metadata"], (
        "one probe, by the asked wheel"
    )
    reads = {name: stack.upstream.requests_for("/" + name) for name in names}
    assert all(r.range for rs in reads.values() for r in rs), "every wheel request is a range request"
    for platform in platforms:
        # One wheel per platform (the asked one for its own) learns the layout for the others.
        counts = sorted(len(reads[n]) for n in names if platform in n)
        assert counts == [1, 1, 1, 3], (platform, counts)
    assert len(reads[asked]) == 3


def _many_modules(count: int) -> dict[str, bytes]:
    return {f"big_lib/sub/module_with_a_long_name_{i:05d}.py": b"x = 1\n" for i in range(count)}


def test_unadvertised_pep658_files_are_found_by_probing(make_stack: MakeStack) -> None:
    # The upstream has every .metadata file but its pages do not say so: the asked wheel's probe
    # finds its file (a range read it started meanwhile is dropped), and its siblings probe too.
    stack = make_stack(_disagreeing_index(), pep658=True, advertise_pep658=False, ranges=True)
    body, headers = _metadata(stack, "gpu-lib", GPU_MAC)
    assert headers["x-wheelmeld-meld"] == "melded"
    assert "nvidia-thing" in _names(body)
    fetched = sorted(p for _m, p, _r in stack.requests(".metadata"))
    assert fetched == sorted(f"/simple/gpu-lib/{n}.metadata" for n in (GPU_LINUX, GPU_MAC, GPU_WIN))
    assert not stack.upstream.requests_for("/" + GPU_LINUX) and not stack.upstream.requests_for("/" + GPU_WIN)
    assert len(stack.upstream.requests_for("/" + GPU_MAC)) <= 1, "at most the read raced against the probe"


def test_probing_stops_on_a_route_where_it_never_pays(make_stack: MakeStack) -> None:
    names = [f"solo{i}-1.0-py3-none-any.whl" for i in range(10)]
    index = FakeIndex.from_files({f"solo{i}": [wheel(n, ["idna"])] for i, n in enumerate(names)})
    stack = make_stack(index, pep658=False, ranges=True)
    for i, name in enumerate(names):
        _body, headers = _metadata(stack, f"solo{i}", name)
        assert headers["x-wheelmeld-meld"] == "single"
    probed = [p for _m, p, _r in stack.requests(".metadata")]
    assert probed == [f"/simple/solo{i}/{n}.metadata" for i, n in enumerate(names[:8])], probed
