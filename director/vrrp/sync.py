"""Sync groups: the members of a vrrp_sync_group move together.

A member that becomes MASTER on its own pulls the others up; one that steps down to BACKUP
takes them down; one in FAULT holds the whole group in FAULT until it recovers. Transitions
caused by the group itself (reason "sync group ...") do not echo back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import fsm

if TYPE_CHECKING:
    from ..state import SyncGroupView


class SyncGroup:
    def __init__(self, name: str, members: list) -> None:
        self.name = name
        self.members = members
        self.reason = f"sync group {name}"
        self.last_state = fsm.INIT
        self.listeners: list = []           # called with (group, new state) on a change

    def attach(self) -> None:
        for member in self.members:
            member.listeners.append(self.on_transition)

    def detach(self) -> None:
        """Before a reload rebuilds the group: its members stop telling it anything."""
        for member in self.members:
            if self.on_transition in member.listeners:
                member.listeners.remove(self.on_transition)

    def on_transition(self, member, transition: fsm.Transition) -> None:
        self._group_changed()
        if self.reason in transition.reason:     # caused by the group: no echo
            return
        others = [m for m in self.members if m is not member]
        fault_name = f"{self.reason}: {member.name}"
        if transition.new == fsm.FAULT:
            for other in others:
                other.post(fsm.FaultRaised(fault_name))
            return
        if transition.old == fsm.FAULT:
            for other in others:
                other.post(fsm.FaultCleared(fault_name))
        if transition.new in (fsm.MASTER, fsm.BACKUP):
            for other in others:
                other.post(fsm.ForceRole(transition.new, self.reason))

    def _group_changed(self) -> None:
        state = self.state()
        if state != self.last_state and state != "MIXED":
            self.last_state = state
            for listener in list(self.listeners):
                listener(self, state)

    def state(self) -> str:
        roles = {m.state.role if m.state else fsm.INIT for m in self.members}
        if fsm.FAULT in roles:
            return fsm.FAULT
        return roles.pop() if len(roles) == 1 else "MIXED"

    def snapshot(self) -> SyncGroupView:
        # the views load when first asked for: they are not on the way to the first advert
        from ..state import SyncGroupView
        return SyncGroupView(self.name, tuple(m.name for m in self.members), self.state())
