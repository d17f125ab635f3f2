"""The difference between the state we want and the state the kernel has, as operations.

Idempotent by construction: what already matches produces nothing, so a restart adopts the
entries it finds (established connections survive) and a reconciliation after someone edited
the kernel puts back only what was changed. Services we do not own are never touched.
"""

from __future__ import annotations

from dataclasses import dataclass

from .model import Destination, DestinationKey, Service, ServiceKey, State


@dataclass(frozen=True)
class AddService:
    service: Service


@dataclass(frozen=True)
class EditService:
    service: Service


@dataclass(frozen=True)
class DeleteService:
    key: ServiceKey


@dataclass(frozen=True)
class AddDestination:
    service: ServiceKey
    destination: Destination


@dataclass(frozen=True)
class EditDestination:
    service: ServiceKey
    destination: Destination


@dataclass(frozen=True)
class DeleteDestination:
    service: ServiceKey
    destination: DestinationKey


Operation = AddService | EditService | DeleteService | AddDestination | EditDestination | \
    DeleteDestination


def plan(desired: State, current: State, owned: frozenset[ServiceKey]) -> list[Operation]:
    """Operations that turn ``current`` into ``desired``: removals first (a weight-0 or
    departing server stops taking connections before new ones arrive), then additions.
    ``owned`` are the services director manages (the configuration's, now or before a
    reload); a service in the kernel that is neither desired nor owned is foreign."""
    removals: list[Operation] = []
    changes: list[Operation] = []
    for key in sorted(current, key=ServiceKey.order):
        if key not in desired:
            if key in owned:
                removals.append(DeleteService(key))
            continue
        want, have = desired[key], current[key]
        if want == have:                 # the common case: skip the sorting below
            continue
        for dest_key in sorted(have.destinations, key=DestinationKey.order):
            if dest_key not in want.destinations:
                removals.append(DeleteDestination(key, dest_key))
        if want.service != have.service:
            changes.append(EditService(want.service))
        for dest_key in sorted(want.destinations, key=DestinationKey.order):
            wanted = want.destinations[dest_key]
            present = have.destinations.get(dest_key)
            if present is None:
                changes.append(AddDestination(key, wanted))
            elif present != wanted:
                changes.append(EditDestination(key, wanted))
    for key in sorted(desired, key=ServiceKey.order):
        if key not in current:
            changes.append(AddService(desired[key].service))
            changes.extend(AddDestination(key, desired[key].destinations[dest_key])
                           for dest_key in sorted(desired[key].destinations,
                                                  key=DestinationKey.order))
    return removals + changes
