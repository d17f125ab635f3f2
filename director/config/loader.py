"""Loader: statement tree + keyword tables -> frozen model, with diagnostics.

The walk is the same for every block: look the keyword up in the block's table, parse its
value with the keyword's value type, store it in the keyword's field. What differs from one
block to another lives in the tables, not here.
"""

from __future__ import annotations

import functools
from typing import Any

from .blocks import ROOT
from .diagnostics import Diagnostics, Location, location
from .schema import Block, Invalid, Kw, Lines, Opaque, model_maker
from .tree import Stmt


class _Context:
    """What value parsers see: where they are, and a way to warn or complain there.

    Where is the statement being read (``stmt``); its Location is made when a parser or a
    diagnostic asks for it, not for each of the file's hundred thousand statements. A
    parser may set ``location`` (a BGP peer's checks speak at the peer's line)."""

    __slots__ = ("diagnostics", "stmt", "pinned", "invalid")

    def __init__(self, diagnostics: Diagnostics) -> None:
        self.diagnostics = diagnostics
        self.stmt = Stmt("", [], "", 0)
        self.pinned: Location | None = None
        # Fields of the block being finished whose value was given but did not parse: a
        # "needs X" on top of "X: must be ..." would say the same mistake twice.
        self.invalid: set[str] = set()

    @property
    def location(self) -> Location:
        return self.pinned or location(self.stmt.file, self.stmt.line)

    @location.setter
    def location(self, location: Location) -> None:
        self.pinned = location

    def at(self, stmt: Stmt) -> None:
        self.stmt = stmt
        self.pinned = None

    def warn(self, message: str) -> None:
        self.diagnostics.warning(self.location, message)

    def error(self, message: str) -> None:
        self.diagnostics.error(self.location, message)


def _all_blocks(block: Block, seen: dict[int, Block] | None = None) -> dict[int, Block]:
    seen = {} if seen is None else seen
    if id(block) not in seen:
        seen[id(block)] = block
        for kw in block.keywords:
            if isinstance(kw.value, Block):
                _all_blocks(kw.value, seen)
    return seen


def _home_blocks() -> dict[str, list[str]]:
    """keyword -> the blocks it belongs to, to say where a misplaced keyword should go."""
    homes: dict[str, list[str]] = {}
    for block in _all_blocks(ROOT).values():
        for word in block.known_words():
            homes.setdefault(word, [])
            if block.name not in homes[word]:
                homes[word].append(block.name)
    return homes


_HOMES = _home_blocks()


# How the loader reads a keyword, worked out once per block from its table (_plans): the
# keyword's Kw, its field, whether its value is a plain value (parsed by a Value) and how
# repeats go. The walk then costs a dict look-up per statement, not attribute reads, a
# property and a call (10,000 real servers: issue 17).
_APPEND, _ONCE, _REPLACE = 0, 1, 2


def _plans(block: Block) -> dict[str, tuple]:
    plans = block._index_cache.get("plans")
    if plans is None:
        plans = {}
        for word in block.known_words():
            kw = block.lookup(word)
            scalar = not isinstance(kw.value, (Block, Lines, Opaque))
            repeat = {"append": _APPEND, "once": _ONCE}.get(kw.repeat, _REPLACE)
            said = bool(kw.ignored or kw.deprecated or kw.unsupported)
            pure = scalar and getattr(kw.value, "pure", False)
            plans[word] = (kw, kw.field_name, kw.value.parse if scalar else None, repeat, said,
                           id(kw) if pure else None,
                           kw.value if isinstance(kw.value, Block) else None)
        block._index_cache["plans"] = plans
    return plans


def _kit(block: Block) -> tuple:
    """What the loader reads of a block for each of its occurrences, read once: its plans,
    its defaults (copied per occurrence), header, items and finish. 26,000 blocks of a
    10,000-real-server file each paid for the method calls and look-ups (issue 17)."""
    kit = block._index_cache.get("kit")
    if kit is None:
        block.defaults()
        kit = (_plans(block), block._index_cache["defaults"], block.header, block.items,
               block.finish)
        block._index_cache["kit"] = kit
    return kit


class Loader:
    def __init__(self, diagnostics: Diagnostics) -> None:
        self.diagnostics = diagnostics
        self.ctx = _Context(diagnostics)
        # The values of pure value types (Value.pure: no warning, no location kept) by their
        # words, per keyword: 10,000 real servers say "weight 1" and "retry 3" alike.
        self._parsed: dict[tuple, Any] = {}

    def load(self, statements: list[Stmt], path: str) -> Any:
        top = Stmt(ROOT.name, [], path, 1, statements)
        return self.block(ROOT, top)

    def block(self, block: Block, stmt: Stmt) -> Any | None:
        diagnostics = self.diagnostics
        diagnostics.pause()
        ctx = self.ctx
        ctx.stmt = stmt
        ctx.pinned = None
        plans, defaults, header, items, finish = block._index_cache.get("kit") or _kit(block)
        values = dict(defaults)
        if header is not None:
            try:
                values.update(header(stmt.args, ctx))
            except Invalid as exc:
                ctx.error(f"{block.name}: {exc}")
                return None
        set_at: dict[str, int] = {}       # field -> the line that set it
        appended: dict[str, list] = {}      # repeated keywords and items, frozen at the end
        invalid: set[str] = set()
        warned_items = False
        parsed = self._parsed
        for child in stmt.children or ():
            if diagnostics.stopped:     # too many errors: the rest is not walked
                break
            ctx.stmt = child
            ctx.pinned = None
            plan = plans.get(child.keyword)
            if plan is None:
                if items is None:
                    self._unknown(block, child)
                    continue
                field, parse_item, warning = items
                item = self._item(parse_item, child, block.name,
                                  misplaced=functools.partial(self._unknown, block, child))
                if item is not None:
                    appended.setdefault(field, []).append(item)
                    if warning and not warned_items:
                        ctx.warn(warning)
                        warned_items = True
                continue
            # pure: the cache's key, or None; sub: the Block of a block keyword, or None
            kw, field, parse, repeat, said, pure, sub = plan
            if said:
                if kw.ignored:
                    ctx.warn(kw.ignored)
                    continue
                if kw.deprecated:
                    ctx.warn(kw.deprecated)
                if kw.unsupported:
                    ctx.warn(f"'{child.keyword}' is accepted but not acted on: {kw.unsupported}")
            if parse is not None and child.children is None:
                # A plain value, the most common statement: parsed here, not in _value.
                if pure is None:
                    key = None
                    value = _INVALID
                else:
                    key = (pure, *child.args)
                    value = parsed.get(key, _INVALID)
                if value is _INVALID:
                    try:
                        value = parse(child.args, ctx)
                    except Invalid as exc:
                        ctx.error(f"{child.keyword}: {exc}")
                        invalid.add(field)
                        continue
                    ctx.pinned = None       # a parser may have pointed elsewhere
                    if key is not None:
                        parsed[key] = value
            elif sub is not None and child.children is not None:
                value = self.block(sub, child)      # a sub-block (a real_server, a check)
                ctx.at(child)
                if value is None:
                    invalid.add(field)
                    continue
            else:
                value = self._value(kw, child)
                ctx.at(child)
                if value is _INVALID:
                    invalid.add(field)
                    continue
            if repeat == _APPEND:
                appended.setdefault(field, []).append(value)
            else:
                if field in set_at:
                    if repeat == _ONCE:
                        ctx.error(f"'{child.keyword}' is given twice (first at line "
                                  f"{set_at[field]}): at most one")
                        continue
                    ctx.warn(f"'{child.keyword}' overrides the value set at line "
                             f"{set_at[field]}")
                set_at[field] = child.line
                values[field] = value
        for field, added in appended.items():
            values[field] = values[field] + tuple(added)
        if finish is not None:
            ctx.at(stmt)
            ctx.invalid = invalid
            finish(values, ctx)
        return model_maker(block)(values, stmt.location)

    def _value(self, kw: Kw, stmt: Stmt) -> Any:
        value_type = kw.value
        name = stmt.keyword
        ctx = self.ctx
        if isinstance(value_type, (Block, Lines, Opaque)):
            if stmt.children is None:
                ctx.error(f"'{name}' needs a block: {name} {{ ... }}")
                return _INVALID
            if isinstance(value_type, Block):
                model = self.block(value_type, stmt)
                return _INVALID if model is None else model
            if isinstance(value_type, Opaque):     # kept whole, its name words included
                return (tuple(stmt.args), _opaque(stmt.children))
            if stmt.args:
                ctx.error(f"'{name}' takes nothing before '{{', got '{' '.join(stmt.args)}'")
            items = []
            for line in stmt.children:
                ctx.at(line)
                item = self._item(value_type.item, line, name)
                if item is not None:
                    items.append(item)
            return tuple(items)
        if stmt.children is not None:
            ctx.error(f"'{name}' does not take a block")
            return _INVALID
        try:
            return value_type.parse(stmt.args, ctx)
        except Invalid as exc:
            ctx.error(f"{name}: {exc}")
            return _INVALID

    def _item(self, parse_item, stmt: Stmt, where: str, misplaced=None) -> Any:
        """One line of a list block. ``misplaced`` reports a block keyword of another block
        found among the items (a '}' forgotten above it, most often)."""
        if stmt.children is not None:
            if misplaced is not None and stmt.keyword in _HOMES:
                misplaced()
            else:
                self.ctx.error(f"unexpected block after '{' '.join(stmt.words)}' in {where}")
            return None
        try:
            return parse_item(stmt.words, self.ctx)
        except Invalid as exc:
            self.ctx.error(f"{where}: {exc}")
            return None

    def _unknown(self, block: Block, stmt: Stmt) -> None:
        word = stmt.keyword
        homes = [home for home in _HOMES.get(word, ()) if home != block.name]
        if homes:
            self.ctx.error(f"'{word}' does not belong in {block.name} (it goes in "
                           f"{' or '.join(homes)})")
            return
        guess = _closest(word, block, opens_block=stmt.children is not None)
        if guess is None:
            self.ctx.error(f"unknown keyword '{word}' in {block.name}")
            return
        hint = f"unknown keyword '{word}' in {block.name} (did you mean '{guess}'?)"
        guessed = block.lookup(guess)
        if guessed is not None and (guessed.ignored or guessed.deprecated):
            # A misspelt keyword that is ignored or deprecated anyway is a warning: the
            # HOWTO's lvs_sync_daemon_inteface must not stop a config that keepalived runs
            # (keepalived ignores it as unknown, and so does director, saying so).
            self.ctx.warn(f"{hint}: ignored")
        else:
            self.ctx.error(hint)


_INVALID = object()


def _closest(word: str, block: Block, opens_block: bool) -> str | None:
    """The keyword most likely meant: same spelling but for case, else one of the same shape
    (a block for a block, a value for a value) that the typo starts or resembles."""
    known = block.known_words()
    lowered = {k.lower(): k for k in known}
    if word.lower() in lowered:
        return lowered[word.lower()]
    same_shape = [k for k in known
                  if isinstance(block.lookup(k).value, (Block, Lines, Opaque)) == opens_block]
    prefixed = [k for k in same_shape if k.startswith(word) and len(word) >= 4]
    if prefixed:
        return min(prefixed, key=len)
    import difflib      # here: 10 ms of imports that only a misspelt keyword needs (issue 17)
    for candidates in (same_shape, known):
        matches = difflib.get_close_matches(word, candidates, n=1, cutoff=0.75)
        if matches:
            return matches[0]
    return None


def _opaque(children: list[Stmt]) -> tuple:
    return tuple((tuple(c.words), _opaque(c.children) if c.children else ()) for c in children)
