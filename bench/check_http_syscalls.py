"""The system calls of one HTTP_GET check, several ways, against the HAProxy servers of
check_http_scale.py, in one process without the scheduler around it.

    .venv/bin/python bench/check_http_syscalls.py [--checks 20000] [--trials 5]
                                                  [--servers 200] [--inflight 20]

The servers are check_http_scale.py's (one HAProxy process answering ``GET /health`` with
200 "ok\\n", Content-Length 3, and closing after the reply). The client keeps --inflight
checks going at once (as the daemon's loop has several in flight when it wakes up), over
--servers ports in turn; each check: a non-blocking socket, connect, registered
edge-triggered in one epoll set, the request sent once connected, the reply read, the
socket closed. A way is flags joined by "+":

  eof         read until the server closes (recv until b""), then close: our FIN from
              CLOSE_WAIT, the server's socket (FIN_WAIT2) goes to TIME_WAIT; director's
              HTTP_GET before issue 17's "HTTP_GET's sockets" change is plain "eof"
  early       HAProxy's reading: done as soon as the reply is whole by its Content-Length,
              whether the server's FIN came or not
  rdhup       registered with EPOLLRDHUP too: when the edge that brought the reply also says
              the server closed and one recv drained the socket, the end is known without a
              second recv
  rst         close with SO_LINGER 0: a reset (from CLOSE_WAIT after "eof"), which frees the
              server's FIN_WAIT2 socket (no TIME_WAIT)
  qa          TCP_QUICKACK off before connecting (HAProxy's): the ACK of the SYN-ACK waits
              for the request
  defer       TCP_DEFER_ACCEPT set on the connecting socket: the same delayed ACK
  keep        TCP_CHECK's kept sockets (tcp.py): SO_LINGER 0 set once, registered once, the
              connection ended by a disconnect (connect() to AF_UNSPEC, a reset) and the
              socket reused by the next check; director's HTTP_GET now is keep+defer+rdhup

Per way: CPU of this process (getrusage user / sys) and of the server process
(/proc/<pid>/stat), per check, medians over the trials (ways interleaved in each trial), the
TCP counters (resets sent, ActiveOpens) and the TIME_WAIT sockets by side (the servers'
ports or ours) at the end of each way.
"""

from __future__ import annotations

import _socket
import argparse
import ctypes
import errno
import os
import resource
import select
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH)
sys.path.insert(0, os.path.dirname(BENCH))

from check_http_scale import free_ports, server_config, start_haproxy  # noqa: E402
from check_tcp_scale import cpu_seconds, raise_nofile, stop_process, tcp_counters  # noqa: E402

from director.genhash import build_request  # noqa: E402

STREAM = socket.SOCK_STREAM | socket.SOCK_NONBLOCK
LINGER_RESET = struct.pack("ii", 1, 0)
UNSPEC = bytes(16)
disconnect = ctypes.PyDLL(None).connect
IN, OUT, ET = select.EPOLLIN, select.EPOLLOUT, select.EPOLLET
RDHUP = select.EPOLLRDHUP
FAIL = select.EPOLLERR | select.EPOLLHUP
WAYS = ("eof", "eof+rdhup", "eof+rst", "eof+qa", "eof+defer", "early+rst", "keep+defer",
        "keep+defer+rdhup")
COUNTERS = ("ActiveOpens", "PassiveOpens", "OutRsts", "EstabResets")


def complete(reply: bytes) -> bool:
    """The reply is whole by its Content-Length (this bench's servers always send one)."""
    end = reply.find(b"\r\n\r\n")
    if end < 0:
        return False
    at = reply.lower().find(b"content-length:", 0, end)
    if at < 0:
        return False
    length = int(reply[at + 15:reply.find(b"\r\n", at)])
    return len(reply) >= end + 4 + length


def run_way(way: str, ports: list[int], checks: int, inflight: int) -> int:
    """``checks`` checks the way ``way``; the number that did not get a whole reply."""
    flags = set(way.split("+"))
    rdhup, rst, early = "rdhup" in flags, "rst" in flags, "early" in flags
    quickack, defer, keep = "qa" in flags, "defer" in flags, "keep" in flags
    free: list = []                    # keep: disconnected sockets, registered already
    spare: list = []                   # disconnected in this batch: free after it
    mask = IN | OUT | ET | (RDHUP if rdhup else 0)
    epoll = select.epoll()
    requests = [build_request("/health", "127.0.0.1", port) for port in ports]
    live: dict[int, list] = {}         # fd -> [sock, request, reply, sent]
    started = failed = 0

    def start() -> None:
        nonlocal started
        index = started % len(ports)
        started += 1
        if keep and free:
            sock = free.pop()
            code = sock.connect_ex(("127.0.0.1", ports[index]))
            if code not in (0, errno.EINPROGRESS):
                raise OSError(code, os.strerror(code))
            live[sock.fileno()] = [sock, requests[index], b"", False]
            return
        sock = _socket.socket(socket.AF_INET, STREAM)
        if quickack:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 0)
        if defer:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, 1)
        code = sock.connect_ex(("127.0.0.1", ports[index]))
        if code not in (0, errno.EINPROGRESS):
            raise OSError(code, os.strerror(code))
        live[sock.fileno()] = [sock, requests[index], b"", False]
        epoll.register(sock.fileno(), mask)

    def finish(fd: int, ok: bool) -> None:
        nonlocal failed
        sock = live.pop(fd)[0]
        if keep:
            if disconnect(fd, UNSPEC, 16) != 0:
                raise OSError("disconnect failed")
            spare.append(sock)
            failed += not ok
            return
        if rst:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
        sock.close()
        failed += not ok
        if started < checks:
            start()

    for _ in range(min(inflight, checks)):
        start()
    deadline = time.monotonic() + 60 + checks / 100
    while live or (keep and (spare or free) and started < checks):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{way}: {len(live)} checks without an end")
        if keep:
            free.extend(spare)
            spare.clear()
            while free and started < checks and len(live) < inflight:
                start()
            if not live:
                break
        for fd, events in epoll.poll(1.0):
            state = live.get(fd)
            if state is None:
                continue
            sock = state[0]
            if not state[3]:
                if events & FAIL and sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    finish(fd, False)
                    continue
                sock.send(state[1])     # 100 bytes into an empty buffer: all of it
                state[3] = True
                if not events & IN:
                    continue
            while True:
                try:
                    chunk = sock.recv(65536)
                except BlockingIOError:
                    break
                if not chunk:
                    finish(fd, complete(state[2]))
                    break
                state[2] += chunk
                if early and complete(state[2]):
                    finish(fd, True)
                    break
                if rdhup and events & RDHUP and len(chunk) < 65536:
                    finish(fd, complete(state[2]))     # drained, and the server closed
                    break
    for sock in free + spare:
        sock.close()
    epoll.close()
    return failed


def time_wait_by_side(ports: list[int]) -> tuple[int, int]:
    """TIME_WAIT sockets on the servers' ports and on others (the clients')."""
    out = subprocess.run(["ss", "-tanH", "state", "time-wait"], capture_output=True,
                         text=True, check=False).stdout
    low, high = min(ports), max(ports)
    server = other = 0
    for line in out.splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        port = int(fields[-2].rsplit(":", 1)[1])
        if low <= port <= high:
            server += 1
        else:
            other += 1
    return server, other


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checks", type=int, default=20000)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--servers", type=int, default=200)
    parser.add_argument("--inflight", type=int, default=20)
    parser.add_argument("--ways", default=",".join(WAYS))
    args = parser.parse_args()
    ways = args.ways.split(",")
    if shutil.which("haproxy") is None:
        sys.exit("haproxy is not installed")
    raise_nofile(args.servers + args.inflight + 1024)
    tmp = tempfile.mkdtemp(prefix="check_http_syscalls.")
    server = None
    found: dict[str, list[tuple[float, float, float]]] = {way: [] for way in ways}
    print(f"{args.checks} checks a trial, {args.trials} trials, {args.inflight} in flight, "
          f"{args.servers} servers; load {os.getloadavg()}")
    try:
        ports = free_ports(args.servers)
        server, _, _ = start_haproxy(server_config(ports), tmp, "servers")
        run_way("eof", ports, 200, args.inflight)                  # the server is up
        for trial in range(args.trials):
            for way in ways:
                counters, usage = tcp_counters(), resource.getrusage(resource.RUSAGE_SELF)
                server_cpu = cpu_seconds(server.pid)
                failed = run_way(way, ports, args.checks, args.inflight)
                used, after = resource.getrusage(resource.RUSAGE_SELF), tcp_counters()
                server_used = sum(cpu_seconds(server.pid)) - sum(server_cpu)
                n = args.checks
                user = (used.ru_utime - usage.ru_utime) / n * 1e6
                system = (used.ru_stime - usage.ru_stime) / n * 1e6
                theirs = server_used / n * 1e6
                found[way].append((user, system, theirs))
                seen = {name: after[name] - counters[name] for name in COUNTERS}
                tw = time_wait_by_side(ports)
                print(f"trial {trial + 1} {way:14s} user {user:5.1f} sys {system:5.1f} "
                      f"total {user + system:5.1f}  server {theirs:5.1f} us a check; "
                      f"failed {failed}; {seen}; TIME_WAIT server/client sides {tw}",
                      flush=True)
    finally:
        stop_process(server)
        shutil.rmtree(tmp, ignore_errors=True)
    base = statistics.median(u + s for u, s, _ in found[ways[0]])
    print("median of trials, us a check:")
    for way in ways:
        user = statistics.median(u for u, _, _ in found[way])
        system = statistics.median(s for _, s, _ in found[way])
        total = statistics.median(u + s for u, s, _ in found[way])
        theirs = statistics.median(t for _, _, t in found[way])
        print(f"  {way:14s} user {user:5.1f} sys {system:5.1f} total {total:5.1f} "
              f"({total / base:.2f}x {ways[0]})  server {theirs:5.1f}")
    print(f"load {os.getloadavg()}")


if __name__ == "__main__":
    main()
