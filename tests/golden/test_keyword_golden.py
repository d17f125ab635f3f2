"""keepalived keywords that director acts on, one golden file per family
(tests/golden/keywords/NAME.conf -> NAME.json): each file passes ``-t`` without an error and
without a "not acted on" warning, and ``--dump-json`` shows every keyword it uses.

Regenerate a golden file after a deliberate change: ``UPDATE_GOLDEN=1 pytest`` this file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from director.config import load_config
from director.config.render import config_json

HERE = Path(__file__).parent / "keywords"
CONFIGS = sorted(HERE.glob("*.conf"))


def dump(path: Path) -> tuple[dict, list[str]]:
    result = load_config(str(path), config_id="director-test", interface_exists=None)
    assert result.ok, [str(d) for d in result.errors]
    warnings = [str(d) for d in result.warnings]
    return json.loads(json.dumps(config_json(result.config, "director-test"))), warnings


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_keywords_are_acted_on_and_shown(path):
    data, warnings = dump(path)
    assert not [w for w in warnings if "not acted on" in w], warnings
    golden = path.with_suffix(".json")
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    assert golden.exists(), f"{golden.name} is missing: UPDATE_GOLDEN=1 writes it"
    assert data == json.loads(golden.read_text())
