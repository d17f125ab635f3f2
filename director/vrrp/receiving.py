"""VRRP's receive path: one receiver greenlet per socket, each packet checked against what the
instances on that socket expect, the drops counted, the advert posted to its instance; and the
sockets' receive buffers sized for what may queue on them.

A part of VrrpService (a mixin: it reads the service's instances, sockets, receivers and
configuration), in a module of its own so that the service keeps to building, reloading and
wiring."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Mapping, NamedTuple

from .. import hub
from ..log import event as log_event
from . import ah, fsm, wire
from .packet import AH_REPLAY, VRID, Dropped, Expectation, check_received
from .transport import VrrpSocket

if TYPE_CHECKING:
    from .instance import Instance

log = logging.getLogger("director.vrrp")


class Receiving(NamedTuple):
    """What one socket's receiver dispatches to. Replaced whole by a reload (one assignment,
    no yield between its parts), so a packet always meets members and expectations of the
    same moment: a vrid that left the one but not yet the other once killed the receiver
    and left every instance on its interface deaf. (A NamedTuple: a dataclass costs a
    millisecond of start-up to make.)"""
    members: dict[int, Instance]
    expectations: dict[int, Expectation]


class ReceivePath:
    """The receive half of VrrpService."""

    def _update_receivers(self) -> None:
        """One receiver per socket; what each dispatches to follows the instances on it,
        replaced whole (Receiving). A socket left without instances closes."""
        needed = {key for instance in self.instances for key in instance.socket_keys}
        # each socket dispatches to every instance of its (interface, family, source,
        # group), whichever protocol it uses: AH where plain VRRP is expected, and the
        # reverse, is counted on the instance (auth_type_mismatch)
        def base(key: tuple) -> tuple:
            return key[:3] + key[4:]

        by_base: dict[tuple, dict[int, Instance]] = {}
        for instance in self.instances:
            by_base.setdefault(base(instance.socket_keys[0]), {})[
                instance.config.virtual_router_id] = instance
        for key, sock in list(self.sockets.items()):
            members = by_base.get(base(key)) if key in needed else None
            if not members:                     # its last instance went in a reload
                self.receiving.pop(key, None)
                receiver = self.receivers.pop(key, None)
                if receiver is not None:
                    receiver.kill(block=False)
                sock.close()
                del self.sockets[key]
                continue
            self.receiving[key] = Receiving(
                members, {vrid: instance.expectation() for vrid, instance in members.items()})
            self._size_receive_buffer(sock, members.values())
            if key not in self.receivers:
                kind = "/AH" if key[3] == ah.PROTOCOL else ""
                self.receivers[key] = hub.supervise(
                    self._receive, key, sock, name=f"vrrp receive {key[0]}/IPv{key[1]}{kind}")

    def _size_receive_buffer(self, sock: VrrpSocket, members) -> None:
        size = wire.receive_buffer(self.config.global_defs,
                                   [(m.config, m.family, m.version) for m in members], _mtu)
        try:
            sock.set_receive_buffer(size)
        except OSError as exc:
            log_event(log, "vrrp.receive_buffer_error", logging.WARNING,
                      interface=sock.ifname, size=size, error=exc)

    def _renew_socket(self, key: tuple) -> None:
        sock = VrrpSocket(*key).open()
        receiver = self.receivers.pop(key, None)
        if receiver is not None:
            receiver.kill(block=False)
        old = self.sockets.get(key)
        if old is not None:
            old.close()
        self.sockets[key] = sock
        for instance in self.instances:
            if instance.socket_keys[0] == key:
                instance.sender = sock
        self._update_receivers()

    def _receive(self, key: tuple, sock: VrrpSocket) -> None:
        while True:
            try:
                message, source, destination, ttl = sock.receive()
            except OSError as exc:
                log_event(log, "vrrp.receive_error", logging.WARNING, interface=key[0],
                          error=exc)
                hub.sleep(0.1)
                continue
            heard = self._dispatch(key, message, source, destination, ttl)
            if heard is not None:
                heard[0].post(heard[1])

    def _dispatch(self, key: tuple, message: bytes, source: str, destination: str,
                  ttl: int) -> tuple[Instance, fsm.AdvertReceived] | None:
        """A packet from the socket ``key`` checked: drops counted, the advert and the
        instance it is for returned."""
        # Looked up per packet, not captured: a reload changes what is on this socket.
        receiving = self.receiving.get(key)
        if receiving is None:               # the socket is closing
            return None
        if key[3] == ah.PROTOCOL:
            outcome, wrapped = ah.check_received(message, source, destination, ttl,
                                                 receiving.expectations)
            if outcome is None:             # other IPsec traffic: not ours to count
                return None
        else:
            outcome, wrapped = check_received(message, key[1], source, destination, ttl,
                                              receiving.expectations), None
        if isinstance(outcome, Dropped):
            self._count_drop(key[0], receiving.members.get(outcome.vrid), outcome, source)
            return None
        advert = outcome.advert
        instance = receiving.members.get(advert.vrid)
        if instance is None:                # expected but not a member: never, by design
            self._count_drop(key[0], None, Dropped(VRID, "no instance", advert.vrid), source)
            return None
        if wrapped is not None and not instance.ah_sequence.accept(wrapped.sequence):
            self._count_drop(key[0], instance, Dropped(
                AH_REPLAY, f"AH sequence number {wrapped.sequence}, last "
                           f"{instance.ah_sequence.number}", advert.vrid), source)
            return None
        for note in self._notes(instance, outcome.notes, source):
            instance.counters.noted[note] = instance.counters.noted.get(note, 0) + 1
        return instance, fsm.AdvertReceived(advert.priority, source, advert.advert_int)

    def _notes(self, instance: Instance, notes: tuple[str, ...], source: str) -> tuple:
        master = instance.state.master_ip if instance.state is not None else None
        notes, learnt = wire.received_notes(
            notes, source, master, wire.skip_check_adv_addr(instance.config,
                                                            self.config.global_defs))
        if learnt and not instance.old_checksum:
            instance.old_checksum = True
            log_event(log, "vrrp.old_unicast_checksum", instance=instance.name, src=source)
        return notes

    def _count_drop(self, ifname: str, instance: Instance | None, dropped: Dropped,
                    source: str) -> None:
        if instance is not None:
            counts = instance.counters.dropped
            counts[dropped.reason] = counts.get(dropped.reason, 0) + 1
        else:
            self.dropped[(ifname, dropped.reason)] = \
                self.dropped.get((ifname, dropped.reason), 0) + 1
        log_event(log, "vrrp.drop", logging.DEBUG, interface=ifname, source=source,
                  reason=dropped.reason, detail=dropped.detail)
        if dropped.reason == VRID and self.config.global_defs.log_unknown_vrids:
            log_event(log, "vrrp.unknown_vrid", interface=ifname, source=source,
                      vrid=dropped.vrid)

    def dropped_view(self) -> Mapping[tuple[str, str], int]:
        """(interface, reason) -> packets dropped on it that no instance of ours could be told
        of: undecodable, or for a vrid we do not run (the rest count on their instance)."""
        from ..state import frozen
        return frozen(self.dropped)


def _mtu(ifname: str) -> int:
    try:
        with open(f"/sys/class/net/{ifname}/mtu", encoding="ascii") as handle:
            return int(handle.read())
    except (OSError, ValueError):
        return 1500
