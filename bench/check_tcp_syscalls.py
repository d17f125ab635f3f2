"""The system calls of one TCP check, two ways, in one process against one loopback listener.

    .venv/bin/python bench/check_tcp_syscalls.py [--checks 20000] [--trials 5]

What a TCP_CHECK costs the kernel and the interpreter without the scheduler around it: a
non-blocking connect to a listener that never accepts, its readiness read from an epoll set,
and the connection aborted; CPU (getrusage user / sys) per check, the ways interleaved in each
trial, medians printed with the load average. On loopback the kernel's whole handshake (the
listener's SYN-ACK included) runs in this process's system calls.

  close       HAProxy's way, and director's before issue 17's "system calls" change: a new
              socket, SO_LINGER 0, TCP_QUICKACK off, connect, epoll_ctl ADD, close (the reset)
  keep        director's TCP_CHECK now (director/check/tcp.py): one socket, SO_LINGER 0 and
              TCP_DEFER_ACCEPT set once, registered once (edge-triggered); per check connect
              and a disconnect (libc connect() to AF_UNSPEC: the same abort as the close)
  keep+ack    the same with TCP_QUICKACK off before every connect instead of DEFER_ACCEPT

Each way also prints the listener's counters, which must match between them: every connect
an EmbryonicRst (the reset came before our ACK, the server accepted nothing), no
PassiveOpens, no ListenOverflows.
"""

from __future__ import annotations

import _socket
import argparse
import ctypes
import os
import resource
import select
import socket
import statistics
import struct

from check_tcp_scale import tcp_counters     # bench/ is the script's directory

LINGER_RESET = struct.pack("ii", 1, 0)
TCP_QUICKACK = getattr(socket, "TCP_QUICKACK", 12)
TCP_DEFER_ACCEPT = getattr(socket, "TCP_DEFER_ACCEPT", 9)
STREAM = socket.SOCK_STREAM | socket.SOCK_NONBLOCK
EVENTS = select.EPOLLOUT | select.EPOLLET
UNSPEC = bytes(16)
COUNTERS = ("ActiveOpens", "PassiveOpens", "EmbryonicRsts", "ListenOverflows")


def close_way(address, epoll, checks: int) -> None:
    for _ in range(checks):
        sock = _socket.socket(socket.AF_INET, STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
        sock.setsockopt(socket.IPPROTO_TCP, TCP_QUICKACK, 0)
        sock.connect_ex(address)
        epoll.register(sock.fileno(), EVENTS)
        epoll.poll(0)
        sock.close()


def keep_way(address, epoll, checks: int, quickack: bool) -> None:
    disconnect = ctypes.PyDLL(None).connect
    sock = _socket.socket(socket.AF_INET, STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
    if not quickack:
        sock.setsockopt(socket.IPPROTO_TCP, TCP_DEFER_ACCEPT, 1)
    fd = sock.fileno()
    epoll.register(fd, EVENTS)
    for _ in range(checks):
        if quickack:
            sock.setsockopt(socket.IPPROTO_TCP, TCP_QUICKACK, 0)
        sock.connect_ex(address)
        epoll.poll(0)
        if disconnect(fd, UNSPEC, 16) != 0:
            raise OSError("disconnect failed")
    sock.close()


def measure(way: str, address, checks: int) -> tuple[float, float, dict[str, int]]:
    epoll = select.epoll()
    before, usage = tcp_counters(), resource.getrusage(resource.RUSAGE_SELF)
    if way == "close":
        close_way(address, epoll, checks)
    else:
        keep_way(address, epoll, checks, quickack=way == "keep+ack")
    after, used = tcp_counters(), resource.getrusage(resource.RUSAGE_SELF)
    epoll.close()
    return ((used.ru_utime - usage.ru_utime) / checks * 1e6,
            (used.ru_stime - usage.ru_stime) / checks * 1e6,
            {name: after[name] - before[name] for name in COUNTERS})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checks", type=int, default=20000)
    parser.add_argument("--trials", type=int, default=5)
    args = parser.parse_args()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    address = listener.getsockname()
    ways = ("close", "keep", "keep+ack")
    found: dict[str, list[tuple[float, float]]] = {way: [] for way in ways}
    print(f"{args.checks} checks a trial, {args.trials} trials, load {os.getloadavg()}")
    for trial in range(args.trials):
        for way in ways:
            user, system, seen = measure(way, address, args.checks)
            found[way].append((user, system))
            print(f"trial {trial + 1} {way:9s} user {user:5.1f} sys {system:5.1f} "
                  f"total {user + system:5.1f} us a check  {seen}")
    base = statistics.median(u + s for u, s in found["close"])
    print("median of trials, us a check:")
    for way in ways:
        user = statistics.median(u for u, _ in found[way])
        system = statistics.median(s for _, s in found[way])
        total = statistics.median(u + s for u, s in found[way])
        print(f"  {way:9s} user {user:5.1f} sys {system:5.1f} total {total:5.1f} "
              f"({total / base:.2f}x close)")
    print(f"load {os.getloadavg()}")
    listener.close()


if __name__ == "__main__":
    main()
