"""The signal dumps and the state files: where they go (state_dump_file, stats_dump_file,
json_dump_file, data_use_instance), the JSON dump's shape (json_version), the USR1 dump's
lines, and the one atomic writer that yields to the loop while it writes."""

from __future__ import annotations

import json
import logging
import os
import signal
from typing import Any, Iterable, Iterator

from . import hub
from .config.blocks.process import top_level
from .files import open_private
from .log import event

log = logging.getLogger("director")

YIELD_EVERY = 500       # lines of a state file written between two turns of the loop

SIGJSON = signal.SIGRTMIN + 2        # keepalived's SIGJSON (lib/signals.h)

DEFAULT_NAMES = {"state": "director.data", "stats": "director.stats", "json": "director.json"}


def path(config: Any, kind: str, state_dir: str) -> str:
    """The file a dump of ``kind`` (state, stats, json) is written to: the configured
    path, else DEFAULT_NAMES' in the state directory; with data_use_instance the instance
    name and the namespace are part of the default name, as keepalived's."""
    defs = config.global_defs
    configured = getattr(defs, f"{kind}_dump_file")
    if configured:
        return configured
    name = DEFAULT_NAMES[kind]
    if defs.data_use_instance:
        instance, namespace = top_level(config, "instance"), top_level(config, "net_namespace")
        stem, dot, suffix = name.partition(".")
        name = "_".join(part for part in (stem, instance, namespace) if part) + dot + suffix
    return os.path.join(state_dir, name)


def vrrp_json(vrrp: dict, version: int) -> Any:
    """keepalived's SIGJSON file: one {"data", "stats"} per instance (version 1, a list);
    version 2 puts the list under "vrrp" next to "version"."""
    instances = [{"data": {key: value for key, value in instance.items()
                           if key != "counters"},
                  "stats": instance.get("counters") or {}}
                 for instance in vrrp.get("instances", [])]
    return instances if version == 1 else {"version": 2, "vrrp": instances}


def write_state_file(state_dir: str, name: str, lines: Iterable[str]) -> bool:
    """Write ``lines`` to STATE_DIR/NAME (or NAME, when absolute) atomically, yielding to the
    loop every YIELD_EVERY lines: a dump of ten thousand servers must not hold back an
    advert (measured: 190 ms in one piece, longer than a 100 ms VRRPv3 backup waits).
    False when it could not be written (logged)."""
    path = os.path.join(state_dir, name)
    try:
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        temporary = f"{path}.tmp"
        with open_private(temporary) as handle:
            for number, line in enumerate(lines, 1):
                handle.write(line)
                if number % YIELD_EVERY == 0:
                    hub.breathe()
        os.replace(temporary, path)
        event(log, "director.wrote", file=path)
        return True
    except OSError as exc:
        event(log, "director.write_error", logging.ERROR, file=name, error=exc)
        return False


def state_lines(state: Any) -> Iterator[str]:
    """A state.State as /api/v1/state has it, and the notifications, as JSON: a line per key,
    one real server a line (C encoder: no indent), so that it can be written piece by piece
    and still read by people and by json.load."""
    head = state.head_json()
    head["notifications"] = {f"{kind} {result}": n
                             for (kind, result), n in state.notifications.items()}
    yield "{" + ",\n ".join(f"{json.dumps(key)}: {json.dumps(value)}"
                            for key, value in head.items()) + ',\n "virtual_servers": ['
    for index, server in enumerate(state.virtual_servers):
        data = server.as_json()
        reals = data.pop("real_servers")
        yield ("," if index else "") + "\n  " + json.dumps(data)[:-1] + ', "real_servers": ['
        yield ",".join("\n   " + json.dumps(real) for real in reals) + "]}"
    yield "\n ]}\n"
