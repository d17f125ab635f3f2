"""VRRP's numbers on the wire (RFC 3768 5.2, RFC 5798 5.1): what the codec, the sockets, the
early capture and the quick start share. A module of its own so that the start-up path
(director/vrrp/early.py, quickstart.py) can have them without the codec's imports."""

PROTOCOL = 112                                     # IP protocol number
MULTICAST = {4: "224.0.0.18", 6: "ff02::12"}       # the groups, by IP version
TTL = 255                                          # sent with, and required on receipt
OWNER_PRIORITY = 255                               # the address owner (RFC 5798 5.2.4)
