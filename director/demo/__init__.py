"""``director demo`` (the README's first command): the whole product on one machine.

As root, where network namespaces work, it builds the keepalived HOWTO's LVS-NAT lab in
namespaces (netlab.py, beside this file): a client, two directors in VRRP MASTER/BACKUP
holding the external VIP and the real servers' gateway VIP (a sync group), three real HTTP
servers behind them; runs director on both with the bundled lab.conf (``-i lb1`` / ``-i lb2``),
programming IPVS where the kernel has it, else nftables (refused, in one line, where neither
can run: a demo that cannot load-balance is no demo); and serves the MASTER's dashboard on
http://127.0.0.1:8080 of this host (a forwarder in the client's namespace, listening on a
socket opened here, connects to the VIP: whichever director is MASTER answers). It prints
what to try and tears everything down on Ctrl-C or SIGTERM.

Without root (or namespaces) it says so and runs observe-only instead: three HTTP servers on
loopback, director checking them with backend none, the same dashboard.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from .topology import CLIENT, VIP, WEB_PORT, build, director_argv, environment

LAB_CONFIG = Path(__file__).with_name("lab.conf")
REAL_SERVER_NAMES = ("rs1", "rs2", "rs3")
READY_TIMEOUT = 30.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="director demo",
        description="Run the demo lab: two directors, three real servers and a client in "
                    "network namespaces, the MASTER's dashboard on this host.")
    parser.add_argument("--port", type=int, default=8080,
                        help="port of the dashboard on 127.0.0.1 (default 8080)")
    parser.add_argument("--observe-only", action="store_true",
                        help="skip the namespace lab: check loopback servers, backend none")
    args = parser.parse_args(argv)
    from .netlab import netns_unavailable
    reason = None if args.observe_only else netns_unavailable()
    from .. import hub
    stop = hub.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        # gevent's handler: a plain signal.signal() one would wait for the loop to wake up
        hub.on_signal(signum, stop.set)
    if args.observe_only or reason:
        if reason:
            print(f"director demo: the namespace lab {reason}.\n"
                  "Running observe-only instead: director checks three HTTP servers on "
                  "loopback (backend none), with the same dashboard.\n", flush=True)
        return observe_only(args.port, stop)
    return lab(args.port, stop)


def _listen(port: int) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as exc:
        sock.close()
        raise SystemExit(f"director demo: cannot listen on 127.0.0.1:{port}: {exc} "
                         "(choose another with --port)") from None
    sock.listen(128)
    return sock


def _site(root: Path, name: str) -> Path:
    folder = root / name
    folder.mkdir()
    (folder / "index.html").write_text(f"{name}\n")
    (folder / "health").write_text("ok\n")
    return folder


def lab_backend() -> str:
    """IPVS where the kernel has it (as on a production director), else nftables; a lab
    that cannot load-balance is refused, not run half-way."""
    from ..lb.backends import ipvs_available
    if ipvs_available():
        return "ipvs"
    if shutil.which("nft"):
        return "nftables"
    raise SystemExit("director demo: this kernel has no IPVS and nft is not installed, so the "
                     "lab could not load-balance: install nftables (apt-get install nftables; "
                     "scripts/demo does it when run as root)")


def lab(port: int, stop) -> int:
    from .netlab import Lab, wait_for
    listener = _listen(port)
    backend = lab_backend()
    with Lab() as net:
        howto = build(net)
        client, directors, servers = howto.client, howto.directors, howto.web_servers
        daemons = {name: howto.start_director(name, LAB_CONFIG, backend)
                   for name in directors}
        forwarder = subprocess.Popen(
            ["ip", "netns", "exec", client.ns, sys.executable, "-m", "director.demo.forward",
             str(listener.fileno()), VIP, str(WEB_PORT)],
            pass_fds=[listener.fileno()], env=environment(), start_new_session=True)
        net.processes.append(forwarder)
        listener.close()                 # the forwarder holds it now
        wait_for(lambda: directors["lb1"].has_address("eth0", VIP), READY_TIMEOUT,
                 message=lambda: net.log_of(daemons["lb1"]))
        print(f"""director demo: the lab is up (backend {backend}).

  dashboard (the MASTER's):   http://127.0.0.1:{port}/
  metrics:                    http://127.0.0.1:{port}/metrics

  namespaces: {' '.join(host.ns for host in (client, *directors.values()))} (and rs1-rs3)

Try:
  requests to the VIP, from the client:
      sudo ip netns exec {client.ns} curl -s http://{VIP}/
  stop a real server (the dashboard shows it down within seconds; the pool goes on):
      sudo kill {servers['rs2'].pid}
  stop the MASTER (it sends priority 0, lb2 takes the VIPs, the dashboard follows):
      sudo kill {daemons['lb1'].pid}
  logs: {net.tmp}/lb1.log, {net.tmp}/lb2.log

Ctrl-C (or SIGTERM) removes everything.
ready""", flush=True)
        stop.wait()
        print("director demo: tearing the lab down", flush=True)
    return 0


def observe_only(port: int, stop) -> int:
    from .netlab import wait_for
    if port == 0:
        raise SystemExit("director demo: --port 0 is not supported")
    with tempfile.TemporaryDirectory(prefix="director-demo-") as folder:
        root = Path(folder)
        processes: list[subprocess.Popen] = []
        try:
            ports = []
            for name in REAL_SERVER_NAMES:
                probe = _listen(0)
                ports.append(probe.getsockname()[1])
                probe.close()
                processes.append(subprocess.Popen(
                    [sys.executable, "-m", "http.server", str(ports[-1]), "--bind",
                     "127.0.0.1", "--directory", str(_site(root, name))],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            config = root / "keepalived.conf"
            config.write_text(_observe_config(ports))
            log = open(root / "director.log", "w")
            processes.append(subprocess.Popen(
                director_argv(config, root / "state", "-C", "--backend", "none", "--web",
                               f"127.0.0.1:{port}"),
                stdout=log, stderr=subprocess.STDOUT, env=environment()))
            wait_for(lambda: _answers(port) or processes[-1].poll() is not None,
                     READY_TIMEOUT, message=lambda: (root / "director.log").read_text())
            if processes[-1].poll() is not None:
                print((root / "director.log").read_text(), file=sys.stderr)
                return 1
            print(f"""director demo (observe-only): director checks three HTTP servers on loopback.

  dashboard:   http://127.0.0.1:{port}/
  metrics:     http://127.0.0.1:{port}/metrics

Try: stop a real server (the dashboard shows it down within seconds):
      kill {processes[1].pid}

Ctrl-C (or SIGTERM) stops everything.
ready""", flush=True)
            stop.wait()
        finally:
            for process in reversed(processes):
                if process.poll() is None:
                    process.terminate()
            for process in processes:
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
    return 0


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _observe_config(ports: list[int]) -> str:
    reals = "".join(f"""    real_server 127.0.0.1 {port} {{
        HTTP_GET {{
            url {{
                path /health
                status_code 200
            }}
            connect_timeout 1
        }}
    }}
""" for port in ports)
    return f"""global_defs {{
    router_id director-demo
}}
virtual_server 127.0.0.1 80 {{
    delay_loop 2
    lb_algo wrr
    protocol TCP
{reals}}}
"""
