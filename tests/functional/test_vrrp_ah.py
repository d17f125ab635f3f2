"""auth_type AH against Debian's keepalived 2.2.7 in network namespaces on a bridge: each side
accepts the other's AH adverts (the BACKUP stays BACKUP), failover and failback both ways; a
peer with another password or without AH is a split brain that both sides count; what we send
is IP protocol 51 with a growing sequence number; a replayed advert is dropped and counted.

Bounds are the protocol's (master_down_interval, plus SLACK) as deadlines of waits.
"""

from __future__ import annotations

import json
import sys

import pytest

from tests.functional.lab import start_keepalived, wait_for
from tests.functional.test_reload_vrrp import hup_and_wait
from tests.functional.test_vrrp_failover import (SLACK, VIP, down_interval, holds, lacks,
                                                 start_director, stats, stays, until,
                                                 vrrp_config)

pytestmark = [pytest.mark.netns, pytest.mark.slow, pytest.mark.timeout(120)]

STARTUP = 5          # seconds a daemon may take to start on a busy host (python imports)
AH = "    authentication {\n        auth_type AH\n        auth_pass %s\n    }\n"


def ah_config(priority: int, password: str = "secret12", unicast=None) -> str:
    return vrrp_config(priority, password=None, extra=AH % password, unicast=unicast)


def dropped(lab, proc) -> dict:
    return stats(lab, proc)["VI_1"]["dropped"]


@pytest.fixture
def trio(lab):
    switch = lab.switch()
    return [lab.host(name, [(switch, "eth0", [f"192.0.2.{n}/24"])])
            for name, n in (("a", 1), ("b", 2), ("c", 3))]


# Runs in a namespace of its own: reads AH packets (IP protocol 51) for up to 10 s, prints one
# JSON line per packet; with "replay", sends the first one back unchanged afterwards.
RAW = r"""
import json, socket, struct, sys, time
count, replay = int(sys.argv[1]), sys.argv[2] == "replay"
sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, 51)
sock.setsockopt(socket.SOL_SOCKET, 25, b"eth0")
mreq = struct.pack("4s4si", socket.inet_aton("224.0.0.18"), socket.inet_aton("0.0.0.0"),
                   socket.if_nametoindex("eth0"))
sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
sock.settimeout(1.0)
seen, end = [], time.monotonic() + 10
while len(seen) < count and time.monotonic() < end:
    try:
        packet = sock.recv(65535)
    except socket.timeout:
        continue
    ihl = (packet[0] & 15) * 4
    nxt, _, _, spi, seq = struct.unpack_from("!BBHII", packet, ihl)
    seen.append(packet)
    print(json.dumps({"protocol": packet[9], "next_header": nxt, "spi": socket.inet_ntoa(
        struct.pack("!I", spi)), "src": socket.inet_ntoa(packet[12:16]), "sequence": seq,
        "ttl": packet[8]}), flush=True)
if replay and seen:
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
    sock.sendto(seen[0], ("224.0.0.18", 0))
"""


def capture(host, count: int, replay: bool = False) -> list[dict]:
    done = host.run([sys.executable, "-c", RAW, count, "replay" if replay else "-"],
                    timeout=20, check=False)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


# Both directions and both transports, each once (the four combinations took a minute of the
# suite and the ICV rule differs only by transport): ours MASTER over multicast, keepalived
# MASTER over unicast.
@pytest.mark.parametrize("ours_is_master, unicast", [(True, False), (False, True)],
                         ids=["ours-master-multicast", "keepalived-master-unicast"])
def test_ah_interop_with_keepalived(lab, trio, ours_is_master, unicast):
    """The BACKUP hears the MASTER's AH adverts and stays BACKUP; kill -9 the MASTER: the
    BACKUP takes over within the master down interval; the MASTER comes back (its sequence
    counter from 0, as after any restart) and takes the VIP back. Unicast leaves the TTL
    out of the ICV."""
    a, b, _ = trio
    high = ah_config(150, unicast=("192.0.2.1", "192.0.2.2") if unicast else None)
    low = ah_config(100, unicast=("192.0.2.2", "192.0.2.1") if unicast else None)

    def start_high(tag):
        return start_director(lab, a, high, f"ours-{tag}") if ours_is_master \
            else start_keepalived(a, high, name=f"keepalived-{tag}")

    master = start_high("1")
    backup = start_keepalived(b, low) if ours_is_master \
        else start_director(lab, b, low, "ours")
    ours = master if ours_is_master else backup
    until(holds(a), down_interval(150) + STARTUP,
          lambda: f"A never became MASTER\n{lab.log_of(master)}")
    stays(lacks(b), down_interval(100) + 1, f"B holds the VIP too\n{lab.log_of(backup)}")
    if not ours_is_master:
        counters = stats(lab, ours)["VI_1"]
        assert counters["adverts_received"] >= 3 and not counters["dropped"], counters
    else:
        assert "IPSEC-AH" not in lab.log_of(backup), lab.log_of(backup)
    master.kill()
    until(holds(b), down_interval(100) + SLACK, lambda: f"no failover\n{lab.log_of(backup)}")
    master = start_high("2")
    until(lacks(b), down_interval(150) + STARTUP,
          lambda: f"no failback\n{lab.log_of(master)}\n{lab.log_of(backup)}")
    until(holds(a), 1.0, lambda: f"A lost its VIP\n{lab.log_of(master)}")
    stays(lacks(b), 2.0, f"B took the VIP back\n{lab.log_of(backup)}")


@pytest.mark.parametrize("peer_auth, reason, keepalived_says", [
    (AH % "another1", "auth_failure", "invalid IPSEC HMAC-MD5 value"),
    ("    authentication {\n        auth_type PASS\n        auth_pass secret12\n    }\n",
     "auth_type_mismatch", None),
], ids=["another_password", "pass_peer"])
def test_a_peer_that_does_not_authenticate_is_a_counted_split_brain(lab, trio, peer_auth,
                                                                   reason, keepalived_says):
    """What AH is for: a peer whose adverts fail the check is not a peer. Both become MASTER
    and each counts the other's adverts as dropped."""
    a, b, _ = trio
    ours = start_director(lab, a, ah_config(150), "ours")
    theirs = start_keepalived(b, vrrp_config(100, password=None, extra=peer_auth))
    until(holds(a), down_interval(150) + STARTUP, lambda: lab.log_of(ours))
    until(holds(b), down_interval(100) + STARTUP, lambda: lab.log_of(theirs))
    # keepalived, MASTER and hearing adverts it rejects, advertises only every 2 to 6 s
    wait_for(lambda: dropped(lab, ours).get(reason, 0) >= 2, 15, interval=0.5,
             message=lambda: f"{dropped(lab, ours)}\n{lab.log_of(ours)}\n"
                             f"{lab.log_of(theirs)}")
    if keepalived_says:
        until(lambda: keepalived_says in lab.log_of(theirs), 5, lambda: lab.log_of(theirs))


def test_we_send_ah_with_a_growing_sequence_number(lab, trio):
    a, _, c = trio
    ours = start_director(lab, a, ah_config(150), "ours")
    until(holds(a), down_interval(150) + STARTUP, lambda: lab.log_of(ours))
    packets = capture(c, 3)
    assert len(packets) == 3, (packets, lab.log_of(ours))
    assert {(p["protocol"], p["next_header"], p["spi"], p["src"], p["ttl"])
            for p in packets} == {(51, 112, "192.0.2.1", "192.0.2.1", 255)}
    sequences = [p["sequence"] for p in packets]
    assert sequences == list(range(sequences[0], sequences[0] + 3)), sequences


def test_a_replayed_keepalived_advert_is_dropped(lab, trio):
    """keepalived MASTER, ours BACKUP; a third host sends one of keepalived's adverts again
    (its ICV is right, its sequence number old): counted 'ah_replay', and no other drop."""
    a, b, c = trio
    master = start_keepalived(a, ah_config(150))
    ours = start_director(lab, b, ah_config(100), "ours")
    until(holds(a), down_interval(150) + STARTUP, lambda: lab.log_of(master))
    assert len(capture(c, 1, replay=True)) == 1
    wait_for(lambda: dropped(lab, ours).get("ah_replay", 0) >= 1, 5, interval=0.2,
             message=lambda: lab.log_of(ours))
    assert set(dropped(lab, ours)) == {"ah_replay"}
    stays(lacks(b), 1.5, lab.log_of(ours))


def test_a_reload_turns_ah_on_and_keeps_the_sequence_counter(lab, trio):
    """PASS -> AH by a reload ends the split brain with an AH peer; then a changed instance
    (priority 255) keeps its role, as keepalived's restore_vrrp_state: it stays MASTER, its
    VIP never leaves, the peer never hears priority 0, and its first advert after the reload
    (sent at once) goes on from its old counter, as keepalived keeps it on reload, so the
    peer accepts it: the peer logs no sequence number 'already processed' after it (it did
    while the restarted instance began at 1). Once this restarted the instance (STOP, priority 0,
    VIP removed, INIT -> MASTER) and failed under load: the peer took the VIP meanwhile."""
    a, b, _ = trio
    plain = vrrp_config(150, password=None,
                        extra="    authentication {\n        auth_type PASS\n"
                              "        auth_pass secret12\n    }\n")
    ours = start_director(lab, a, plain, "ours")
    peer = start_keepalived(b, ah_config(100))
    until(holds(a), down_interval(150) + STARTUP, lambda: lab.log_of(ours))
    until(holds(b), down_interval(100) + STARTUP, lambda: lab.log_of(peer))     # split brain
    config = lab.tmp / "ours" / "keepalived.conf"

    config.write_text(ah_config(150))
    hup_and_wait(lab, ours, "reload.applied", 1)
    until(lacks(b), down_interval(150) + 2, lambda: f"{lab.log_of(ours)}\n{lab.log_of(peer)}")
    until(holds(a), 1.0, lambda: lab.log_of(ours))

    # The PASS -> AH reload kept ours MASTER (keepalived's restore_vrrp_state) with the
    # counter PASS left (0): the peer, MASTER too meanwhile, dropped our first AH adverts
    # as 'already processed' until our numbers passed its own, as it drops keepalived's.
    config.write_text(ah_config(255))
    zeros = lab.log_of(peer).count("priority 0")
    replays = lab.log_of(peer).count("already processed")
    hup_and_wait(lab, ours, "reload.applied", 2)
    assert "1 changed" in lab.log_of(ours)
    assert "role=MASTER kept=True" in lab.log_of(ours), lab.log_of(ours)
    stays(lambda: a.has_address("eth0", VIP) and not b.has_address("eth0", VIP), 2.5,
          f"{lab.log_of(ours)}\n{lab.log_of(peer)}")
    assert lab.log_of(peer).count("already processed") == replays, lab.log_of(peer)
    assert lab.log_of(peer).count("priority 0") == zeros, lab.log_of(peer)
