"""``python -m director.config.docs > docs/KEYWORDS.md``: the keyword reference, generated
from the same tables that parse the file, so the two cannot disagree."""

from __future__ import annotations

import sys

from .blocks import ROOT
from .schema import Block, Kw, Lines, Opaque


def _status(kw: Kw) -> str:
    if kw.ignored:
        return "ignored: " + kw.ignored
    if kw.unsupported:
        return "not acted on: " + kw.unsupported
    if kw.deprecated:
        return "deprecated: " + kw.deprecated
    return ""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _blocks() -> list[Block]:
    """Every block, breadth first from the top level, each once."""
    found: list[Block] = []
    queue: list[Block] = [ROOT]
    while queue:
        block = queue.pop(0)
        if any(block is known for known in found):
            continue
        found.append(block)
        queue += [kw.value for kw in block.keywords if isinstance(kw.value, Block)]
    return found


def not_acted_on() -> list[tuple[str, str, str]]:
    """(reason, block, keyword) for every keyword that parses but is not acted on: what -t
    warns about, the list an operator swapping keepalived out reads first."""
    return sorted((kw.unsupported, block.name, kw.name) for block in _blocks()
                  for kw in block.keywords if kw.unsupported)


def _summary() -> list[str]:
    out = ["## Not acted on", "",
           "Every keyword below parses and is kept (`--dump-json` shows it), and `-t` warns "
           "when a configuration uses it; every other keyword is acted on as keepalived 2.2.7 "
           "does, or as its notes say.", "",
           "| why | keywords |", "| --- | --- |"]
    by_reason: dict[str, list[str]] = {}
    for reason, block, name in not_acted_on():
        by_reason.setdefault(reason, []).append(f"`{name}` ({block.strip('()')})")
    for reason, names in by_reason.items():
        out.append(f"| {_cell(reason)} | {', '.join(names)} |")
    return out + [""]


def extension_blocks() -> set[int]:
    """The ids of the blocks reached only through a director extension keyword (bgp's
    peer, bgp_announce): all their keywords are director's own."""
    inside: set[int] = set()
    queue = [kw.value for block in _blocks() for kw in block.keywords
             if kw.extension and isinstance(kw.value, Block)]
    while queue:
        block = queue.pop(0)
        if id(block) not in inside:
            inside.add(id(block))
            queue += [kw.value for kw in block.keywords if isinstance(kw.value, Block)]
    return inside


def _extensions() -> list[str]:
    found = [f"`{kw.name}` ({block.name.strip('()')})" for block in _blocks()
             for kw in block.keywords if kw.extension]
    return ["## director extensions", "",
            "keepalived has no such keywords: they are director's own, marked *director "
            "extension* below, with every keyword of their blocks. A file without them is a "
            "plain keepalived.conf (keepalived's `-t` calls them unknown keywords). "
            + ", ".join(found) + ".", ""]


def render() -> str:
    out = ["# keepalived.conf keywords that director reads",
           "",
           "Generated from director/config/blocks by `python -m director.config.docs`; do not "
           "edit by hand. A keyword marked *not acted on* parses and is kept, and `-t` warns "
           "that director does nothing with it.",
           "", *_summary(), *_extensions()]
    extension = extension_blocks()
    seen: set[int] = set()
    queue: list[Block] = [ROOT]
    while queue:
        block = queue.pop(0)
        if id(block) in seen:
            continue
        seen.add(id(block))
        out += [f"## {block.name}", ""]
        if id(block) in extension:
            out += [f"*director extension*: {block.doc}" if block.doc else
                    "*director extension*", ""]
        if block.items:
            out += [f"Lines that are no keyword are entries ({block.items[0]}).", ""]
        rows = [kw for kw in block.keywords if kw.field_name != "unsupported"]
        passthrough = [kw.name for kw in block.keywords if kw.field_name == "unsupported"]
        if rows:
            out += ["| keyword | value | default | notes |", "| --- | --- | --- | --- |"]
        for kw in rows:
            value = kw.value
            if isinstance(value, Block):
                queue.append(value)
                shape = f"block, see [{value.name}](#{value.name.lower()})"
            else:
                shape = value.describe()
            names = " / ".join(f"`{n}`" for n in (kw.name, *kw.aliases))
            default = "" if kw.default is None or isinstance(value, (Block, Lines, Opaque)) \
                else f"`{kw.default}`"
            notes = "; ".join(x for x in (kw.doc, _status(kw)) if x)
            if kw.repeat in ("append", "once"):
                said = "may repeat" if kw.repeat == "append" else "at most one"
                notes = f"{said}; {notes}" if notes else said
            if kw.extension:
                notes = f"*director extension*; {notes}" if notes else "*director extension*"
            out.append(f"| {names} | {_cell(shape)} | {_cell(default)} | {_cell(notes)} |")
        if passthrough:
            out += ["", "Accepted and not acted on: " + ", ".join(f"`{n}`" for n in passthrough)
                    + "."]
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    sys.stdout.write(render())
