"""The preprocessor and tokenizer, against keepalived 2.2's rules (lib/parser.c)."""

from __future__ import annotations

import pytest

from director.config import lexer
from director.config.diagnostics import Diagnostics
from director.config.lexer import Preprocessor, Quoted, expand_braces, strip_comment
from director.config.tree import build_tree


def lines_of(files: dict[str, str], config_id: str = "lb1", main: str = "/etc/k/main.conf"):
    """Run the preprocessor over in-memory files; returns ([(line, words)], diagnostics)."""

    def read(path: str) -> bytes:
        if path not in files:
            raise FileNotFoundError(2, "No such file or directory")
        return files[path].encode()

    diagnostics = Diagnostics()
    out = Preprocessor(diagnostics, config_id, read).run(main)
    return [(line.location.line, line.words) for line in out], diagnostics


def words_of(text: str, **kwargs):
    lines, diagnostics = lines_of({"/etc/k/main.conf": text}, **kwargs)
    assert not diagnostics.has_errors(), [str(d) for d in diagnostics]
    return [words for _, words in lines]


@pytest.mark.parametrize("line, expected", [
    ("priority 100 ! comment", "priority 100 "),
    ("priority 100 # comment", "priority 100 "),
    ("auth_pass ab#c", "auth_pass ab"),            # keepalived cuts mid-word too
    ('script "echo #1"  # real comment', 'script "echo #1"  '),
    (r"auth_pass a\#b", "auth_pass a#b"),
    ("! whole line", ""),
])
def test_comments_follow_keepalived(line, expected):
    assert strip_comment(line) == expected


def test_quoted_words_keep_spaces_and_braces():
    words = words_of('notify_master "/bin/x { a }" root\n')
    assert words == [["notify_master", "/bin/x { a }", "root"]]
    assert isinstance(words[0][1], Quoted)


def test_braces_become_words_wherever_they_stand():
    assert words_of("a{\nb}\n") == [["a", "{"], ["b", "}"]]


def test_brace_on_the_next_line_opens_the_block_of_the_line_above():
    diagnostics = Diagnostics()
    lines = Preprocessor(diagnostics, "x", lambda p: b"vrrp_instance VI_1\n\n! c\n{\n"
                                                     b"priority 5\n}\n").run("/m.conf")
    tree = build_tree(lines, diagnostics)
    assert tree[0].keyword == "vrrp_instance" and tree[0].args == ["VI_1"]
    assert tree[0].children[0].words == ["priority", "5"]


def test_one_line_block():
    diagnostics = Diagnostics()
    lines = Preprocessor(diagnostics, "x", lambda p: b"virtual_ipaddress { 10.0.0.1 }\n").run("/m")
    tree = build_tree(lines, diagnostics)
    assert [c.words for c in tree[0].children] == [["10.0.0.1"]]


def test_conditional_lines():
    text = "@lb1 priority 150\n@lb2 priority 100\n@^lb1 state BACKUP\n@^lb2 state MASTER\n"
    assert words_of(text, config_id="lb1") == [["priority", "150"], ["state", "MASTER"]]
    assert words_of(text, config_id="lb2") == [["priority", "100"], ["state", "BACKUP"]]


def test_definitions_and_substitution():
    text = ("$PRIO=150\n$IF=eth1\n"
            "priority $PRIO\n"
            "interface ${IF}\n"
            "notify \"/bin/n $1 $HOME/x\"\n"     # undefined, and $NAME before '/' stays
            "x $PRIO/24\n")                       # keepalived: $NAME needs a delimiter after
    assert words_of(text) == [["priority", "150"], ["interface", "eth1"],
                              ["notify", "/bin/n $1 $HOME/x"], ["x", "$PRIO/24"]]


def test_multi_line_definition_expands_into_lines():
    text = ("$VIPS=10.0.0.1 \\\n   10.0.0.2 dev eth0 \\\n   10.0.0.3\n"
            "virtual_ipaddress {\n$VIPS\n}\n")
    assert words_of(text) == [["virtual_ipaddress", "{"], ["10.0.0.1"],
                              ["10.0.0.2", "dev", "eth0"], ["10.0.0.3"], ["}"]]


def test_definitions_refer_to_each_other_late():
    assert words_of("$A=${B}x\n$B=1\nv $A\n") == [["v", "1x"]]


def test_self_referencing_definition_is_an_error_not_a_hang():
    lines, diagnostics = lines_of({"/etc/k/main.conf": "$A=${A}${A}\nv $A\n"})
    assert any("does not end" in d.message for d in diagnostics.errors)


def test_predefined_names():
    assert words_of("a ${_INSTANCE} ${_HASH} ${_BANG}\nb ${_PWD}\n", config_id="lb7") == \
        [["a", "lb7", "#", "!"], ["b", "/etc/k"]]
    value = int(words_of("r ${_RANDOM 5 7}\n")[0][1])
    assert 5 <= value <= 7


@pytest.mark.parametrize("line, values", [
    ("~SEQ(i,3) v $i", ["1", "2", "3"]),
    ("~SEQ(i,2,4) v $i", ["2", "3", "4"]),
    ("~SEQ(i,10,-5,0) v $i", ["10", "5", "0"]),
    ("~SEQ(i,0x1,0x3) v ${i}", ["1", "2", "3"]),
    ("~SEQx(i,9,11) v $i", ["9", "a", "b"]),
    ("~LST(i,a,b,c) v $i", ["a", "b", "c"]),
])
def test_repetition(line, values):
    assert words_of(line + "\n") == [["v", v] for v in values]


def test_list_of_several_variables_and_chains():
    assert words_of("~LST({h,p},{a,1},{b}) ${h}:$p\n") == [["a:1"], ["b:"]]
    assert words_of("~SEQ(i,2) ~SEQ(j,2) ${i}$j\n") == [["11"], ["12"], ["21"], ["22"]]


def test_repeated_line_sets_its_variable_before_substitution():
    """The loop variable is defined when the line is expanded: no "${n} is not defined"."""
    lines, diagnostics = lines_of({"/etc/k/main.conf": "~SEQ(n,1,1,3) 10.0.0.${n}/24\n"})
    assert [words for _, words in lines] == [["10.0.0.1/24"], ["10.0.0.2/24"], ["10.0.0.3/24"]]
    assert list(diagnostics) == []


def test_repetition_of_a_multi_line_definition_repeats_every_line():
    text = ("$RS=real_server 10.1.1.${n} 80 { \\\n"
            "    weight ${n} \\\n"
            "}\n"
            "~SEQ(n,2,3) $RS\n")
    lines, diagnostics = lines_of({"/etc/k/main.conf": text})
    assert [words for _, words in lines] == [
        ["real_server", "10.1.1.2", "80", "{"], ["weight", "2"], ["}"],
        ["real_server", "10.1.1.3", "80", "{"], ["weight", "3"], ["}"]]
    assert list(diagnostics) == []


def test_repetition_parameters_may_be_definitions():
    assert words_of("$LAST=3\n~SEQ(i,2,$LAST) v $i\n") == [["v", "2"], ["v", "3"]]
    assert words_of("$B=b\n~LST(i,a,$B) v $i\n") == [["v", "a"], ["v", "b"]]


def test_a_definition_may_hold_a_whole_repetition():
    lines, diagnostics = lines_of({"/etc/k/main.conf": "$R=~SEQ(i,2) v ${i}\n$R\n"})
    assert [words for _, words in lines] == [["v", "1"], ["v", "2"]]
    assert list(diagnostics) == []


@pytest.mark.parametrize("line, message", [
    ("~SEQ(i,1,0,5) v", "never goes"),
    ("~SEQ(i,5,1,1) v", "never goes"),
    ("~SEQ(1x,3) v", "not a variable name"),
    ("~SEQ(i,a) v", "must be integers"),
    ("~SEQ(i,3)", "nothing to repeat"),
    ("~SEQ(i,3 v", "malformed"),
])
def test_bad_repetition_is_a_diagnostic(line, message):
    _, diagnostics = lines_of({"/etc/k/main.conf": line + "\n"})
    assert [message in d.message for d in diagnostics.errors] == [True]


@pytest.mark.parametrize("text", ["~SEQ(i,100000000) v $i\n",
                                  "~SEQ(i,100000) ~SEQ(j,100000) v $i $j\n",
                                  "$V=v \\\n w\n~SEQ(i,100000000) $V\n"])
def test_huge_repetition_is_one_error_and_nothing_read(text):
    diagnostics = Diagnostics()
    preprocessor = Preprocessor(diagnostics, "x", lambda p: text.encode(), max_lines=1000)
    assert preprocessor.run("/m") == []
    assert [d.message for d in diagnostics] == ["configuration expands to more than 1000 "
                                                "lines: not read"]


@pytest.mark.timeout(10)
def test_repetition_counts_against_the_limit_before_it_runs():
    """A billion rows that each give no line (an empty definition) must not run a billion
    times: the rows are counted up front."""
    diagnostics = Diagnostics()
    preprocessor = Preprocessor(diagnostics, "x", lambda p: b"$E=\n~SEQ(i,1000000000) $E\n",
                                max_lines=1000)
    assert preprocessor.run("/m") == []
    assert [d.message for d in diagnostics] == ["configuration expands to more than 1000 "
                                                "lines: not read"]


def test_substitution_that_outgrows_a_line_is_an_error_before_it_is_built(monkeypatch):
    monkeypatch.setattr(lexer, "MAX_SUBSTITUTED_CHARS", 1000)
    text = "$A=" + "x" * 100 + "\n$B=" + " ".join(["$A"] * 20) + "\nv $B\nw 1\n"
    lines, diagnostics = lines_of({"/etc/k/main.conf": text})
    assert [words for _, words in lines] == [["w", "1"]]
    assert [(d.location.line, d.message) for d in diagnostics] == [
        (3, "variable substitution makes this line longer than 1000 characters: line "
            "ignored")]


def test_a_file_larger_than_the_limit_is_one_error_and_nothing_read():
    diagnostics = Diagnostics()
    lines = Preprocessor(diagnostics, "x", lambda p: b"a 1\n" * 300,
                         max_file_bytes=1000).run("/m.conf")
    assert lines == []
    assert [str(d) for d in diagnostics] == [
        "/m.conf:1: error: /m.conf is larger than 1000 bytes, the limit for one file: not a "
        "configuration file director reads"]


def test_the_files_of_a_configuration_together_have_a_limit():
    files = {"/m.conf": b"a 1\ninclude x.conf\ninclude y.conf\nb 1\n",
             "/x.conf": b"x 1\n" * 200, "/y.conf": b"y 1\n" * 200}
    diagnostics = Diagnostics()
    lines = Preprocessor(diagnostics, "x", files.__getitem__,
                         max_config_bytes=1500).run("/m.conf")
    assert lines == []
    assert [str(d) for d in diagnostics] == [
        "/m.conf:3: error: the configuration is larger than 1500 bytes with /y.conf, the "
        "limit for all its files together: not read"]


def test_read_bytes_reads_no_more_than_it_needs_to_refuse(tmp_path):
    path = tmp_path / "big.conf"
    path.write_bytes(b"x" * (lexer.MAX_FILE_BYTES + 100))
    assert len(lexer.read_bytes(str(path))) == lexer.MAX_FILE_BYTES + 1
    assert lexer.read_bytes("/dev/zero", 10) == b"\0" * 10     # would never end unbounded


def test_include_is_relative_to_the_including_file_and_globs(tmp_path):
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "b.conf").write_text("b 1\n")
    (tmp_path / "conf.d" / "a.conf").write_text("a 1\ninclude ../tail.inc\n")
    (tmp_path / "conf.d" / "skip.txt").write_text("never\n")
    (tmp_path / "tail.inc").write_text("tail 1\n")
    (tmp_path / "main.conf").write_text("first 1\ninclude conf.d/*.conf\nlast 1\n")
    diagnostics = Diagnostics()
    lines = Preprocessor(diagnostics, "x").run(str(tmp_path / "main.conf"))
    assert [line.words[0] for line in lines] == ["first", "a", "tail", "b", "last"]
    assert lines[1].location.file == str(tmp_path / "conf.d" / "a.conf")
    assert lines[2].location.line == 1
    assert not diagnostics.items


def test_include_brace_alternatives(tmp_path):
    for name in ("x.conf", "y.conf", "z.conf"):
        (tmp_path / name).write_text(f"{name[0]} 1\n")
    (tmp_path / "main.conf").write_text("include {x,z}.conf\n")
    diagnostics = Diagnostics()
    lines = Preprocessor(diagnostics, "x").run(str(tmp_path / "main.conf"))
    assert [line.words[0] for line in lines] == ["x", "z"]
    assert expand_braces("a{b,c}d{1,2}") == ["abd1", "abd2", "acd1", "acd2"]


def test_include_that_matches_nothing_warns_and_a_missing_file_errors(tmp_path):
    (tmp_path / "main.conf").write_text("include none/*.conf\ninclude missing.conf\n")
    diagnostics = Diagnostics()
    Preprocessor(diagnostics, "x").run(str(tmp_path / "main.conf"))
    assert [(d.severity, d.location.line) for d in diagnostics] == [("warning", 1), ("error", 2)]
    assert "No such file" in diagnostics.errors[0].message


def test_include_cycle_is_an_error(tmp_path):
    (tmp_path / "a.conf").write_text("include b.conf\n")
    (tmp_path / "b.conf").write_text("x 1\ninclude a.conf\n")
    diagnostics = Diagnostics()
    lines = Preprocessor(diagnostics, "x").run(str(tmp_path / "a.conf"))
    assert [line.words for line in lines] == [["x", "1"]]
    assert [str(d).split(": ", 1)[1] for d in diagnostics] == \
        ["error: include cycle: a.conf -> b.conf -> a.conf"]
    assert diagnostics.errors[0].location.line == 2


def test_binary_file_is_one_error():
    lines, diagnostics = lines_of({"/etc/k/main.conf": "a 1\nb\x00\x01\x02 2\n"})
    assert lines == []
    assert [(d.location.line, d.message) for d in diagnostics] == \
        [(2, "binary data (NUL byte): not a text configuration file")]


def test_many_bytes_that_are_not_utf8_are_binary_one_error_and_nothing_read():
    data = b"a 1\nb 2\n" + bytes(range(0x80, 0x100)) + b"\nc 3\n"
    diagnostics = Diagnostics()
    assert Preprocessor(diagnostics, "x", lambda p: data).run("/m") == []
    assert [(d.location.line, d.severity) for d in diagnostics] == [(3, "error")]
    assert diagnostics.items[0].message.startswith("binary data (128 sequences that are not "
                                                   "UTF-8, the first here)")


def test_invalid_utf8_is_a_warning_and_the_rest_is_read():
    diagnostics = Diagnostics()
    lines = Preprocessor(diagnostics, "x", lambda p: b"! caf\xe9\npriority 1\n").run("/m")
    assert [line.words for line in lines] == [["priority", "1"]]
    assert diagnostics.warnings and not diagnostics.errors


def test_megabyte_line_is_skipped_with_an_error():
    text = "a 1\nb " + "x" * 1_000_000 + "\nc 1\n"
    lines, diagnostics = lines_of({"/etc/k/main.conf": text})
    assert [words[0] for _, words in lines] == ["a", "c"]
    assert [(d.location.line, d.severity) for d in diagnostics] == [(2, "error")]
    assert "1000002 characters" in diagnostics.items[0].message


def test_unterminated_quote():
    lines, diagnostics = lines_of({"/etc/k/main.conf": 'script "/bin/x arg\n'})
    assert lines[0][1] == ["script", "/bin/x arg"]
    assert [d.message for d in diagnostics] == ["unterminated quoted string"]


# -- the plain-line fast path (issue 17) ---------------------------------------------------------

PLAIN_CASES = "\n".join([
    "virtual_server 10.0.0.1 80 {", "\treal_server 10.0.0.2 80{", "  weight 1}", "}}", "{",
    "vrrp_instance VI_1 {inside}", "\x0bpriority\x0c100\r", "   ", "include_check 1",
    "random_seed 7", "include /etc/k/none.conf", "includes x", "a\u00a0b", "x {a,b} y",
    "lb_algo wrr  ", "\tnotify /bin/true ~x", "word{ }word", "} {", "",
])


def _both_paths(monkeypatch, files: dict[str, str]):
    fast = lines_of(files)
    monkeypatch.setattr(lexer, "_SPECIAL", lambda raw: True)     # every line the long way
    slow = lines_of(files)
    return fast, slow


def _same(fast, slow):
    (fast_lines, fast_diag), (slow_lines, slow_diag) = fast, slow
    assert fast_lines == slow_lines
    assert [type(w) for _, ws in fast_lines for w in ws] == \
        [type(w) for _, ws in slow_lines for w in ws]
    assert [str(d) for d in fast_diag] == [str(d) for d in slow_diag]


def test_plain_lines_split_as_the_full_path_does(monkeypatch):
    _same(*_both_paths(monkeypatch, {"/etc/k/main.conf": PLAIN_CASES}))


def test_plain_line_indent_kept(monkeypatch):
    diagnostics = Diagnostics()
    text = "a {\n\t  b 1\n}\n"
    out = Preprocessor(diagnostics, "lb1", lambda p: text.encode()).run("/etc/k/main.conf")
    assert [(line.words, line.indent) for line in out] == [(["a", "{"], 0), (["b", "1"], 3),
                                                         (["}"], 0)]


def test_golden_files_preprocess_the_same_on_both_paths(monkeypatch):
    """Every configuration under tests/golden, read with and without the fast path."""
    import pathlib
    root = pathlib.Path(__file__).resolve().parents[1] / "golden"
    files = {str(p): p.read_text(errors="replace") for p in root.rglob("*")
             if p.suffix in (".conf", ".inc") and p.is_file()}
    assert files
    for path in sorted(files):
        def read(name: str) -> bytes:
            if name not in files:
                raise FileNotFoundError(2, "No such file or directory")
            return files[name].encode()
        with monkeypatch.context() as patch:
            fast = Preprocessor(Diagnostics(), "lb1", read).run(path)
            patch.setattr(lexer, "_SPECIAL", lambda raw: True)
            slow = Preprocessor(Diagnostics(), "lb1", read).run(path)
        assert [(l.location, l.words, l.indent) for l in fast] == \
            [(l.location, l.words, l.indent) for l in slow], path


def test_whole_text_checks_say_what_the_per_line_checks_say():
    """_has_special and _braces_apart_in (the whole-file path, issue 17) against the per-line
    definitions, on random texts of words, braces, blanks and special characters."""
    import random

    from director.config.lexer import _SPECIAL, _braces_apart_in, _has_special
    rng = random.Random(17)
    fast_path = 0
    for _ in range(5000):
        text = "".join(rng.choice(["a", "bc", "{", "}", " ", " ", "\t", "\n", "\n", " {\n",
                                   " }\n", "\n}\n", "\r", "#", "\u00a0"])
                       for _ in range(rng.randint(0, 12)))
        split = [line.split() for line in text.split("\n")]
        apart = text.count("{") == sum(words.count("{") for words in split) and \
            text.count("}") == sum(words.count("}") for words in split)
        assert _braces_apart_in(text, split) == apart, repr(text)
        assert _has_special(text) == bool(_SPECIAL(text)), repr(text)
        fast_path += apart and "{" in text
    assert fast_path > 100
