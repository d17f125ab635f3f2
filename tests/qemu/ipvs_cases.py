"""Runs in the qemu guest (root, a kernel with IPVS): every IpvsBackend case in one run,
because importing pyroute2 alone takes about 10 s under emulation. Prints one JSON object;
tests/functional/test_lb_ipvs_qemu.py asserts on it."""

from __future__ import annotations

import dataclasses
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from director.lb.ipvs import IpvsBackend  # noqa: E402
from director.lb.model import (Destination, DestinationKey, Pool, Service,  # noqa: E402
                               ServiceKey)
from director.lb.plan import (AddDestination, AddService, EditDestination,  # noqa: E402
                              EditService, plan)

VIP = ServiceKey("TCP", "192.0.2.10", 80)
FWM = ServiceKey("TCP", fwmark=7)
VIP6 = ServiceKey("TCP", "2001:db8::10", 443, family=6)


def pool(service, *destinations):
    return Pool(service, {d.key: d for d in destinations})


def dest(address, port, weight=1, method="NAT", upper=0, lower=0):
    return Destination(DestinationKey(address, port), weight, method, upper, lower)


DESIRED = {
    VIP: pool(Service(VIP, "wrr", 60),
              dest("10.0.0.1", 80, 2), dest("10.0.0.2", 80, 1),
              dest("10.0.0.3", 80, 1, upper=100, lower=10)),
    FWM: pool(Service(FWM, "rr", flags=("ops",)),
              dest("10.0.1.1", None, 1, "DR"), dest("10.0.1.2", None, 3, "TUN")),
    VIP6: pool(Service(VIP6, "sh", 30, "64", ("sh-port",)),
               dest("2001:db8::1", 443, 1), dest("2001:db8::2", 443, 2, "DR")),
}
OWNED = frozenset(DESIRED)


def sh(command: str) -> str:
    done = subprocess.run(command, shell=True, capture_output=True, text=True)
    return done.stdout + done.stderr


def ours(state):
    return {key: value for key, value in state.items() if key in OWNED}


def jsonable(value):
    if dataclasses.is_dataclass(value):
        return {"type": type(value).__name__, **{f.name: jsonable(getattr(value, f.name))
                                                 for f in dataclasses.fields(value)}}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def service_conns(backend: IpvsBackend, key: ServiceKey) -> int | None:
    """The service's connection counter: reset when the service is deleted and re-added."""
    backend.read()
    counters = backend.counters.get((key, None))
    return None if counters is None else counters.connections


def connect_to_vip() -> None:
    sock = socket.socket()
    sock.setblocking(False)
    try:
        sock.connect_ex((VIP.address, VIP.port))
        time.sleep(2.5)     # the kernel sums its per-CPU counters every 2 s
    finally:
        sock.close()


def main() -> None:
    out: dict = {}
    start = time.monotonic()
    sh("busybox modprobe ip_vs; ip addr add 192.0.2.10/32 dev lo")
    sh("ipvsadm -A -t 203.0.113.5:443 -s rr && "
       "ipvsadm -a -t 203.0.113.5:443 -r 10.9.9.9:443 -m -w 4")
    backend = IpvsBackend()
    backend.open()
    before = backend.read()
    foreign = {k: v for k, v in before.items() if k not in OWNED}
    out["foreign_before"] = len(foreign)

    # 1. from an empty kernel (but for the foreign service)
    ops = plan(DESIRED, before, OWNED)
    out["initial_ops"] = [type(op).__name__ for op in ops]
    out["initial_errors"] = backend.apply(ops)
    after = backend.read()
    out["initial_equal"] = ours(after) == DESIRED
    out["initial_read"] = jsonable(ours(after))
    out["desired"] = jsonable(DESIRED)
    out["ipvsadm_initial"] = sh("ipvsadm -Ln")

    # 2. in-place edits: a connection is counted, then weight and scheduler change
    connect_to_vip()
    out["conns_before_edit"] = service_conns(backend, VIP)
    out["connections_before_edit"] = sh("ipvsadm -Lnc")
    edited = dict(DESIRED)
    old = DESIRED[VIP]
    new_dests = dict(old.destinations)
    new_dests[DestinationKey("10.0.0.2", 80)] = dest("10.0.0.2", 80, 5)
    edited[VIP] = Pool(dataclasses.replace(old.service, scheduler="wlc"), new_dests)
    ops = plan(edited, backend.read(), OWNED)
    out["edit_ops"] = jsonable(ops)
    out["edit_ops_are_edits"] = [type(op) for op in ops] == [EditService, EditDestination]
    out["edit_errors"] = backend.apply(ops)
    out["edit_equal"] = ours(backend.read()) == edited
    out["conns_after_edit"] = service_conns(backend, VIP)
    out["connections_after_edit"] = sh("ipvsadm -Lnc")
    out["ipvsadm_edited"] = sh("ipvsadm -Ln")
    backend.close()

    # 3. "restart": a new backend adopts what it finds, nothing to do
    backend = IpvsBackend()
    backend.open()
    current = backend.read()
    out["restart_ops"] = jsonable(plan(edited, current, OWNED))
    out["foreign_untouched"] = {k: v for k, v in current.items() if k not in OWNED} == foreign

    # 4. entries deleted behind our back are put back
    sh("ipvsadm -d -t 192.0.2.10:80 -r 10.0.0.3:80; ipvsadm -D -f 7")
    ops = plan(edited, backend.read(), OWNED)
    out["repair_ops"] = [type(op).__name__ for op in ops]
    out["repair_errors"] = backend.apply(ops)
    out["repair_equal"] = ours(backend.read()) == edited
    out["repair_then_empty"] = plan(edited, backend.read(), OWNED) == []

    # 5. errors are per operation; the rest still applies
    extra = dest("10.0.0.4", 80, 1)
    out["partial_errors"] = backend.apply([AddService(edited[VIP].service),
                                           AddDestination(VIP, extra)])
    out["partial_rest_applied"] = extra.key in backend.read()[VIP].destinations
    out["foreign_untouched_end"] = {k: v for k, v in backend.read().items()
                                    if k not in OWNED} == foreign
    out["ipvsadm_final"] = sh("ipvsadm -Ln")
    backend.read()
    out["counters_service"] = dataclasses.asdict(backend.counters[VIP, None])
    out["counters_destinations"] = sum(backend.counters[VIP, key].connections
                                       for key in backend.read()[VIP].destinations)
    backend.close()

    # 6. the daemon's sync: changes against what it last programmed, the kernel re-read
    # when verifying (each delay_loop)
    from director.lb.backends import IpvsSync
    sync = IpvsSync()
    sync.open()
    out["sync_adopt_errors"] = sync.sync(edited, OWNED, verify=True)
    out["sync_adopted"] = ours(sync.backend.read()) == edited
    sh("ipvsadm -e -t 192.0.2.10:80 -r 10.0.0.1:80 -m -w 9; "
       "ipvsadm -d -t 192.0.2.10:80 -r 10.0.0.3:80")
    out["sync_unverified_errors"] = sync.sync(edited, OWNED, verify=False)
    out["sync_unverified_kept_edit"] = ours(sync.backend.read()) != edited
    out["sync_verified_errors"] = sync.sync(edited, OWNED, verify=True)
    out["sync_verified_put_back"] = ours(sync.backend.read()) == edited
    one_down = dict(edited)
    one_down[VIP] = Pool(edited[VIP].service, {
        key: value for key, value in edited[VIP].destinations.items()
        if key != DestinationKey("10.0.0.2", 80)})
    out["sync_change_errors"] = sync.sync(one_down, OWNED, verify=False)
    out["sync_change_applied"] = ours(sync.backend.read()) == one_down
    out["sync_foreign_kept"] = any(key not in OWNED for key in sync.backend.read())
    out["flush_errors"] = sync.flush_all()
    out["flush_left"] = sh("ipvsadm -Ln")
    sync.close()

    # 7. lvs_timeouts: set over netlink, read back with ipvsadm; what is not given is kept
    from director.config.blocks.process import LvsTimeouts
    from director.lb.timeouts import read_timeouts
    sync = IpvsSync()
    sync.open()
    sync.set_timeouts(LvsTimeouts(tcp=901, tcpfin=31, udp=301))
    out["timeouts_set"] = sh("ipvsadm -L --timeout")
    sync.set_timeouts(LvsTimeouts(tcpfin=45))
    out["timeouts_partial"] = sh("ipvsadm -L --timeout")
    out["timeouts_read"] = read_timeouts(sync.backend.genl)
    # 8. flows shared with other directors (bgp_announce): taken up mid-stream
    out["sloppy_before"] = sh("cat /proc/sys/net/ipv4/vs/sloppy_tcp "
                              "/proc/sys/net/ipv4/vs/sloppy_sctp").split()
    out["mid_flow_changed"] = sync.pick_up_mid_flow()
    out["sloppy_after"] = sh("cat /proc/sys/net/ipv4/vs/sloppy_tcp "
                             "/proc/sys/net/ipv4/vs/sloppy_sctp").split()
    sync.close()
    out["seconds_in_script"] = round(time.monotonic() - start, 1)
    print(json.dumps(out, default=str))


if __name__ == "__main__":
    main()
