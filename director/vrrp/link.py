"""An interface's link state as VRRP judges it (keepalived: IFF_UP and IFF_RUNNING, or the
driver's own word with linkbeat). A module with the standard library's lightest imports:
the quick start (quickstart.py) asks it before anything else is loaded."""

from __future__ import annotations

import array
import fcntl
import socket
import struct


def interface_up(ifname: str, linkbeat: bool = False) -> bool:
    """Administratively up with carrier (keepalived: IFF_UP and IFF_RUNNING); ``linkbeat``
    (linkbeat_use_polling / linkbeat_interfaces): the link as the driver reports it to
    ethtool (ETHTOOL_GLINK, keepalived's ETHTOOL polling), the carrier where it has none."""
    try:
        with open(f"/sys/class/net/{ifname}/flags") as handle:
            flags = int(handle.read(), 16)
        with open(f"/sys/class/net/{ifname}/carrier") as handle:
            carrier = handle.read().strip() == "1"
    except (OSError, ValueError):
        return False
    if linkbeat and flags & 0x1:
        link = ethtool_link(ifname)
        carrier = carrier if link is None else link
    return bool(flags & 0x1) and carrier


SIOCETHTOOL = 0x8946
ETHTOOL_GLINK = 0x0000000A


def ethtool_link(ifname: str) -> bool | None:
    """The driver's link state (struct ethtool_value through SIOCETHTOOL); None where the
    driver does not answer."""
    value = array.array("I", [ETHTOOL_GLINK, 0])
    request = struct.pack("16sP", ifname.encode()[:15], value.buffer_info()[0])
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            fcntl.ioctl(sock.fileno(), SIOCETHTOOL, request)
    except OSError:
        return None
    return bool(value[1])


def linkbeat_interfaces(config) -> set[str] | bool:
    """linkbeat_use_polling at the top (or in global_defs): every interface; else those of
    linkbeat_interfaces and of the instances that ask for it."""
    if config.linkbeat_use_polling or config.global_defs.linkbeat_use_polling:
        return True
    return {line.interface for line in config.linkbeat_interfaces} | \
        {item.interface for item in config.vrrp_instances
         if item.linkbeat_use_polling and item.interface}
