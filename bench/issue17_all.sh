#!/usr/bin/env bash
# Issue 17's figures, each beside its anchor, one after the other in one run (about 25 min,
# and SOAK seconds more: the in-process soak at advert_int 0.02, 600 by default, 0 skips it):
#   sudo [SOAK=600] bench/issue17_all.sh [LOG]        (default /tmp/issue17-<date>.log)
# Each bench prints its own table and ratios; this only runs them in a row on one quiet
# machine, so that the table in docs/BENCHMARKS.md comes from a single session.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
LOG=${1:-/tmp/issue17-$(date +%Y%m%dT%H%M%S).log}
run() {
    echo "### $* ($(date +%H:%M:%S), load $(cut -d' ' -f1 /proc/loadavg))" | tee -a "$LOG"
    "$@" 2>&1 | tee -a "$LOG" | tail -25
}
run $PY bench/startup.py --trials 10
run $PY bench/startup.py --trials 6 --cold
run $PY bench/vrrp_failover.py --trials 6 --skip-jitter
run $PY bench/config_parse.py --runs 5
run $PY bench/web_scale.py --trials 3 --requests 7 --no-browser
run $PY bench/check_tcp_scale.py --window 20
run $PY bench/check_http_scale.py --window 20
run $PY bench/vrrp_under_load.py --v2-seconds 20 --v3-seconds 15
run $PY bench/vrrp_fast_failover.py --intervals 0.05,0.02 --soak-seconds 60 --trials 6 --split
if [ "${SOAK:-600}" != 0 ]; then
    run $PY bench/vrrp_fast_failover.py --intervals 0.02 --soak-seconds "${SOAK:-600}" --trials 3 --only ours
fi
echo "log: $LOG"
