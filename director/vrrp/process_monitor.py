"""track_process, the I/O: the kernel's process events (the proc connector, a netlink socket:
fork, exec, comm and exit of every process) drive the pure rules of process_tracking.py, after
a scan of /proc at start; keepalived does the same.

The proc connector exists only in the initial network namespace: a daemon started in another
one (``ip netns exec``), or a kernel without CONFIG_PROC_EVENTS, cannot subscribe. Then
/proc is scanned every ``POLL_PERIOD`` seconds instead (a process that appeared counts at
once, one that vanished as an exit, with terminate_delay), more seldom where a scan is long
(``POLL_COST``); the log says which one runs (``vrrp.process_monitor mode=events|polling``).
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import struct
from typing import Callable, Iterable

from .. import hub
from ..clock import Clock
from ..log import event as log_event
from .process_tracking import ProcessQuorum, ProcessSpec, matches

log = logging.getLogger("director.vrrp.process")

POLL_PERIOD = 0.5
POLL_COST = 20              # the polling period is at least 20 times what a scan took
NETLINK_CONNECTOR = 11
CN_IDX_PROC = CN_VAL_PROC = 1
PROC_CN_MCAST_LISTEN = 1
SO_RCVBUFFORCE = 33
NLMSG_DONE = 3
EVENT_NONE, FORK, EXEC, COMM, EXIT = 0, 1, 2, 0x200, 0x80000000
_EVENT_DATA = 16 + 20 + 16          # nlmsghdr, cn_msg, what + cpu + timestamp


def listen_message(pid: int) -> bytes:
    """nlmsghdr + cn_msg + PROC_CN_MCAST_LISTEN."""
    payload = struct.pack("=IIIIHHI", CN_IDX_PROC, CN_VAL_PROC, 0, 0, 4, 0,
                          PROC_CN_MCAST_LISTEN)
    return struct.pack("=IHHII", 16 + len(payload), NLMSG_DONE, 0, 0, pid) + payload


def parse_event(data: bytes) -> tuple | None:
    """A process event as (what, pid, ...) for the kinds track_process needs, of whole
    processes only (a thread's events carry pid != tgid and are ignored, as in
    keepalived); None for the rest and for what is malformed."""
    if len(data) < _EVENT_DATA + 8:
        return None
    idx, val = struct.unpack_from("=II", data, 16)
    if (idx, val) != (CN_IDX_PROC, CN_VAL_PROC):
        return None
    what = struct.unpack_from("=I", data, 36)[0]
    if what == FORK and len(data) >= _EVENT_DATA + 16:
        _, parent_tgid, child_pid, child_tgid = struct.unpack_from("=4I", data, _EVENT_DATA)
        return (FORK, child_tgid, parent_tgid) if child_pid == child_tgid else None
    pid, tgid = struct.unpack_from("=2I", data, _EVENT_DATA)
    if pid != tgid:
        return None
    if what == COMM and len(data) >= _EVENT_DATA + 24:
        comm = data[_EVENT_DATA + 8:_EVENT_DATA + 24].split(b"\0", 1)[0]
        return COMM, tgid, comm.decode(errors="replace")
    if what in (EXEC, EXIT, EVENT_NONE):
        return what, tgid
    return None


def read_process(pid: int, proc: str = "/proc",
                 command_line: bool = True) -> tuple[str | None, bytes | None]:
    """(name, command line) of a process: the name None for a zombie or a process gone; the
    command line only when asked for (reading it may swap the process in, keepalived says)."""
    cmdline = None
    try:
        with open(f"{proc}/{pid}/stat", "rb") as handle:
            stat = handle.read(512)
        if command_line:
            with open(f"{proc}/{pid}/cmdline", "rb") as handle:
                cmdline = handle.read(65536)
    except OSError:
        return None, None
    start, end = stat.find(b"("), stat.rfind(b")")
    if start < 0 or end < start or stat[end + 2:end + 3] == b"Z":
        return None, cmdline
    return stat[start + 1:end].decode(errors="replace"), cmdline


def scan(specs: Iterable[ProcessSpec], proc: str = "/proc",
         pause: Callable[[], None] = lambda: None) -> dict[str, set[int]]:
    """Every spec's matching processes now; ``pause`` is called between two processes (a
    hub.Slicer: 1,000 processes take tens of ms)."""
    specs = list(specs)
    command_line = any(spec.full_command for spec in specs)
    found: dict[str, set[int]] = {spec.name: set() for spec in specs}
    try:
        entries = os.listdir(proc)
    except OSError:
        return found
    for entry in entries:
        if not entry.isdecimal():
            continue
        pause()
        comm, cmdline = read_process(int(entry), proc, command_line)
        for spec in specs:
            if matches(spec, comm, cmdline):
                found[spec.name].add(int(entry))
    return found


class ProcessMonitor:
    """Counts the processes of every vrrp_track_process and tells the subscribers of one
    (``callback(name, up)``) when its quorum changes."""

    def __init__(self, clock: Clock, proc: str = "/proc") -> None:
        self.clock = clock
        self.rcvbuf: int | None = None          # set_buffer
        self.force = False
        self.proc = proc
        self.quorums: dict[str, ProcessQuorum] = {}
        self.subscribers: dict[str, list[Callable[[str, bool], None]]] = {}
        self.mode: str | None = None            # "events" or "polling", once started
        self.sock: socket.socket | None = None
        self.greenlet: hub.Greenlet | None = None
        self.lost_events = 0
        self.period = POLL_PERIOD
        self.rescan_at: float | None = None

    def configure(self, specs: Iterable[ProcessSpec]) -> None:
        """The vrrp_track_process blocks in use (start-up, reload): an unchanged one keeps
        its count; a new or changed one is counted by a scan."""
        specs = {spec.name: spec for spec in specs}
        self.quorums = {name: quorum for name, quorum in self.quorums.items()
                        if specs.get(name) == quorum.spec}
        fresh = [spec for name, spec in specs.items() if name not in self.quorums]
        for name, pids in scan(fresh, self.proc).items():
            self.quorums[name] = ProcessQuorum(specs[name])
            self.quorums[name].reset(pids)
            log_event(log, "vrrp.track_process", process=name, running=len(pids),
                      up=self.quorums[name].up)
        self.subscribers = {name: subs for name, subs in self.subscribers.items()
                            if name in specs}

    def subscribe(self, name: str, callback: Callable[[str, bool], None]) -> None:
        self.subscribers.setdefault(name, []).append(callback)
        quorum = self.quorums.get(name)
        if quorum is not None:
            callback(name, quorum.up)

    def unsubscribe(self, callback: Callable[[str, bool], None]) -> None:
        for subs in self.subscribers.values():
            while callback in subs:
                subs.remove(callback)

    def start(self) -> None:
        if self.greenlet is not None:
            return
        self.sock = self._open()
        self.mode = "events" if self.sock is not None else "polling"
        log_event(log, "vrrp.process_monitor", mode=self.mode,
                  period=None if self.sock else POLL_PERIOD)
        if self.sock is not None:     # events missed between the first scan and now
            self.rescan_at = self.clock.now()
        self.greenlet = hub.supervise(self.run, name="vrrp process monitor")

    def set_buffer(self, size: int | None, force: bool) -> None:
        """global_defs process_monitor_rcv_bufs(_force), at start and on a reload (keepalived
        sets it at start only)."""
        self.rcvbuf, self.force = size, force
        if self.sock is not None and size:
            self._set_buffer(self.sock, size)

    def _set_buffer(self, sock: socket.socket, size: int) -> None:
        try:
            sock.setsockopt(socket.SOL_SOCKET,
                            SO_RCVBUFFORCE if self.force else socket.SO_RCVBUF, size)
        except OSError as exc:          # SO_RCVBUFFORCE needs CAP_NET_ADMIN
            log_event(log, "vrrp.process_events_buffer", logging.WARNING, size=size,
                      error=exc)

    def _open(self) -> socket.socket | None:
        try:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_CONNECTOR)
        except OSError as exc:
            log_event(log, "vrrp.process_events_unavailable", logging.WARNING, error=exc)
            return None
        try:
            if self.rcvbuf:
                self._set_buffer(sock, self.rcvbuf)
            sock.bind((os.getpid(), CN_IDX_PROC))
            sock.send(listen_message(os.getpid()))
        except OSError as exc:      # ECONNREFUSED outside the initial network namespace
            log_event(log, "vrrp.process_events_unavailable", logging.WARNING, error=exc)
            sock.close()
            return None
        return sock

    def snapshot(self):
        from ..state import frozen
        if self.greenlet is None:
            return None
        return frozen({"mode": self.mode, "period": self.period if self.sock is None else None,
                       "lost_events": self.lost_events})

    def stop(self) -> None:
        if self.greenlet is not None:
            self.greenlet.kill(block=False)
            self.greenlet = None
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    # -- the loop -------------------------------------------------------------------------

    def run(self) -> None:
        # A recv that finds data returns without going through the loop: a burst of events
        # (a build forking thousands of processes, 0.1-0.2 ms each here) would hold the
        # adverts back; the slicer lets the loop run every 2 ms.
        pause = hub.Slicer()
        while True:
            pause()
            self._due()
            wait = self._next_wait()
            if self.sock is None:
                hub.sleep(wait)
                self._poll()
                continue
            self.sock.settimeout(wait)
            try:
                data = self.sock.recv(1024)
            except socket.timeout:
                continue
            except OSError as exc:
                self._receive_error(exc)
                continue
            self.handle(parse_event(data))

    def _next_wait(self) -> float:
        now = self.clock.now()
        times = [q.deadline for q in self.quorums.values() if q.deadline is not None]
        if self.rescan_at is not None:
            times.append(self.rescan_at)
        wait = self.period if self.sock is None else 60.0
        return max(0.0, min([wait] + [t - now for t in times]))

    def _due(self) -> None:
        now = self.clock.now()
        if self.rescan_at is not None and now >= self.rescan_at:
            self.rescan_at = None
            self._poll()
        for name, quorum in self.quorums.items():
            if quorum.expire(now):
                self._tell(name)

    def _receive_error(self, exc: OSError) -> None:
        if exc.errno != errno.ENOBUFS:
            log_event(log, "vrrp.process_events_error", logging.WARNING, error=exc)
            hub.sleep(0.1)
            return
        # Events were lost: a bigger buffer, and the count from /proc after a second for
        # things to settle (keepalived's reinitialise_track_processes).
        self.lost_events += 1
        size = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) * 2
        self._set_buffer(self.sock, size)
        log_event(log, "vrrp.process_events_lost", logging.WARNING, rcvbuf=size,
                  hint="raise global_defs process_monitor_rcv_bufs")
        self.rescan_at = self.clock.now() + 1.0

    def handle(self, event: tuple | None) -> None:
        if event is None:
            return
        now, what, pid = self.clock.now(), event[0], event[1]
        if what == FORK:
            parent = event[2]
            for name, quorum in self.quorums.items():
                if parent in quorum.pids and quorum.forked(pid, now):
                    self._tell(name)
        elif what == EXIT:
            for name, quorum in self.quorums.items():
                if quorum.exited(pid, now):
                    self._tell(name)
        elif what in (EXEC, COMM):
            comm, cmdline = read_process(pid, self.proc)
            if what == EXEC and comm is None:
                return      # gone (or dying) since: its exit is the event that counts
            if what == COMM:
                comm = event[2]
            for name, quorum in self.quorums.items():
                spec = quorum.spec
                if what == COMM and spec.full_command:
                    continue            # a rename changes no command line
                changed = (quorum.found(pid, now) if matches(spec, comm, cmdline)
                           else quorum.lost(pid, now))
                if changed:
                    self._tell(name)

    def _poll(self) -> None:
        """A scan: what appeared is found, what vanished exited."""
        specs = {q.spec.name: q.spec for q in self.quorums.values()}
        started = self.clock.now()
        found = scan(specs.values(), self.proc, hub.Slicer())
        now = self.clock.now()
        # about 50 us a process here (100 with command lines): 1,000 processes would cost
        # a fifth of a core every 0.5 s, so the period stretches to keep it near 5 %
        self.period = max(POLL_PERIOD, POLL_COST * (now - started))
        for name, pids in found.items():
            quorum = self.quorums.get(name)
            if quorum is None or quorum.spec != specs[name]:    # a reload came meanwhile
                continue
            changed = False
            for pid in sorted(quorum.pids - pids):
                changed |= quorum.exited(pid, now)
            for pid in sorted(pids - quorum.pids):
                changed |= quorum.found(pid, now)
            if changed:
                self._tell(name)

    def _tell(self, name: str) -> None:
        quorum = self.quorums[name]
        log_event(log, "vrrp.track_process", process=name, running=quorum.count,
                  up=quorum.up)
        for callback in list(self.subscribers.get(name, ())):
            callback(name, quorum.up)
