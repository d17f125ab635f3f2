# Runs in the qemu guest (tests/functional/test_lb_ipvs_daemon_qemu.py): the daemon on
# --backend ipvs checks two HTTP servers on loopback; one is stopped, then started again.
# Before the netlink client of director/lb/genl.py, the load balancer's greenlet died on
# the sync after the stop (pyroute2: NetlinkError 104) and the server never came back.
# $PYTHON (default .venv/bin/python) runs the daemon. Writes ipvsadm listings and the
# daemon's log, /healthz and /metrics to $RESULTS.
set -u
cd "$REPO"
python3 -m http.server -b 127.0.0.2 8001 >/dev/null 2>&1 &
python3 -m http.server -b 127.0.0.3 8002 >/dev/null 2>&1 &
S2=$!
cat > /tmp/daemon.conf <<'CONF'
virtual_server 192.0.2.10 80 {
    delay_loop 1
    lb_algo rr
    lb_kind NAT
    protocol TCP
    real_server 127.0.0.2 8001 {
        TCP_CHECK {
            connect_timeout 1
        }
    }
    real_server 127.0.0.3 8002 {
        TCP_CHECK {
            connect_timeout 1
        }
    }
}
CONF
"${PYTHON:-.venv/bin/python}" -m director -l -f /tmp/daemon.conf --backend ipvs --web 127.0.0.1:8080 \
    --state-dir /tmp/state > "$RESULTS/daemon.log" 2>&1 &
D=$!
# wait (bounded) for a condition on the IPVS table
until_table() {
    for _ in $(seq 120); do
        if ipvsadm -Ln | grep -q "$1"; then [ "$2" = present ] && return 0
        else [ "$2" = absent ] && return 0; fi
        sleep 0.5
    done
    return 1
}
until_table 127.0.0.3:8002 present; ipvsadm -Ln > "$RESULTS/started"
kill $S2
until_table 127.0.0.3:8002 absent; ipvsadm -Ln > "$RESULTS/stopped"
python3 -m http.server -b 127.0.0.3 8002 >/dev/null 2>&1 &
until_table 127.0.0.3:8002 present; ipvsadm -Ln > "$RESULTS/restarted"
# a later delete behind the daemon's back comes back too: the loop still runs
ipvsadm -d -t 192.0.2.10:80 -r 127.0.0.2:8001
until_table 127.0.0.2:8001 present; ipvsadm -Ln > "$RESULTS/repaired"
fetch() { python3 -c "import sys, urllib.request as u
try: r = u.urlopen('http://127.0.0.1:8080' + sys.argv[1], timeout=10); print(r.status); print(r.read().decode())
except Exception as e: print(getattr(e, 'code', 0)); print(e.read().decode() if hasattr(e, 'read') else e)" "$1"; }
fetch /healthz > "$RESULTS/healthz"
fetch /metrics > "$RESULTS/metrics"
kill $D
wait $D
echo $? > "$RESULTS/daemon_rc"
