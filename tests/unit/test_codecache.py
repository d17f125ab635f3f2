"""director/codecache.py: the dataclasses' generated methods, compiled ahead."""

from __future__ import annotations

import dataclasses
import marshal
import subprocess
import sys
from pathlib import Path

import pytest

from director import codecache

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def fresh(monkeypatch):
    """An empty table and the dataclasses module as it was, after the test."""
    monkeypatch.setattr(codecache, "_table", {})
    monkeypatch.setattr(codecache, "_compiled", {})
    monkeypatch.setattr(codecache, "_recording", True)
    monkeypatch.setattr(dataclasses, "exec", codecache._exec, raising=False)
    monkeypatch.delattr(dataclasses, "exec")          # restored to absent afterwards
    return monkeypatch


def make(name: str = "Point"):
    return dataclasses.make_dataclass(name, [("x", int), ("y", int)], frozen=True)


def test_the_table_s_code_is_what_runs(fresh, tmp_path):
    codecache.install(str(tmp_path / "none"))
    make()
    repr_source = next(source for source in codecache._compiled if "__repr__" in source)
    # the same source, another code: if the table is read, the class's repr says so
    other = compile(repr_source.replace("return ", "return 'from the table' or ", 1),
                    "<string>", "exec")
    path = tmp_path / "table"
    path.write_bytes(marshal.dumps((codecache.MAGIC_NUMBER, {repr_source: marshal.dumps(other)})))
    fresh.setattr(codecache, "_table", {})
    assert codecache.install(str(path)) == 1
    assert repr(make()(1, 2)) == "from the table"


def test_without_a_table_every_method_is_compiled_as_before(fresh, tmp_path):
    assert codecache.install(str(tmp_path / "missing")) == 0
    point_class = make()
    point = point_class(1, 2)
    assert repr(point) == "Point(x=1, y=2)"
    assert point == point_class(1, 2) and hash(point) == hash(point_class(1, 2))
    with pytest.raises(dataclasses.FrozenInstanceError):
        point.x = 3
    assert len(codecache._compiled) >= 5


@pytest.mark.parametrize("content", [
    b"", b"garbage", marshal.dumps((b"\0\0\0\0", {"def f(): pass": None})),
    marshal.dumps(["not", "a", "pair"])])
def test_a_bad_or_foreign_table_is_ignored(fresh, tmp_path, content):
    path = tmp_path / "table"
    path.write_bytes(content)
    assert codecache.install(str(path)) == 0
    assert repr(make()(1, 2)) == "Point(x=1, y=2)"


def test_build_holds_the_daemon_s_classes(tmp_path):
    path = tmp_path / "built"
    subprocess.run([sys.executable, "-m", "director.codecache", str(path)], check=True,
                   cwd=ROOT, capture_output=True, timeout=120)
    magic, table = marshal.loads(path.read_bytes())
    count = len(table)
    assert magic == codecache.MAGIC_NUMBER
    assert all(isinstance(code, bytes) for code in table.values())
    # the VRRP state machine's state and the configuration's models are among them
    from director.vrrp.fsm import State
    fields = [field.name for field in dataclasses.fields(State)]
    assert any("def __init__" in source and all(name in source for name in fields)
               for source in table), "fsm.State's __init__ is not in the table"
    # and the configuration's models, made only when a file has their block
    assert any("def __init__" in source and "initial_state:" in source and "use_vmac:" in source
               for source in table), "the vrrp_instance model's __init__ is not in the table"
    assert count > 400
