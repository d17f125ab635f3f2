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
