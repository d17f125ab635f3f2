"""Property: whatever the input, the loader returns a model or diagnostics, never raises.

Hypothesis builds inputs from keepalived's own vocabulary (so they reach deep into the
keyword tables, not only the lexer) mixed with braces, quotes, preprocessor syntax and
arbitrary text and bytes.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from director.config import LoadResult, lexer, load_config
from director.config.loader import _all_blocks
from director.config.blocks import ROOT
from director.config.diagnostics import Diagnostics
from director.config.lexer import Preprocessor
from director.config.render import config_json, dump_text

KEYWORDS = sorted({word for block in _all_blocks(ROOT).values() for word in block.known_words()})
SYNTAX = ["{", "}", '"', "!", "#", "\\", "@lb1", "@^lb1", "$X=1", "$X", "${X}", "~SEQ(i,3)",
          "~LST(i,a,b)", "include", "*", "-", "/", "0", "1", "255", "256", "-1", "1.5",
          "10.0.0.1", "10.0.0.1/24", "::1", "ae00::2-9", "fwmark", "group", "weight", "reverse",
          "MASTER", "BACKUP", "PASS", "TCP", "NAT", "rr", "eth0", "VI_1", "200-299"]
WORDS = st.one_of(st.sampled_from(KEYWORDS), st.sampled_from(SYNTAX),
                  st.text(min_size=1, max_size=6))
SEPARATORS = st.sampled_from([" ", " ", "\n", "\n", "\t", " {\n", "\n}\n", "\\\n"])


@st.composite
def config_texts(draw) -> bytes:
    parts = draw(st.lists(st.tuples(WORDS, SEPARATORS), max_size=80))
    return "".join(word + sep for word, sep in parts).encode("utf-8", "surrogatepass")


def load(data: bytes) -> LoadResult:
    def read(path: str) -> bytes:
        if path == "/fuzz/main.conf":
            return data
        raise FileNotFoundError(2, "No such file or directory")

    return load_config("/fuzz/main.conf", config_id="lb1", interface_exists=lambda n: True,
                       read=read)


def check(result: LoadResult) -> None:
    assert isinstance(result, LoadResult)
    if result.ok:
        json.dumps(config_json(result.config, "lb1"))
        dump_text(result.config, "lb1")
    else:
        assert result.errors
    for diagnostic in result.diagnostics:
        assert str(diagnostic).startswith("/fuzz/main.conf:")


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config_texts())
def test_structured_input_never_raises(data):
    check(load(data))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_never_raise(data):
    check(load(data))


HEADERS = st.sampled_from(["", "VI_1", "10.0.0.1 80", "10.0.0.2", "fwmark 1", "group G",
                           "ae00::1 443", "x y z"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(KEYWORDS), HEADERS), min_size=1, max_size=6),
       st.lists(WORDS, max_size=4))
def test_every_keyword_with_any_arguments_in_every_block(path, args):
    """A chain of nested blocks named by keywords, the innermost with arbitrary arguments."""
    opening = "".join(f"{word} {header} {{\n" for word, header in path[:-1])
    text = opening + f"{path[-1][0]} {' '.join(args)}\n" + "}\n" * (len(path) - 1)
    check(load(text.encode("utf-8", "surrogatepass")))


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(KEYWORDS), st.lists(WORDS, max_size=5))
def test_any_keyword_inside_a_complete_config(keyword, args):
    """A valid config with one more line in each block: reaches the finish and validation
    steps, which a broken outer structure never does."""
    check(load(complete_config(f"{keyword} {' '.join(args)}").encode("utf-8", "surrogatepass")))


NUMERIC_KEYWORDS = ["garp_extra_if", "advert_int", "priority", "virtual_router_id", "weight",
                    "delay_loop", "connect_port", "lvs_timeouts", "vmac_xmit_base"]


@pytest.mark.parametrize("keyword", NUMERIC_KEYWORDS)
@pytest.mark.parametrize("word", ["\u00b2", "\u0663", "\u2075", "\uff11"])
def test_unicode_digits_are_refused_not_a_crash(keyword, word):
    """str.isdigit() is true of '\u00b2' (superscript two), which int() refuses: found by
    the property above (garp_extra_if \u00b2 raised ValueError)."""
    check(load(complete_config(f"{keyword} {word}").encode()))


def test_the_complete_config_is_valid_without_the_extra_line():
    result = load(complete_config("").encode())
    assert result.ok, [str(d) for d in result.diagnostics]
    assert result.config.vrrp_instances[0].track_script[0].name == "chk"


def complete_config(extra: str) -> str:
    return f"""global_defs {{
    router_id lb1
    {extra}
}}
vrrp_script chk {{
    script "/bin/true"
    {extra}
}}
vrrp_instance VI_1 {{
    interface eth0
    virtual_router_id 51
    {extra}
    track_script {{
        chk
    }}
    virtual_ipaddress {{
        10.0.0.1/24
    }}
}}
virtual_server 10.0.0.1 80 {{
    protocol TCP
    {extra}
    real_server 10.0.0.2 80 {{
        {extra}
        HTTP_GET {{
            {extra}
            url {{
                path /
                {extra}
            }}
        }}
    }}
}}
"""


# -- the preprocessor under adversarial input: cycles, blow-ups, odd bytes ------------------
# Each is a clear FILE:LINE error or bounded; the timeouts only turn a hang into a failure.

def preprocess(files: dict[str, str | bytes], max_lines: int = lexer.MAX_EXPANDED_LINES,
               main: str = "/c/main.conf"):
    def read(path: str) -> bytes:
        if path not in files:
            raise FileNotFoundError(2, "No such file or directory")
        data = files[path]
        return data if isinstance(data, bytes) else data.encode("utf-8", "surrogatepass")

    diagnostics = Diagnostics()
    lines = Preprocessor(diagnostics, "lb1", read, max_lines=max_lines).run(main)
    return lines, [str(d) for d in diagnostics]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("files, first", [
    ({"/c/main.conf": "include main.conf\n"},
     "/c/main.conf:1: error: include cycle: main.conf -> main.conf"),
    ({"/c/main.conf": "include b.conf\n", "/c/b.conf": "include main.conf\n"},
     "/c/b.conf:1: error: include cycle: main.conf -> b.conf -> main.conf"),
])
def test_include_cycles_are_an_error(files, first):
    _, diagnostics = preprocess(files)
    assert diagnostics == [first]


@pytest.mark.timeout(30)
def test_glob_includes_of_themselves_end(tmp_path):
    """Ten files that each include ``*.conf``: every path through them ends in a cycle, and
    the errors stop at the limit instead of walking all 10! orders."""
    (tmp_path / "main.conf").write_text("include d/*.conf\n")
    (tmp_path / "d").mkdir()
    for i in range(10):
        (tmp_path / "d" / f"{i}.conf").write_text("include *.conf\n")
    diagnostics = Diagnostics()
    Preprocessor(diagnostics, "lb1").run(str(tmp_path / "main.conf"))
    messages = [d.message for d in diagnostics]
    assert diagnostics.stopped and messages[0].startswith("include cycle: main.conf -> 0.conf")
    assert messages[-1].startswith("too many errors")


@pytest.mark.timeout(30)
def test_an_include_diamond_is_bounded():
    """Found while extending this fuzzer: each of 30 files including the next twice reads the
    last one 2^30 times, a few bytes each, so the 32 MiB total took over a million reads and
    minutes. The files read are counted: past MAX_INCLUDED_FILES it is one error."""
    files = {"/c/main.conf": "include f0.conf\ninclude f0.conf\n", "/c/f30.conf": "! leaf\n"}
    files.update({f"/c/f{i}.conf": f"include f{i + 1}.conf\ninclude f{i + 1}.conf\n"
                  for i in range(30)})
    lines, diagnostics = preprocess(files)
    assert lines == [] and len(diagnostics) == 1, diagnostics[:3]
    assert diagnostics[0].endswith(f"error: more than {lexer.MAX_INCLUDED_FILES} files "
                                   "included: not read")


@pytest.mark.timeout(30)
@pytest.mark.parametrize("text", [
    "~SEQ(i,0,1,1000000000000000000000000000000) x $i\n",         # past a C ssize_t
    "~SEQ(i,-100000000000000000000000000000,100000000000000000000000000000) x\n",
    "~SEQx(i,0,1,0xffffffffffffffffffffffffffffffff) x $i\n",
    "~SEQ(i,1,1000) ~SEQ(j,1,1000) ~SEQ(k,1,1000) x $i $j $k\n",
    "$A=~SEQ(j,1,1000) y $j\n~SEQ(i,1,1000) $A\n",
])
def test_sequence_blow_ups_are_the_line_limit(text):
    """A range longer than a C ssize_t raised OverflowError out of load_config (found by
    this fuzzer); nested ones stop at the limit as they grow."""
    lines, diagnostics = preprocess({"/c/main.conf": text}, max_lines=10_000)
    assert lines == []
    assert diagnostics[-1].endswith("error: configuration expands to more than 10000 lines: "
                                    "not read"), diagnostics


@pytest.mark.timeout(30)
@pytest.mark.parametrize("text", ["$V=~SEQ(j,0) $V\n$V\n",
                                  "$V=$V\\\n$W=$X $X\n$Y=x\n~SEQx(i,1000) $V\n"])
def test_a_definition_that_contains_itself_is_one_error(text):
    """Found by the combined fuzzer below: ``$V=~SEQ(j,0) $V`` then ``$V`` repeats the line
    that repeats it, and a multi-line $V with a line "$V" of its own expands that line
    again (a $NAME before a newline is not substituted in the same pass): RecursionError
    out of load_config, before the line limit."""
    lines, diagnostics = preprocess({"/c/main.conf": text})
    assert lines == [] and diagnostics == [
        f"/c/main.conf:{text.count(chr(10))}: error: repetitions and multi-line definitions "
        f"nested deeper than {lexer.MAX_EXPANSION_DEPTH} (a definition that contains "
        "itself?): not read"]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("text, message", [
    ("$A=$A x\nfoo $A\n", "variable substitution does not end (more than 16 rounds): line "
                          "ignored"),
    ("$A=$B\n$B=$A\nfoo $A\n", "variable substitution does not end (more than 16 rounds): "
                               "line ignored"),
    # doubling, 40 times over
    ("$A0=x\n" + "".join(f"$A{i + 1}=$A{i} $A{i}\n" for i in range(40)) + "foo $A40\n",
     "variable substitution does not end (more than 16 rounds): line ignored"),
    # quadrupling: past the 1 MiB line bound before 16 rounds
    ("$A0=xxxxxxxx\n" + "".join(f"$A{i + 1}=$A{i} $A{i} $A{i} $A{i}\n" for i in range(20)) +
     "foo $A20\n",
     f"variable substitution makes this line longer than {lexer.MAX_SUBSTITUTED_CHARS} "
     "characters: line ignored"),
    # billion laughs with multi-line definitions: 2^40 lines
    ("$A0=x\n" + "".join(f"$A{i + 1}=$A{i}\\\n$A{i}\n" for i in range(40)) + "foo $A40\n",
     "variable substitution does not end (more than 16 rounds): line ignored"),
])
def test_variable_blow_ups_are_one_error(text, message):
    """The last case hung (found by this fuzzer): a substitution that did not end went on
    with what it had, and each of its 65,536 lines substituted 16 rounds more. Now a line
    whose substitution does not end is dropped, as one that grows too long is."""
    last = text.count("\n")
    lines, diagnostics = preprocess({"/c/main.conf": text})
    assert lines == [] and diagnostics == [f"/c/main.conf:{last}: error: {message}"]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("data, message", [
    ("a" * 1_000_000 + "\nrouter_id x\n",
     "/c/main.conf:1: error: line is 1000000 characters long; the limit is 65536: line "
     "ignored"),
    (b"global_defs {\n\0\0router_id x\n}\n",
     "/c/main.conf:2: error: binary data (NUL byte): not a text configuration file"),
    (b"\0" * 100_000, "/c/main.conf:1: error: binary data (NUL byte): not a text "
                      "configuration file"),
])
def test_long_lines_and_nul_bytes(data, message):
    _, diagnostics = preprocess({"/c/main.conf": data})
    assert diagnostics[0] == message


@pytest.mark.timeout(30)
@pytest.mark.parametrize("text", ["a {\n" * 100_000 + "}\n" * 100_000,
                                  "virtual_server 10.0.0.1 80 {\n" * 100_000,
                                  "a " + "{ " * 30_000 + "\n"])
def test_deep_brace_nesting_is_an_error_not_a_recursion(text):
    result = load(text.encode())
    assert not result.ok and not isinstance(result, BaseException)
    assert any("nested deeper than 64" in d.message or "no keyword before it" in d.message
               for d in result.errors), [str(d) for d in result.errors[:3]]


DIRECTIVES = st.sampled_from([
    "include main.conf", "include a.conf", "include b.conf", "include *.conf",
    "~SEQ(i,{n}) x $i", "~SEQ(i,0,{n},{big}) y", "~SEQx(i,{n}) $V{k}",
    "~LST(i,{n},{n},{n}) $V{k} $i", "$V{k}=$V{j} $V{j}", "$V{k}=$V{j}\\",
    "$V{k}=~SEQ(j,{n}) $V{j}", "$V{k}=x", "foo $V{k}", "${{V{k}}}", "${{_RANDOM {n} {big}}}", "@lb1 $V{k}", "@^lb1 x {{",
    "}}", "{{", "vrrp_instance VI_{k} {{", "\0", "\udcff", "a" * 70_000,
])


@st.composite
def preprocessing(draw) -> dict[str, str]:
    def text() -> str:
        lines = []
        for template in draw(st.lists(DIRECTIVES, max_size=8)):
            lines.append(template.format(n=draw(st.sampled_from([0, 1, 7, 1000, 10 ** 30])),
                                         big=draw(st.sampled_from([3, 10 ** 12, -(10 ** 40)])),
                                         k=draw(st.integers(0, 3)), j=draw(st.integers(0, 3))))
        return "\n".join(lines) + "\n"

    return {"/c/main.conf": text(), "/c/a.conf": text(), "/c/b.conf": text()}


@pytest.mark.timeout(120)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(preprocessing())
def test_preprocessing_directives_combined_end_with_lines_or_errors(files):
    """Includes (cycles and repeats), ~SEQ/~LST, $VAR definitions (self-referring,
    doubling, multi-line), conditionals, NUL and non-UTF-8 bytes, combined over three files:
    lines or FILE:LINE diagnostics, within the limits, never an exception or a hang."""
    lines, diagnostics = preprocess(files, max_lines=20_000)
    assert len(lines) <= 20_000
    assert all(d.startswith("/c/") for d in diagnostics), diagnostics[:3]
