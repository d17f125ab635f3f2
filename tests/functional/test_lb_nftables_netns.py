"""The nftables backend forwarding real connections, LVS-NAT style, in network namespaces.

    client 203.0.113.2 --[cs]-- 203.0.113.1 (+ VIP .100) director 10.20.40.1 --[ss]-- rs1..3
                                                                          10.20.40.10-12

The director forwards (ip_forward=1) and runs NftablesBackend().apply(state) in its own
namespace (the venv python, the State built from the model classes); the real servers run
`python -m http.server` serving a page that names them, their default route via the
director, so that conntrack undoes the DNAT on the replies (no SNAT). The client makes N
requests to http://203.0.113.100/, each a new TCP connection: numgen inc is deterministic,
so the counts are exact.
"""
from __future__ import annotations

import collections
import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from tests.functional.lab import wait_for

pytestmark = [pytest.mark.netns, pytest.mark.slow, pytest.mark.timeout(120)]

REPO = Path(__file__).resolve().parents[2]
VIP = "203.0.113.100"
SERVERS = {"rs1": "10.20.40.10", "rs2": "10.20.40.11", "rs3": "10.20.40.12"}
READY_TIMEOUT = 10.0

# argv[1]: JSON [scheduler, [[address, port, weight], ...], persistence_timeout or null];
# argv[2]: the VIP; argv[3], if given: the same JSON for the state applied before, and then
# only the changes are applied (apply_changes)
APPLY = """
import json, sys
from director.lb.model import Destination, DestinationKey, Pool, Service, ServiceKey
from director.lb.nftables import NftablesBackend
def state(spec):
    scheduler, dests, persistence = json.loads(spec)
    key = ServiceKey("TCP", sys.argv[2], 80)
    return {key: Pool(Service(key, scheduler, persistence), {
        DestinationKey(a, p): Destination(DestinationKey(a, p), w) for a, p, w in dests})}
backend = NftablesBackend()
if len(sys.argv) > 3:
    backend.apply_changes(state(sys.argv[3]), state(sys.argv[1]))
else:
    backend.apply(state(sys.argv[1]))
print(backend.read())
"""

# argv: URL COUNT; prints a JSON list: each response body, or "ERROR ..." for a failure
REQUESTS = """
import json, sys, urllib.request
url, count = sys.argv[1], int(sys.argv[2])
out = []
for _ in range(count):
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            out.append(response.read().decode().strip())
    except Exception as exc:
        out.append(f"ERROR {exc!r}")
print(json.dumps(out))
"""


@pytest.fixture
def topology(lab):
    if shutil.which("nft") is None:
        pytest.skip("nft is not installed (apt-get install nftables)")
    client_side = lab.switch("cs")
    server_side = lab.switch("ss")
    client = lab.host("client", links=[(client_side, "eth0", ["203.0.113.2/24"])])
    director = lab.host("director", sysctls={"net.ipv4.ip_forward": 1},
                        links=[(client_side, "eth0", ["203.0.113.1/24", f"{VIP}/24"]),
                               (server_side, "eth1", ["10.20.40.1/24"])])
    servers = {}
    for name, address in SERVERS.items():
        host = lab.host(name, links=[(server_side, "eth0", [f"{address}/24"])])
        host.run(["ip", "route", "add", "default", "via", "10.20.40.1"])
        root = lab.tmp / name
        root.mkdir()
        (root / "index.html").write_text(f"{name}\n")
        host.popen([sys.executable, "-m", "http.server", "80", "--bind", address,
                    "--directory", root])
        servers[name] = host
    for name, host in servers.items():
        wait_for(lambda host=host: host.run(["ss", "-Hltn", "sport = :80"]).stdout.strip(),
                 READY_TIMEOUT, interval=0.05, message=f"{name}'s http.server listening")
    return client, director


def _spec(scheduler, dests, persistence=None) -> str:
    return json.dumps([scheduler, [[SERVERS[name], 80, weight] for name, weight in dests],
                       persistence])


def apply(director, scheduler, dests, persistence=None, before=None) -> str:
    """NftablesBackend().apply() in the director's namespace, or apply_changes() from before
    (a tuple of apply()'s arguments); returns its read()."""
    argv = [sys.executable, "-c", APPLY, _spec(scheduler, dests, persistence), VIP]
    if before is not None:
        argv.append(_spec(*before))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return director.run(argv, env=env, timeout=30).stdout


def responses(client, count=30) -> collections.Counter:
    """count requests from the client, each a new connection: the bodies (server names) and
    the errors ("ERROR ...") they got."""
    out = client.run([sys.executable, "-I", "-c", REQUESTS, f"http://{VIP}:80/", count],
                     timeout=count * 4 + 10).stdout
    return collections.Counter(json.loads(out))


def requests(client, count=30) -> collections.Counter:
    """count requests from the client, each a new connection; every one must succeed."""
    bodies = responses(client, count)
    failures = [b for b in bodies if b.startswith("ERROR")]
    assert not failures, failures
    return bodies


def test_rr_spreads_evenly(topology):
    client, director = topology
    view = apply(director, "rr", [("rs1", 1), ("rs2", 1), ("rs3", 1)])
    assert "numgen inc mod 3" in view, view
    assert requests(client) == {"rs1": 10, "rs2": 10, "rs3": 10}
    listed = director.run(["nft", "list", "chain", "inet", "director", "prerouting"]).stdout
    assert "counter packets 30 " in listed, listed          # new connections only


def test_wrr_follows_the_weights(topology):
    client, director = topology
    apply(director, "wrr", [("rs1", 2), ("rs2", 1), ("rs3", 1)])
    # slots rs1 rs2 rs3 rs1: 7 rounds of 4, then rs1 rs2
    assert requests(client) == {"rs1": 15, "rs2": 8, "rs3": 7}


def test_reapply_drains_and_removes_without_failures(topology):
    client, director = topology
    apply(director, "rr", [("rs1", 1), ("rs2", 1), ("rs3", 1)])
    assert requests(client, 6) == {"rs1": 2, "rs2": 2, "rs3": 2}
    view = apply(director, "rr", [("rs1", 1), ("rs2", 1), ("rs3", 0)])     # drained
    assert "10.20.40.12" not in view, view
    assert requests(client) == {"rs1": 15, "rs2": 15}
    apply(director, "rr", [("rs1", 1), ("rs3", 1)])                        # rs2 removed, rs3 back
    assert requests(client) == {"rs1": 15, "rs3": 15}


def test_persistence_keeps_a_client_on_one_server(topology):
    client, director = topology
    view = apply(director, "rr", [("rs1", 1), ("rs2", 1), ("rs3", 1)], persistence=60)
    assert "_clients" in view, view
    counts = requests(client, 10)
    assert len(counts) == 1 and sum(counts.values()) == 10, counts
    listed = director.run(["nft", "list", "table", "inet", "director"]).stdout
    assert "elements = { 203.0.113.2" in listed, listed


def test_changes_drain_and_keep_persistent_clients(topology):
    """apply_changes(): a drained destination gets no new connections, and the clients of
    the others keep their destination (their sets are not re-created)."""
    client, director = topology
    three = [("rs1", 1), ("rs2", 1), ("rs3", 1)]
    apply(director, "rr", three)
    assert requests(client, 6) == {"rs1": 2, "rs2": 2, "rs3": 2}
    drained = [("rs1", 1), ("rs2", 1), ("rs3", 0)]
    view = apply(director, "rr", drained, before=("rr", three))
    assert "10.20.40.12" not in view, view
    assert requests(client) == {"rs1": 15, "rs2": 15}
    apply(director, "rr", three, before=("rr", drained))
    assert requests(client, 6) == {"rs1": 2, "rs2": 2, "rs3": 2}

    before = ("rr", [("rs2", 1), ("rs3", 1)], 60)
    apply(director, *before)
    assert requests(client, 5) == {"rs2": 5}
    # rs1 added, rs3 removed: a client nobody knew would go to rs1 (slot 0)
    view = apply(director, "rr", [("rs1", 1), ("rs2", 1)], persistence=60, before=before)
    assert SERVERS["rs3"] not in view, view
    assert requests(client, 5) == {"rs2": 5}                   # where it went before


def test_empty_pool_rejects_and_flush_removes_the_table(topology):
    client, director = topology
    apply(director, "rr", [("rs1", 0)])
    out = client.run([sys.executable, "-I", "-c", REQUESTS, f"http://{VIP}:80/", 1]).stdout
    assert "Connection refused" in out, out
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    director.run([sys.executable, "-c",
                  "from director.lb.nftables import NftablesBackend as B; B().flush()"], env=env)
    assert "director" not in director.run(["nft", "list", "tables"]).stdout
