"""What a load-balancer backend programs: virtual services and their destinations.

The same value types describe the state we want and the state a backend reads back from the
kernel (IPVS via netlink, or nftables), so that ``plan()`` can compare them directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ServiceKey:
    """An IPVS service: an address, port and protocol, or a firewall mark (and family)."""

    protocol: str                  # TCP, UDP, SCTP; for fwmark services the config's protocol
    address: str | None = None
    port: int | None = None
    fwmark: int | None = None
    family: int = 4

    def order(self) -> tuple:
        """A sort key (None-safe), so that plans come out in a stable order."""
        return (self.fwmark is not None, self.family, self.protocol, self.address or "",
                self.port or 0, self.fwmark or 0)

    def __str__(self) -> str:
        if self.fwmark is not None:
            return f"FWM {self.fwmark} IPv{self.family}"
        host = f"[{self.address}]" if self.family == 6 else self.address
        return f"{self.protocol} {host}:{self.port}"


@dataclass(frozen=True)
class Service:
    key: ServiceKey
    scheduler: str = "wlc"
    persistence_timeout: int | None = None     # seconds; None: no persistence
    persistence_netmask: str | None = None
    flags: tuple[str, ...] = ()                # ops, sh-port, sh-fallback, ...


@dataclass(frozen=True)
class DestinationKey:
    address: str
    port: int | None

    def order(self) -> tuple:
        return (self.address, self.port or 0)


@dataclass(frozen=True)
class Destination:
    key: DestinationKey
    weight: int = 1
    method: str = "NAT"                        # NAT, DR, TUN
    upper_threshold: int = 0
    lower_threshold: int = 0


@dataclass(frozen=True)
class Pool:
    """One service as it should be (or is): its settings and destinations by key."""

    service: Service
    destinations: dict[DestinationKey, Destination] = field(default_factory=dict)


State = dict[ServiceKey, Pool]


@dataclass(frozen=True)
class BackendError:
    """One thing a backend could not do: ``operation`` names it for the counters
    (AddDestination, read, apply, flush, ...), ``message`` says why."""

    operation: str
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class Counters:
    """IPVS's traffic totals for a service or a destination."""

    connections: int = 0
    packets_in: int = 0
    packets_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0


Connections = dict[tuple[ServiceKey, DestinationKey], tuple[int, int]]
"""(service, destination) -> (active, inactive) connections now: active are established;
inactive the others (TIME_WAIT, closing, UDP), as IPVS counts them."""
