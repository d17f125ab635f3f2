"""Reload faults in namespaces, as an operator meets them: a director of ours (MASTER of
VI_1, 200 real servers checked, nftables programmed) beside Debian's keepalived as its
BACKUP. The file goes missing, turns into a FIFO, gets an error, names an interface this
host lacks; then 200 reloads alternate two *different* valid files; and a reload races a
failover. After each: the daemon runs, one MASTER, the peer never took over the unchanged
instance, no down server is in the kernel, the kernel holds what the running file says, and
every result is counted in director_config_reloads_total{result}."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time

import pytest

from tests.functional.lab import start_keepalived, wait_for
from tests.functional.test_vrrp_failover import (ROOT, VIP, down_interval, holds,  # noqa: F401
                                                 lacks, pair, stays, vrrp_config)

pytestmark = [pytest.mark.netns, pytest.mark.slow, pytest.mark.timeout(300)]

UP_SERVERS = 150            # 127.0.x.y:9000, a listener answers
DOWN_SERVERS = 50           # 127.1.x.y:9001, nothing listens
EXTRA = "127.0.9.9"         # only in file B: the kernel must follow the file
VIP2 = "192.0.2.152"
WEB = "127.0.0.1:8088"

LISTENER = """
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 9000)); s.listen(4096)
while True:
    c, _ = s.accept(); c.close()
"""

FETCH = """
import sys, urllib.request
print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())
"""


def real(address: str, port: int, weight: int = 1) -> str:
    return (f"    real_server {address} {port} {{\n        weight {weight}\n"
            f"        TCP_CHECK {{\n            connect_timeout 1\n            retry 0\n"
            f"        }}\n    }}\n")


def up_address(n: int) -> str:
    return f"127.0.{n // 250}.{n % 250 + 1}"


def down_address(n: int) -> str:
    return f"127.1.{n // 250}.{n % 250 + 1}"


def file_text(variant: str) -> str:
    """A: VI_1 and the pool. B: the same VI_1, plus VI_2, one more server, one weight
    changed: different files whose difference touches every subsystem but VI_1."""
    reals = [real(up_address(n), 9000, 2 if (variant == "B" and n == 0) else 1)
             for n in range(UP_SERVERS)]
    reals += [real(down_address(n), 9001) for n in range(DOWN_SERVERS)]
    if variant == "B":
        reals.append(real(EXTRA, 9000))
    text = vrrp_config(150) + ("virtual_server 192.0.2.200 80 {\n    delay_loop 1\n"
                               "    lb_algo wrr\n    lb_kind NAT\n    protocol TCP\n"
                               + "".join(reals) + "}\n")
    if variant == "B":
        text += vrrp_config(150, vrid=52, name="VI_2", vips=(f"{VIP2}/24",))
    return text


class Ours:
    def __init__(self, lab, host):
        self.lab, self.host = lab, host
        self.folder = lab.tmp / "ours"
        self.folder.mkdir()
        self.config = self.folder / "keepalived.conf"
        self.config.write_text(file_text("A"))
        self.proc = host.popen(
            [sys.executable, "-m", "director", "-f", str(self.config), "-l", "-n",
             "--backend", "nftables", "--web", WEB, "--state-dir", str(self.folder / "state"),
             "-p", str(self.folder / "director.pid")],
            log_path=str(self.folder / "log"), env={"PYTHONPATH": str(ROOT)})

    def log(self) -> str:
        return self.lab.log_of(self.proc)

    def get(self, path: str) -> str:
        return self.host.run([sys.executable, "-c", FETCH, f"http://{WEB}{path}"]).stdout

    def reloads(self) -> dict[str, float]:
        counts = {}
        for line in self.get("/metrics").splitlines():
            if line.startswith("director_config_reloads_total{"):
                result = line.split('result="')[1].split('"')[0]
                counts[result] = float(line.rsplit(" ", 1)[1])
        return counts

    def hup(self, marker: str, count: int) -> None:
        self.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: self.log().count(marker) >= count, 15,
                 message=lambda: self.log()[-4000:])

    def table(self) -> str:
        return self.host.run(["nft", "list", "table", "inet", "director"], check=False).stdout


@pytest.fixture
def lab_with_peer(lab, pair):  # noqa: F811
    if shutil.which("nft") is None:
        pytest.skip("nft is not installed (apt-get install nftables)")
    _, a, b = pair
    listener = a.popen([sys.executable, "-c", LISTENER])
    wait_for(lambda: ":9000" in a.run(["ss", "-Hltn"]).stdout, 10,
             message=lambda: lab.log_of(listener))
    ours = Ours(lab, a)
    wait_for(holds(a), down_interval(150) + 2, message=lambda: ours.log())
    peer = start_keepalived(b, vrrp_config(100))
    wait_for(lambda: "Entering BACKUP STATE" in lab.log_of(peer), 10,
             message=lambda: lab.log_of(peer))
    wait_for(lambda: ours.log().count("check.real_server") >= DOWN_SERVERS, 10,
             message=lambda: ours.log()[-4000:])
    return ours, peer, a, b


def assert_sound(ours, peer, a, b, variant: str) -> None:
    """What must hold after every reload, good or bad."""
    assert ours.proc.poll() is None, ours.log()[-4000:]
    assert a.has_address("eth0", VIP) and not b.has_address("eth0", VIP)
    assert "Entering MASTER STATE" not in ours.lab.log_of(peer)
    moves = [line for line in ours.log().splitlines()
             if "vrrp.transition instance=VI_1 " in line]
    assert len(moves) == 2, moves                  # INIT -> BACKUP -> MASTER, then never
    # the load balancer converges on its own greenlet, just after the reload
    wait_for(lambda: (EXTRA in ours.table()) == (variant == "B"), 5,
             message=lambda: ours.table()[-2000:])
    table = ours.table()
    assert all(up_address(n) in table for n in range(UP_SERVERS)), table[-2000:]
    assert "127.1." not in table, "a down server is in the kernel"


def test_reload_faults_under_checks_and_a_keepalived_peer(lab_with_peer):
    ours, peer, a, b = lab_with_peer
    assert_sound(ours, peer, a, b, "A")
    expected = {"success": 0.0, "failure": 0.0}

    ours.config.rename(ours.folder / "away.conf")                 # missing
    ours.hup("reload.failed", 1)
    expected["failure"] += 1
    assert_sound(ours, peer, a, b, "A")

    os.mkfifo(ours.config)                                         # not readable as a file
    ours.hup("reload.failed", 2)
    expected["failure"] += 1
    ours.config.unlink()
    assert_sound(ours, peer, a, b, "A")

    ours.config.write_text(file_text("B") + "vrrp_instance VI_3 {\n")     # an error
    ours.hup("reload.failed", 3)
    expected["failure"] += 1
    assert_sound(ours, peer, a, b, "A")

    ours.config.write_text(file_text("B") + vrrp_config(                 # cannot be applied
        150, vrid=60, name="VI_9", interface="nope0", vips=("192.0.2.160/24",)))
    ours.hup("reload.refused", 1)
    expected["failure"] += 1
    assert_sound(ours, peer, a, b, "A")
    assert not a.has_address("eth0", VIP2)         # VI_2 of that file never started
    assert ours.reloads() == expected

    started = time.monotonic()
    for number in range(1, 201):                   # two different files, alternating
        variant = "B" if number % 2 else "A"
        ours.config.write_text(file_text(variant))
        ours.hup("reload.applied", number)
    took = time.monotonic() - started
    expected["success"] += 200
    assert_sound(ours, peer, a, b, "A")
    assert ours.reloads() == expected, took
    assert "hub.crash" not in ours.log() and "Traceback" not in ours.log()
    states = ours.get("/api/v1/state")
    assert '"up":true' in states and f'"address":"{EXTRA}"' not in states


def test_a_reload_racing_a_failover_ends_with_one_master(lab, pair):  # noqa: F811
    """The peer (keepalived, higher priority) dies while HUPs keep arriving: ours takes over
    once, within one master-down interval of its own, and stays."""
    _, a, b = pair
    peer = start_keepalived(b, vrrp_config(200))
    wait_for(holds(b), down_interval(200) + 2, message=lambda: lab.log_of(peer))
    folder = lab.tmp / "race"
    folder.mkdir()
    config = folder / "keepalived.conf"
    files = [vrrp_config(100) + vrrp_config(100, vrid=52, name="VI_2", vips=(f"{VIP2}/24",),
                                            extra=f"    priority {p}\n")
             for p in (100, 101)]
    config.write_text(files[0])
    ours = a.popen([sys.executable, "-m", "director", "-P", "-f", str(config), "-l", "-n",
                    "--web", "off", "--state-dir", str(folder / "state")],
                   log_path=str(folder / "log"), env={"PYTHONPATH": str(ROOT)})
    wait_for(lambda: "instance=VI_1 vrid=51 from=INIT to=BACKUP" in lab.log_of(ours), 10,
             message=lambda: lab.log_of(ours))
    peer.kill()
    killed = time.monotonic()
    deadline = killed + down_interval(100) + 1.0
    number = 0
    while time.monotonic() < deadline:             # HUPs across the whole takeover
        number += 1
        config.write_text(files[number % 2])
        ours.send_signal(signal.SIGHUP)
        wait_for(lambda: lab.log_of(ours).count("reload.") >= number, 10,
                 message=lambda: lab.log_of(ours)[-4000:])
    wait_for(holds(a), 2, message=lambda: lab.log_of(ours)[-4000:])
    stays(lambda: a.has_address("eth0", VIP) and not b.has_address("eth0", VIP), 1.5,
          "not exactly one MASTER after the race")
    log = lab.log_of(ours)
    assert log.count("instance=VI_1 vrid=51 from=BACKUP to=MASTER") == 1, log[-4000:]
    assert "hub.crash" not in log and ours.poll() is None
