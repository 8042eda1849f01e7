"""Golden tests on real data: the seed index (uv issue 10693) and torch 2.1.0's 20 METADATA files."""

from __future__ import annotations

import pytest
from packaging.requirements import Requirement

from proxy.meld import WheelInput, meld_release
from tests.meld.meldkit import check_contract, requirements_of, seed_releases, torch_210

NVIDIA_MARKER = 'platform_system == "Linux" and platform_machine == "x86_64"'


def _headers(data: bytes) -> tuple[list[bytes], bytes]:
    """Header lines other than the ones the meld may change, and everything after the headers."""
    head, sep, body = data.partition(b"\n\n") if b"\r\n\r\n" not in data else data.partition(b"\r\n\r\n")
    kept = [
        line
        for line in head.splitlines(keepends=True)
        if not line.startswith((b"Requires-Dist:", b"Provides-Extra:"))
    ]
    return kept, sep + body


# --- the seed ------------------------------------------------------------------------------------

SEED = seed_releases()
TORCH = ("torch", "2.7.0.dev20250116+cu126")


def test_seed_torch_result_is_the_x86_64_list_untouched() -> None:
    wheels = SEED[TORCH]
    result = meld_release(wheels)
    x86 = [w for w in wheels if w.filename.endswith("x86_64.whl")]
    others = [w for w in wheels if not w.filename.endswith("x86_64.whl")]
    assert len(x86) == 4 and len(others) == 7
    for wheel in x86:
        assert result.outputs[wheel.filename] is wheel.metadata  # byte for byte upstream's
    expected = set(requirements_of(x86[0].metadata))
    for wheel in others:
        served = requirements_of(result.outputs[wheel.filename])
        assert set(served) == expected
        gained = {r.name for r in served} - {r.name for r in requirements_of(wheel.metadata)}
        assert gained == {
            *(
                f"nvidia-{lib}"
                for lib in (
                    "cuda-nvrtc-cu12",
                    "cuda-runtime-cu12",
                    "cuda-cupti-cu12",
                    "cudnn-cu12",
                    "cublas-cu12",
                    "cufft-cu12",
                    "curand-cu12",
                    "cusolver-cu12",
                    "cusparse-cu12",
                    "cusparselt-cu12",
                    "nccl-cu12",
                    "nvtx-cu12",
                    "nvjitlink-cu12",
                )
            ),
            "pytorch-triton",
        }
    report = result.report
    assert report.disagreed and report.complete and not report.conflicts and not report.problems
    assert sorted(report.changed) == sorted(w.filename for w in others)
    assert len(report.added) == 14
    for item in report.added:
        assert item.marker is None and item.result == item.requirement  # contract item 4
        assert str(Requirement(item.result).marker) == NVIDIA_MARKER
        assert len(item.lacking) == 7


@pytest.mark.parametrize("release", sorted(SEED), ids="{0[0]}-{0[1]}".format)
def test_seed_every_release_keeps_the_contract(release: tuple[str, str]) -> None:
    wheels = SEED[release]
    result = meld_release(wheels)
    check_contract(wheels, result.outputs)
    if release != TORCH:
        assert not result.report.disagreed
        assert all(result.outputs[w.filename] is w.metadata for w in wheels)


def test_seed_torchao_local_label_makes_two_releases() -> None:
    pure = SEED[("torchao", "0.8.0.dev20250116")]
    cuda = SEED[("torchao", "0.8.0.dev20250116+cu126")]
    assert [w.filename for w in pure] == ["torchao-0.8.0.dev20250116-py3-none-any.whl"]
    # Handed over together by mistake, the engine still refuses to meld across releases.
    result = meld_release([*cuda, *pure])
    assert result.outputs[pure[0].filename] is pure[0].metadata
    assert "another release" in result.report.problems[pure[0].filename]
    assert result.report.project == "torchao" and result.report.version == "0.8.0.dev20250116+cu126"


# --- torch 2.1.0 from PyPI ---------------------------------------------------------------------

TORCH_210 = torch_210()


def test_torch_210_has_four_textual_and_three_canonical_sets() -> None:
    texts = {
        tuple(line for line in w.metadata.splitlines() if line.startswith(b"Requires-Dist"))
        for w in TORCH_210
    }
    canonical = {frozenset(requirements_of(w.metadata)) for w in TORCH_210}
    assert len(TORCH_210) == 20 and len(texts) >= 4 and len(canonical) == 3


def test_torch_210_keeps_the_contract() -> None:
    check_contract(TORCH_210, meld_release(TORCH_210).outputs)


def test_torch_210_markers_are_exactly_the_expected_ones() -> None:
    report = meld_release(TORCH_210).report
    added = {item.requirement: item for item in report.added}
    dynamo = added['jinja2; extra == "dynamo"']
    # The dynamo extra exists on Linux only, but every wheel requires plain ``jinja2`` anyway: the
    # Windows and macOS wheels install it whatever extra is asked, so the line needs no limit there.
    assert dynamo.marker is None and dynamo.result == dynamo.requirement
    assert sorted(dynamo.lacking) == sorted(
        w.filename for w in TORCH_210 if "win_amd64" in w.filename or "macosx" in w.filename
    )
    nvidia = [item for text, item in added.items() if text.startswith(("nvidia-", "triton"))]
    assert len(nvidia) == 12
    assert all(item.marker is None and item.result == item.requirement for item in nvidia)
    assert len(added) == 13
    assert set(report.provides_extra) == {"opt-einsum", "dynamo"}
    assert not report.conflicts and not report.problems


def test_torch_210_everything_but_requirements_is_upstreams() -> None:
    result = meld_release(TORCH_210)
    for wheel in TORCH_210:
        out = result.outputs[wheel.filename]
        assert _headers(out) == _headers(wheel.metadata)
        if b"\r\n" in wheel.metadata:  # the Windows wheels were written with CRLF: still CRLF
            head = out.partition(b"\r\n\r\n")[0]
            assert head.count(b"\n") == head.count(b"\r\n")
    # The Linux x86_64 wheels declare every line of R* already, each with its own marker: upstream's bytes.
    for wheel in TORCH_210:
        if "manylinux1_x86_64" in wheel.filename:
            assert result.outputs[wheel.filename] is wheel.metadata


def test_torch_210_mac_wheel_gains_the_extra_and_the_cuda_lines() -> None:
    mac = next(w for w in TORCH_210 if "macosx_11_0_arm64" in w.filename and "cp311" in w.filename)
    out = meld_release(TORCH_210).outputs[mac.filename].decode()
    assert "Provides-Extra: dynamo\n" in out
    assert (
        'Requires-Dist: triton==2.1.0; platform_system == "Linux" and platform_machine == "x86_64"\n' in out
    )
    assert "Metadata-Version: 2.1\n" in out


def test_agreeing_subset_is_served_as_is() -> None:
    aarch64 = [w for w in TORCH_210 if "aarch64" in w.filename]
    result = meld_release(aarch64)
    assert not result.report.disagreed
    assert all(result.outputs[w.filename] is w.metadata for w in aarch64)


def test_missing_sibling_is_reported_incomplete() -> None:
    wheels = [WheelInput(w.filename, None) if "win_amd64" in w.filename else w for w in TORCH_210]
    result = meld_release(wheels)
    assert not result.report.complete
    assert all(w.filename not in result.outputs for w in wheels if w.metadata is None)
    assert len(result.report.problems) == 4
    check_contract(wheels, result.outputs)


def test_a_release_can_be_asked_whether_it_disagrees_without_being_melded() -> None:
    # What the metadata service asks before it fetches a release's sdist: no meld is made, the
    # bytes stay upstream's, and the report says the wheels disagree.
    wheels = torch_210()
    checked = meld_release(wheels, None, meld_if_disagreed=False)
    assert checked.report.disagreed
    assert checked.outputs == {w.filename: w.metadata for w in wheels}
    assert meld_release(wheels, None).outputs != checked.outputs
