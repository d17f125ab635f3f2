"""Traffic for the HOWTO lab in the qemu guest (tests/qemu/howto_lab_case.py), run inside the
lab's namespaces. Standard library only (it starts fast under emulation).

    lab_client.py requests N HOST PORT          N HTTP requests, a new connection each; prints
                                                {"rs1": n, ..., "failed": n, "errors": [...]}
    lab_client.py hold N HOST PORT SECONDS FILE N connections kept open, each sending a line
                                                every 0.1 s and reading its echo; FILE gets the
                                                status of each connection every 0.5 s
    lab_client.py echo ADDRESS PORT             a line-echo server that starts each reply with
                                                its address (a real server's)

Every loop is bounded in count and time.
"""

from __future__ import annotations

import http.client
import json
import os
import selectors
import socket
import socketserver
import sys
import time

LINE_EVERY = 0.1


def requests(count: int, host: str, port: int) -> dict:
    counts: dict = {"failed": 0, "errors": []}
    for _ in range(count):
        try:
            connection = http.client.HTTPConnection(host, port, timeout=5)
            connection.request("GET", "/")
            body = connection.getresponse().read().decode().strip()
            connection.close()
            counts[body] = counts.get(body, 0) + 1
        except OSError as exc:
            counts["failed"] += 1
            if len(counts["errors"]) < 5:
                counts["errors"].append(repr(exc))
    return counts


def hold(count: int, host: str, port: int, seconds: float, status_path: str) -> dict:
    """Each connection: {"server": who answered, "sent", "echoed", "last_echo" (seconds since
    the start), "error"}; the last status is also the result."""
    start = time.monotonic()
    selector = selectors.DefaultSelector()
    states = []
    for number in range(count):
        state = {"server": None, "sent": 0, "echoed": 0, "last_echo": None, "error": None,
                 "max_gap": 0.0}
        try:
            sock = socket.create_connection((host, port), timeout=5)
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ, (number, bytearray()))
            state["socket"] = sock
        except OSError as exc:
            state["error"] = f"connect: {exc!r}"
        states.append(state)
    next_line = time.monotonic()
    next_status = 0.0
    deadline = start + seconds
    while time.monotonic() < deadline:
        now = time.monotonic()
        if now >= next_line:
            next_line = now + LINE_EVERY
            for state in states:
                sock = state.get("socket")
                if sock is None or state["error"]:
                    continue
                try:
                    sock.send(f"line {state['sent']}\n".encode())
                    state["sent"] += 1
                except BlockingIOError:
                    pass                          # the kernel's buffer is full: retransmitting
                except OSError as exc:
                    state["error"] = f"send: {exc!r}"
        for key, _ in selector.select(timeout=max(0.0, min(next_line, deadline) - now)):
            number, buffer = key.data
            state = states[number]
            try:
                data = key.fileobj.recv(65536)
            except BlockingIOError:
                continue
            except OSError as exc:
                state["error"] = f"recv: {exc!r}"
                selector.unregister(key.fileobj)
                continue
            if not data:
                state["error"] = "closed by the other end"
                selector.unregister(key.fileobj)
                continue
            buffer.extend(data)
            while b"\n" in buffer:
                line, _, rest = bytes(buffer).partition(b"\n")
                buffer[:] = rest
                server, _, _ = line.decode(errors="replace").partition(" ")
                state["server"] = state["server"] or server
                elapsed = time.monotonic() - start
                if state["last_echo"] is not None:
                    state["max_gap"] = max(state["max_gap"], elapsed - state["last_echo"])
                state["last_echo"] = elapsed
                state["echoed"] += 1
        if time.monotonic() >= next_status:
            next_status = time.monotonic() + 0.5
            _write_status(status_path, start, states, final=False)
    return _write_status(status_path, start, states, final=True)


def _write_status(path: str, start: float, states: list, final: bool) -> dict:
    status = {"at": time.monotonic() - start, "final": final,
              "connections": [{k: v for k, v in state.items() if k != "socket"}
                              for state in states]}
    partial = f"{path}.tmp"
    with open(partial, "w") as handle:
        json.dump(status, handle)
    os.replace(partial, path)
    return status


class EchoHandler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        address = self.server.server_address[0]
        for _ in range(10**6):                    # bounded: a day of lines at 10 a second
            line = self.rfile.readline()
            if not line:
                return
            self.wfile.write(address.encode() + b" " + line)


class EchoServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def main(argv: list[str]) -> int:
    mode = argv[0]
    if mode == "requests":
        print(json.dumps(requests(int(argv[1]), argv[2], int(argv[3]))))
    elif mode == "hold":
        result = hold(int(argv[1]), argv[2], int(argv[3]), float(argv[4]), argv[5])
        print(json.dumps(result))
    elif mode == "echo":
        with EchoServer((argv[1], int(argv[2])), EchoHandler) as server:
            server.serve_forever()
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
