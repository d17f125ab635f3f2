"""Operator overrides of real servers, one home: drain, runtime weight and maintenance.

Each is an entry per (virtual server, real server, kind) naming the value, the director
that set it (``origin``, its router id), who asked (``actor``), when (wall clock, for
people) and a version: a Lamport counter (floored by the writer's clock in milliseconds) with
the origin as tie-breaker. Entries merge
last-writer-wins per key, so directors that exchange them (director/override_peers.py)
converge on the same values whatever the order the messages arrive in, and a peer's older
entry never overwrites a newer one. Clearing (a restore, a weight set back to the file's,
maintenance off) is an entry too, not a deletion: it propagates like the setting did.

- drain: the server stays in the pool at weight 0, still checked (connections end).
- weight: the weight it gets instead of the file's (and of a MISC_CHECK's), until a reload:
  every successful reload (SIGHUP, the API's, reload_time_file) clears every weight
  override (an entry with no value: a peer's is cleared by it too), as keepalived's reload
  puts back what an ipvsadm edit changed. A drain or maintenance outlives a reload.
- maintenance: out of the pool entirely (HAProxy's MAINT), still checked.

The store is pure (no clock, no file, no socket); ``Overrides`` adds the state-directory file
(written atomically on every change, read before the first converge: nothing an operator
did is revived or lost by a restart) and pushes the values onto the checks' real server
states, where the pool, the views and the drain follower read them.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

from .errors import CommandError
from .log import event

log = logging.getLogger("director")

KINDS = ("drain", "weight", "maintenance")
FILE = "overrides.json"
OLD_DRAINED_FILE = "drained.json"   # before overrides.json: a list of [virtual, real] drained
FORMAT = 1
MAX_NAME = 300                      # characters of a server name in an entry
MAX_TEXT = 200                      # of an origin or an actor
MAX_WEIGHT = 65535                  # IPVS's weights are 32-bit; keepalived's 0..65535
MAX_COUNTER = 2 ** 53               # a JSON number every peer reads exactly
MAX_ENTRIES = 100_000               # in a file or a peer message: past it, refused


class BadEntry(ValueError):
    """An entry (from a file or a peer) that is not one: said, counted, dropped."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One operator override of a real server (drain, weight, maintenance): who set it
    and when, so that the newest wins across the cluster."""

    virtual_server: str
    real_server: str
    kind: str                       # one of KINDS
    value: bool | int | None        # drain, maintenance: bool; weight: int, None = cleared
    counter: int                    # Lamport counter (>= ms of the writer's clock): a later
                                    # write has a larger one
    origin: str                     # the director that set it (router id)
    actor: str                      # who asked (a web client's address, "reload", ...)
    at: float                       # epoch seconds, for people: never compared

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.virtual_server, self.real_server, self.kind)

    @property
    def version(self) -> tuple[int, str]:
        return (self.counter, self.origin)

    @property
    def active(self) -> bool:
        return self.value is not None and self.value is not False

    def as_list(self) -> list:
        """The compact form of files and peer messages."""
        return [self.virtual_server, self.real_server, self.kind, self.value, self.counter,
                self.origin, self.actor, self.at]

    def as_json(self) -> dict[str, Any]:
        """For the API and the dashboard."""
        return {"kind": self.kind, "value": self.value, "origin": self.origin,
                "actor": self.actor, "at": self.at, "version": self.counter}

    @classmethod
    def from_list(cls, item: Any) -> Entry:
        """Raises BadEntry for anything but an entry as_list() could have written."""
        if not isinstance(item, list) or len(item) != 8:
            raise BadEntry("an entry is a list of 8 items")
        virtual, real, kind, value, counter, origin, actor, at = item
        for name, text, limit in (("virtual_server", virtual, MAX_NAME),
                                  ("real_server", real, MAX_NAME), ("origin", origin, MAX_TEXT),
                                  ("actor", actor, MAX_TEXT)):
            if not isinstance(text, str) or len(text) > limit:
                raise BadEntry(f"{name}: a string of at most {limit} characters")
        if kind not in KINDS:
            raise BadEntry(f"kind: one of {', '.join(KINDS)}")
        if kind == "weight":
            if value is not None and not _weight_ok(value):
                raise BadEntry(f"weight: null or an integer 0..{MAX_WEIGHT}")
        elif not isinstance(value, bool):
            raise BadEntry(f"{kind}: true or false")
        if not isinstance(counter, int) or isinstance(counter, bool) \
                or not 0 < counter < MAX_COUNTER:
            raise BadEntry("counter: a positive integer")
        if not isinstance(at, (int, float)) or isinstance(at, bool) or at != at:
            raise BadEntry("at: a number")
        return cls(virtual, real, kind, value, counter, origin, actor, float(at))


def _weight_ok(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_WEIGHT


def newer(entry: Entry, than: Entry | None) -> bool:
    """Last writer wins: the larger (counter, origin). Equal versions are the same write."""
    return than is None or entry.version > than.version


class OverrideStore:
    """The entries of one director, pure: local writes and peers' merges."""

    def __init__(self, origin: str) -> None:
        self.origin = origin
        self.entries: dict[tuple[str, str, str], Entry] = {}
        self.counter = 0            # the largest counter seen (Lamport's clock)

    def set(self, virtual: str, real: str, kind: str, value: bool | int | None, actor: str,
            at: float) -> Entry:
        """A local write: newer than everything this director has seen, and not older than
        its wall clock in milliseconds (a hybrid logical clock): a director whose state
        directory was lost starts from 0, and an operator's write on it before it heard
        from its peers must still beat their older entries."""
        self.counter = max(self.counter + 1, int(at * 1000))
        entry = Entry(virtual, real, kind, value, self.counter, self.origin, actor[:MAX_TEXT],
                      at)
        self.entries[entry.key] = entry
        return entry

    def merge(self, entries: Iterable[Entry]) -> list[Entry]:
        """A peer's entries: each newer one replaces ours. Returns those that did."""
        taken = []
        for entry in entries:
            self.counter = max(self.counter, entry.counter)
            if newer(entry, self.entries.get(entry.key)):
                self.entries[entry.key] = entry
                taken.append(entry)
        return taken

    def get(self, virtual: str, real: str, kind: str) -> Entry | None:
        return self.entries.get((virtual, real, kind))

    def value(self, virtual: str, real: str, kind: str) -> bool | int | None:
        entry = self.entries.get((virtual, real, kind))
        return None if entry is None else entry.value

    def active(self, virtual: str, real: str) -> tuple[Entry, ...]:
        return tuple(entry for entry in (self.entries.get((virtual, real, kind))
                                         for kind in KINDS)
                     if entry is not None and entry.active)

    def weights_set(self) -> list[Entry]:
        return [entry for entry in self.entries.values()
                if entry.kind == "weight" and entry.value is not None]

    def as_lists(self) -> list[list]:
        return [entry.as_list() for entry in self.entries.values()]

    def file_lines(self) -> Iterator[str]:
        yield '{"format": %d, "counter": %d, "entries": [' % (FORMAT, self.counter)
        yield ",".join("\n " + json.dumps(entry) for entry in self.as_lists())
        yield "\n]}\n"


def parse_entries(items: Any) -> tuple[list[Entry], int]:
    """(the entries that parse, how many did not). Raises BadEntry when ``items`` is not a
    list or is longer than MAX_ENTRIES."""
    if not isinstance(items, list):
        raise BadEntry("entries: a list")
    if len(items) > MAX_ENTRIES:
        raise BadEntry(f"more than {MAX_ENTRIES} entries")
    good, bad = [], 0
    for item in items:
        try:
            good.append(Entry.from_list(item))
        except BadEntry:
            bad += 1
    return good, bad


def load(state_dir: str, origin: str, now: float | None = None) -> OverrideStore:
    """The store as the state directory has it: overrides.json, else the drains of an older
    version's drained.json (migrated: entries this director set, at the file's time), else
    empty. An unreadable file is said and left for a person (it is not overwritten until an
    operator changes something)."""
    store = OverrideStore(origin)
    path = os.path.join(state_dir, FILE)
    try:
        with open(path) as handle:
            data = json.load(handle)
    except FileNotFoundError:
        _migrate(store, state_dir, now)
        return store
    except (OSError, ValueError) as exc:
        event(log, "overrides.unreadable", logging.ERROR, file=path, error=exc)
        return store
    try:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise BadEntry(f"not a format {FORMAT} overrides file")
        entries, bad = parse_entries(data.get("entries"))
    except BadEntry as exc:
        event(log, "overrides.unreadable", logging.ERROR, file=path, error=exc)
        return store
    if bad:
        event(log, "overrides.bad_entries", logging.WARNING, file=path, dropped=bad)
    store.merge(entries)
    counter = data.get("counter")
    if isinstance(counter, int) and 0 <= counter < MAX_COUNTER:
        store.counter = max(store.counter, counter)
    event(log, "overrides.loaded", file=path, entries=len(store.entries),
          active=sum(1 for entry in store.entries.values() if entry.active))
    return store


def _migrate(store: OverrideStore, state_dir: str, now: float | None) -> None:
    path = os.path.join(state_dir, OLD_DRAINED_FILE)
    try:
        with open(path) as handle:
            names = json.load(handle)
        at = os.stat(path).st_mtime if now is None else now
    except FileNotFoundError:
        return
    except (OSError, ValueError) as exc:
        event(log, "director.state_file_unreadable", logging.WARNING, file=path, error=exc)
        return
    for name in names if isinstance(names, list) else []:
        if isinstance(name, list) and len(name) == 2 and all(isinstance(n, str) for n in name):
            store.set(name[0], name[1], "drain", True, f"migrated from {OLD_DRAINED_FILE}", at)
            event(log, "director.drained_kept", virtual_server=name[0], real_server=name[1])


class Overrides:
    """The store, its file and its effect on the real servers being checked (the daemon
    wires it: commands, reloads, peers)."""

    def __init__(self, state_dir: str, origin: str, write: Any) -> None:
        self.state_dir = state_dir
        self.store = OverrideStore(origin)
        self._write = write             # (name, lines) -> bool: dumps.write_state_file's
        self.listeners: list = []       # called with the entries that changed (peers push)

    def load(self) -> None:
        migrating = not os.path.exists(os.path.join(self.state_dir, FILE))
        self.store = load(self.state_dir, self.store.origin)
        if migrating and self.store.entries:
            self.save()

    def save(self) -> bool:
        return self._write(FILE, self.store.file_lines())

    # -- the effect on the pools ----------------------------------------------------------

    def apply(self, checks: Any, names: Iterable[tuple[str, str]] | None = None) -> bool:
        """Puts the store's values on the checks' real server states (all of them, or those
        named). True when one changed (the load balancer must converge)."""
        if checks is None:
            return False
        if names is None:
            states: Iterable[Any] = checks.real_servers
        else:
            states = [state for state in (checks.find(*name) for name in set(names))
                      if state is not None]
        changed = False
        store = self.store
        for state in states:
            virtual, real = state.name
            drained = store.value(virtual, real, "drain") is True
            weight = store.value(virtual, real, "weight")
            maintenance = store.value(virtual, real, "maintenance") is True
            if (state.drained, state.weight_override, state.maintenance) != \
                    (drained, weight, maintenance):
                state.drained, state.weight_override = drained, weight
                state.maintenance = maintenance
                changed = True
            state.overrides = store.active(virtual, real)
        return changed

    # -- local commands ---------------------------------------------------------------------

    def set(self, checks: Any, virtual: str, real: str, kind: str, value: bool | int | None,
            actor: str) -> tuple[Any, bool, bool]:
        """An operator's override: (the real server's state, whether its pool changes,
        whether the file was written). CommandError for a server not checked here."""
        if checks is None:
            raise CommandError("this daemon runs no checkers (-P)")
        state = checks.find(virtual, real)
        if state is None:
            raise CommandError(f"no real server {real[:100]!r} in {virtual[:100]!r}")
        if kind == "weight" and value is not None and not _weight_ok(value):
            raise CommandError(f"weight: an integer 0..{MAX_WEIGHT}, or -1/null to clear")
        entry = self.store.set(virtual, real, kind, value, actor, time.time())
        changed = self.apply(checks, [(virtual, real)])
        saved = self.save()
        event(log, f"admin.{kind}", virtual_server=virtual, real_server=real, value=value,
              actor=actor, version=entry.counter)
        self._changed([entry])
        return state, changed, saved

    def command(self, checks: Any, virtual: str, real: str, kind: str,
                value: bool | int | None, actor: str, action: str) -> tuple[dict, bool]:
        """An operator's command (daemon.do_drain, do_weight, ...): (its answer, whether a
        pool changes). The answer keeps the drain's shape (CONTRACT)."""
        state, changed, saved = self.set(checks, virtual, real, kind, value, actor)
        answer = {"virtual_server": virtual, "real_server": real, "drained": state.drained,
                  "saved": saved}
        if kind != "drain":
            answer.update(weight_override=state.weight_override,
                          maintenance=state.maintenance)
        if not saved:                 # done, but the operator must know it will not last
            answer["warning"] = (f"{action} done, but {self.state_dir} cannot be written: "
                                 "it will not survive a restart")
        return answer, changed

    def clear_weights(self, checks: Any, actor: str = "reload") -> list[Entry]:
        """A reload puts the file's weights back (see the module's docstring)."""
        now = time.time()
        cleared = [self.store.set(entry.virtual_server, entry.real_server, "weight", None,
                                  actor, now) for entry in self.store.weights_set()]
        if cleared:
            self.apply(checks, [(e.virtual_server, e.real_server) for e in cleared])
            self.save()
            event(log, "overrides.weights_cleared", servers=len(cleared), why=actor)
            self._changed(cleared)
        return cleared

    def merge(self, checks: Any, entries: list[Entry], peer: str) -> tuple[list[Entry], bool]:
        """A peer's entries: (those taken, whether a pool changes)."""
        taken = self.store.merge(entries)
        if not taken:
            return taken, False
        changed = self.apply(checks, [(e.virtual_server, e.real_server) for e in taken])
        self.save()
        for entry in taken:
            event(log, "overrides.learned", peer=peer, virtual_server=entry.virtual_server,
                  real_server=entry.real_server, kind=entry.kind, value=entry.value,
                  origin=entry.origin, version=entry.counter)
        self._changed(taken)
        return taken, changed

    def _changed(self, entries: list[Entry]) -> None:
        for listener in self.listeners:
            listener(entries)
