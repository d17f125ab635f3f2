"""What ``director ctl`` prints for people (``--json`` prints the replies as they come): the
state as ``ipvsadm -Ln``-style tables, an event a line, a command's result. Pure: JSON in
(the shapes /api/v1/state and /api/v1/events have), text out."""

from __future__ import annotations

import json
import time
from typing import Any

FORWARD = {"DR": "Route", "NAT": "Masq", "TUN": "Tunnel"}


def _table(rows: list[list[str]], indent: str = "") -> list[str]:
    """Columns as wide as their widest cell, two spaces apart; the last one not padded."""
    if not rows:
        return []
    widths = [max(len(row[i]) for row in rows if i < len(row)) for i in range(len(rows[0]))]
    return [indent + "  ".join(cell.ljust(widths[i]) if i < len(row) - 1 else cell
                               for i, cell in enumerate(row)).rstrip() for row in rows]


def overridden(real: dict) -> bool:
    """A runtime weight (``director ctl weight``) is in force: the API says it with
    ``weight_override`` (not null)."""
    return real.get("weight_override") is not None


def _weight(real: dict) -> str:
    """kernel/configured: what the kernel has now (``-`` where it is not known or not
    there), what the file says (or the runtime override, marked ``*``)."""
    kernel = "-" if real.get("weight") is None else str(real["weight"])
    wanted = (f"{real['weight_override']}*" if overridden(real)
              else str(real.get("configured_weight", "-")))
    return f"{kernel}/{wanted}"


def _count(value: Any) -> str:
    return "-" if value is None else str(value)


def _check(real: dict) -> str:
    return "-" if real.get("up") is None else "up" if real["up"] else "down"


def _marks(real: dict) -> str:
    """drained / draining, overridden, and why a server is down: the last column, as long
    as it needs to be."""
    marks = []
    if real.get("drained"):
        drain = real.get("drain") or {}
        marks.append("drained" if drain.get("complete", True) else "draining")
    if overridden(real):
        marks.append("overridden")
    error = (real.get("last_check") or {}).get("error")
    if real.get("up") is False and error:
        marks.append(f"({error})")
    return " ".join(marks)


def _service(virtual: dict) -> str:
    """``TCP  192.168.1.11:80``, ``FWM  5``, ``GRP  name`` as ipvsadm writes them."""
    if virtual.get("fwmark") is not None:
        return f"FWM  {virtual['fwmark']}"
    if virtual.get("group") is not None:
        return f"GRP  {virtual['group']}"
    protocol = virtual.get("protocol") or "TCP"
    return f"{protocol:<4} {virtual['name'].rpartition('/')[0] or virtual['name']}"


def _virtual_flags(virtual: dict) -> str:
    flags = []
    if not virtual.get("quorum_ok", True):
        flags.append("quorum-lost")
    if virtual.get("sorry_server_active"):
        flags.append(f"sorry-server {virtual['sorry_server']}")
    if virtual.get("suspended"):
        flags.append("suspended")
    return " ".join(flags)


def status_text(state: dict) -> str:
    """The VRRP instances, then each virtual server and its real servers."""
    lines = [f"director {state.get('router_id')}  pid {state.get('pid')}  backend "
             f"{state.get('backend') or '-'}  last reload "
             f"{(state.get('reload') or {}).get('result') or '-'}"]
    if state.get("not_running"):
        lines.append("NOT RUNNING: " + ", ".join(state["not_running"]))
    instances = (state.get("vrrp") or {}).get("instances") or []
    if instances:
        lines.append("")
        rows = [["VRRP instance", "State", "Priority", "VRID", "Interface", "VIPs"]]
        for instance in instances:
            priority = str(instance.get("effective_priority"))
            if instance.get("effective_priority") != instance.get("priority"):
                priority += f" ({instance.get('priority')})"
            rows.append([instance["name"], instance.get("state") or "-", priority,
                         str(instance.get("vrid")), str(instance.get("interface")),
                         " ".join(instance.get("vips") or []) or "-"])
        lines += _table(rows)
    virtuals = state.get("virtual_servers") or []
    if virtuals:
        lines += ["", "Prot LocalAddress:Port Scheduler Flags"]
        rows = [["  -> RemoteAddress:Port", "Forward", "Weight", "ActiveConn", "InActConn",
                 "Check", ""]]
        for virtual in virtuals:
            rows.append([f"{_service(virtual)} {virtual.get('lb_algo')}",
                         _virtual_flags(virtual)])
            forward = FORWARD.get(virtual.get("lb_kind"), virtual.get("lb_kind") or "-")
            for real in virtual.get("real_servers") or []:
                rows.append([f"  -> {real['name']}", forward, _weight(real),
                             _count(real.get("active_connections")),
                             _count(real.get("inactive_connections")), _check(real),
                             _marks(real)])
        lines += _real_rows(rows)
    elif not instances:
        lines += ["", "(no VRRP instance, no virtual server)"]
    return "\n".join(lines) + "\n"


def _real_rows(rows: list[list[str]]) -> list[str]:
    """The real servers' rows as one table; a virtual server's row (two cells) is written
    as it is, as ipvsadm does."""
    reals = [row for row in rows if len(row) > 2]
    widths = [max(len(row[i]) for row in reals) for i in range(len(reals[0]))]
    out = []
    for row in rows:
        if len(row) == 2:
            out.append(f"{row[0]}  {row[1]}".rstrip())
        else:
            out.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row))
                       .rstrip())
    return out


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + \
        f".{int(epoch * 1000) % 1000:03d}Z"


def event_line(item: dict) -> str:
    """``2026-12-01T10:00:00.000Z #12 admin action=drain ...``"""
    fields = " ".join(f"{key}={_value(value)}" for key, value in item.items()
                      if key not in ("id", "at", "kind"))
    return f"{_when(item.get('at'))} #{item.get('id')} {item.get('kind')} {fields}".rstrip()


def _value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return json.dumps(text) if not text or any(c.isspace() or c in '"=' for c in text) \
        else text


def result_text(command: str, result: Any) -> str:
    """A command's result for people."""
    if command in ("drain", "restore") and isinstance(result, dict):
        done = "drained" if result.get("drained") else "restored"
        text = f"{done} {result.get('real_server')} in {result.get('virtual_server')}\n"
        if result.get("warning"):
            text += f"warning: {result['warning']}\n"
        return text
    if command == "weight" and isinstance(result, dict) and "weight_override" in result:
        override = result["weight_override"]
        text = (f"weight of {result.get('real_server')} in {result.get('virtual_server')}: "
                + (f"{override} (overridden until a reload)\n" if override is not None
                   else "the configured one again\n"))
        if result.get("warning"):
            text += f"warning: {result['warning']}\n"
        return text
    if command == "reload" and isinstance(result, dict):
        text = f"reload: {result.get('result')}"
        text += f" ({result['note']})\n" if result.get("note") else "\n"
        return text + "".join(f"  {error}\n" for error in result.get("errors") or [])
    if command == "events":
        return "".join(event_line(item) + "\n" for item in result or [])
    if command == "diff" and isinstance(result, dict) and "would_apply" in result:
        return preview_text(result)
    if isinstance(result, str):
        return result if result.endswith("\n") else result + "\n"
    if isinstance(result, dict) and isinstance(result.get("text"), str):
        return result["text"] if result["text"].endswith("\n") else result["text"] + "\n"
    return json.dumps(result, indent=2) + "\n"


def preview_text(preview: dict) -> str:
    """``director ctl diff``: the reload preview (reload_preview.py) as a diff people read:
    ``+`` added, ``-`` removed, ``~`` changed, the summary first."""
    lines = [preview.get("summary", "")]
    lines += [f"  error: {error}" for error in preview.get("errors") or []]
    if not preview.get("would_apply") or preview.get("unchanged"):
        return "\n".join(lines) + "\n"
    vrrp = preview.get("vrrp_instances") or {}
    for item in vrrp.get("added") or []:
        lines.append(f"+ vrrp_instance {item['name']}" + _then(item))
    for item in vrrp.get("removed") or []:
        lines.append(f"- vrrp_instance {item['name']}" + _then(item))
    for item in vrrp.get("changed") or []:
        lines.append(f"~ vrrp_instance {item['name']}: {'; '.join(item['settings'])}" +
                     _then(item))
    virtual = preview.get("virtual_servers") or {}
    lines += [f"+ virtual_server {name}" for name in virtual.get("added") or []]
    lines += [f"- virtual_server {name}" for name in virtual.get("removed") or []]
    lines += [f"~ virtual_server {item['name']}: {'; '.join(item['settings'])}"
              for item in virtual.get("changed") or []]
    real = preview.get("real_servers") or {}
    for sign, what in (("+", "added"), ("-", "removed")):
        lines += [f"{sign} real_server {item['real_server']} in {item['virtual_server']}"
                  for item in real.get(what) or []]
    for item in real.get("changed") or []:
        restart = " (its checkers restart)" if item.get("checkers_restart") else ""
        lines.append(f"~ real_server {item['real_server']} in {item['virtual_server']}: "
                     f"{'; '.join(item['settings'])}{restart}")
    kernel = preview.get("kernel") or {}
    for part in ("services", "destinations"):
        for sign, what in (("+", "add"), ("-", "remove"), ("~", "update")):
            lines += [f"{sign} kernel {part[:-1]} {entry}"
                      for entry in (kernel.get(part) or {}).get(what) or []]
    lines += [f"  also: {other}" for other in preview.get("other") or []]
    return "\n".join(lines) + "\n"


def _then(item: dict) -> str:
    return f"; then: {item['transition']}" if item.get("transition") else ""
