#!/bin/sh
# Every issue-7 workload, one after the other, on 127.0.0.1 (~15 minutes on 2 cores); add --live for
# workload (a) against the real default index (bounded: 1 round, 90 s per lock, several more minutes).
# Output: markdown tables on stdout, progress on stderr.
set -eu
cd "$(dirname "$0")/.."
PY=.venv/bin/python
$PY benchmarks/bench_uv_lock.py --rounds 3
# WHEELMELD_BENCH_FAST_PYTHON: a venv's python with wheelmeld's packages plus httptools and uvloop.
$PY benchmarks/bench_serve.py --rounds 2 ${WHEELMELD_BENCH_FAST_PYTHON:+--fast-python "$WHEELMELD_BENCH_FAST_PYTHON"}
$PY benchmarks/bench_stream.py
$PY benchmarks/profile_hot.py --top 15
if [ "${1:-}" = "--live" ]; then
    $PY benchmarks/bench_uv_lock.py --live --rounds 1 --timeout 90
fi
