"""Top-level interface blocks: interface_up_down_delays and linkbeat_interfaces lines."""

from __future__ import annotations

import dataclasses

from .schema import Context, Invalid, Seconds


@dataclasses.dataclass(frozen=True, slots=True)
class UpDownDelay:
    interface: str
    down: float
    up: float


def up_down_delay(words: list[str], ctx: Context) -> UpDownDelay:
    if not 2 <= len(words) <= 3:
        raise Invalid(f"expects IFNAME DOWN_DELAY [UP_DELAY], got '{' '.join(words)}'")
    down, up = (Seconds(0, 255).parse([word], ctx) for word in (words[1:] + ["0"])[:2])
    return UpDownDelay(str(words[0]), down, up)


LINKBEAT = ("Link state polled from the driver (ETHTOOL_GLINK, keepalived's ETHTOOL polling; "
            "the carrier where the driver has none) instead of the carrier the kernel "
            "reports. director polls every interface every 0.1 s either way.")


@dataclasses.dataclass(frozen=True, slots=True)
class LinkbeatInterface:
    interface: str
    type: str | None = None


def linkbeat_interface(words: list[str], ctx: Context) -> LinkbeatInterface:
    if len(words) > 2 or (len(words) == 2 and words[1].upper() not in ("MII", "ETHTOOL",
                                                                        "IOCTL")):
        raise Invalid(f"expects IFNAME [MII|ETHTOOL|IOCTL], got '{' '.join(words)}'")
    return LinkbeatInterface(str(words[0]), words[1].upper() if len(words) == 2 else None)
