"""Tree builder: logical lines -> nested statements (keyword, arguments, optional block).

A statement is the words of one line up to a brace. ``{`` opens a block for the statement
before it, on the same line or on the line above (keepalived accepts both). Built with an
explicit stack, so that nesting depth is a diagnostic, never a RecursionError.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .diagnostics import Diagnostics, Location
from .lexer import Quoted, SourceLine

MAX_DEPTH = 64


@dataclass(slots=True)
class Stmt:
    keyword: str
    args: list[str]
    location: Location
    children: list["Stmt"] | None = None   # None: no block was opened after this statement
    indent: int = 0

    @property
    def words(self) -> list[str]:
        return [self.keyword, *self.args]


@dataclass(slots=True)
class _Open:
    owner: Stmt
    children: list[Stmt]
    depth_exceeded: bool = False
    # The first '}' indented like this block that closed an inner one instead, and that block.
    mismatched_close: tuple[Location, Stmt] | None = field(default=None)


def build_tree(lines: list[SourceLine], diagnostics: Diagnostics) -> list[Stmt] | None:
    """The top-level statements, or None when the braces do not balance (the tree is then
    meaningless, and reporting every keyword that landed in the wrong block would bury the
    one real mistake), or when the diagnostics have stopped."""
    root: list[Stmt] = []
    stack: list[_Open] = []
    balanced = True
    previous: Stmt | None = None     # last statement of the previous line, if it has no block
    pause = diagnostics.pause
    for line in lines:
        pause()
        if diagnostics.stopped:      # too many errors already: the tree would not be used
            return None
        words = line.words
        current = stack[-1].children if stack else root
        if "{" not in words and "}" not in words:   # most lines: one statement, no brace
            previous = Stmt(words[0], words[1:], line.location, None, line.indent)
            current.append(previous)
            continue
        start = 0
        last_in_line: Stmt | None = None
        for index in range(len(words) + 1):
            word = words[index] if index < len(words) else None
            is_brace = word in ("{", "}") and not isinstance(word, Quoted)
            if word is not None and not is_brace:
                continue
            if index > start:
                stmt = Stmt(words[start], words[start + 1:index], line.location, None, line.indent)
                current.append(stmt)
                last_in_line = stmt
            start = index + 1
            if word == "{":
                owner = last_in_line if index > 0 else previous
                if owner is None or owner.children is not None:
                    diagnostics.error(line.location, "'{' with no keyword before it")
                    balanced = False
                    owner = Stmt("{", [], line.location)
                owner.children = []
                if len(stack) >= MAX_DEPTH:
                    if not any(o.depth_exceeded for o in stack):
                        diagnostics.error(line.location,
                                          f"blocks nested deeper than {MAX_DEPTH} levels")
                    balanced = False
                    stack.append(_Open(owner, [], depth_exceeded=True))
                else:
                    stack.append(_Open(owner, owner.children))
                current = stack[-1].children
                last_in_line = None
            elif word == "}":
                if not stack:
                    diagnostics.error(line.location, "unexpected '}': no block is open here")
                    balanced = False
                else:
                    closed = stack.pop()
                    if index == 0 and line.indent != closed.owner.indent:
                        # Remember the first '}' indented unlike its block: a '}' is most
                        # likely missing just before it.
                        for outer in stack:
                            if outer.owner.indent == line.indent and outer.mismatched_close is None:
                                outer.mismatched_close = (line.location, closed.owner)
                    current = stack[-1].children if stack else root
                last_in_line = None
        previous = last_in_line
    for unclosed in reversed(stack):
        owner = unclosed.owner
        name = " ".join([owner.keyword, *owner.args])
        if unclosed.mismatched_close is not None:   # the likely culprit first
            close, inner = unclosed.mismatched_close
            diagnostics.error(inner.location,
                              f"block '{' '.join(inner.words)}' opened here is probably missing "
                              f"its '}}': the '}}' at line {close.line} is indented like "
                              f"'{name}' (line {owner.location.line})")
        diagnostics.error(owner.location, f"unbalanced '{{': block '{name}' opened here is never "
                                          "closed")
        balanced = False
    return root if balanced and not diagnostics.stopped else None
