"""Bad input never raises out of the engine; the wheel keeps its own bytes and the report says why."""

from __future__ import annotations

import pytest

from proxy.meld import MeldLimits, SdistInput, Uncovered, WheelInput, meld_release
from tests.meld.meldkit import build_metadata, check_contract

GOOD_X86 = WheelInput(
    "demo-1.0-cp311-cp311-manylinux_2_17_x86_64.whl",
    build_metadata("demo", "1.0", ["numpy", "triton; platform_machine == 'x86_64'"]),
)
GOOD_ARM = WheelInput(
    "demo-1.0-cp311-cp311-manylinux_2_17_aarch64.whl", build_metadata("demo", "1.0", ["numpy"])
)


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (WheelInput("demo-1.0-cp311-cp311-win_amd64.whl", b"\x00\x01 this is no metadata"), "does not parse"),
        (WheelInput("demo-1.0-cp311-cp311-win_amd64.whl", b""), "does not parse"),
        (
            WheelInput("demo-1.0-cp311-cp311-win_amd64.whl", build_metadata("demo", "1.0", ["numpy >= = 1"])),
            "not a PEP 508 requirement",
        ),
        (
            WheelInput("demo-1.0-cp311-cp311-win_amd64.whl", build_metadata("other", "1.0", [])),
            "metadata says",
        ),
        (
            WheelInput("demo-1.0-cp311-cp311-win_amd64.whl", build_metadata("demo", "1.1", [])),
            "metadata says",
        ),
        (
            WheelInput("demo-1.0-cp311-cp311-win_amd64.whl", build_metadata("demo", "not.a.version", [])),
            "PEP 440",
        ),
        (WheelInput("demo-1.0-cp311-cp311-win_amd64.whl", b"Metadata-Version: 2.1\nName: demo\n\n"), "lacks"),
        (WheelInput("demo-1.0.tar.gz", build_metadata("demo", "1.0", [])), "not a wheel file name"),
        (WheelInput("demo-1.0-cp311-cp311-win_amd64.zip", build_metadata("demo", "1.0", [])), "not a wheel"),
        (
            WheelInput("other-1.0-cp311-cp311-win_amd64.whl", build_metadata("other", "1.0", [])),
            "another release",
        ),
        (
            WheelInput("demo-1.0+cu126-cp311-cp311-win_amd64.whl", build_metadata("demo", "1.0+cu126", [])),
            "another",
        ),
        (WheelInput("demo-1.0-cp311-cp311-win_amd64.whl", None), "could not be had"),
    ],
)
def test_bad_wheel_keeps_its_bytes(bad: WheelInput, reason: str) -> None:
    result = meld_release([GOOD_X86, bad, GOOD_ARM])
    assert reason in result.report.problems[bad.filename]
    if bad.metadata is None:
        assert bad.filename not in result.outputs
    else:
        assert result.outputs[bad.filename] is bad.metadata
    assert not result.report.complete
    # The good siblings are still melded with each other.
    assert result.report.disagreed
    check_contract([GOOD_X86, GOOD_ARM], result.outputs)
    assert result.outputs[GOOD_X86.filename] is GOOD_X86.metadata
    assert b'Requires-Dist: triton; platform_machine == "x86_64"' in result.outputs[GOOD_ARM.filename]


@pytest.mark.parametrize(
    "wheels",
    [
        [],
        [WheelInput("garbage", None)],
        [WheelInput("garbage", b"garbage")],
        [WheelInput("a-1-py3-none-any.whl", b"\xff" * 100), WheelInput("a-1-py3-none-any.whl", None)],
    ],
)
def test_degenerate_inputs(wheels: list[WheelInput]) -> None:
    result = meld_release(wheels)
    assert set(result.outputs) == {w.filename for w in wheels if w.metadata is not None}
    assert result.report.to_dict()["disagreed"] is False


def test_bad_sdist_name_is_reported_and_wheels_still_meld() -> None:
    result = meld_release([GOOD_X86, GOOD_ARM], SdistInput("not-an-sdist.zip", None))
    assert "not an sdist file name" in result.report.problems["not-an-sdist.zip"]
    assert result.report.disagreed


def test_sdist_decides_the_release() -> None:
    result = meld_release([GOOD_X86, GOOD_ARM], SdistInput("demo-2.0.tar.gz", None))
    assert set(result.report.problems) == {GOOD_X86.filename, GOOD_ARM.filename, "demo-2.0.tar.gz"}
    assert result.report.version == "2.0" and not result.report.complete


def test_report_is_json_able() -> None:
    import json

    x86 = WheelInput(GOOD_X86.filename, build_metadata("demo", "1.0", ["numpy", "cuda-libs"]))
    report = meld_release([x86, GOOD_ARM]).report
    data = json.loads(json.dumps(report.to_dict()))
    assert data["changed"] == [x86.filename, GOOD_ARM.filename]
    assert data["added"][0]["lacking"] == [GOOD_ARM.filename]
    assert data["added"][0]["marker"] == 'platform_machine == "x86_64"'


def test_an_internal_failure_serves_upstreams_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Contract item 7 holds even against a bug in the engine itself."""
    import proxy.meld.placement as placement

    def broken(*_: object) -> str:
        raise RuntimeError("boom")

    monkeypatch.setattr(placement, "separating_marker", broken)
    x86 = WheelInput(GOOD_X86.filename, build_metadata("demo", "1.0", ["numpy", "cuda-libs"]))
    result = meld_release([x86, GOOD_ARM])
    assert result.outputs[x86.filename] is x86.metadata
    assert result.outputs[GOOD_ARM.filename] is GOOD_ARM.metadata
    assert "boom" in result.report.problems["(release)"] and not result.report.complete


HOSTILE = WheelInput(
    "demo-1.0-cp311-cp311-win_amd64.whl",
    build_metadata("demo", "1.0", [f"pkg{index}>=1" for index in range(100_000)]),
)


@pytest.mark.parametrize(
    ("bad", "limits", "reason"),
    [
        (HOSTILE, MeldLimits(), "more than 5000 Requires-Dist lines"),
        (
            WheelInput(
                "demo-1.0-cp311-cp311-win_amd64.whl", build_metadata("demo", "1.0", ["a"], body="x" * 9000)
            ),
            MeldLimits(max_metadata_bytes=8000),
            "over the limit of 8000",
        ),
        (
            WheelInput("demo-1.0-cp311-cp311-win_amd64.whl", build_metadata("demo", "1.0", ["a", "b", "c"])),
            MeldLimits(max_requirements=2),  # the good siblings have two each
            "more than 2 Requires-Dist lines",
        ),
    ],
)
def test_metadata_over_a_limit_is_unusable(bad: WheelInput, limits: MeldLimits, reason: str) -> None:
    """A sibling over a limit is refused before anything parses it, like any unusable metadata."""
    result = meld_release([GOOD_X86, bad, GOOD_ARM], limits=limits)
    assert reason in result.report.problems[bad.filename]
    assert result.outputs[bad.filename] is bad.metadata
    assert not result.report.complete and result.report.disagreed
    check_contract([GOOD_X86, GOOD_ARM], result.outputs)


def test_sdist_metadata_over_a_limit_leaves_uncovered_environments_to_it() -> None:
    sdist = SdistInput("demo-1.0.tar.gz", HOSTILE.metadata)
    result = meld_release([GOOD_X86, GOOD_ARM], sdist)
    assert "Requires-Dist lines" in result.report.problems[sdist.filename]
    assert result.report.uncovered is Uncovered.UNAVAILABLE and not result.report.complete
