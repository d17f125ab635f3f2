"""lb_algo mh with its flags reaches IPVS as keepalived sends it: from keepalived.conf
(mh-port, mh-fallback, or lvs_sched mh with flag-1 / flag-2) through the pool to the netlink
message IpvsBackend sends (its bytes, walked by hand: IPVS_SVC_ATTR_SCHED_NAME and
IPVS_SVC_ATTR_FLAGS), and back: what the kernel reports compares equal to what was
programmed, so a verify does not edit the service again and again. The destinations of a
new service are added in key order (mh builds its table in the kernel's list order)."""

from __future__ import annotations

import struct

import pytest

from director.config import load_config
from director.lb.genl import HEADER, IpvsMessage, iter_attrs
from director.lb.ipvs import F_SCHED1, F_SCHED2, F_SCHED3, IpvsBackend
from director.lb.model import DestinationKey, Pool, ServiceKey
from director.lb.plan import AddDestination, AddService, plan
from director.lb.pool import Live, pool

ATTR_SERVICE, SVC_SCHED_NAME, SVC_FLAGS = 1, 6, 7      # uapi ip_vs.h
CMD_NEW_SERVICE = 1


def virtual_server(tmp_path, lines: str):
    path = tmp_path / "keepalived.conf"
    path.write_text(f"""virtual_server 192.0.2.10 80 {{
    protocol TCP
    lb_kind DR
{lines}
    real_server 10.0.0.3 80 {{
    }}
    real_server 10.0.0.1 80 {{
    }}
    real_server 10.0.0.2 80 {{
    }}
}}
""")
    loaded = load_config(str(path), interface_exists=None)
    assert loaded.ok, loaded.diagnostics
    (virtual,) = loaded.config.virtual_servers
    return loaded, virtual


def service_of(virtual) -> Pool:
    return pool(virtual, ServiceKey("TCP", "192.0.2.10", 80), lambda real: Live(), True)


class RecordingSocket:
    """Stands in for GenlSocket: encodes each request as GenlSocket does and keeps it."""

    def __init__(self):
        self.sent: list[tuple[int, bytes]] = []

    def request(self, command, attrs, dump=False, raw=False):
        message = IpvsMessage()
        message["cmd"], message["version"], message["attrs"] = command, 1, attrs
        message.encode()
        self.sent.append((command, bytes(message.data[HEADER.size + 4:])))
        return []


def sent_service(service) -> tuple[str, int, int]:
    """(scheduler, flags, mask) of the IPVS_CMD_NEW_SERVICE message for service."""
    backend = IpvsBackend()
    backend._ipvs = socket = RecordingSocket()
    backend.apply_one(AddService(service))
    [(command, payload)] = socket.sent
    assert command == CMD_NEW_SERVICE
    nested = dict(iter_attrs(next(value for kind, value in iter_attrs(payload)
                                  if kind == ATTR_SERVICE)))
    flags, mask = struct.unpack("=II", nested[SVC_FLAGS][:8])
    return nested[SVC_SCHED_NAME].rstrip(b"\0").decode(), flags, mask


@pytest.mark.parametrize("lines, flags, bits", [
    ("lb_algo mh\n    mh-port\n    mh-fallback", ("mh-port", "mh-fallback"),
     F_SCHED1 | F_SCHED2),
    ("lb_algo mh\n    mh-port", ("mh-port",), F_SCHED2),
    ("lvs_sched mh\n    flag-2", ("mh-port",), F_SCHED2),
    ("lvs_sched mh\n    flag-1\n    flag-2", ("mh-port", "mh-fallback"), F_SCHED1 | F_SCHED2),
    ("lb_algo mh", (), 0),
    ("lb_algo sh\n    sh-port\n    mh-port", ("sh-port",), F_SCHED2),     # mh-port: not sh's
    ("lb_algo rr\n    mh-fallback", (), 0),                                 # ignored, warned
    ("lb_algo rr\n    flag-2\n    flag-3", ("flag-2", "flag-3"), F_SCHED2 | F_SCHED3),
])
def test_the_flags_reach_the_netlink_message(tmp_path, lines, flags, bits):
    _, virtual = virtual_server(tmp_path, lines)
    wanted = service_of(virtual).service
    assert wanted.flags == flags
    scheduler, sent, mask = sent_service(wanted)
    assert scheduler == (virtual.lb_algo or "wlc")
    assert sent == bits and mask == 0xFFFF
    # what the kernel will report back is what we asked for: no EditService at each verify
    read = IpvsBackend._service_from({
        "IPVS_SVC_ATTR_AF": 2, "IPVS_SVC_ATTR_PROTOCOL": 6, "IPVS_SVC_ATTR_ADDR": "192.0.2.10",
        "IPVS_SVC_ATTR_PORT": 80, "IPVS_SVC_ATTR_SCHED_NAME": scheduler,
        "IPVS_SVC_ATTR_FLAGS": {"flags": sent | 0x0002, "mask": 0xFFFF}})   # + F_HASHED
    assert read == wanted


def test_a_flag_for_another_scheduler_is_warned_about(tmp_path):
    path = tmp_path / "keepalived.conf"
    path.write_text("virtual_server 192.0.2.10 80 {\n    protocol TCP\n    lb_algo rr\n"
                    "    mh-port\n    real_server 10.0.0.1 80 {\n    }\n}\n")
    loaded = load_config(str(path), interface_exists=None)
    assert loaded.ok
    assert [str(d).split("keepalived.conf")[1] for d in loaded.diagnostics] == [
        ":1: warning: virtual_server 192.0.2.10:80/TCP: mh-port only applies to lb_algo mh, "
        "not rr: ignored, as keepalived does (flag-2 sets the bit for any scheduler)"]


def test_a_new_mh_service_gets_its_destinations_in_key_order(tmp_path):
    """IPVS's mh fills its table walking the destinations in list order (each new one at
    the head): every director adding them in the same order builds the same table."""
    _, virtual = virtual_server(tmp_path, "lb_algo mh\n    mh-port")
    wanted = service_of(virtual)
    key = wanted.service.key
    operations = plan({key: wanted}, {}, frozenset())
    assert isinstance(operations[0], AddService)
    added = [op.destination.key for op in operations[1:] if isinstance(op, AddDestination)]
    assert added == [DestinationKey(f"10.0.0.{i}", 80) for i in (1, 2, 3)]
    # whatever order the configuration lists them in
    shuffled = Pool(wanted.service, dict(reversed(list(wanted.destinations.items()))))
    assert plan({key: shuffled}, {}, frozenset()) == operations
