"""The keyword table mechanism: one declaration per keyword drives parsing, defaults,
validation, the model's fields and the generated documentation.

A :class:`Block` lists its :class:`Kw` keywords; :func:`model_for` turns a Block into a frozen
dataclass whose fields are exactly the block's keywords (plus its header fields), so a keyword
cannot be parsed without landing in the model, and the model cannot grow a field no keyword
fills.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from .diagnostics import Location


UINT_MAX = 4294967295     # keepalived reads counts into C unsigned ints


class Invalid(Exception):
    """A value that does not parse: the message says what was expected and what was found."""


class Context(Protocol):
    location: Location
    invalid: set[str]

    def warn(self, message: str) -> None: ...

    def error(self, message: str) -> None: ...


class Value(Protocol):
    """Parses the words after a keyword into one value, or raises Invalid."""

    def parse(self, args: list[str], ctx: Context) -> Any: ...

    def describe(self) -> str: ...


ItemParser = Callable[[list[str], Context], Any]


@dataclass(frozen=True)
class Lines:
    """A keyword followed by a block whose every line is one item (virtual_ipaddress { ... })."""

    item: ItemParser
    what: str

    def describe(self) -> str:
        return f"block of {self.what}, one per line"


@dataclass(frozen=True)
class Kw:
    """One keyword of a block: how its value is read, its default and model field, and
    what director does with it (deprecated, ignored, unsupported, a director extension)."""

    name: str
    value: Any                      # a Value, a Lines or a Block
    default: Any = None
    field: str = ""                 # model field; defaults to the keyword's name
    aliases: tuple[str, ...] = ()
    repeat: str = "replace"         # "replace": the last one wins; "append": values collect;
                                    # "once": a second one is an error (the first is kept)
    deprecated: str = ""            # used: a warning with this text; still applied
    ignored: str = ""               # accepted and dropped; the text says why or what replaced it
    unsupported: str = ""           # kept in the model but not acted on: a warning says so
    doc: str = ""
    # director's own keyword, which keepalived does not have (the BGP announcer): a file
    # without any stays a keepalived.conf; the docs list them apart
    extension: bool = False

    @property
    def field_name(self) -> str:
        return self.field or self.name


@dataclass(frozen=True)
class Block:
    """A block keyword: ``name [header words] { keywords and sub-blocks }``."""

    name: str
    model_name: str
    keywords: tuple[Kw, ...]
    header: Callable[[list[str], Context], dict] | None = None
    header_fields: tuple[tuple[str, Any], ...] = ()
    # Lines that are not keywords: (field, item parser, warning or ""), e.g. the members
    # written straight into an old-style vrrp_sync_group, or virtual_server_group entries.
    items: tuple[str, ItemParser, str] | None = None
    finish: Callable[[dict, Context], None] | None = None   # cross-keyword checks in one block
    doc: str = ""
    _index: dict = field(default_factory=dict, compare=False, repr=False)
    _index_cache: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for kw in self.keywords:
            for name in (kw.name, *kw.aliases):
                if name in self._index:
                    raise ValueError(f"{self.name}: keyword {name} declared twice")
                self._index[name] = kw

    def lookup(self, word: str) -> Kw | None:
        return self._index.get(word)

    def known_words(self) -> list[str]:
        return list(self._index)

    def defaults(self) -> dict[str, Any]:
        """Field -> default value, a fresh dict each call (computed once: it is asked for
        every block of the file)."""
        if "defaults" not in self._index_cache:
            values = dict(self.header_fields)
            for kw in self.keywords:
                if kw.ignored:
                    continue
                name = kw.field_name
                if kw.repeat == "append" or (isinstance(kw.value, Lines) and kw.default is None):
                    values.setdefault(name, ())
                elif isinstance(kw.value, Flag) and kw.default is None:
                    values.setdefault(name, False)
                else:
                    values.setdefault(name, kw.default)
            if self.items:
                values.setdefault(self.items[0], ())
            self._index_cache["defaults"] = values
        return dict(self._index_cache["defaults"])

    def describe(self) -> str:
        return f"block {self.name}"


_MODELS: dict[int, type] = {}


def model_for(block: Block) -> type:
    """The frozen dataclass for a block: its fields are the keywords' fields, and equality
    ignores where in the file the block was (a moved block is not a changed block)."""
    key = id(block)
    if key not in _MODELS:
        fields = [(name, Any, dataclasses.field(default=default))
                  for name, default in block.defaults().items()]
        fields.append(("location", Any, dataclasses.field(default=None, compare=False,
                                                             repr=False)))
        # a docstring of its own: dataclasses would make one from inspect.signature, 10 ms
        # for the 120 fields of global_defs, on every start (issue 17)
        model = dataclasses.make_dataclass(block.model_name, fields, frozen=True, slots=True,
                                           namespace={"__doc__": f"The {block.name} block."})
        model.__module__ = "director.config.model"
        _MODELS[key] = model
    return _MODELS[key]


_MAKERS: dict[int, Callable[[dict, Any], Any]] = {}
TWIN_AFTER = 256    # models of one block made the plain way before its twin is built: the
                    # twin costs about 1.5 ms, what 250 models made through it save


def model_maker(block: Block) -> Callable[[dict, Any], Any]:
    """``make(values, location)``: the block's model (model_for), made as the loader makes
    26,000 of them for 10,000 real servers. A frozen dataclass's __init__ stores each field
    through object.__setattr__ (9 us for a real_server's 22 fields); past TWIN_AFTER models
    of a block, they are made as a plain slotted twin with the same fields in the same order
    (3 us) given the frozen class, which CPython allows between classes of one layout. What
    is made is an instance of the model like any other: equal, hashed, frozen, replaced
    alike. The twin costs a millisecond to build: a small file (a daemon's start-up) never
    pays it."""
    key = id(block)
    if key not in _MAKERS:
        model = model_for(block)
        made = 0

        def make(values: dict, location: Any) -> Any:
            nonlocal made
            made += 1
            if made >= TWIN_AFTER:
                _MAKERS[key] = _twin_maker(block, model)
            return model(**values, location=location)

        _MAKERS[key] = make
    return _MAKERS[key]


def _twin_maker(block: Block, model: type) -> Callable[[dict, Any], Any]:
    twin = dataclasses.make_dataclass(
        model.__name__, [(f.name, Any, dataclasses.field(default=f.default))
                         for f in dataclasses.fields(model)],
        slots=True, eq=False, repr=False, match_args=False)

    def make(values: dict, location: Any) -> Any:
        made = twin(**values, location=location)
        made.__class__ = model
        return made

    try:
        make(block.defaults(), None)
    except TypeError:               # not one layout after all: the model's own __init__
        def make(values: dict, location: Any) -> Any:
            return model(**values, location=location)
    return make


# -- scalar value types --------------------------------------------------------------------

def one_value(args: list[str], what: str) -> str:
    if len(args) != 1:
        if not args:
            raise Invalid(f"expects {what}, got nothing")
        raise Invalid(f"expects one value ({what}), got {len(args)}: '{' '.join(args)}'")
    return args[0]


@dataclass(frozen=True)
class Flag:
    """A keyword that is on when written (alpha). keepalived 2.x also takes an explicit
    boolean after some flags, so ``on``/``off``-style words are accepted too. ``sets`` is what
    writing it stores: ``nopreempt`` is Flag(sets=False) on the field ``preempt``."""

    sets: bool = True
    pure = True     # no warning, no location: the loader may reuse a value (_parsed)

    def parse(self, args, ctx):
        if not args:
            return self.sets
        word = one_value(args, "nothing, or true/false").lower()
        if word in ("true", "on", "yes", "1"):
            return self.sets
        if word in ("false", "off", "no", "0"):
            return not self.sets
        raise Invalid(f"takes no value (or true/false), got '{args[0]}'")

    def describe(self):
        return "flag"


@dataclass(frozen=True)
class Int:
    low: int
    high: int
    pure = True     # no warning, no location: the loader may reuse a value (_parsed)

    def parse(self, args, ctx):
        word = one_value(args, f"an integer from {self.low} to {self.high}")
        try:
            number = int(word, 10)
        except ValueError:
            raise Invalid(f"must be an integer from {self.low} to {self.high}, "
                          f"got '{word}'") from None
        if not self.low <= number <= self.high:
            raise Invalid(f"must be an integer from {self.low} to {self.high}, got {number}")
        return number

    def describe(self):
        return f"integer {self.low}..{self.high}"


@dataclass(frozen=True)
class Seconds:
    """A time in seconds; keepalived takes fractions (advert_int 0.5, connect_timeout 1.5)."""

    low: float
    high: float
    pure = True     # no warning, no location: the loader may reuse a value (_parsed)

    def parse(self, args, ctx):
        word = one_value(args, "a number of seconds")
        try:
            number = float(word)
        except ValueError:
            raise Invalid(f"must be a number of seconds from {self.low:g} to {self.high:g}, "
                          f"got '{word}'") from None
        if number != number or not self.low <= number <= self.high:   # NaN fails too
            raise Invalid(f"must be a number of seconds from {self.low:g} to {self.high:g}, "
                          f"got {word}")
        return number

    def describe(self):
        return f"seconds {self.low:g}..{self.high:g}"


@dataclass(frozen=True)
class Word:
    """One word (an interface name, a router id, an instance name)."""

    what: str = "a name"
    pure = True     # no warning, no location: the loader may reuse a value (_parsed)

    def parse(self, args, ctx):
        return str(one_value(args, self.what))

    def describe(self):
        return self.what


@dataclass(frozen=True)
class Text:
    """The rest of the line as one string (helo names, notify commands): keepalived joins
    unquoted words with single spaces and keeps a quoted string as written."""

    what: str = "text"
    pure = True     # no warning, no location: the loader may reuse a value (_parsed)

    def parse(self, args, ctx):
        if not args:
            raise Invalid(f"expects {self.what}, got nothing")
        return " ".join(str(a) for a in args)

    def describe(self):
        return self.what


@dataclass(frozen=True)
class Choice:
    options: tuple[str, ...]
    case: str = "upper"      # how the value is stored: "upper", "lower" or "keep"
    pure = True     # no warning, no location: the loader may reuse a value (_parsed)

    def parse(self, args, ctx):
        word = one_value(args, "one of " + ", ".join(self.options))
        for option in self.options:
            if option.lower() == word.lower():
                return option if self.case == "keep" else (
                    option.upper() if self.case == "upper" else option.lower())
        raise Invalid(f"must be one of {', '.join(self.options)}, got '{word}'")

    def describe(self):
        return "one of " + "|".join(self.options)


@dataclass(frozen=True)
class Secret:
    """A password: compared and sent by the engines, never shown. ``str()`` is masked so a log
    line or a dump cannot leak it by accident; ``reveal()`` is the one way to read it."""

    _value: str = field(repr=False)

    def reveal(self) -> str:
        return self._value

    def __str__(self) -> str:
        return "********"

    __repr__ = __str__


@dataclass(frozen=True)
class SecretText:
    max_chars: int = 0      # keepalived only uses the first 8 characters of a PASS password

    def parse(self, args, ctx):
        word = one_value(args, "a password")
        if self.max_chars and len(word) > self.max_chars:
            ctx.warn(f"only the first {self.max_chars} characters of the password are used "
                     f"(it has {len(word)})")
        return Secret(str(word))

    def describe(self):
        return "secret"


@dataclass(frozen=True)
class Raw:
    """Any words, kept as written: for keepalived keywords director accepts but does not act
    on (their Kw carries ``unsupported``, so -t says so). With ``name`` the value is the pair
    (name, text), so that many such keywords can share one list field."""

    name: str = ""
    pure = True     # no warning, no location: the loader may reuse a value (_parsed)

    def parse(self, args, ctx):
        text = " ".join(str(a) for a in args) if args else True
        return (self.name, text) if self.name else text

    def describe(self):
        return "any value"


@dataclass(frozen=True)
class Opaque:
    """A whole block director does not act on (bfd_instance): kept as nested word tuples."""

    def describe(self):
        return "block (not interpreted)"


@dataclass(frozen=True)
class Custom:
    """A value parsed by a function of its own (addresses, status codes, digests). ``pure``:
    the function never warns and keeps no location, so the loader may reuse its value for
    the same words (a connect_port or digest said by 5,000 checks alike, issue 17)."""

    function: Callable[[list[str], Context], Any]
    what: str
    pure: bool = False

    def parse(self, args, ctx):
        return self.function(args, ctx)

    def describe(self):
        return self.what
