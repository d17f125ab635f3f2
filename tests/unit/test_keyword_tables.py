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


def test_only_snmp_dbus_and_the_stated_left_outs_are_not_acted_on():
    """Issue 14's acceptance: what -t warns about as not acted on is SNMP and D-Bus (replaced
    by design) and what was left out, each saying so and why."""
    from director.check.kinds import bfd
    from director.config.blocks import common
    from director.config.docs import not_acted_on
    reasons = {reason for reason, _, _ in not_acted_on()}
    assert {common.SNMP, common.DBUS, common.BFD} <= reasons
    assert all(r in (common.SNMP, common.DBUS) or r.startswith("left out: ") for r in reasons)
    assert len(reasons) <= 5, reasons
    assert bfd.BFD == common.BFD
    names = {name for _, _, name in not_acted_on()}
    assert not {"vrrp_strict", "use_vmac", "track_process", "notify_fifo", "lvs_timeouts",
                "static_routes", "check_unicast_src", "vrrp_gna_interval"} & names
