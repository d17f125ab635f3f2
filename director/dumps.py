"""Where the signal dumps go (state_dump_file, stats_dump_file, json_dump_file,
data_use_instance) and the JSON dump's shape (json_version): pure, the daemon writes them."""

from __future__ import annotations

import os
import signal
from typing import Any

from .config.blocks.process import top_level

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
