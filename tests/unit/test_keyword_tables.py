"""The keyword tables are the single source: models, docs and parsing follow from them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from director.config.blocks import ROOT
from director.config.docs import render
from director.config.loader import _all_blocks
from director.config.schema import model_for

DOCS = Path(__file__).resolve().parents[2] / "docs" / "KEYWORDS.md"


def test_every_keyword_lands_in_a_field_of_its_model():
    for block in _all_blocks(ROOT).values():
        fields = {f.name for f in dataclasses.fields(model_for(block))}
        for kw in block.keywords:
            if not kw.ignored:
                assert kw.field_name in fields, (block.name, kw.name)


def test_models_are_frozen_and_compare_by_value_not_by_place():
    model = model_for(ROOT)
    a, b = model(location="a.conf:1"), model(location="b.conf:9")
    assert a == b and hash(a) == hash(b)
    try:
        a.vrrp_instances = ()
    except dataclasses.FrozenInstanceError:
        pass
    else:
        raise AssertionError("models must be frozen")


def test_keyword_reference_is_up_to_date():
    assert DOCS.read_text() == render(), \
        "docs/KEYWORDS.md is stale: python -m director.config.docs > docs/KEYWORDS.md"
