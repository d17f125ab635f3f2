"""keepalived.conf -> a frozen, validated model, or the diagnostics that say why not.

    result = load_config("/etc/keepalived/keepalived.conf", config_id="lb1")
    if result.ok:
        run(result.config)
    for diagnostic in result.diagnostics:
        print(diagnostic)            # FILE:LINE: error|warning: MESSAGE
"""

from __future__ import annotations

import errno
import gc
import os
import stat
from _socket import gethostname   # socket's own, without socket.py's enums (issue 17)
from dataclasses import dataclass
from typing import Any, Callable

from .diagnostics import Diagnostic, Diagnostics, Location
from .lexer import Preprocessor, read_bytes
from .loader import Loader
from .tree import TreeBuilder
from .validate import validate
from .values import commands_made


def default_config_id() -> str:
    """keepalived's default for ``@ID`` lines: the host name up to its first dot."""
    return gethostname().split(".")[0]


def interface_exists(name: str) -> bool:
    return os.path.exists(os.path.join("/sys/class/net", name))


@dataclass(frozen=True)
class LoadResult:
    config: Any | None          # the model (director.config.model's Config), None on errors
    diagnostics: tuple[Diagnostic, ...]
    # the files read, (path, bytes) in order; None when an include named a pattern (its
    # matches can change while these files do not): director/vrrp/quickstart.py's key
    sources: tuple[tuple[str, bytes], ...] | None = ()

    @property
    def ok(self) -> bool:
        return self.config is not None

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "warning"]


class Unreadable(Exception):
    """The main configuration file itself cannot be read (``-t`` exits 2)."""


def _regular_file(path: str) -> None:
    """Opening a FIFO for reading waits for a writer, and a device has no end: only a
    regular file is read (a reload must never hang the daemon)."""
    mode = os.stat(path).st_mode
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, "is a directory, not a file")
    if not stat.S_ISREG(mode):
        raise OSError(errno.EINVAL, "not a regular file")


def load_config(path: str, config_id: str | None = None,
                interface_exists: Callable[[str], bool] | None = interface_exists,
                read: Callable[[str], bytes] = read_bytes,
                pause: Callable[[], None] | None = None,
                keep: list | None = None) -> LoadResult:
    """Parse and validate. ``interface_exists`` is asked about every interface the file
    names (None: do not check, as for a config written for another host). ``pause`` is
    called between pieces of work (Diagnostics.pause). ``keep``: a list the statement tree
    (and a whole file's lines and words) are put in rather than freed here, for a process
    about to leave without freeing anything (cli's ``-t``: 100,000 statements are 18 ms to
    free, the lines and words 9 ms, issue 17)."""
    try:
        if read is read_bytes:
            _regular_file(path)
        read(path)
    except OSError as exc:
        raise Unreadable(f"{path}: {exc.strerror or exc}") from exc
    # The collector rests during the parse, as a reload has it rest (daemon.py): the lines,
    # tokens, tree and model are a million objects without cycles, and its passes over
    # them, each growing as they pile up, were a quarter of the parse's time (`-t` of
    # 100,000 lines: bench/config_parse.py, docs/BENCHMARKS.md issue 17).
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _load(path, config_id, interface_exists, read, pause, keep)
    finally:
        if collecting:
            gc.enable()


def _load(path: str, config_id: str | None, interface_exists: Callable[[str], bool] | None,
          read: Callable[[str], bytes], pause: Callable[[], None] | None,
          keep: list | None = None) -> LoadResult:
    diagnostics = Diagnostics(pause=pause)
    # One pass from the text to the tree: each line goes into the tree as it is read.
    builder = TreeBuilder()
    made = commands_made()
    preprocessor = Preprocessor(diagnostics, config_id or default_config_id(), read,
                                tree=builder, keep=keep)
    preprocessor.run(path)
    tree = builder.finish(diagnostics)
    config = None
    if tree is not None:
        config = Loader(diagnostics).load(tree, path)
        # No Command made during the load: no script in the model to look for.
        validate(config, diagnostics, interface_exists, scripts=commands_made() != made)
    if keep is not None:
        keep.append(builder)
    elif pause is not None:     # the tree, or the part read before an error stopped it
        _release(builder.root, pause, 10)
    if diagnostics.has_errors():
        config = None
    return LoadResult(config, tuple(diagnostics),
                      None if preprocessor.globbed else tuple(preprocessor.sources))


def _release(parts: list, pause: Callable[[], None], chunk: int) -> None:
    """Free what the passes built a piece at a time, pausing between: the statement tree
    of a large file is a few hundred thousand objects, freed in one C call (tens of
    milliseconds of a daemon's loop) when they simply go out of scope."""
    while parts:
        del parts[-chunk:]
        pause()


__all__ = ["Diagnostic", "Diagnostics", "LoadResult", "Location", "Unreadable",
           "default_config_id", "load_config"]
