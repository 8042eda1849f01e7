"""Benchmark: melds per second of the torch 2.1.0 release (issue 2's target: at least 100 per second).

Input: the 20 real METADATA files of torch 2.1.0 (~25 KB each, long descriptions, three canonical
requirement sets) from ``tests/fixtures/pypi-torch-2.1.0``. Each run melds the whole release
``--melds`` times; the result is the median of ``--runs`` runs. Also measured: one cold meld (every
cache emptied first) and the agreeing case (the release's 4 identical aarch64 wheels, repeated to 20).

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

from proxy.meld import WheelInput, environments, markers, meld_release, preference, requirements

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


def _clear_caches() -> None:
    for cached in (
        requirements.parse_requirement,
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
