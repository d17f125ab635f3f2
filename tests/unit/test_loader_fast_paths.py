"""The loader's short cuts (issue 17) say what the long way says: the per-block keyword plans,
the reuse of pure values, the one pass from the text to the tree."""

from __future__ import annotations

from director.config import load_config
from director.config.blocks import ROOT
from director.config.loader import _all_blocks
from director.config.schema import Invalid


def load(tmp_path, text: str):
    path = tmp_path / "keepalived.conf"
    path.write_text(text)
    return load_config(str(path), config_id="t", interface_exists=None)


class Untouchable:
    """A context a pure value's parser must never touch: no warning, no location."""

    def __getattr__(self, name):
        raise AssertionError(f"a pure value's parser used ctx.{name}")


def test_pure_value_types_never_use_the_context():
    checked = 0
    for block in _all_blocks(ROOT).values():
        for word in block.known_words():
            value = block.lookup(word).value
            if not getattr(value, "pure", False):
                continue
            for args in ([], ["1"], ["0"], ["yes"], ["x"], ["1", "2"], ["-5"], ["1.5"], ["TCP"],
                         ["nan"], ["99999999999999999999"], ["x" * 40]):
                try:
                    value.parse(args, Untouchable())
                except Invalid:
                    pass
                checked += 1
    assert checked > 500


def test_a_repeated_bad_value_is_an_error_at_each_line(tmp_path):
    servers = "".join(f"  real_server 10.0.0.{n} 80 {{\n    weight x\n    retry 3\n  }}\n"
                      for n in (1, 2, 3))
    result = load(tmp_path, f"virtual_server 10.0.0.100 80 {{\n  protocol TCP\n{servers}}}\n")
    assert [(d.location.line, d.message) for d in result.errors] == [
        (line, "weight: must be an integer from 0 to 2147483647, got 'x'") for line in (4, 8, 12)]


def test_a_reused_value_is_the_same_as_a_parsed_one(tmp_path):
    servers = "".join(f"  real_server 10.0.0.{n} 80 {{\n    weight {w}\n    virtualhost {h}\n  }}\n"
                      for n, w, h in ((1, "5", "a.example"), (2, "5", '"a.example"'),
                                      (3, "05", "a.example")))
    result = load(tmp_path, f"virtual_server 10.0.0.100 80 {{\n  protocol TCP\n{servers}}}\n")
    assert result.ok, [str(d) for d in result.diagnostics]
    real = result.config.virtual_servers[0].real_servers
    assert [(r.weight, r.virtualhost, type(r.virtualhost)) for r in real] == \
        [(5, "a.example", str)] * 3
    assert [r.location.line for r in real] == [3, 7, 11]


def test_overrides_and_twice_given_keep_their_lines(tmp_path):
    result = load(tmp_path, "vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 1\n"
                            " priority 100\n priority 101\n virtual_ipaddress {\n  10.0.0.1\n"
                            " }\n}\nbgp {\n}\nbgp {\n}\n")
    said = [(d.location.line, d.severity, d.message) for d in result.diagnostics]
    assert (5, "warning", "'priority' overrides the value set at line 4") in said
    assert any(line == 12 and "'bgp' is given twice (first at line 10)" in message
               for line, _, message in said), said


def test_models_made_by_the_loader_are_the_models_own():
    """schema.model_maker builds a plain slotted twin and gives it the frozen model's class:
    for every block of the tables the result is of the model's type, equal to and hashed
    as the model's own __init__ makes it, frozen, and dataclasses.replace works on it."""
    import dataclasses

    import pytest

    from director.config.diagnostics import Location
    from director.config.schema import TWIN_AFTER, _twin_maker, model_for, model_maker
    blocks = list(_all_blocks(ROOT).values())
    assert len(blocks) > 20
    for block in blocks:
        model = model_for(block)
        values = block.defaults()
        for _ in range(TWIN_AFTER + 1):      # the plain way first, then the twin
            model_maker(block)(values, None)
        assert model_maker(block).__code__ is _twin_maker(block, model).__code__
        made = model_maker(block)(values, Location("/x.conf", 7))
        own = model(**values, location=Location("/x.conf", 7))
        assert type(made) is model
        assert made == own and hash(made) == hash(own) and repr(made) == repr(own)
        assert made.location == Location("/x.conf", 7)
        name = dataclasses.fields(model)[0].name
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(made, name, 1)
        assert dataclasses.replace(made, location=None) == made


def test_no_default_of_the_tables_is_a_script():
    """validate's script walk is skipped when the load made no Command: it relies on no
    Command standing in a model that the load did not make, a default above all."""
    from director.config.values import Command

    def scripts_in(value):
        if isinstance(value, Command):
            return True
        if isinstance(value, (tuple, list)):
            return any(scripts_in(item) for item in value)
        return False

    for block in _all_blocks(ROOT).values():
        assert not any(scripts_in(value) for value in block.defaults().values()), block.name


def test_the_script_walk_runs_only_when_the_load_made_a_script(tmp_path, monkeypatch):
    import importlib
    validate = importlib.import_module("director.config.validate")
    walked = []
    real = validate._commands
    monkeypatch.setattr(validate, "_commands", lambda *a: walked.append(1) or real(*a))
    path = tmp_path / "keepalived.conf"
    base = "virtual_server 10.0.0.1 80 {\n  protocol TCP\n  real_server 10.0.0.2 80 {\n%s  }\n}\n"
    path.write_text(base % "")
    assert load_config(str(path), config_id="t", interface_exists=lambda name: True).ok
    assert walked == []
    path.write_text(base % "    notify_up /bin/true\n")
    assert load_config(str(path), config_id="t", interface_exists=lambda name: True).ok
    assert walked == [1]


def test_keep_holds_what_the_load_would_free_and_changes_nothing(tmp_path):
    """load_config(keep=...) (cli's -t, which leaves without freeing): the same model and
    diagnostics; the statement tree and a whole file's lines and words are in ``keep``."""
    servers = "".join(f"  real_server 10.0.0.{n} 80 {{\n    weight 2\n  }}\n" for n in range(1, 4))
    path = tmp_path / "keepalived.conf"
    path.write_text(f"virtual_server 10.0.0.100 80 {{\n{servers}}}\n")    # no protocol: a warning
    kept: list = []
    freed = load_config(str(path), config_id="t", interface_exists=None)
    held = load_config(str(path), config_id="t", interface_exists=None, keep=kept)
    assert [str(d) for d in held.diagnostics] == [str(d) for d in freed.diagnostics]
    assert held.diagnostics and held.config is not None and held.config == freed.config
    lines, words = next(item for item in kept if isinstance(item, tuple))
    assert lines[0] == "virtual_server 10.0.0.100 80 {" and words[0][0] == "virtual_server"
    assert any(getattr(item, "root", None) for item in kept)     # the TreeBuilder
