"""The /api/v1/state shape as CONTRACT.md writes it, read from that file (not copied here, so
that a test cannot pass against a shape of its own), and a checker of a state against it.

The contract's example is the shape: every key it has must be present, with the example
value's JSON type (an integer where it has an integer; a number where it has a float; a
list whose every element has the first example element's shape). ``null`` in the example
means the key may hold anything (``fwmark``, ``error``). A string listing choices with ``|``
(``"MASTER|BACKUP|FAULT|INIT|STOP"``) means one of them. Keys beyond the example are allowed:
the contract says "at least".
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

CONTRACT = Path(__file__).resolve().parents[1].parent / "shared" / "CONTRACT.md"


def state_example() -> dict:
    """The JSON block after "/api/v1/state holds at least" in CONTRACT.md (CI lays ../shared
    beside the clone; skipped where it is not)."""
    if not CONTRACT.exists():
        pytest.skip(f"{CONTRACT} is not here (CI lays ../shared beside the clone)")
    text = CONTRACT.read_text()
    found = re.search(r"`/api/v1/state` holds at least:\s*```json\n(.*?)```", text, re.S)
    assert found, f"no /api/v1/state example in {CONTRACT}"
    return json.loads(found.group(1))


def _type_error(example: Any, actual: Any, where: str) -> str | None:
    if example is None:
        return None
    if isinstance(example, bool):
        ok = isinstance(actual, bool)
    elif isinstance(example, int):
        ok = isinstance(actual, int) and not isinstance(actual, bool)
    elif isinstance(example, float):
        ok = isinstance(actual, (int, float)) and not isinstance(actual, bool)
    elif isinstance(example, str):
        ok = isinstance(actual, str)
        if ok and "|" in example and actual not in example.split("|"):
            return f"{where}: {actual!r} is not one of {example}"
    else:
        ok = isinstance(actual, type(example))
    return None if ok else \
        f"{where}: {type(actual).__name__} {actual!r:.60}, the contract has " \
        f"{type(example).__name__} {example!r:.60}"


def shape_errors(example: Any, actual: Any, where: str = "state") -> list[str]:
    """What in ``actual`` does not have the example's shape (empty: it has)."""
    problem = _type_error(example, actual, where)
    if problem is not None:
        return [problem]
    errors: list[str] = []
    if isinstance(example, dict):
        for key, value in example.items():
            if key not in actual:
                errors.append(f"{where}: no {key!r}")
            else:
                errors += shape_errors(value, actual[key], f"{where}.{key}")
    elif isinstance(example, list) and example:
        if not actual:
            errors.append(f"{where}: empty, so its elements' shape cannot be checked")
        for index, element in enumerate(actual):
            errors += shape_errors(example[0], element, f"{where}[{index}]")
    return errors
