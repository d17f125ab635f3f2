"""lvs_timeouts: IPVS's tcp / tcpfin / udp connection timeouts (``ipvsadm --set``), over
the IPVS generic netlink family: IPVS_CMD_SET_CONFIG to set them, IPVS_CMD_GET_CONFIG to
read them back. The kernel leaves a timeout whose attribute is absent (or 0) as it is,
which is keepalived's "not setting a value leaves it unchanged"."""

from __future__ import annotations

import logging
from typing import Any

from ..log import event

log = logging.getLogger("director.lb")

IPVS_CMD_SET_CONFIG = 12            # include/uapi/linux/ip_vs.h
IPVS_CMD_GET_CONFIG = 13
ATTRS = (("tcp", "IPVS_CMD_ATTR_TIMEOUT_TCP"), ("tcpfin", "IPVS_CMD_ATTR_TIMEOUT_TCP_FIN"),
         ("udp", "IPVS_CMD_ATTR_TIMEOUT_UDP"))


def set_config_attrs(timeouts: Any) -> list[tuple[str, int]]:
    """The attributes of IPVS_CMD_SET_CONFIG for ``timeouts`` (config LvsTimeouts): one per
    timeout given, none for one left to the kernel."""
    return [(attr, getattr(timeouts, name)) for name, attr in ATTRS
            if getattr(timeouts, name) is not None]


def set_timeouts(socket: Any, timeouts: Any) -> None:
    """Raises genl.GenlError."""
    attrs = set_config_attrs(timeouts)
    if attrs:
        socket.request(IPVS_CMD_SET_CONFIG, attrs)


def read_timeouts(socket: Any) -> dict[str, int]:
    """{"tcp": s, "tcpfin": s, "udp": s} as the kernel has them now."""
    (reply,) = socket.request(IPVS_CMD_GET_CONFIG, [])
    return {name: reply.get_attr(attr) for name, attr in ATTRS}


def nftables_note(timeouts: Any) -> None:
    """The nftables backend has no timeouts of its own: its connections are conntrack's."""
    if timeouts is not None:
        event(log, "lb.lvs_timeouts_ignored", logging.WARNING, backend="nftables",
              note="nftables has no IPVS timeouts: the connections follow conntrack's "
                   "(sysctl net.netfilter.nf_conntrack_tcp_timeout_established, "
                   "_tcp_timeout_fin_wait, nf_conntrack_udp_timeout_stream); director "
                   "leaves them alone")
