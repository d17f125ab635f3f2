"""Broken configurations -> the exact diagnostics, one golden file per mistake.

Each ``broken/NAME.conf`` has ``broken/NAME.expected``: every diagnostic the loader must
give, in order, as ``FILE:LINE: error|warning: MESSAGE`` with FILE relative to broken/.
Set UPDATE_GOLDEN=1 to rewrite the .expected files from the loader's output (then read the
diff: a golden file is only worth what its review was).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from director.config import load_config

BROKEN = Path(__file__).parent / "broken"
CASES = sorted(p.stem for p in BROKEN.glob("*.conf"))


def diagnostics_of(path: Path) -> list[str]:
    # Interfaces named eth* "exist", others do not: the same answers on every host.
    result = load_config(str(path), config_id="director-test",
                         interface_exists=lambda name: name.startswith("eth"))
    lines = [str(d).replace(str(BROKEN) + os.sep, "") for d in result.diagnostics]
    return lines, result


def test_corpus_is_large_enough():
    assert len(CASES) >= 30


@pytest.mark.parametrize("name", CASES)
def test_broken_config_gives_exact_diagnostics(name):
    lines, result = diagnostics_of(BROKEN / f"{name}.conf")
    expected_file = BROKEN / f"{name}.expected"
    if os.environ.get("UPDATE_GOLDEN"):
        expected_file.write_text("".join(line + "\n" for line in lines))
    expected = expected_file.read_text().splitlines()
    assert lines == expected
    assert not result.ok, "a broken config must not load"
    assert result.config is None
