"""Operator overrides follow the cluster (issue 16): two directors in namespaces share a VIP
by VRRP and program the same virtual server with nftables; they exchange their overrides
over their web APIs (override_peers), signed with the shared admin token.

A drain done on the MASTER is in the BACKUP's kernel before the MASTER dies (kill -9): the
BACKUP that takes over keeps the server out; the old MASTER, restarted with its own state
directory, keeps its drain from the first converge and learns what was decided while it was
down (a runtime weight set on the BACKUP). A runtime weight reaches the kernel within a
delay_loop, and a reload with a changed file clears it on both. A message signed with
another token is dropped and counted.

The kernel's weight of a destination is read from the nftables service chain: wrr repeats a
destination once per unit of weight (over the weights' gcd) in its numgen map, and leaves a
weight-0 one out.
"""

from __future__ import annotations

import json
import shutil
import signal
import sys
import time
from pathlib import Path

import pytest

from director.lb.model import ServiceKey
from director.lb.nftables_script import chain_name
from tests.functional.lab import wait_for
from tests.functional.test_vrrp_failover import FAST_INTERVAL, fast_down

pytestmark = [pytest.mark.netns, pytest.mark.slow, pytest.mark.timeout(180)]

REPO = Path(__file__).resolve().parents[2]
VIP = "192.0.2.100"
PORT = 8080
ADDRESSES = {"a": "192.0.2.1", "b": "192.0.2.2"}
REALS = {"rs1": "10.30.0.1", "rs2": "10.30.0.2", "rs3": "10.30.0.3"}
TOKEN = "the-clusters-shared-admin-token"
DELAY_LOOP = 2
VS = f"{VIP}:80/TCP"
SYNC = 10 + 5           # override_peers.SYNC_INTERVAL and an exchange's timeout

# A client run in a director's namespace: GET (argv: url) or an admin POST (argv: url, body,
# token; the CSRF token from the dashboard page) or a raw signed POST (argv: url, body,
# signature): prints [status, body].
CLIENT = r"""
import json, re, sys, urllib.request, urllib.error
url = sys.argv[1]
def call(request):
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
if len(sys.argv) == 2:
    print(json.dumps(call(url)))
elif sys.argv[3].startswith("sha256="):
    print(json.dumps(call(urllib.request.Request(url, data=sys.argv[2].encode(), headers={
        "X-Director-Signature": sys.argv[3], "Content-Type": "application/json"}))))
else:
    base = url.split("/api/", 1)[0]
    page = call(base + "/")[1]
    csrf = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)
    print(json.dumps(call(urllib.request.Request(url, data=sys.argv[2].encode(), headers={
        "Authorization": "Bearer " + sys.argv[3], "X-CSRF-Token": csrf,
        "Content-Type": "application/json"}))))
"""


def config(name: str, priority: int, rs3_weight: int = 1) -> str:
    peer = "b" if name == "a" else "a"
    reals = "".join(f"""
    real_server {address} 80 {{
        weight {rs3_weight if real == "rs3" else 1}
    }}""" for real, address in REALS.items())
    return f"""global_defs {{
    router_id director_{name}
}}
override_peers {{
    http://{ADDRESSES[peer]}:{PORT}
}}
vrrp_instance VI_1 {{
    interface eth0
    virtual_router_id 51
    priority {priority}
    advert_int {FAST_INTERVAL}
    version 3
    virtual_ipaddress {{
        {VIP}/24
    }}
}}
virtual_server {VIP} 80 {{
    delay_loop {DELAY_LOOP}
    lb_algo wrr
    lb_kind NAT
    protocol TCP{reals}
}}
"""


class Director:
    def __init__(self, lab, host, name: str, priority: int):
        self.lab, self.host, self.name, self.priority = lab, host, name, priority
        self.folder = Path(lab.tmp) / name
        self.folder.mkdir(exist_ok=True)
        (self.folder / "token").write_text(TOKEN + "\n")
        (self.folder / "keepalived.conf").write_text(config(name, priority))
        self.url = f"http://{ADDRESSES[name]}:{PORT}"
        self.proc = None
        self.runs = 0

    def start(self):
        self.runs += 1
        self.proc = self.host.popen(
            [sys.executable, "-m", "director", "-l", "-D", "-f",
             str(self.folder / "keepalived.conf"), "--backend", "nftables",
             "--state-dir", str(self.folder / "state"), "-p", str(self.folder / "pid"),
             "--web", f"{ADDRESSES[self.name]}:{PORT}", "--web-insecure",
             "--admin-token-file", str(self.folder / "token")],
            log_path=str(self.folder / f"log{self.runs}"), env={"PYTHONPATH": str(REPO)})
        wait_for(lambda: self.get("/healthz")[0] == 200, 15,
                 message=lambda: f"{self.name}'s web never answered\n{self.log()}")
        return self

    def log(self) -> str:
        return self.lab.log_of(self.proc)

    def _client(self, *argv) -> tuple[int, str]:
        out = self.host.run([sys.executable, "-I", "-c", CLIENT, *argv], check=False,
                            timeout=15).stdout
        try:
            return tuple(json.loads(out))
        except ValueError:
            return 0, out

    def get(self, path: str) -> tuple[int, str]:
        return self._client(self.url + path)

    def post(self, path: str, body: dict, token: str = TOKEN) -> tuple[int, dict]:
        status, text = self._client(self.url + path, json.dumps(body), token)
        return status, json.loads(text)

    def state(self) -> dict:
        status, text = self.get("/api/v1/state")
        assert status == 200, text
        return json.loads(text)

    def real(self, name: str) -> dict:
        (server,) = [vs for vs in self.state()["virtual_servers"] if vs["name"] == VS]
        return next(real for real in server["real_servers"]
                    if real["address"] == REALS[name])

    def kernel(self) -> dict[str, int]:
        """Real server -> its slots in the service's numgen map (its wrr weight over the
        weights' gcd; 0: out of the map)."""
        chain = chain_name(ServiceKey("TCP", VIP, 80))
        text = self.host.run(["nft", "list", "chain", "inet", "director", chain],
                             check=False).stdout
        return {name: text.count(f"{address} ") + text.count(f"{address}:")
                for name, address in REALS.items()}


@pytest.fixture
def cluster(lab):
    if shutil.which("nft") is None:
        pytest.skip("nft is not installed (apt-get install nftables)")
    switch = lab.switch()
    hosts = {name: lab.host(name, [(switch, "eth0", [f"{address}/24"])])
             for name, address in ADDRESSES.items()}
    a = Director(lab, hosts["a"], "a", 150).start()
    b = Director(lab, hosts["b"], "b", 100).start()
    wait_for(lambda: hosts["a"].has_address("eth0", VIP), fast_down(150) + 5,
             message=lambda: f"A never became MASTER\n{a.log()}")
    for director in (a, b):
        wait_for(lambda d=director: d.kernel() == {"rs1": 1, "rs2": 1, "rs3": 1}, 10,
                 message=lambda d=director: f"{d.name}: {d.kernel()}\n{d.log()}")
    return a, b


def test_a_drain_survives_the_masters_death_and_its_restart_learns_the_rest(cluster):
    a, b = cluster
    status, answer = a.post("/api/v1/real-servers/drain",
                            {"virtual_server": VS, "real_server": f"{REALS['rs1']}:80"})
    assert status == 200 and answer["drained"] and answer["saved"], answer
    started = time.monotonic()
    wait_for(lambda: b.kernel()["rs1"] == 0, SYNC, message=lambda: f"{b.kernel()}\n{b.log()}")
    print(f"\ndrain on A in B's kernel after {time.monotonic() - started:.2f} s")
    seen = b.real("rs1")
    assert seen["drained"] and seen["overrides"]["drain"]["origin"] == "director_a", seen

    a.proc.kill()                                              # kill -9 the MASTER
    a.proc.wait(5)
    wait_for(lambda: b.host.has_address("eth0", VIP), fast_down(100) + 2,
             message=lambda: f"B did not take over\n{b.log()}")
    assert b.kernel()["rs1"] == 0                              # still drained on the new MASTER

    # while A is down: a runtime weight on B, in its kernel within one delay_loop
    status, answer = b.post("/api/v1/real-servers/weight",
                            {"virtual_server": VS, "real_server": f"{REALS['rs2']}:80",
                             "weight": 3})
    assert status == 200 and answer["weight_override"] == 3, answer
    started = time.monotonic()
    wait_for(lambda: b.kernel() == {"rs1": 0, "rs2": 3, "rs3": 1}, DELAY_LOOP,
             message=lambda: f"{b.kernel()}\n{b.log()}")
    print(f"runtime weight in B's kernel after {time.monotonic() - started:.2f} s")
    assert b.state()["overrides"]["peers"][0]["failures"] >= 1      # A is down: counted

    a.start()                                  # its own state directory: it keeps its drain
    started = time.monotonic()
    wait_for(lambda: a.kernel() == {"rs1": 0, "rs2": 3, "rs3": 1}, SYNC,
             message=lambda: f"{a.kernel()}\n{a.log()}")
    print(f"restarted A learned B's weight after {time.monotonic() - started:.2f} s")
    loaded = next(line for line in a.log().splitlines() if "overrides.loaded" in line)
    assert "active=1" in loaded, loaded              # its own drain, read from its state dir
    rs2 = a.real("rs2")
    assert rs2["weight_override"] == 3 and rs2["overrides"]["weight"]["origin"] == "director_b"
    assert rs2["desired_weight"] == 3

    # a reload with a changed file clears the runtime weight, here and on the peer
    (a.folder / "keepalived.conf").write_text(config("a", 150, rs3_weight=2))
    a.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: a.kernel() == {"rs1": 0, "rs2": 1, "rs3": 2}, DELAY_LOOP + 5,
             message=lambda: f"{a.kernel()}\n{a.log()}")
    wait_for(lambda: b.kernel() == {"rs1": 0, "rs2": 1, "rs3": 1}, SYNC,
             message=lambda: f"{b.kernel()}\n{b.log()}")
    assert b.real("rs2")["weight_override"] is None and "weight" not in b.real("rs2")["overrides"]
    assert b.real("rs1")["drained"]                      # a drain outlives the reload


def test_a_forged_or_malformed_peer_message_is_dropped_and_counted(cluster):
    a, b = cluster
    forged = json.dumps({"origin": "mallory", "entries": [
        [VS, f"{REALS['rs1']}:80", "drain", True, 10 ** 9, "mallory", "x", 0]]})
    status, _ = b._client(b.url + "/api/v1/overrides/sync", forged, "sha256=" + "0" * 64)
    assert status == 401
    from director.override_peers import sign
    garbage = b'{"origin": "a", "entries": 7}'
    status, _ = b._client(b.url + "/api/v1/overrides/sync", garbage.decode(),
                          sign(TOKEN, garbage))
    assert status == 400
    dropped = b.state()["overrides"]["dropped"]
    assert dropped["unauthenticated"] == 1 and dropped["malformed"] == 1, dropped
    assert b.kernel()["rs1"] == 1 and not b.real("rs1")["drained"]
    metrics = b.get("/metrics")[1]
    assert 'director_override_peer_messages_dropped_total{reason="unauthenticated"} 1.0' \
        in metrics
    assert "director_override_peer_last_sync_timestamp_seconds" in metrics
    # the daemon goes on: the peers still exchange
    status, _ = b.post("/api/v1/real-servers/maintenance",
                       {"virtual_server": VS, "real_server": f"{REALS['rs3']}:80",
                        "maintenance": True})
    assert status == 200
    wait_for(lambda: a.kernel()["rs3"] == 0, SYNC, message=lambda: f"{a.kernel()}\n{a.log()}")
    assert a.real("rs3")["maintenance"]
