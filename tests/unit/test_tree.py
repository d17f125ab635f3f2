"""Braces -> statement tree, and the hostile inputs the issue names: deep nesting, binary
garbage, a megabyte line. None may raise; each gives its diagnostic."""

from __future__ import annotations

import os

from director import cli
from director.config import load_config
from director.config.diagnostics import Diagnostics
from director.config.lexer import Preprocessor
from director.config.tree import MAX_DEPTH, build_tree


def tree_of(text: str):
    diagnostics = Diagnostics()
    lines = Preprocessor(diagnostics, "x", lambda p: text.encode()).run("/m.conf")
    return build_tree(lines, diagnostics), diagnostics


def messages(diagnostics):
    return [(d.location.line, d.severity, d.message) for d in diagnostics]


def test_nested_blocks_and_arguments():
    tree, diagnostics = tree_of("a 1 {\n  b 2 {\n    c 3\n  }\n  d\n}\ne 5\n")
    assert not diagnostics.items
    assert [(s.keyword, s.args) for s in tree] == [("a", ["1"]), ("e", ["5"])]
    assert [s.words for s in tree[0].children] == [["b", "2"], ["d"]]
    assert tree[0].children[0].children[0].location.line == 3


def test_missing_close_names_the_opening_line():
    tree, diagnostics = tree_of("global_defs {\n  router_id x\n")
    assert tree is None
    assert messages(diagnostics) == [
        (1, "error", "unbalanced '{': block 'global_defs' opened here is never closed")]


def test_extra_close_and_brace_without_keyword():
    _, diagnostics = tree_of("a {\n}\n}\n")
    assert messages(diagnostics) == [(3, "error", "unexpected '}': no block is open here")]
    _, diagnostics = tree_of("a {\n}\n{\n}\n")
    assert messages(diagnostics) == [(3, "error", "'{' with no keyword before it")]


def test_deep_nesting_is_one_diagnostic_not_a_recursion_error():
    depth = 100_000
    text = "a {\n" * depth + "}\n" * depth
    tree, diagnostics = tree_of(text)
    assert tree is None
    assert messages(diagnostics) == [(MAX_DEPTH + 1, "error",
                                      f"blocks nested deeper than {MAX_DEPTH} levels")]


def test_deep_but_legal_nesting_in_an_uninterpreted_block(tmp_path):
    text = "bfd_instance b {\n" + "x {\n" * 60 + "}\n" * 60 + "}\n"
    path = tmp_path / "deep.conf"
    path.write_text(text)
    result = load_config(str(path), config_id="x", interface_exists=None)
    assert result.ok
    # bfd is not acted on, and the file defines no instance and no virtual server
    assert [d.severity for d in result.diagnostics] == ["warning", "warning"]


def test_binary_garbage_through_the_command_line(tmp_path, capsys):
    path = tmp_path / "garbage.conf"
    path.write_bytes(os.urandom(4096).replace(b"\0", b"") + b"\0")
    assert cli.main(["-t", "-f", str(path)]) == 1
    err = capsys.readouterr().err
    assert "binary data (NUL byte): not a text configuration file" in err
    assert "Traceback" not in err


def test_random_bytes_without_nul_give_diagnostics(tmp_path, capsys):
    path = tmp_path / "noise.conf"
    path.write_bytes(bytes(range(1, 256)) * 40)
    assert cli.main(["-t", "-f", str(path)]) == 1
    assert "Traceback" not in capsys.readouterr().err


def test_megabyte_line_through_the_command_line(tmp_path, capsys):
    path = tmp_path / "long.conf"
    path.write_text("global_defs {\n router_id " + "x" * 1_048_576 + "\n}\n")
    assert cli.main(["-t", "-f", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{path}:2: error: line is 1048587 characters long; the limit is 65536: line " \
           "ignored" in err


def _shape(statements):
    if statements is None:
        return None
    return [(s.keyword, s.args, str(s.location), s.indent, _shape(s.children))
            for s in statements]


def test_one_pass_and_two_passes_make_the_same_tree_and_diagnostics():
    """load_config builds the tree as the preprocessor reads (Preprocessor(tree=...)); the
    lines-then-tree path (run, build_tree) must give the same statements, lines, indents and
    diagnostics in the same order, for every configuration under tests/golden (broken ones
    included) and for hostile snippets."""
    import pathlib
    from director.config.tree import TreeBuilder
    root = pathlib.Path(__file__).resolve().parents[1] / "golden"
    files = {str(p): p.read_text(errors="replace") for p in root.rglob("*")
             if p.suffix in (".conf", ".inc") and p.is_file()}
    snippets = ["a {\n b 1\n", "}\na 1\n", "a {\n b {\n  c 1\n }\n", "{\nx\n",
                "a {\n  b {\n  }\n  c {\n}\n}\n}\n", "a{b{c}}}\n", "a { \"{\" }\n",
                '"unterminated {\na {\n', "a {\n" * (MAX_DEPTH + 3), "x 1 }\n" * 250,
                # without a special character: the whole-file path (_read_plain_text)
                "a 1\n\n\tb {\n  c 2\n\t}\n}\nd\n", "a\n{\n b 1\n}\n", "a { b 1 }\nc {\n}\n",
                "a {\n  b {\n    c 1\n}\n  d 2\n}\n", "a {\n  b {\n    c 1\n}\n  d 2\n",
                "a {\n b 1\n", "}\n{\n", "a {\n}\n}\n", "x 1\na {\n{\n}\n}\n", "a {\n b 1\n}\n{\n}\n",
                "a {\n" * (MAX_DEPTH + 3) + "}\n" * (MAX_DEPTH + 3), "a{\n b 1\n}\n",
                "a {\n include x\n}\n", "a {\n random_seed 3\n}\n", "x " * 40000 + "\n",
                "a 1 {\n  b 2 } c 3 {\n d\n }\n}\n", "}\n" * 250 + "a {\n"]
    files.update({f"/snippet{i}.conf": text for i, text in enumerate(snippets)})
    assert len(files) > len(snippets)

    def read(name: str) -> bytes:
        if name not in files:
            raise FileNotFoundError(2, "No such file or directory")
        return files[name].encode()

    for path in sorted(files):
        two = Diagnostics()
        tree = build_tree(Preprocessor(two, "lb1", read).run(path), two)
        one = Diagnostics()
        builder = TreeBuilder()
        Preprocessor(one, "lb1", read, tree=builder).run(path)
        assert _shape(builder.finish(one)) == _shape(tree), path
        assert [str(d) for d in one] == [str(d) for d in two], path


def test_a_file_of_plain_lines_is_read_whole():
    """The whole-file path is taken for a file without anything special, and not when one
    thing in it needs the line-by-line reading."""
    from director.config.tree import TreeBuilder

    def whole(text: str, **limits) -> bool:
        preprocessor = Preprocessor(Diagnostics(), "x", lambda p: text.encode(),
                                    tree=TreeBuilder(), **limits)
        return preprocessor._read_plain_text("/m.conf", text, text.split("\n"), None)

    assert whole("a {\n  b 1\n}\n")
    for text in ("a {\n  b 1 # c\n}\n", 'a "b"\n', "a $B\n", "@x a\n", "~SEQ(i,2) a\n",
                 "a{\n}\n", "a {\n}b\n", "include /x\n", "random_seed 1\n",
                 "a " + "x" * 70000 + "\n"):
        assert not whole(text), text
    assert not whole("a 1\nb 2\n", max_lines=1)
