"""lvs_timeouts on the wire: IPVS_CMD_SET_CONFIG with one u32 attribute per timeout given
(ip_vs.h: TIMEOUT_TCP 4, TIMEOUT_TCP_FIN 5, TIMEOUT_UDP 6), none for one left alone; and
which backend does what with it."""

from __future__ import annotations

import logging
import struct

from director.config.blocks.process import LvsTimeouts
from director.lb import timeouts
from director.lb.genl import IpvsMessage, iter_attrs


class Recording:
    def __init__(self):
        self.requests = []

    def request(self, command, attrs, dump=False, raw=False):
        self.requests.append((command, attrs))
        return []


def encoded(command, attrs) -> bytes:
    message = IpvsMessage()
    message["cmd"] = command
    message["version"] = 1
    message["attrs"] = attrs
    message.encode()
    return bytes(message.data)


def test_set_config_carries_the_given_timeouts_as_u32_attributes():
    socket = Recording()
    timeouts.set_timeouts(socket, LvsTimeouts(tcp=900, udp=0))
    ((command, attrs),) = socket.requests
    assert command == 12                               # IPVS_CMD_SET_CONFIG
    data = encoded(command, attrs)
    assert data[16] == 12                              # genl header: cmd
    assert list(iter_attrs(data[20:])) == [(4, struct.pack("=I", 900)),
                                           (6, struct.pack("=I", 0))]


def test_all_three_and_none():
    socket = Recording()
    timeouts.set_timeouts(socket, LvsTimeouts(tcp=1, tcpfin=2, udp=3))
    assert [kind for kind, _ in iter_attrs(encoded(*socket.requests[0])[20:])] == [4, 5, 6]
    socket = Recording()
    timeouts.set_timeouts(socket, LvsTimeouts())
    assert socket.requests == []                       # nothing to send


def test_nftables_says_it_leaves_them_to_conntrack(caplog):
    from director.lb.backends import NftablesSync
    with caplog.at_level(logging.WARNING, logger="director.lb"):
        NftablesSync().set_timeouts(LvsTimeouts(tcp=900))
    assert "lb.lvs_timeouts_ignored" in caplog.text and "nf_conntrack" in caplog.text


def test_the_load_balancer_sets_them_at_start_and_on_a_reload_that_changes_them(tmp_path):
    from types import SimpleNamespace

    from director.config import load_config
    from director.lb.service import LoadBalancer
    from director.notify import Notifier

    def config(line: str):
        path = tmp_path / "keepalived.conf"
        path.write_text(f"global_defs {{\n    {line}\n}}\nvirtual_server 192.0.2.10 80 {{\n"
                        "    protocol TCP\n    real_server 10.0.0.1 80 {\n    }\n}\n")
        return load_config(str(path), interface_exists=None).config

    class Backend:
        name = "fake"
        kernel: dict = {}

        def __init__(self):
            self.timeouts = []

        def open(self):
            pass

        def set_timeouts(self, timeouts):
            self.timeouts.append((timeouts.tcp, timeouts.tcpfin, timeouts.udp))

        def sync(self, desired, owned, verify=True):
            return []

        def close(self, remove=None):
            pass

    checks = SimpleNamespace(state_of=lambda name, real: None, listeners=[], effect_listeners=[], real_servers=[])
    lb = LoadBalancer(config("lvs_timeouts tcp 900"), checks, "none", Notifier(None))
    lb.backend = backend = Backend()
    lb.start()
    try:
        assert backend.timeouts == [(900, None, None)]
        lb.reload(config("lvs_timeouts tcp 900"))            # unchanged: not sent again
        lb.reload(config("lvs_timeouts tcp 900 udp 60"))
        lb.reload(config("router_id X"))                     # gone: nothing restored
        assert backend.timeouts == [(900, None, None), (900, None, 60)]
    finally:
        lb.stop()
