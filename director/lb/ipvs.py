"""The IPVS backend: reads the kernel's virtual services into model objects and applies plan
operations, over generic netlink (genl.GenlSocket; pyroute2's IPVSService / IPVSDest build
the attributes).

pyroute2 0.9.7 pitfalls this works around (see shared/notes/ipvs-in-qemu.md): ``IPVSDest``
defaults to direct routing, so the forwarding method is always given; ``from_message()``
returns defaults for the forwarding method and the flags, so reading parses the raw
attributes instead.

Conventions of the model this maps to:

- fwmark services: the kernel keeps no protocol for them (it reports none; we say "TCP").
- persistence: ``persistence_timeout`` None when the kernel's service is not persistent;
  ``persistence_netmask`` None for the full mask (255.255.255.255, or /128 for IPv6), else
  the dotted mask (IPv4) or the prefix length as a string (IPv6, "64").
- destination port 0 (fwmark services' real servers) reads as None.
- flags: ops (one-packet scheduling), sh-/mh-port and sh-/mh-fallback (the scheduler's
  flags 2 and 1, named after the service's scheduler; flag-1, flag-2 for the others) and
  flag-3 (pool.service_flags()).
- mh builds its Maglev table from the service's destinations in the kernel's list order,
  and the kernel adds each new destination at the head of that list (list_add_rcu in
  __ip_vs_update_dest). plan() adds a new service's destinations sorted by key, so
  directors that start alike build the same table; a destination removed (a failed check
  without inhibit_on_failure) and added again goes to the head, so a director that saw
  that and one that started later list them differently and can disagree on some flows.
  inhibit_on_failure (weight 0: the destination stays in its place) keeps them agreeing.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
import struct
from dataclasses import dataclass
from typing import Any

from pyroute2.netlink.generic import ipvs as CMD

from .genl import GenlSocket, iter_attrs
from .model import (BackendError, Counters, Destination, DestinationKey, Pool,
                    Service, ServiceKey, State)
from .plan import (AddDestination, AddService, DeleteDestination, DeleteService,
                   EditDestination, EditService, Operation)

PROTOCOLS = {"TCP": socket.IPPROTO_TCP, "UDP": socket.IPPROTO_UDP, "SCTP": 132}
PROTOCOL_NAMES = {number: name for name, number in PROTOCOLS.items()}
FAMILIES = {4: socket.AF_INET, 6: socket.AF_INET6}
FAMILY_NUMBERS = {number: version for version, number in FAMILIES.items()}
METHODS = {"NAT": 0, "TUN": 2, "DR": 3}          # IP_VS_CONN_F_MASQ, _TUNNEL, _DROUTE
METHOD_NAMES = {0: "NAT", 1: "LOCAL", 2: "TUN", 3: "DR", 4: "BYPASS"}

F_PERSISTENT = 0x0001
F_HASHED = 0x0002                                 # kernel-internal
F_ONEPACKET = 0x0004
F_SCHED1 = 0x0008                                 # sh-fallback / mh-fallback
F_SCHED2 = 0x0010                                 # sh-port / mh-port
F_SCHED3 = 0x0020                                 # flag-3 (no scheduler uses it yet)
FULL_MASK = {4: "255.255.255.255", 6: "128"}


class IpvsError(Exception):
    pass


def _flag_bits(service: Service) -> int:
    bits = F_PERSISTENT if service.persistence_timeout is not None else 0
    for name in service.flags:
        if name == "ops":
            bits |= F_ONEPACKET
        elif name.endswith("-fallback") or name == "flag-1":
            bits |= F_SCHED1
        elif name.endswith("-port") or name == "flag-2":
            bits |= F_SCHED2
        elif name == "flag-3":
            bits |= F_SCHED3
        else:
            raise IpvsError(f"unknown service flag {name!r}")
    return bits


def _flag_names(bits: int, scheduler: str) -> tuple[str, ...]:
    """The flags as pool.service_flags() names them: after the scheduler for sh and mh,
    flag-N for the others."""
    own = scheduler if scheduler in ("sh", "mh") else None
    names = []
    if bits & F_ONEPACKET:
        names.append("ops")
    if bits & F_SCHED2:
        names.append(f"{own}-port" if own else "flag-2")
    if bits & F_SCHED1:
        names.append(f"{own}-fallback" if own else "flag-1")
    if bits & F_SCHED3:
        names.append("flag-3")
    return tuple(names)


def _netmask_attr(family: int, netmask: str | None) -> str:
    """IPVS_SVC_ATTR_NETMASK as pyroute2's ip4addr: a mask (IPv4) or, for IPv6, the prefix
    length the kernel reads from the attribute's raw (host order) 32 bits."""
    netmask = netmask or FULL_MASK[family]
    if family == 4:
        return netmask
    return socket.inet_ntoa(struct.pack("=I", int(netmask.lstrip("/"))))


def _netmask_model(family: int, value: str | None) -> str | None:
    if value is None:
        return None
    if family == 6:
        value = str(struct.unpack("=I", socket.inet_aton(value))[0])
    return None if value == FULL_MASK[family] else value


def _attrs(nla: Any) -> dict[str, Any]:
    return {name: value for name, value in nla["attrs"]}


def counters_from(attrs: dict[str, Any]) -> Counters:
    """IPVS_*_ATTR_STATS64 of a service or a destination."""
    nla = attrs.get("IPVS_SVC_ATTR_STATS64") or attrs.get("IPVS_DEST_ATTR_STATS64")
    stats = _attrs(nla) if nla is not None else {}
    return Counters(stats.get("IPVS_STATS_ATTR_CONNS", 0),
                    stats.get("IPVS_STATS_ATTR_INPKTS", 0),
                    stats.get("IPVS_STATS_ATTR_OUTPKTS", 0),
                    stats.get("IPVS_STATS_ATTR_INBYTES", 0),
                    stats.get("IPVS_STATS_ATTR_OUTBYTES", 0))


# IPVS_CMD_ATTR_SERVICE and, in it, IPVS_SVC_ATTR_*; in IPVS_SVC_ATTR_STATS64, IPVS_STATS_ATTR_*
ATTR_SERVICE = 1
SVC_AF, SVC_PROTOCOL, SVC_ADDR, SVC_PORT, SVC_FWMARK, SVC_STATS64 = 1, 2, 3, 4, 5, 12
STATS_FIELDS = (1, 2, 3, 4, 5)           # connections, packets in/out, bytes in/out


def service_counters(payload: bytes) -> tuple[ServiceKey, Counters] | None:
    """A service dump message's key and counters, walked by hand: pyroute2 decodes every
    attribute of the message in Python, too slow for a dump each delay_loop under load
    (a thousand services). The same conventions as _service_from."""
    nested = next((value for kind, value in iter_attrs(payload) if kind == ATTR_SERVICE), None)
    if nested is None:
        return None
    fields = dict(iter_attrs(nested))
    af = struct.unpack_from("=H", fields[SVC_AF])[0]
    family = FAMILY_NUMBERS.get(af, af)
    fwmark = struct.unpack_from("=I", fields[SVC_FWMARK])[0] if SVC_FWMARK in fields else 0
    if fwmark:
        key = ServiceKey("TCP", fwmark=fwmark, family=family)
    else:
        protocol = struct.unpack_from("=H", fields[SVC_PROTOCOL])[0]
        address = socket.inet_ntop(af, fields[SVC_ADDR][:4 if af == socket.AF_INET else 16])
        key = ServiceKey(PROTOCOL_NAMES.get(protocol, str(protocol)), address,
                         struct.unpack_from("!H", fields[SVC_PORT])[0], family=family)
    stats = dict(iter_attrs(fields.get(SVC_STATS64, b"")))
    return key, Counters(*(struct.unpack_from("=Q", stats[number])[0] if number in stats else 0
                           for number in STATS_FIELDS))


class IpvsBackend:
    """``open()``, then ``read()`` and ``apply()``; ``close()``.

    ``counters`` holds what the last ``read()`` saw: (service key, None) for a service,
    (service key, destination key) for a destination."""

    def __init__(self) -> None:
        self._ipvs: GenlSocket | None = None
        self.receive_buffer: tuple[int, bool] | None = None     # lvs_netlink_cmd_rcv_bufs
        self.counters: dict[tuple[ServiceKey, DestinationKey | None], Counters] = {}

    def open(self) -> None:
        if self._ipvs is None:
            self._ipvs = GenlSocket(receive_buffer=self.receive_buffer)

    def close(self) -> None:
        if self._ipvs is not None:
            self._ipvs.close()
            self._ipvs = None

    def __enter__(self) -> IpvsBackend:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def _socket(self) -> GenlSocket:
        if self._ipvs is None:
            raise IpvsError("IpvsBackend is not open")
        return self._ipvs

    genl = _socket                # for the requests that are not about services (timeouts)

    def _service_request(self, command: int, service: Any = None, dump: bool = False) -> list:
        attrs = [] if service is None else [("IPVS_CMD_ATTR_SERVICE", service.dump_nla())]
        return self._socket.request(command, attrs, dump)

    def _dest_request(self, command: int, service: Any, dest: Any = None,
                      dump: bool = False) -> list:
        attrs = [("IPVS_CMD_ATTR_SERVICE", service.dump_key())]
        if dest is not None:
            attrs.append(("IPVS_CMD_ATTR_DEST", dest.dump_nla()))
        return self._socket.request(command, attrs, dump)

    # reading

    def _services(self):
        """(service, its counters) for every service in the kernel: one dump."""
        for message in self._service_request(CMD.IPVS_CMD_GET_SERVICE, dump=True):
            attrs = _attrs(message.get_attr("IPVS_CMD_ATTR_SERVICE"))
            yield self._service_from(attrs), counters_from(attrs)

    def read_service_counters(self) -> None:
        """The services' counters only (one dump, no destinations, walked without decoding
        whole messages): every delay_loop."""
        for payload in self._socket.request(CMD.IPVS_CMD_GET_SERVICE, [], dump=True, raw=True):
            found = service_counters(payload)
            if found is not None:
                self.counters[found[0], None] = found[1]


    def read(self) -> State:
        state: State = {}
        counters: dict[tuple[ServiceKey, DestinationKey | None], Counters] = {}
        for service, service_counters in list(self._services()):
            counters[service.key, None] = service_counters
            destinations: dict[DestinationKey, Destination] = {}
            for dest_message in self._dest_request(CMD.IPVS_CMD_GET_DEST,
                                                   self._service_key(service.key), dump=True):
                dest_attrs = _attrs(dest_message.get_attr("IPVS_CMD_ATTR_DEST"))
                destination = self._destination_from(dest_attrs)
                destinations[destination.key] = destination
                counters[service.key, destination.key] = counters_from(dest_attrs)
            state[service.key] = Pool(service, destinations)
        self.counters = counters
        return state

    @staticmethod
    def _service_from(attrs: dict[str, Any]) -> Service:
        family = FAMILY_NUMBERS.get(attrs["IPVS_SVC_ATTR_AF"], attrs["IPVS_SVC_ATTR_AF"])
        fwmark = attrs.get("IPVS_SVC_ATTR_FWMARK") or None
        if fwmark is not None:
            key = ServiceKey("TCP", fwmark=fwmark, family=family)
        else:
            protocol = attrs["IPVS_SVC_ATTR_PROTOCOL"]
            key = ServiceKey(PROTOCOL_NAMES.get(protocol, str(protocol)),
                             attrs["IPVS_SVC_ATTR_ADDR"], attrs["IPVS_SVC_ATTR_PORT"],
                             family=family)
        flags = attrs.get("IPVS_SVC_ATTR_FLAGS")
        bits = flags["flags"] if flags is not None else 0
        scheduler = attrs.get("IPVS_SVC_ATTR_SCHED_NAME", "")
        persistent = bool(bits & F_PERSISTENT)
        return Service(
            key, scheduler,
            attrs.get("IPVS_SVC_ATTR_TIMEOUT") if persistent else None,
            _netmask_model(family, attrs.get("IPVS_SVC_ATTR_NETMASK")) if persistent else None,
            _flag_names(bits, scheduler))

    @staticmethod
    def _destination_from(attrs: dict[str, Any]) -> Destination:
        key = DestinationKey(attrs["IPVS_DEST_ATTR_ADDR"], attrs["IPVS_DEST_ATTR_PORT"] or None)
        method = attrs.get("IPVS_DEST_ATTR_FWD_METHOD", 0) & 0x7
        return Destination(key, attrs.get("IPVS_DEST_ATTR_WEIGHT", 0),
                           METHOD_NAMES.get(method, str(method)),
                           attrs.get("IPVS_DEST_ATTR_U_THRESH", 0),
                           attrs.get("IPVS_DEST_ATTR_L_THRESH", 0))

    # writing

    @staticmethod
    def _service_key(key: ServiceKey) -> Any:
        from pyroute2 import IPVSService
        if key.fwmark is not None:
            return IPVSService(af=FAMILIES[key.family], fwmark=key.fwmark)
        return IPVSService(af=FAMILIES[key.family], protocol=PROTOCOLS[key.protocol],
                           addr=key.address, port=key.port)

    @staticmethod
    def _service_spec(service: Service) -> Any:
        from pyroute2 import IPVSService
        key = service.key
        fields: dict[str, Any] = {"af": FAMILIES[key.family]}
        if key.fwmark is not None:
            fields["fwmark"] = key.fwmark
        else:
            fields.update(protocol=PROTOCOLS[key.protocol], addr=key.address, port=key.port)
        fields.update(sched_name=service.scheduler,
                      timeout=service.persistence_timeout or 0,
                      netmask=_netmask_attr(key.family, service.persistence_netmask),
                      flags={"flags": _flag_bits(service), "mask": 0xFFFF})
        return IPVSService(**fields)

    @staticmethod
    def _dest_spec(destination: Destination) -> Any:
        from pyroute2 import IPVSDest
        try:
            method = METHODS[destination.method]
        except KeyError:
            raise IpvsError(f"unknown forwarding method {destination.method!r}") from None
        return IPVSDest(addr=destination.key.address, port=destination.key.port or 0,
                        fwd_method=method, weight=destination.weight,
                        u_thresh=destination.upper_threshold,
                        l_thresh=destination.lower_threshold)

    def apply_one(self, operation: Operation) -> None:
        if isinstance(operation, AddService):
            self._service_request(CMD.IPVS_CMD_NEW_SERVICE, self._service_spec(operation.service))
        elif isinstance(operation, EditService):
            self._service_request(CMD.IPVS_CMD_SET_SERVICE, self._service_spec(operation.service))
        elif isinstance(operation, DeleteService):
            self._service_request(CMD.IPVS_CMD_DEL_SERVICE, self._service_key(operation.key))
        elif isinstance(operation, AddDestination):
            self._dest_request(CMD.IPVS_CMD_NEW_DEST, self._service_key(operation.service),
                               self._dest_spec(operation.destination))
        elif isinstance(operation, EditDestination):
            self._dest_request(CMD.IPVS_CMD_SET_DEST, self._service_key(operation.service),
                               self._dest_spec(operation.destination))
        elif isinstance(operation, DeleteDestination):
            from pyroute2 import IPVSDest
            dest = IPVSDest(addr=operation.destination.address,
                            port=operation.destination.port or 0)
            self._dest_request(CMD.IPVS_CMD_DEL_DEST, self._service_key(operation.service), dest)
        else:
            raise IpvsError(f"unknown operation {operation!r}")

    def apply(self, operations: list[Operation]) -> list[BackendError]:
        """Applies every operation; returns one error per operation that failed."""
        errors = []
        for operation in operations:
            try:
                self.apply_one(operation)
            except Exception as exc:          # GenlError, IpvsError, bad addresses
                errors.append(BackendError(type(operation).__name__,
                                           f"{describe(operation)}: {exc}"))
        return errors


def describe(operation: Operation) -> str:
    if isinstance(operation, (AddService, EditService)):
        return f"{type(operation).__name__} {operation.service.key}"
    if isinstance(operation, DeleteService):
        return f"DeleteService {operation.key}"
    if isinstance(operation, (AddDestination, EditDestination)):
        key = operation.destination.key
        return f"{type(operation).__name__} {operation.service} -> {key.address}:{key.port}"
    if isinstance(operation, DeleteDestination):
        key = operation.destination
        return f"DeleteDestination {operation.service} -> {key.address}:{key.port}"
    return repr(operation)


# === the kernel's text view: /proc/net/ip_vs ====================================================
#
# Reading every service and destination over netlink costs one dump per service (pyroute2
# parses each message in Python: a minute for 10,000 destinations under qemu's emulation).
# /proc/net/ip_vs is the kernel's own listing, what ipvsadm -Ln shows, read in one go: the
# verify of each delay_loop compares it with what we programmed and reads netlink only when
# they differ. It also has each destination's active and inactive connections, live for
# the dashboard and /metrics; it lacks the thresholds, the scheduler flags and the traffic
# counters (those come with the netlink reads).

PROC = "/proc/net/ip_vs"
PROC_METHODS = {"Masq": "NAT", "Local": "LOCAL", "Tunnel": "TUN", "Route": "DR"}
HZ_CANDIDATES = (100, 250, 300, 1000)       # persistence timeouts are shown in jiffies


@dataclass(frozen=True)
class ProcService:
    scheduler: str
    one_packet: bool
    persistence_jiffies: int | None
    destinations: dict                       # (address, port) -> (method, weight)
    connections: dict                        # (address, port) -> (active, inactive)


@dataclass(frozen=True)
class ExpectedService:
    listed_as: tuple                         # its key in parse_proc()'s result
    scheduler: str
    one_packet: bool
    persistence_jiffies: frozenset | None    # a timeout in jiffies at each possible HZ
    destinations: dict                       # as parse_proc lists them: place -> (method, weight)
    place_of: dict                           # DestinationKey -> its place in that listing


@dataclass(frozen=True)
class ProcView:
    """One read of /proc/net/ip_vs against what we programmed."""

    matches: bool                            # it shows what we programmed
    listed: dict                             # parse_proc()'s result
    expected: dict                           # expectation() of what we programmed

    def connections_of(self, key: ServiceKey, dest_key: DestinationKey) -> tuple | None:
        """(active, inactive) connections of a destination we programmed, as listed;
        looked up when asked (a snapshot, a drain), not mapped for all at each verify."""
        want = self.expected.get(key)
        found = self.listed.get(want.listed_as) if want is not None else None
        if found is None:
            return None
        return found.connections.get(want.place_of.get(dest_key))


def _proc_address(text: str) -> tuple[str, int]:
    """Cached: each verify reads the same ten thousand addresses again."""
    host, _, port = text.rpartition(":")
    if host.startswith("["):
        return str(ipaddress.IPv6Address(host.strip("[]"))), int(port, 16)
    # inet_ntoa: a tenth of ipaddress's cost, and this runs for every destination each verify
    return socket.inet_ntoa(bytes.fromhex(host)), int(port, 16)


def parse_proc(text: str) -> dict[tuple, ProcService]:
    """Services by (protocol, address, port) or ("FWM", fwmark)."""
    services: dict[tuple, ProcService] = {}
    current = None
    for line in text.splitlines()[3:]:
        words = line.split()
        if not words:
            continue
        if words[0] == "->":
            address, port = _proc_address(words[1])
            current.destinations[(address, port or None)] = (
                PROC_METHODS.get(words[2], words[2]), int(words[3]))
            current.connections[(address, port or None)] = (int(words[4]), int(words[5]))
            continue
        if words[0] == "FWM":
            key: tuple = ("FWM", int(words[1], 16))
        else:
            key = (words[0], *_proc_address(words[1]))
        rest = words[3:]
        persistence = int(rest[rest.index("persistent") + 1]) if "persistent" in rest else None
        current = ProcService(words[2], "ops" in rest, persistence, {}, {})
        services[key] = current
    return services


def expectation(state: State) -> dict[ServiceKey, ExpectedService]:
    """What /proc/net/ip_vs must show for ``state``, laid out as the kernel lists it, so that
    each verify compares dicts instead of walking destinations (built once per programmed
    state: IpvsSync keeps it until the next apply). The kernel lists fwmark services'
    destinations without a port and DR and TUN ones with the service's (as ipvsadm -g shows)."""
    expected = {}
    for key, pool in state.items():
        service = pool.service
        fwmark = key.fwmark is not None
        place_of = {dest.key: (dest.key.address, None if fwmark else
                               dest.key.port if dest.method == "NAT" else key.port)
                    for dest in pool.destinations.values()}
        timeout = service.persistence_timeout
        expected[key] = ExpectedService(
            ("FWM", key.fwmark) if fwmark else (key.protocol, key.address, key.port),
            service.scheduler, "ops" in service.flags,
            None if timeout is None else frozenset(timeout * hz for hz in HZ_CANDIDATES),
            {place_of[dest.key]: (dest.method, dest.weight)
             for dest in pool.destinations.values()},
            place_of)
    return expected


def read_proc_view(expected: dict[ServiceKey, ExpectedService], text: str) -> ProcView:
    """Whether /proc/net/ip_vs (``text``) shows what we programmed (its expectation()), in
    what it can show: services, schedulers, one-packet scheduling, persistence timeouts,
    destinations with their forwarding method and weight. Services we did not program are
    ignored."""
    listed = parse_proc(text)
    matches = True
    for want in expected.values():
        found = listed.get(want.listed_as)
        if found is None or found.scheduler != want.scheduler or \
                found.one_packet != want.one_packet or \
                found.destinations != want.destinations or \
                (want.persistence_jiffies is None) != (found.persistence_jiffies is None) or (
                    want.persistence_jiffies is not None and
                    found.persistence_jiffies not in want.persistence_jiffies):
            matches = False
            break
    return ProcView(matches, listed, expected)


def read_proc(path: str = PROC) -> str:
    with open(path) as handle:
        return handle.read()
