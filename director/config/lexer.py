"""Lexer and preprocessor: keepalived.conf text -> logical lines of words, each with file:line.

Everything keepalived does before a keyword is looked at happens here, line by line:
comments, ``@ID`` / ``@^ID`` conditional lines, ``$NAME=value`` definitions and ``$NAME`` /
``${NAME}`` substitution, ``~SEQ`` / ``~LST`` repetition, ``include`` (globs, relative to the
including file) and quoting. Braces become words of their own so that the tree builder can
treat ``name {`` and ``name`` + ``{`` on the next line alike.

Bad input never raises: each problem is a diagnostic and the rest of the file is still read.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from itertools import count, repeat
from typing import Any, Callable, Iterable, Protocol

from .diagnostics import Diagnostics, Location, no_pause

# Limits that turn absurd input into one clear error, fast, instead of minutes of work and a
# gigabyte of memory (a HUP with 50 MB of garbage once blocked the daemon for 32 s). A
# 100,000-line configuration is 2-4 MB; a generated one ten times that still fits.
MAX_FILE_BYTES = 16 << 20       # one file; also what read_bytes reads at most (+1 to tell)
MAX_CONFIG_BYTES = 32 << 20     # all files, the included ones counted
MAX_UNDECODABLE = 16            # a few Latin-1 bytes in a comment are a warning; more is binary
MAX_LINE_CHARS = 65536          # keepalived's own buffer is far smaller; this is a sanity bound
MAX_SUBSTITUTED_CHARS = 1 << 20  # a line after $VAR substitution ($B=$A $A $A... grows fast)
MAX_INCLUDE_DEPTH = 32
MAX_INCLUDED_FILES = 50_000     # reads in all: 30 files each including the next twice would
                                # read the last a billion times, a few bytes each, under 32 MiB
MAX_EXPANDED_LINES = 2_000_000  # bounds ~SEQ / $VAR blow-ups (a line repeated a billion times)
MAX_SUBSTITUTION_ROUNDS = 16    # $A=$B, $B=$A must end
MAX_EXPANSION_DEPTH = 16        # ~SEQ in ~SEQ, definitions in definitions: $V=~SEQ(j,2) $V,
                                # or a multi-line $V with a line "$V", expands for ever

_DEFINITION = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)=(.*)\Z", re.S)
# ${NAME} anywhere; $NAME only before white space, ',', ')' or the end (keepalived's rule, so
# "$1" or "$HOME/x" in a script line stay as written).
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?: ([^}]*))?\}"
                       r"|\$([A-Za-z_][A-Za-z0-9_]*)(?=[ \t,)]|\Z)")
_REPEAT = re.compile(r"~(SEQx?|LST)\(([^)]*)\)\s*(.*)\Z", re.S)
_QUOTED_OR_WORD = re.compile(r'"((?:[^"\\]|\\.)*)("?)|([^\s"]+)')
_BRACE_PARTS = re.compile(r"[{}]|[^{}]+")
_GLOB_CHARS = re.compile(r"[*?\[{]")
# A character that makes a line more than its words: a comment, a conditional, a variable, a
# repetition, a quote, an escape. A line without one (nearly every line of a large file) is
# split at once (Preprocessor._read_text).
_SPECIAL_CHARS = '#!@$~"\\'
_SPECIAL = re.compile(f"[{re.escape(_SPECIAL_CHARS)}]").search


def _braces_apart_in(text: str, split: list[list[str]]) -> bool:
    """Is every brace of the text a word of its own (``split``: its lines' words)? Told
    first from the text alone, in C: when every '{' ends a line after a blank and every '}'
    stands after a blank or alone on its line, as a written file has them, they are all
    counted by these patterns (a pattern holds one brace, and no two count the same one);
    else each brace word is counted (20 ms for 100,000 lines, the patterns 2 ms: issue 17)."""
    opening, closing = text.count("{"), text.count("}")
    if opening == text.count(" {\n") + text.count("\t{\n") and \
            closing == text.count(" }\n") + text.count("\t}\n") + text.count("\n}\n"):
        return True
    return opening == sum(map(list.count, split, repeat("{"))) and \
        closing == sum(map(list.count, split, repeat("}")))


def _has_special(text: str) -> bool:
    """_SPECIAL(text) for a whole file: seven scans of the text in C (memchr), where the
    regular expression steps through it a character at a time (0.6 ms against 15-35 ms for
    3 MB, issue 17)."""
    return any(char in text for char in _SPECIAL_CHARS)


class Quoted(str):
    """A word that was written in double quotes: a quoted ``{`` is text, not a brace."""

    __slots__ = ()


@dataclass(slots=True)
class SourceLine:
    words: list[str]
    location: Location
    indent: int


class LineSink(Protocol):
    """Where the preprocessor puts lines as it reads them (tree.TreeBuilder): ``add`` takes
    any line; a line with no brace may instead be made a ``statement`` and appended to
    ``current`` directly, and becomes ``previous``; ``add_lines`` takes a whole file of
    (number, words, indent), empty lines included, all plain."""

    statement: Callable[..., Any]
    current: list
    previous: Any

    def add(self, words: list[str], file: str, line: int, indent: int) -> None: ...

    def add_lines(self, file: str, lines: Iterable[tuple[int, list[str], int]],
                  pause: Callable[[], None] | None) -> None: ...


def read_bytes(path: str, limit: int = MAX_FILE_BYTES + 1) -> bytes:
    """At most ``limit`` bytes: enough to tell a file is too large without holding it all
    (``include /dev/zero`` would never end)."""
    with open(path, "rb") as handle:
        return handle.read(limit)


class Preprocessor:
    """Turns one configuration file (and what it includes) into SourceLines.

    When the diagnostics stop (a fatal error such as a binary or oversized file, or too many
    errors), reading stops and ``run`` returns no lines: what was read so far, cut anywhere,
    would only add errors about blocks that do not close."""

    def __init__(self, diagnostics: Diagnostics, config_id: str,
                 read: Callable[[str], bytes] = read_bytes,
                 max_lines: int = MAX_EXPANDED_LINES,
                 max_file_bytes: int = MAX_FILE_BYTES,
                 max_config_bytes: int = MAX_CONFIG_BYTES,
                 tree: LineSink | None = None, keep: list | None = None) -> None:
        self.diagnostics = diagnostics
        # A list to put a whole file's lines and words in once read, rather than freeing
        # them (load_config's keep: a process about to leave, issue 17)
        self.keep = keep
        # With a tree builder, each line goes straight into the tree as it is read (the
        # loader's one pass from text to tree); without, ``run`` returns the SourceLines.
        self.tree = tree
        self.config_id = config_id
        self.read = read
        self.variables: dict[str, str] = {}
        self.lines: list[SourceLine] = []
        self._include_stack: list[str] = []
        self.max_lines = max_lines
        self.max_file_bytes = max_file_bytes
        self.max_config_bytes = max_config_bytes
        self._expanded = 0
        self._rows = 0              # rows of ~SEQ / ~LST, counted against max_lines too
        self._depth = 0             # repetitions and multi-line definitions being expanded
        self._bytes_read = 0
        self._files_read = 0
        self._random = None         # random.Random, made for ${_RANDOM} or random_seed
        self.include_checks: tuple[str, ...] = ()     # global_defs include_check, as read
        self._undefined: set[str] = set()
        # what was read, for what must know the files (the quick start's key): each file's
        # path and bytes; ``globbed`` when an include named a pattern, whose matches may
        # change without any of these files changing
        self.sources: list[tuple[str, bytes]] = []
        self.globbed = False

    # -- files -------------------------------------------------------------------------------

    def run(self, path: str) -> list[SourceLine]:
        self._read_file(path, None)
        if self.diagnostics.stopped:
            self.lines = []
        return self.lines

    def _emit(self, words: list[str], location: Location, indent: int) -> None:
        if self.tree is not None:
            self.tree.add(words, location.file, location.line, indent)
        else:
            self.lines.append(SourceLine(words, location, indent))

    def _read_file(self, path: str, included_at: Location | None) -> None:
        real = os.path.realpath(path)
        if real in self._include_stack:
            chain = " -> ".join(os.path.basename(p) for p in self._include_stack + [real])
            self.diagnostics.error(included_at, f"include cycle: {chain}")
            return
        if len(self._include_stack) >= MAX_INCLUDE_DEPTH:
            self.diagnostics.error(included_at, f"includes nested deeper than {MAX_INCLUDE_DEPTH}")
            return
        self._files_read += 1
        if self._files_read > MAX_INCLUDED_FILES:
            self.diagnostics.fatal(included_at, f"more than {MAX_INCLUDED_FILES} files "
                                                "included: not read")
            return
        try:
            data = self.read(path)
        except OSError as exc:
            where = included_at or Location(path, 0)
            self.diagnostics.error(where, f"cannot read {path}: {exc.strerror or exc}")
            return
        self.sources.append((path, data))
        text = self._text_of(path, data, included_at)
        if text is None:
            return
        self._include_stack.append(real)
        try:
            self._read_text(path, text)
        finally:
            self._include_stack.pop()

    def _text_of(self, path: str, data: bytes, included_at: Location | None) -> str | None:
        """The file's text, or None after one fatal error: too large, or not text."""
        where = included_at or Location(path, 1)
        if len(data) > self.max_file_bytes:
            self.diagnostics.fatal(where, f"{path} is larger than {_size(self.max_file_bytes)}, "
                                          "the limit for one file: not a configuration file "
                                          "director reads")
            return None
        self._bytes_read += len(data)
        if self._bytes_read > self.max_config_bytes:
            self.diagnostics.fatal(where, f"the configuration is larger than "
                                          f"{_size(self.max_config_bytes)} with {path}, the limit "
                                          "for all its files together: not read")
            return None
        nul = data.find(b"\0")
        if nul >= 0:
            line = data.count(b"\n", 0, nul) + 1
            self.diagnostics.fatal(Location(path, line),
                                   "binary data (NUL byte): not a text configuration file")
            return None
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            first = Location(path, data.count(b"\n", 0, exc.start) + 1)
        text = data.decode("utf-8", errors="replace")
        undecodable = text.count("\ufffd")
        if undecodable > MAX_UNDECODABLE:
            self.diagnostics.fatal(first, f"binary data ({undecodable} sequences that are not "
                                          "UTF-8, the first here): not a text configuration "
                                          "file")
            return None
        self.diagnostics.warning(first, "text is not valid UTF-8; undecodable bytes were "
                                        "replaced")
        return text

    def _read_text(self, path: str, text: str) -> None:
        pending_name: str | None = None   # a $NAME=value definition continued with '\'
        pending_value: list[str] = []
        pending_location: Location | None = None
        physical = text.split("\n")
        if physical and physical[-1] == "":
            physical.pop()          # the newline that ends the last line starts no line
        diagnostics = self.diagnostics
        pause = diagnostics.pause if diagnostics.pause is not no_pause else None
        tree = self.tree
        if tree is not None and self._read_plain_text(path, text, physical, pause):
            return
        lines = self.lines
        statement = tree.statement if tree is not None else None
        for number, raw in enumerate(physical, 1):
            if pause is not None:
                pause()
            if diagnostics.stopped:      # a fatal error, or too many: the rest is not read
                return
            if len(raw) > MAX_LINE_CHARS:
                self.diagnostics.error(Location(path, number),
                                       f"line is {len(raw)} characters long; the limit is "
                                       f"{MAX_LINE_CHARS}: line ignored")
                continue
            if pending_name is not None:
                piece = raw.strip()
                if piece.endswith("\\"):
                    pending_value.append(piece[:-1].rstrip())
                    continue
                pending_value.append(piece)
                self.variables[pending_name] = "\n".join(pending_value)
                pending_name = None
                continue
            if not _SPECIAL(raw):
                words = raw.split()
                if not words:
                    continue
                # A plain line: its white-space-separated words are its words as _expand
                # would find them, unless a brace is glued to a word (split_words splits
                # it) or it is include, include_check or random_seed (acted on as the file
                # is read). The fast path was a third of the preprocessor's time (issue 17).
                first = words[0]
                if not first.startswith("include") and first != "random_seed":
                    braced = "{" in raw or "}" in raw
                    if not braced or _braces_apart(words, raw):
                        self._expanded += 1
                        if self._expanded > self.max_lines:
                            self._too_many_lines(Location(path, number))
                            continue
                        indent = len(raw) - len(raw.lstrip())
                        if tree is None:
                            lines.append(SourceLine(words, Location(path, number), indent))
                        elif braced:
                            tree.add(words, path, number, indent)
                        else:
                            tree.previous = statement(first, words[1:], path, number, None,
                                                      indent)
                            tree.current.append(tree.previous)
                        continue
            line = strip_comment(raw) if ("#" in raw or "!" in raw) else raw
            body = line.strip()
            if not body:
                continue
            location = Location(path, number)
            indent = len(line) - len(line.lstrip())
            if body[0] == "@":
                body = self._conditional(body)
                if not body:
                    continue
            if body[0] == "$":
                match = _DEFINITION.match(body)
                if match:
                    name, value = match.group(1), match.group(2).strip()
                    if value.endswith("\\"):
                        pending_name, pending_value = name, [value[:-1].rstrip()]
                        pending_location = location
                    else:
                        self.variables[name] = value
                    continue
            self._expand(body, location, indent)
        if pending_name is not None:
            self.diagnostics.error(pending_location,
                                   f"definition of ${pending_name} continues with '\\' past the "
                                   "end of the file")
            self.variables[pending_name] = "\n".join(pending_value)

    def rng(self):
        """The generator of ${_RANDOM}, made when first asked for: the random module is
        an import (5 ms) that a file without ${_RANDOM} or random_seed does not need (-t,
        issue 17). Seeded from the system as random.Random() is, or by random_seed."""
        if self._random is None:
            import random
            self._random = random.Random()
        return self._random

    # -- line level --------------------------------------------------------------------------

    def _read_plain_text(self, path: str, text: str, physical: list[str],
                         pause: Callable[[], None] | None) -> bool:
        """A file in which every line is plain (see _read_text), told by looking at the whole
        text in C: no special character, no line too long, no brace glued to a word, no
        include or random_seed anywhere, within the line limit. Its lines go into the tree
        with no test of their own: split, indented and counted by map() in C, then one
        statement each (a generated 100,000-line file: the preprocessor's time halved, issue
        17). False, having done nothing, when the file is not such a file."""
        tree = self.tree
        if _has_special(text) or "include" in text or "random_seed" in text \
                or self.diagnostics.stopped \
                or (len(text) > MAX_LINE_CHARS and max(map(len, physical)) > MAX_LINE_CHARS):
            return False
        split = list(map(str.split, physical))
        if not _braces_apart_in(text, split):
            return False                # a brace glued to a word: split_words splits it
        words_count = len(split) - split.count([])
        if self._expanded + words_count > self.max_lines:
            return False                # the line-by-line reading says where it ends
        self._expanded += words_count
        indents = map(int.__sub__, map(len, physical), map(len, map(str.lstrip, physical)))
        tree.add_lines(path, zip(count(1), split, indents), pause)
        if self.keep is not None:
            self.keep.append((physical, split))     # 200,000 objects: 9 ms to free
        return True

    def _conditional(self, body: str) -> str:
        """``@ID line`` keeps the line only when ID is ours; ``@^ID line`` only when it is not."""
        head, _, rest = body.partition(" ")
        if "\t" in head:
            head, _, more = head.partition("\t")
            rest = more + " " + rest
        negate = head.startswith("@^")
        wanted = head[2:] if negate else head[1:]
        keep = (wanted == self.config_id) != negate
        return rest.strip() if keep else ""

    def _expand(self, body: str, location: Location, indent: int) -> None:
        # A repetition first, as keepalived does: its variable must be set before the line
        # is substituted, and a multi-line definition in it must be repeated whole.
        if _is_repetition(body):
            self._repeat(body, location, indent)
            return
        if "$" in body:
            body = self._substitute(body, location)
            if "\n" in body:   # a multi-line definition expands into several lines
                if not self._deeper(location):
                    return
                try:
                    for part in body.split("\n"):
                        if self.diagnostics.stopped:
                            return
                        if part.strip():
                            self._expand(part.strip(), location, indent)
                finally:
                    self._depth -= 1
                return
            if _is_repetition(body):
                self._repeat(body, location, indent)
                return
        if body.startswith("include") and body[7:8] in (" ", "\t", ""):
            self._include(body[7:].strip(), location)
            return
        words = split_words(body, location, self.diagnostics)
        if not words:
            return
        if words[0] in ("random_seed", "include_check"):
            self._reading_setting(words)
        self._expanded += 1
        if self._expanded > self.max_lines:
            self._too_many_lines(location)
            return
        self._emit(words, location, indent)

    def _deeper(self, location: Location) -> bool:
        """One level deeper into a repetition or a multi-line definition; False (and one
        fatal error) past MAX_EXPANSION_DEPTH: Python's own recursion limit comes later."""
        if self._depth >= MAX_EXPANSION_DEPTH:
            self.diagnostics.fatal(location, "repetitions and multi-line definitions nested "
                                             f"deeper than {MAX_EXPANSION_DEPTH} (a definition "
                                             "that contains itself?): not read")
            return False
        self._depth += 1
        return True

    def _too_many_lines(self, location: Location) -> None:
        self.diagnostics.fatal(location, f"configuration expands to more than {self.max_lines} "
                                         "lines: not read")

    def _substitute(self, body: str, location: Location) -> str:
        """``body`` with its variables replaced; "" (the line dropped, with an error) when it
        would grow past MAX_SUBSTITUTED_CHARS, checked as it grows, before it is built."""
        for _ in range(MAX_SUBSTITUTION_ROUNDS):
            changed = False
            length = len(body)

            def replace(match: re.Match) -> str:
                nonlocal changed, length
                name = match.group(1) or match.group(3)
                value = self._lookup(name, match.group(2), location)
                if value is None:
                    if match.group(1) and name not in self._undefined:
                        self._undefined.add(name)
                        self.diagnostics.warning(location, f"${{{name}}} is not defined: left "
                                                           "as written, as keepalived does")
                    return match.group(0)
                length += len(value) - len(match.group(0))
                if length > MAX_SUBSTITUTED_CHARS:
                    raise _TooLong
                changed = True
                return value

            try:
                body = _VARIABLE.sub(replace, body)
            except _TooLong:
                self.diagnostics.error(location, "variable substitution makes this line longer "
                                                 f"than {MAX_SUBSTITUTED_CHARS} characters: line "
                                                 "ignored")
                return ""
            # A definition that holds a whole repetition: its own variables are set (and
            # substituted) per value, not here.
            if not changed or "$" not in body or _is_repetition(body):
                return body
        # Dropped, as a line that grows too long is: kept, its leftover variables would be
        # substituted again line by line (a multi-line definition doubling itself 40 times
        # made 2^40 lines).
        self.diagnostics.error(location, "variable substitution does not end "
                                         f"(more than {MAX_SUBSTITUTION_ROUNDS} rounds): line "
                                         "ignored")
        return ""

    def _lookup(self, name: str, args: str | None, location: Location) -> str | None:
        if name in self.variables:
            return self.variables[name]
        if name == "_PWD":
            return os.path.dirname(os.path.abspath(location.file))
        if name == "_INSTANCE":
            return self.config_id
        if name == "_HASH":
            return "#"
        if name == "_BANG":
            return "!"
        if name == "_RANDOM":
            bounds = (args or "").split()
            try:
                low = int(bounds[0]) if bounds else 0
                high = int(bounds[1]) if len(bounds) > 1 else 32767
            except ValueError:
                self.diagnostics.error(location, f"${{_RANDOM {args}}}: bounds must be integers")
                return ""
            return str(self.rng().randint(min(low, high), max(low, high)))
        return None

    def _repeat(self, body: str, location: Location, indent: int) -> None:
        """``~SEQ(var,start,step,end) line`` and ``~LST(var,a,b,...) line`` (or
        ``~LST({v,w},{1,2},{3,4})``): the line once per value, with $var set."""
        match = _REPEAT.match(body)
        if not match:
            self.diagnostics.error(location, "malformed ~SEQ/~LST: expected "
                                             "~SEQ(var,start,step,end) or ~LST(var,value,...) "
                                             "followed by a line")
            return
        kind, inside, rest = match.groups()
        if "$" in inside:       # only the parameters: the line is substituted once per value
            inside = self._substitute(inside, location)
            if not inside:
                return
        if kind == "LST":
            names, rows = self._list_rows(inside, location)
        else:
            names, rows = self._sequence_rows(kind, inside, location)
        if rows is None:
            return
        if not rest.strip():
            self.diagnostics.error(location, f"~{kind}: nothing to repeat after the parentheses")
            return
        # Counted before they run: a row may give no line at all (an empty $VAR), and a
        # billion of those would otherwise pass the line limit by.
        self._rows += len(rows)
        if self._rows > self.max_lines:
            self._too_many_lines(location)
            return
        if not self._deeper(location):
            return
        saved = {name: self.variables.get(name) for name in names}
        try:
            for row in rows:
                if self.diagnostics.stopped:
                    return
                self.variables.update(zip(names, row, strict=True))
                self._expand(rest.strip(), location, indent)
        finally:
            self._depth -= 1
            for name, value in saved.items():
                if value is None:
                    self.variables.pop(name, None)
                else:
                    self.variables[name] = value

    def _check_name(self, kind: str, name: str, location: Location) -> bool:
        if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            return True
        self.diagnostics.error(location, f"~{kind}: '{name}' is not a variable name")
        return False

    def _sequence_rows(self, kind: str, inside: str, location: Location):
        """(var,end), (var,start,end), (var,start,step,end); end inclusive, numbers in C
        notation (0x10); the step defaults to 1 or -1 toward the end."""
        params = [p.strip() for p in inside.split(",")]
        if not self._check_name(kind, params[0], location):
            return [], None
        try:
            numbers = [int(p, 0) for p in params[1:]]
        except ValueError:
            self.diagnostics.error(location, f"~{kind}: parameters must be integers, got "
                                             f"'{','.join(params[1:])}'")
            return [], None
        if len(numbers) == 1:
            end = numbers[0]
            start = 1 if end > 0 else -1
            step = 1 if end >= start else -1
        elif len(numbers) == 2:
            start, end = numbers
            step = 1 if end >= start else -1
        elif len(numbers) == 3:
            start, step, end = numbers
        else:
            self.diagnostics.error(location, f"~{kind} takes (var,end), (var,start,end) or "
                                             "(var,start,step,end)")
            return [], None
        if step == 0 or (end - start) * step < 0:
            self.diagnostics.error(location, f"~{kind}: step {step} never goes from {start} "
                                             f"to {end}")
            return [], None
        if kind == "SEQx" and min(start, end) < 0:
            self.diagnostics.error(location, "~SEQx: hex sequences take positive values only")
            return [], None
        values = range(start, end + (1 if step > 0 else -1), step)
        return [params[0]], _Sequence(values, hexadecimal=kind == "SEQx")

    def _list_rows(self, inside: str, location: Location):
        if inside.lstrip().startswith("{"):
            sets = re.findall(r"\{([^}]*)\}", inside)
            names = [n.strip() for n in sets[0].split(",")] if sets else []
            rows = []
            for values in sets[1:]:
                row = [v.strip() for v in values.split(",")]
                if len(row) > len(names):
                    self.diagnostics.error(location, f"~LST: {{{values}}} has more values than "
                                                     "variables")
                    return names, None
                rows.append(row + [""] * (len(names) - len(row)))
        else:
            params = [p.strip() for p in inside.split(",")]
            names, rows = params[:1], [[value] for value in params[1:]]
        if not names or not all(self._check_name("LST", n, location) for n in names):
            return names, None
        return names, rows

    def _reading_setting(self, words: list[str]) -> None:
        """random_seed and include_check act on the reading itself (keepalived applies them
        as it reads, from the next line on); their Kw (config/blocks/process.py) checks and
        keeps the value, this only follows it."""
        from .blocks.process import include_check
        from .schema import Invalid
        if words[0] == "random_seed":
            if len(words) == 2 and words[1].isdecimal():
                self.rng().seed(int(words[1]))
            return
        try:
            self.include_checks = include_check(words[1:], None)
        except Invalid:
            pass                          # the keyword's own parse says what is wrong

    def _include(self, pattern: str, location: Location) -> None:
        """``include PATTERN``: the rest of the line, relative to the including file, with
        glob(3)'s * ? [..] and {a,b}. A pattern that matches nothing is only a warning, as in
        keepalived; a named file that cannot be read is an error."""
        if len(pattern) >= 2 and pattern[0] == pattern[-1] == '"':
            pattern = pattern[1:-1]
        if not pattern:
            self.diagnostics.error(location, "include needs a file name or pattern")
            return
        base = os.path.dirname(location.file)
        full = os.path.join(base, os.path.expanduser(pattern))
        if not _GLOB_CHARS.search(pattern):
            self._read_file(full, location)
            return
        self.globbed = True
        import glob             # here: a pattern is rare, and -t of most files never has one
        found = {alternative: glob.glob(alternative) for alternative in expand_braces(full)}
        matches = sorted({path for paths in found.values() for path in paths})
        checks = self.include_checks
        if "brace_match" in checks and len(found) > 1:
            for alternative, paths in found.items():
                if not paths:
                    self.diagnostics.error(location, f"include '{pattern}': "
                                                     f"'{os.path.basename(alternative)}' "
                                                     "matches no file (include_check "
                                                     "brace_match)")
        if not matches:
            wildcard = any(c in pattern for c in "*?[")
            if "wildcard_match" in checks or ("match" in checks and not wildcard):
                self.diagnostics.error(location, f"include pattern '{pattern}' matches no "
                                                 "file (include_check)")
            else:
                self.diagnostics.warning(location, f"include pattern '{pattern}' matches no "
                                                   "file")
        for path in matches:
            if os.path.isfile(path):
                self._read_file(path, location)


def _braces_apart(words: list[str], raw: str) -> bool:
    """No brace glued to a word: each ``{`` or ``}`` of the line (which has no quote) is a
    word of its own. Counted in C: every braced line of a file asks."""
    return raw.count("{") == words.count("{") and raw.count("}") == words.count("}")


class _Sequence:
    """The rows of a ~SEQ, made as they are used: its length is known without building them."""

    def __init__(self, values: range, hexadecimal: bool) -> None:
        self.values = values
        self.format = (lambda v: format(v, "x")) if hexadecimal else str

    def __len__(self) -> int:
        # len(range) raises OverflowError past a C ssize_t; any length over the line limit
        # is as good as another.
        values = self.values
        return max(0, min(sys.maxsize, (values.stop - values.start + values.step -
                                        (1 if values.step > 0 else -1)) // values.step))

    def __iter__(self):
        return ([self.format(v)] for v in self.values)


class _TooLong(Exception):
    """A substitution outgrew MAX_SUBSTITUTED_CHARS: stops re.sub before the string is built."""


def _size(limit: int) -> str:
    return f"{limit >> 20} MiB" if limit >= 1 << 20 and not limit % (1 << 20) else \
        f"{limit} bytes"


def _is_repetition(body: str) -> bool:
    return body.startswith("~SEQ") or body.startswith("~LST(")


def expand_braces(pattern: str) -> list[str]:
    """``a{b,c}d`` -> [abd, acd] (GLOB_BRACE), innermost-first, nested braces included."""
    match = re.search(r"\{([^{}]*)\}", pattern)
    if not match or "," not in match.group(1):
        return [pattern]
    head, tail = pattern[:match.start()], pattern[match.end():]
    return [result for choice in match.group(1).split(",")
            for result in expand_braces(head + choice + tail)]


def strip_comment(line: str) -> str:
    """Cut a line at the first ``!`` or ``#`` outside double quotes, as keepalived 2.2 does,
    even inside a word (``auth_pass ab#c`` is ``ab``: a keepalived peer reads it so too).
    ``\\#`` and ``\\!`` stand for the characters themselves."""
    if '"' not in line and "\\" not in line:
        cut = min((i for i in (line.find("#"), line.find("!")) if i >= 0), default=-1)
        return line if cut < 0 else line[:cut]
    out: list[str] = []
    quoted = False
    index = 0
    while index < len(line):
        char = line[index]
        if char == '"':
            quoted = not quoted
        elif char == "\\" and not quoted and line[index + 1:index + 2] in ("#", "!"):
            out.append(line[index + 1])
            index += 2
            continue
        elif char in "#!" and not quoted:
            break
        out.append(char)
        index += 1
    return "".join(out)


def split_words(body: str, location: Location, diagnostics: Diagnostics) -> list[str]:
    if '"' not in body:
        words = body.split()
    else:
        words = []
        for match in _QUOTED_OR_WORD.finditer(body):
            if match.group(3) is not None:
                words.append(match.group(3))
                continue
            if not match.group(2):
                diagnostics.error(location, "unterminated quoted string")
            words.append(Quoted(match.group(1).replace('\\"', '"')))
    if "{" in body or "}" in body:
        split: list[str] = []
        for word in words:
            if isinstance(word, Quoted) or len(word) == 1 or "${" in word \
                    or ("{" not in word and "}" not in word):
                split.append(word)
            else:
                split.extend(_BRACE_PARTS.findall(word))
        words = split
    return words
