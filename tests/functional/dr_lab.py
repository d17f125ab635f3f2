"""The pieces of the direct-routing labs (test_lb_maglev_dr.py, ecmp_lab.py): real servers
that hold the VIP on lo and answer the client through a router, a TCP server on each that
names itself and echoes, the probing client, and what a director's DR table forwards to.

A real server (LVS-DR): the VIP on lo, arp_ignore=1 and arp_announce=2 (it never answers
ARP for the VIP, so only the directors draw the VIP's traffic), its default route via the
router so that its replies skip the directors."""

from __future__ import annotations

import json
import sys

NO_RP_FILTER = {"net.ipv4.conf.all.rp_filter": 0, "net.ipv4.conf.default.rp_filter": 0}

# A real server: says its name on accept, then echoes each line prefixed with its name.
SERVER = """
import asyncio, sys
name = sys.argv[1]
async def serve(reader, writer):
    writer.write(f"{name}\\n".encode())
    try:
        while line := await reader.readline():
            writer.write(f"{name}:".encode() + line)
            await writer.drain()
    except ConnectionError:
        pass
    writer.close()
async def main():
    server = await asyncio.start_server(serve, "0.0.0.0", 80, backlog=512)
    async with server:
        await server.serve_forever()
asyncio.run(main())
"""

# The client, driven over its stdin: "probe P..." connects from each source port, reads the
# server's name and resets the connection (no TIME_WAIT: the ports are used again);
# "hold P..." keeps them open; "echo" sends a line on each held connection and reads the
# answer. Each command answers one JSON line: the server names (or "error: ...").
CLIENT = """
import json, socket, struct, sys
vip = sys.argv[1]
held = {}
def connect(port):
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.settimeout(5)
    sock.bind(("0.0.0.0", port))
    sock.connect((vip, 80))
    return sock, sock.makefile("rb")
def name_of(reader):
    line = reader.readline()
    if not line:
        raise ConnectionError("closed")
    return line.decode().strip()
for command in sys.stdin:
    words = command.split()
    answer = {}
    if words[0] in ("probe", "hold"):
        for port in map(int, words[1:]):
            try:
                sock, reader = connect(port)
                answer[port] = name_of(reader)
            except OSError as exc:
                answer[port] = f"error: {exc}"
                continue
            if words[0] == "hold":
                held[port] = (sock, reader)
            else:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()
    elif words[0] == "echo":
        for port, (sock, reader) in held.items():
            try:
                sock.sendall(f"ping {port}\\n".encode())
                answer[port] = name_of(reader).split(":")[0]
            except OSError as exc:
                answer[port] = f"error: {exc}"
    print(json.dumps(answer), flush=True)
"""


class Client:
    """CLIENT in host's namespace, towards vip."""

    def __init__(self, lab, host, vip: str):
        self.lab, self.host, self.vip = lab, host, vip
        self.proc = lab._popen(host, [sys.executable, "-c", CLIENT, vip], pipes=True)

    def ask(self, *words) -> dict[int, str]:
        self.proc.stdin.write(" ".join(map(str, words)) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()      # each connection has a 5 s timeout
        assert line, self.lab.log_of(self.proc)
        return {int(port): name for port, name in json.loads(line).items()}

    def via(self, director_address: str) -> None:
        """The router's ECMP choice, by hand: the client's route to the VIP."""
        self.host.run(["ip", "route", "replace", f"{self.vip}/32", "via", director_address])


def real_server(lab, name: str, switch, address: str, vip: str, gateway: str):
    """A real server host on switch (address/24): the VIP on lo, ARP for it ignored, its
    default route via gateway; SERVER listening on port 80. Returns (host, listener)."""
    host = lab.host(name, sysctls={"net.ipv4.conf.all.arp_ignore": 1,
                                   "net.ipv4.conf.all.arp_announce": 2, **NO_RP_FILTER},
                    links=[(switch, "eth0", [f"{address}/24"])])
    host.run(["ip", "addr", "add", f"{vip}/32", "dev", "lo"])
    host.run(["ip", "route", "add", "default", "via", gateway])
    return host, host.popen([sys.executable, "-c", SERVER, name])


def forwards_to(director, servers) -> set[str]:
    """Which of the real server addresses ``servers`` are in a director's DR table now."""
    listing = director.run(["nft", "list", "table", "netdev", "director"], check=False).stdout
    return {address for address in servers if address in listing}
