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


def render() -> str:
    out = ["# keepalived.conf keywords that director reads",
           "",
           "Generated from director/config/blocks by `python -m director.config.docs`; do not "
           "edit by hand. A keyword marked *not acted on* parses and is kept, and `-t` warns "
           "that director does nothing with it.",
           "", *_summary()]
    seen: set[int] = set()
    queue: list[Block] = [ROOT]
    while queue:
        block = queue.pop(0)
        if id(block) in seen:
            continue
        seen.add(id(block))
        out += [f"## {block.name}", ""]
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
            if kw.repeat == "append":
                notes = "may repeat; " + notes if notes else "may repeat"
            out.append(f"| {names} | {_cell(shape)} | {_cell(default)} | {_cell(notes)} |")
        if passthrough:
            out += ["", "Accepted and not acted on: " + ", ".join(f"`{n}`" for n in passthrough)
                    + "."]
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    sys.stdout.write(render())
