#!/bin/sh
# Every issue-7 workload, one after the other, on 127.0.0.1 (~12 minutes on 2 cores). Options:
#   --live            add workload (a) against the real default index (3 rounds, 90 s per lock)
#   --baseline DIR    measure the proxy package of DIR beside this tree in every workload
# Output: markdown tables on stdout, progress on stderr.
set -eu
cd "$(dirname "$0")/.."
PY=.venv/bin/python
live=""
baseline=""
while [ $# -gt 0 ]; do
    case "$1" in
        --live) live=1 ;;
        --baseline) baseline="--baseline $2"; shift ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
# shellcheck disable=SC2086 # $baseline is empty or two words on purpose
$PY benchmarks/bench_uv_lock.py --rounds 3 $baseline
# shellcheck disable=SC2086
$PY benchmarks/bench_serve.py --rounds 2 $baseline
# shellcheck disable=SC2086
$PY benchmarks/bench_stream.py --rounds 2 $baseline
# shellcheck disable=SC2086
$PY benchmarks/bench_request_cpu.py $baseline
# shellcheck disable=SC2086
$PY benchmarks/bench_page_cpu.py $baseline
# shellcheck disable=SC2086
$PY benchmarks/bench_cold_lock_cpu.py --rounds 3 $baseline
$PY benchmarks/profile_hot.py --top 15
if [ -n "$live" ]; then
    # shellcheck disable=SC2086
    $PY benchmarks/bench_uv_lock.py --live --rounds 3 --timeout 90 $baseline
fi
