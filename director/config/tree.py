"""Tree builder: logical lines -> nested statements (keyword, arguments, optional block).

A statement is the words of one line up to a brace. ``{`` opens a block for the statement
before it, on the same line or on the line above (keepalived accepts both). Built with an
explicit stack, so that nesting depth is a diagnostic, never a RecursionError.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

from .diagnostics import Diagnostics, Location, location
from .lexer import Quoted, SourceLine

MAX_DEPTH = 64


class Stmt:
    """One statement: a keyword, its arguments, and the block after it (None: no block was
    opened after this statement). Where it was written is kept as the file's name and the
    line number; the Location is made when asked for, as a diagnostic or a model needs it
    (a hundred thousand statements, a few hundred diagnostics: issue 17)."""

    __slots__ = ("keyword", "args", "file", "line", "children", "indent")

    def __init__(self, keyword: str, args: list[str], file: str, line: int,
                 children: list["Stmt"] | None = None, indent: int = 0) -> None:
        self.keyword = keyword
        self.args = args
        self.file = file
        self.line = line
        self.children = children
        self.indent = indent

    @property
    def location(self) -> Location:
        return location(self.file, self.line)

    @property
    def words(self) -> list[str]:
        return [self.keyword, *self.args]

    def __repr__(self) -> str:
        return f"Stmt({self.keyword!r}, {self.args!r}, {self.file}:{self.line}, " \
               f"{len(self.children) if self.children is not None else None} children)"


@dataclass(slots=True)
class _Open:
    owner: Stmt
    children: list[Stmt]
    depth_exceeded: bool = False
    # The first '}' indented like this block that closed an inner one instead, and that block.
    mismatched_close: tuple[int, Stmt] | None = field(default=None)


class TreeBuilder:
    """Builds the tree one line at a time, as the preprocessor reads them (one pass from the
    text to the tree: no list of lines made and walked again).

    Its errors are held until ``finish`` and said then, in the order they were found: the
    preprocessor's diagnostics come first, as when the tree was built after it, and the
    limit on errors falls where it fell. The preprocessor appends a line without a brace to
    ``current`` itself (nearly every line of a large file) and sets ``previous`` to it."""

    __slots__ = ("root", "current", "previous", "_stack", "_errors", "_balanced")
    statement = Stmt

    def __init__(self) -> None:
        self.root: list[Stmt] = []
        self.current = self.root     # the children of the innermost open block
        self.previous: Stmt | None = None   # last statement of the last line, if it has no block
        self._stack: list[_Open] = []
        self._errors: list[tuple[str, int, str]] = []
        self._balanced = True

    def add(self, words: list[str], file: str, line: int, indent: int) -> None:
        """One logical line of words (braces are words of their own)."""
        if "{" not in words and "}" not in words:   # most lines: one statement, no brace
            self.previous = Stmt(words[0], words[1:], file, line, None, indent)
            self.current.append(self.previous)
            return
        stack = self._stack
        count = len(words)
        if count == 1 and words[0] == "}" and stack and not isinstance(words[0], Quoted):
            # A line that closes a block, indented as its block was: half the braced lines
            closed = stack[-1].owner
            if indent == closed.indent:
                stack.pop()
                self.current = stack[-1].children if stack else self.root
                self.previous = None
                return
        elif count > 1 and words[-1] == "{" and "}" not in words \
                and words.index("{") == count - 1 and not isinstance(words[-1], Quoted) \
                and len(stack) < MAX_DEPTH:
            # "keyword args {": the other half
            owner = Stmt(words[0], words[1:-1], file, line, [], indent)
            self.current.append(owner)
            stack.append(_Open(owner, owner.children))
            self.current = owner.children
            self.previous = None
            return
        current = self.current
        start = 0
        last_in_line: Stmt | None = None
        for index in range(len(words) + 1):
            word = words[index] if index < len(words) else None
            is_brace = word in ("{", "}") and not isinstance(word, Quoted)
            if word is not None and not is_brace:
                continue
            if index > start:
                stmt = Stmt(words[start], words[start + 1:index], file, line, None, indent)
                current.append(stmt)
                last_in_line = stmt
            start = index + 1
            if word == "{":
                owner = last_in_line if index > 0 else self.previous
                if owner is None or owner.children is not None:
                    self._error(file, line, "'{' with no keyword before it")
                    self._balanced = False
                    owner = Stmt("{", [], file, line)
                owner.children = []
                if len(stack) >= MAX_DEPTH:
                    if not any(o.depth_exceeded for o in stack):
                        self._error(file, line, f"blocks nested deeper than {MAX_DEPTH} levels")
                    self._balanced = False
                    stack.append(_Open(owner, [], depth_exceeded=True))
                else:
                    stack.append(_Open(owner, owner.children))
                current = stack[-1].children
                last_in_line = None
            elif word == "}":
                if not stack:
                    self._error(file, line, "unexpected '}': no block is open here")
                    self._balanced = False
                else:
                    closed = stack.pop()
                    if index == 0 and indent != closed.owner.indent:
                        # Remember the first '}' indented unlike its block: a '}' is most
                        # likely missing just before it.
                        for outer in stack:
                            if outer.owner.indent == indent and outer.mismatched_close is None:
                                outer.mismatched_close = (line, closed.owner)
                    current = stack[-1].children if stack else self.root
                last_in_line = None
        self.current = current
        self.previous = last_in_line

    def add_lines(self, file: str, lines: Iterable[tuple[int, list[str], int]],
                  pause: Callable[[], None] | None = None) -> None:
        """Many lines of one file, (number, words, indent), empty ones included: what ``add``
        does for each, with its two short paths ("keyword args {" and a lone "}" indented
        as its block) and the plain statement made here, in one loop (the preprocessor's
        whole-file path: Preprocessor._read_plain_text)."""
        stack = self._stack
        current = self.current
        previous = self.previous
        root = self.root
        for line, words, indent in lines:
            if not words:
                continue
            if pause is not None:
                pause()
            if "{" not in words and "}" not in words:
                previous = Stmt(words[0], words[1:], file, line, None, indent)
                current.append(previous)
                continue
            last = words[-1]
            if len(words) == 1 and last == "}" and stack and stack[-1].owner.indent == indent:
                stack.pop()
                current = stack[-1].children if stack else root
                previous = None
                continue
            if last == "{" and len(words) > 1 and "}" not in words \
                    and words.index("{") == len(words) - 1 and len(stack) < MAX_DEPTH:
                previous = None
                owner = Stmt(words[0], words[1:-1], file, line, [], indent)
                current.append(owner)
                stack.append(_Open(owner, owner.children))
                current = owner.children
                continue
            self.current = current
            self.previous = previous
            self.add(words, file, line, indent)
            current = self.current
            previous = self.previous
        self.current = current
        self.previous = previous

    def _error(self, file: str, line: int, message: str) -> None:
        self._errors.append((file, line, message))

    def finish(self, diagnostics: Diagnostics) -> list[Stmt] | None:
        """The top-level statements, or None when the braces do not balance (the tree is
        then meaningless, and reporting every keyword that landed in the wrong block would
        bury the one real mistake), or when the diagnostics have stopped."""
        if diagnostics.stopped:
            return None
        for file, line, message in self._errors:
            diagnostics.error(Location(file, line), message)
        for unclosed in reversed(self._stack):
            owner = unclosed.owner
            name = " ".join([owner.keyword, *owner.args])
            if unclosed.mismatched_close is not None:   # the likely culprit first
                close, inner = unclosed.mismatched_close
                diagnostics.error(inner.location,
                                  f"block '{' '.join(inner.words)}' opened here is probably "
                                  f"missing its '}}': the '}}' at line {close} is indented like "
                                  f"'{name}' (line {owner.line})")
            diagnostics.error(owner.location, f"unbalanced '{{': block '{name}' opened here is "
                                              "never closed")
            self._balanced = False
        return self.root if self._balanced and not diagnostics.stopped else None


def build_tree(lines: list[SourceLine], diagnostics: Diagnostics) -> list[Stmt] | None:
    """The tree of lines the preprocessor made (Preprocessor.run); load_config builds it as
    it reads (Preprocessor(tree=TreeBuilder()))."""
    builder = TreeBuilder()
    pause = diagnostics.pause
    for line in lines:
        pause()
        if diagnostics.stopped:
            return None
        location = line.location
        builder.add(line.words, location.file, location.line, line.indent)
    return builder.finish(diagnostics)
