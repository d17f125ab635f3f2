"""Compiled code for the methods the dataclasses module writes, kept from one run to the next.

Every ``@dataclass`` compiles its ``__init__``, ``__repr__``, ``__eq__`` (a frozen one also
``__hash__``, ``__setattr__``, ``__delattr__``) from source it generates, one ``compile()``
each. A daemon's start-up makes 82 such classes (the configuration's models, the VRRP state
machine's events, the views), about 470 compiles, on the way to its first advert (issue 17).
The generated source is the same every run, so is its code: ``install()`` gives the
dataclasses module an ``exec`` that finds the source's code in a table before compiling it.
The table is built by ``python -m director.codecache`` (scripts/setup runs it beside
compileall) into ``director/__pycache__``, as .pyc files are, and is tied to the
interpreter's bytecode (its magic number). A source not in the table (a class edited since)
is compiled as before: the table can only make things faster, never different, since what
it holds is exactly ``compile(source, "<string>", "exec")``."""

from __future__ import annotations

import builtins
import marshal
import os
import sys

from importlib._bootstrap_external import MAGIC_NUMBER   # frozen, loaded: costs nothing

PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "__pycache__",
                    f"dataclass-code.{sys.implementation.cache_tag}.marshal")
MAX_BYTES = 16 << 20

_table: dict[str, bytes] = {}            # source -> its code, marshalled
_compiled: dict[str, object] = {}        # build(): what this run compiled (a daemon keeps none)
_recording = False


def _exec(source, globals=None, locals=None):
    """The builtin's behaviour; a str whose code is in the table is not compiled again."""
    if isinstance(source, str):
        code = _table.get(source)
        if code is None:
            code = compile(source, "<string>", "exec")
            if _recording:
                _compiled[source] = code
        else:
            code = marshal.loads(code)      # kept as bytes: a run needs half of them
        source = code
    builtins.exec(source, globals, locals)


def install(path: str = PATH) -> int:
    """Hook the dataclasses module; returns how many sources the table held."""
    import dataclasses
    try:
        with open(path, "rb") as handle:
            magic, table = marshal.loads(handle.read(MAX_BYTES))
        if magic == MAGIC_NUMBER and isinstance(table, dict):
            _table.update((source, code) for source, code in table.items()
                          if isinstance(code, bytes))
    except (OSError, ValueError, EOFError, TypeError):
        pass                                # no table (yet): compiled as before
    dataclasses.exec = _exec
    return len(_table)


def build(path: str = PATH) -> int:
    """Import every module of director and write what their dataclasses compiled. In a
    process of its own: a class made before the call is not seen."""
    import importlib
    import pkgutil

    import director
    global _recording
    _recording = True
    install(os.devnull)
    for module in pkgutil.walk_packages(director.__path__, "director."):
        if module.name.endswith("__main__"):
            continue                        # runs a daemon's start when imported
        try:
            importlib.import_module(module.name)
        except Exception:                   # noqa: BLE001 (an optional dependency missing)
            continue
    _every_model()
    table = dict(_table, **{source: marshal.dumps(code) for source, code in _compiled.items()})
    os.makedirs(os.path.dirname(path), exist_ok=True)
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "wb") as handle:
        handle.write(marshal.dumps((MAGIC_NUMBER, table)))
    os.replace(temporary, path)
    return len(table)


def _every_model() -> None:
    """The configuration's models are made when a file first has their block (schema.py
    model_for): every block's, as any file may have it; and their plain twins, made past
    schema.TWIN_AFTER models of a block (a large file: five of them, 1.5 ms each, in
    -t of 10,000 real servers, issue 17)."""
    from .config.blocks import ROOT
    from .config.schema import Block, _twin_maker, model_for
    seen: set[int] = set()
    pending = [ROOT]
    while pending:
        block = pending.pop()
        if id(block) in seen:
            continue
        seen.add(id(block))
        _twin_maker(block, model_for(block))
        pending += [kw.value for kw in block.keywords if isinstance(kw.value, Block)]


if __name__ == "__main__":             # python -m director.codecache [PATH]
    target = sys.argv[1] if len(sys.argv) > 1 else PATH
    print(f"{target}: {build(target)} dataclass methods")
