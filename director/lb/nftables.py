"""The nftables backend's runner: applies with ``nft -f`` the scripts nftables_script.py
renders (its docstring says how a State becomes rules), lists the table back, and
fingerprints its objects so that NftablesSync (backends.py) notices a table someone else
edited.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable

from .model import State
from .nftables_script import Changes, changes, check_name, render

NFT_TIMEOUT = 30.0         # seconds an nft command may take


class NftablesBackend:
    """Programs ``table inet <table>`` with nft; nothing else in the ruleset is touched."""

    def __init__(self, table: str = "director", nft: str = "nft"):
        check_name(table)
        self.table = table
        self.nft = nft

    def apply(self, state: State) -> None:
        """Replace the table with one implementing state, atomically; OSError on failure."""
        self._run(["-f", "-"], render(state, self.table))

    def apply_changes(self, before: State, after: State) -> Changes:
        """Turn the table apply(before) made into apply(after)'s, changing only what differs,
        in one transaction (changes()); OSError on failure (the table is unchanged)."""
        done = changes(before, after, self.table)
        self._run(["-f", "-"], done.script)
        return done

    def read(self, *options: str) -> str:
        """``nft list table inet <table>``: the kernel's view; "" if there is no table."""
        try:
            return self._run([*options, "list", "table", "inet", self.table])
        except OSError as exc:
            if "No such file or directory" in str(exc):
                return ""
            raise

    def fingerprint(self, names: Iterable[str] | None = None) -> dict[str, str]:
        """The table's objects (objects_of()) as listed without counters (-s) and set
        elements (-t), which change with the traffic: equal fingerprints mean nobody edited
        the table. ``names`` ("chain NAME", "set NAME") lists only those objects, one nft run
        each (nft 1.0.6 refuses two list commands in one script)."""
        if names is None:
            return objects_of(self.read("-s", "-t"))
        found: dict[str, str] = {}
        for name in sorted(names):
            kind, _, object_name = name.partition(" ")
            found |= objects_of(self._run(["-s", "-t", "list", kind, "inet", self.table,
                                           object_name]))
        return found

    def flush(self) -> None:
        """Delete the table (idempotent)."""
        self._run(["-f", "-"], f"add table inet {self.table}\ndelete table inet {self.table}\n")

    def _run(self, args: list[str], script: str | None = None) -> str:
        argv = [self.nft, *args]
        try:
            result = subprocess.run(argv, input=script, capture_output=True, text=True,
                                    timeout=NFT_TIMEOUT, check=False)
        except subprocess.TimeoutExpired as exc:
            raise OSError(f"{' '.join(argv)}: no answer after {NFT_TIMEOUT} s") from exc
        if result.returncode != 0:
            raise OSError(f"{' '.join(argv)} exited {result.returncode}: "
                          f"{result.stderr.strip()}")
        return result.stdout


def objects_of(listing: str) -> dict[str, str]:
    """An ``nft list`` output of our table split into its objects: "chain NAME" or
    "set NAME" -> the object's lines."""
    found: dict[str, str] = {}
    name, lines = None, []
    for line in listing.splitlines():
        if name is None:
            if line.startswith("\t") and not line.startswith("\t\t") and line.endswith("{"):
                name, lines = line.strip()[:-1].strip(), []
        elif line == "\t}":
            found[name] = "\n".join(lines)
            name = None
        else:
            lines.append(line)
    return found
