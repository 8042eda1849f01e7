"""Benchmark: melds per second of the torch 2.1.0 release (issue 2's target: at least 100 per second).

Input: the 20 real METADATA files of torch 2.1.0 (~25 KB each, long descriptions, three canonical
requirement sets) from ``tests/fixtures/pypi-torch-2.1.0``. Each run melds the whole release
``--melds`` times; the result is the median of ``--runs`` runs. Also measured: one cold meld (every
cache emptied first), the agreeing case (the release's 4 identical aarch64 wheels, repeated to 20),
and a release of lxml's shape (175 wheels: CPython 3.6-3.13 and PyPy over 19 platform tags) whose
wheels disagree the way issue 13's class 2 does, melded cold without and with a static sdist.

Run: ``.venv/bin/python benchmarks/bench_meld.py`` (``--help`` for options). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from proxy.meld import (
    NO_SDIST,
    SdistInput,
    WheelInput,
    environments,
    markers,
    meld_release,
    placement,
    preference,
    requirements,
    search,
)

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "pypi-torch-2.1.0"


def _release() -> list[WheelInput]:
    return [
        WheelInput(path.name.removesuffix(".metadata"), path.read_bytes())
        for path in sorted(FIXTURE.glob("*.metadata"))
    ]


def _agreeing(release: Sequence[WheelInput], distinct: bool) -> list[WheelInput]:
    """20 wheels that agree: an aarch64 wheel's metadata under 20 distinct (valid) file names.

    ``distinct``: each copy's body differs by a byte, so no two metadata contents are identical.
    """
    aarch64 = next(w for w in release if "aarch64" in w.filename and "cp310" in w.filename)
    assert aarch64.metadata is not None
    names = [f"torch-2.1.0-cp310-cp310-manylinux_2_{glibc}_aarch64.whl" for glibc in range(17, 37)]
    return [
        WheelInput(name, aarch64.metadata + (f"{index}\n".encode() if distinct else b""))
        for index, name in enumerate(names)
    ]


_LXML_CPYTHON = ("cp36-cp36m", "cp37-cp37m", "cp38-cp38", "cp39-cp39", "cp310-cp310", "cp311-cp311")
_LXML_CPYTHON += ("cp312-cp312", "cp313-cp313")
_LXML_PLATFORMS = (
    "manylinux_2_17_x86_64.manylinux2014_x86_64",
    "manylinux_2_28_x86_64",
    "manylinux_2_17_aarch64.manylinux2014_aarch64",
    "manylinux_2_28_aarch64",
    "manylinux_2_17_ppc64le.manylinux2014_ppc64le",
    "manylinux_2_17_s390x.manylinux2014_s390x",
    "manylinux_2_17_armv7l.manylinux2014_armv7l",
    "manylinux_2_5_i686.manylinux1_i686",
    "musllinux_1_2_x86_64",
    "musllinux_1_2_aarch64",
    "musllinux_1_1_ppc64le",
    "musllinux_1_1_s390x",
    "musllinux_1_2_armv7l",
    "musllinux_1_1_i686",
    "macosx_10_9_x86_64",
    "macosx_11_0_arm64",
    "macosx_10_9_universal2",
    "win32",
    "win_amd64",
    "win_arm64",
)
_LXML_PYPY = ("pp37-pypy37_pp73", "pp38-pypy38_pp73", "pp39-pypy39_pp73", "pp310-pypy310_pp73")
_LXML_PYPY_PLATFORMS = (
    "manylinux_2_17_x86_64.manylinux2014_x86_64",
    "manylinux_2_17_aarch64",
    "macosx_10_9_x86_64",
    "win_amd64",
)


def _metadata(requires: Sequence[str], *, version: str = "2.1") -> bytes:
    lines = [f"Metadata-Version: {version}", "Name: lxml", "Version: 5.3.0"]
    lines += [f"Requires-Dist: {text}" for text in requires]
    lines += [f"Provides-Extra: {extra}" for extra in ("cssselect", "html5", "htmlsoup", "source")]
    return ("\n".join(lines) + "\n\n" + "A description line.\n" * 200).encode()


def _lxml_shaped() -> list[WheelInput]:
    """175 wheels; Python 3.6-3.9 wheels but the macOS arm64 / universal2 ones require six."""
    extras = ["cssselect>=0.7; extra == 'cssselect'", "html5lib; extra == 'html5'"]
    wheels = []
    for python in _LXML_CPYTHON:
        for tag in _LXML_PLATFORMS:
            if tag == "win_arm64" and python in _LXML_CPYTHON[:3]:
                continue
            old = python[:4] in ("cp36", "cp37", "cp38", "cp39") and "arm64" not in tag
            requires = [*extras, "six"] if old and "universal2" not in tag else extras
            wheels.append(WheelInput(f"lxml-5.3.0-{python}-{tag}.whl", _metadata(requires)))
    for tag in ("manylinux_2_17_x86_64.manylinux2014_x86_64", "win_amd64"):
        wheels.append(WheelInput(f"lxml-5.3.0-cp313-cp313t-{tag}.whl", _metadata(extras)))
    for python in _LXML_PYPY:
        for tag in _LXML_PYPY_PLATFORMS:
            wheels.append(WheelInput(f"lxml-5.3.0-{python}-{tag}.whl", _metadata(extras)))
    return wheels


def _clear_caches() -> None:
    for cached in (
        requirements.parse_requirement,
        search.comparisons,
        placement._by_target,
        markers._certainly_true,
        environments._all_cells,
        markers._possibly_true,
        markers._marker,
        markers._dimensions_read,
        environments.platform_facts,
        environments.python_facts,
        environments.marker_environments,
        environments._cells_of_tag,
        preference.cell_tag_ranks,
    ):
        cached.cache_clear()


def _rate(meld: Callable[[], object], melds: int, runs: int) -> tuple[float, list[float]]:
    rates = []
    for _ in range(runs):
        start = time.perf_counter()
        for _ in range(melds):
            meld()
        rates.append(melds / (time.perf_counter() - start))
    return statistics.median(rates), rates


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--melds", type=int, default=200, help="melds per run")
    args = parser.parse_args(argv)

    release = _release()
    if len(release) != 20:
        print(f"expected 20 METADATA files in {FIXTURE}, found {len(release)}", file=sys.stderr)
        return 1
    agreeing = _agreeing(release, distinct=False)
    agreeing_distinct = _agreeing(release, distinct=True)
    _clear_caches()
    start = time.perf_counter()
    result = meld_release(release)
    cold = time.perf_counter() - start
    assert result.report.disagreed and result.report.changed
    assert not meld_release(agreeing).report.disagreed
    assert not meld_release(agreeing_distinct).report.disagreed

    lxml = _lxml_shaped()
    sdist_lines = ["cssselect>=0.7; extra == 'cssselect'", "html5lib; extra == 'html5'"]
    sdist_lines.append("six; python_version < '3.10'")
    lxml_sdist = SdistInput("lxml-5.3.0.tar.gz", _metadata(sdist_lines, version="2.2"))
    cold_lxml = {}
    for label, sdist in (("unknown", None), ("none", NO_SDIST), ("static", lxml_sdist)):
        _clear_caches()
        start = time.perf_counter()
        lxml_result = meld_release(lxml, sdist)
        cold_lxml[label] = time.perf_counter() - start
        assert lxml_result.report.disagreed and lxml_result.report.complete, lxml_result.report

    warm, warm_runs = _rate(lambda: meld_release(release), args.melds, args.runs)
    agree, agree_runs = _rate(lambda: meld_release(agreeing), args.melds, args.runs)
    distinct, distinct_runs = _rate(lambda: meld_release(agreeing_distinct), args.melds, args.runs)
    size = sum(len(w.metadata or b"") for w in release)
    print(f"machine: {os.cpu_count()} CPUs, {_cpu_model()}, Python {platform.python_version()}")
    print(f"input: 20 wheels, {size / 1024:.0f} KB of METADATA; {args.runs} runs x {args.melds} melds\n")
    print("| case | median melds/s | runs (melds/s) |")
    print("|---|---:|---|")
    rows = (
        ("torch 2.1.0, disagreeing (warm caches)", warm, warm_runs),
        ("20 agreeing wheels, byte-identical metadata", agree, agree_runs),
        ("20 agreeing wheels, every metadata distinct", distinct, distinct_runs),
    )
    for label, median, runs in rows:
        print(f"| {label} | {median:.0f} | {', '.join(f'{rate:.0f}' for rate in runs)} |")
    print(f"| torch 2.1.0, one cold meld (all caches empty) | {1 / cold:.0f} | {cold * 1000:.1f} ms |")
    for label, seconds in cold_lxml.items():
        row = f"lxml-shaped, {len(lxml)} wheels, one cold meld, sdist {label}"
        print(f"| {row} | {1 / seconds:.1f} | {seconds * 1000:.1f} ms |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
