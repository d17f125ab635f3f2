"""How director names a virtual server and a real server, in the dashboard, the metrics, the
events, the API and the diagnostics: one rule, imported by the config engine and the views
(director/state.py) alike; and the interface a name left out means."""

from __future__ import annotations

from typing import Any


def virtual_server_name(values: Any) -> str:
    """How the dashboard, the metrics, the events and the diagnostics name a virtual server
    (``values``: the model or, while it is being parsed, a dict of its fields)."""
    get = values.get if isinstance(values, dict) else (lambda name: getattr(values, name))
    protocol = get("protocol") or "TCP"
    if get("fwmark") is not None:
        return f"fwmark {get('fwmark')}/{protocol}"
    if get("group") is not None:
        return f"group {get('group')}/{protocol}"
    address = get("address")
    host = f"[{address}]" if ":" in address else address
    return f"{host}:{get('port')}/{protocol}"


def real_server_name(real: Any) -> str:
    """How the dashboard, the events and the metrics name a real server."""
    host = f"[{real.address}]" if ":" in real.address else real.address
    return f"{host}:{real.port}" if real.port is not None else host


DEFAULT_INTERFACE = "eth0"       # keepalived's DFLT_INT, when global_defs has no default_interface


def default_interface(global_defs: Any) -> str:
    """The interface of a static address, or of an instance, that names none."""
    return global_defs.default_interface or DEFAULT_INTERFACE
