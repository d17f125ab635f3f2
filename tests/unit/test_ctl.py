"""director ctl's pure parts: the request/reply codec and its refusals, the names an operator
may write, the ipvsadm-style tables, the events' lines, the shell completion."""

from __future__ import annotations

import json

import pytest

from director import ctl, ctlproto
from director.ctlproto import (MAX_REQUEST, ProtocolError, ServerName, UnknownName,
                               decode_reply, decode_request, encode, parse_name, resolve)
from director.ctlrender import event_line, result_text, status_text

# === the codec ==================================================================================


def test_a_request_round_trips():
    line = encode({"command": "weight", "virtual_server": "10.0.0.1:80",
                   "real_server": "10.0.1.1:80", "weight": 7})
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert decode_request(line) == ("weight", {"virtual_server": "10.0.0.1:80",
                                               "real_server": "10.0.1.1:80", "weight": 7})


def test_optional_arguments_are_none_when_left_out():
    assert decode_request(b'{"command": "events"}') == (
        "events", {"since": None, "limit": None, "follow": None})
    assert decode_request(b'{"command": "diff", "path": null}') == ("diff", {"path": None})


@pytest.mark.parametrize("line, says", [
    (b"garbage", "one JSON object a line"),
    (b"", "one JSON object a line"),
    (b"[1, 2]", 'with a "command"'),
    (b'{"verb": "status"}', 'with a "command"'),
    (b'{"command": 7}', 'with a "command"'),
    (b"\xff\xfe", "UTF-8"),
    (b'{"command": "format-disk"}', "unknown command 'format-disk'; commands: status"),
    (b'{"command": "status", "verbose": 1}', "status: unknown argument(s) 'verbose'"),
    (b'{"command": "drain", "virtual_server": "a"}', "drain: real_server is required"),
    (b'{"command": "drain", "virtual_server": "a", "real_server": 5}',
     "real_server must be str, got int"),
    (b'{"command": "weight", "virtual_server": "a", "real_server": "b", "weight": true}',
     "weight must be int, got bool"),
    (b'{"command": "weight", "virtual_server": "a", "real_server": "b", "weight": "7"}',
     "weight must be int, got str"),
    (b'{"command": "events", "follow": "yes"}', "follow must be bool"),
    (b"[" * 100000 + b"]" * 100000, "at most"),
    (b"[" * 5000 + b"]" * 5000, "one JSON object a line"),        # deeper than the parser
    (b'{"command": "status"' + b" " * MAX_REQUEST + b"}", f"at most {MAX_REQUEST} bytes"),
])
def test_a_bad_request_is_a_clear_error(line, says):
    with pytest.raises(ProtocolError) as caught:
        decode_request(line)
    assert says in str(caught.value)
    assert len(str(caught.value)) < 300          # it never echoes a long request back


def test_replies():
    assert decode_reply(encode(ctlproto.reply_ok({"a": 1}))) == {"ok": True, "result": {"a": 1}}
    error = decode_reply(encode(ctlproto.reply_error("x" * 5000)))
    assert error["ok"] is False and error["kind"] == "refused" and len(error["error"]) < 1100
    for line in (b"HTTP/1.1 400 Bad Request\r\n", b"[1]\n", b"\xff\n"):
        with pytest.raises(ProtocolError):
            decode_reply(line)


# === names ======================================================================================

@pytest.mark.parametrize("text, name", [
    ("192.168.1.11:80", ServerName("192.168.1.11", 80, None)),
    ("192.168.1.11:80/TCP", ServerName("192.168.1.11", 80, "TCP")),
    ("192.168.1.11:53/udp", ServerName("192.168.1.11", 53, "UDP")),
    ("10.0.0.1", ServerName("10.0.0.1", None, None)),
    ("[2001:DB8:0::1]:443", ServerName("2001:db8::1", 443, None)),
    ("[2001:db8::1]:443/TCP", ServerName("2001:db8::1", 443, "TCP")),
    ("2001:db8::1", ServerName("2001:db8::1", None, None)),
    ("[2001:db8::1]", ServerName("2001:db8::1", None, None)),
    ("fwmark 5", ServerName("fwmark 5", None, None)),
    ("FWMARK  05/TCP", ServerName("fwmark 5", None, "TCP")),
    ("group web/TCP", ServerName("group web", None, "TCP")),
])
def test_names_taken_apart(text, name):
    assert parse_name(text) == name


@pytest.mark.parametrize("text", ["", "   ", "10.0.0.1:http", "10.0.0.1:70000", "10.0.0.1:80/",
                                  "10.0.0.1:80/6", "[2001:db8::1:443", "[::1]x", "fwmark x",
                                  "group a b", "frob 5", ":80"])
def test_names_that_are_none(text):
    with pytest.raises(ValueError):
        parse_name(text)


VIRTUALS = ["192.168.1.11:80/TCP", "192.168.1.11:53/TCP", "192.168.1.11:53/UDP",
            "[2001:db8::1]:443/TCP", "fwmark 5/TCP", "group web/TCP"]


@pytest.mark.parametrize("text, full", [
    ("192.168.1.11:80/TCP", "192.168.1.11:80/TCP"),        # as the API writes it
    ("192.168.1.11:80", "192.168.1.11:80/TCP"),            # /TCP left out: one fits
    ("192.168.1.11:53/udp", "192.168.1.11:53/UDP"),
    ("[2001:0db8::0001]:443", "[2001:db8::1]:443/TCP"),
    ("fwmark 5", "fwmark 5/TCP"),
    ("group web", "group web/TCP"),
])
def test_a_virtual_server_by_any_of_its_names(text, full):
    assert resolve(text, VIRTUALS, "virtual server") == full


def test_an_ambiguous_name_lists_what_it_could_be():
    with pytest.raises(UnknownName) as caught:
        resolve("192.168.1.11:53", VIRTUALS, "virtual server")
    assert "ambiguous" in str(caught.value)
    assert "192.168.1.11:53/TCP, 192.168.1.11:53/UDP" in str(caught.value)


def test_an_unknown_name_lists_the_candidates():
    with pytest.raises(UnknownName) as caught:
        resolve("192.168.1.12:80", VIRTUALS, "virtual server")
    assert str(caught.value).startswith("no virtual server '192.168.1.12:80'; virtual servers: "
                                        "192.168.1.11:80/TCP, ")
    many = [f"10.0.{n // 250}.{n % 250}:80/TCP" for n in range(500)]
    with pytest.raises(UnknownName) as caught:
        resolve("10.9.9.9:80", many, "virtual server")
    assert "(and 480 more)" in str(caught.value) and len(str(caught.value)) < 1000
    with pytest.raises(UnknownName, match="there is no virtual server"):
        resolve("10.9.9.9:80", [], "virtual server")
    with pytest.raises(UnknownName, match="the port must be a number"):
        resolve("10.9.9.9:www", VIRTUALS, "virtual server")


def test_a_real_server_by_its_address_where_one_has_it():
    reals = ["10.20.40.10:80", "10.20.40.11:80", "10.20.40.11:8080", "[fd00::1]:80"]
    assert resolve("10.20.40.10", reals, "real server", any_port=True) == "10.20.40.10:80"
    assert resolve("fd00::1", reals, "real server", any_port=True) == "[fd00::1]:80"
    with pytest.raises(UnknownName, match="ambiguous in 1.2.3.4:80/TCP"):
        resolve("10.20.40.11", reals, "real server", within=" in 1.2.3.4:80/TCP",
                any_port=True)
    with pytest.raises(UnknownName, match="no real server"):     # not without any_port
        resolve("10.20.40.10", reals, "real server")


# === rendering ==================================================================================

def _real(name, **fields):
    address, _, port = name.rpartition(":")
    return {"name": name, "address": address, "port": int(port), "weight": None,
            "desired_weight": None, "configured_weight": 1, "up": None, "drained": False,
            "checker": "TCP_CHECK", "last_check": None, "checks": None, "counters": None,
            "active_connections": None, "inactive_connections": None, "drain": None,
            **fields}


STATE = {
    "router_id": "lb1", "pid": 42, "backend": "nftables", "not_running": [],
    "reload": {"result": "success"},
    "vrrp": {"instances": [
        {"name": "VI_1", "state": "MASTER", "priority": 100, "effective_priority": 100,
         "vrid": 51, "interface": "eth0", "vips": ["192.168.1.11/24"]},
        {"name": "VI_2", "state": "BACKUP", "priority": 100, "effective_priority": 80,
         "vrid": 52, "interface": "eth1", "vips": []}]},
    "virtual_servers": [
        {"name": "192.168.1.11:80/TCP", "address": "192.168.1.11", "port": 80, "fwmark": None,
         "protocol": "TCP", "group": None, "lb_algo": "wlc", "lb_kind": "DR",
         "quorum_ok": True, "sorry_server": None, "sorry_server_active": False,
         "suspended": False,
         "real_servers": [
             _real("10.20.40.10:80", weight=7, configured_weight=10, up=True,
                   active_connections=12, inactive_connections=3),
             _real("10.20.40.11:80", weight=0, configured_weight=10, up=True, drained=True,
                   drain={"complete": False}, active_connections=2, inactive_connections=0),
             _real("10.20.40.12:80", weight=0, configured_weight=10, up=False,
                   last_check={"error": "connect: Connection refused"}),
             _real("10.20.40.13:80", weight=4, configured_weight=10, up=True,
                   weight_override=4)]},
        {"name": "fwmark 5/UDP", "address": None, "port": None, "fwmark": 5,
         "protocol": "UDP", "group": None, "lb_algo": "rr", "lb_kind": "NAT",
         "quorum_ok": False, "sorry_server": "10.9.9.9:53", "sorry_server_active": True,
         "suspended": False, "real_servers": []}]}


def test_status_is_ipvsadm_shaped():
    text = status_text(STATE)
    lines = text.splitlines()
    print(text)
    assert lines[0] == "director lb1  pid 42  backend nftables  last reload success"
    vrrp = lines[lines.index("") + 1:lines.index("") + 4]
    assert vrrp[0].split() == ["VRRP", "instance", "State", "Priority", "VRID", "Interface",
                               "VIPs"]
    assert vrrp[1].split() == ["VI_1", "MASTER", "100", "51", "eth0", "192.168.1.11/24"]
    assert vrrp[2].split() == ["VI_2", "BACKUP", "80", "(100)", "52", "eth1", "-"]
    assert "Prot LocalAddress:Port Scheduler Flags" in lines
    assert "TCP  192.168.1.11:80 wlc" in lines
    reals = {line.split()[1]: line.split() for line in lines if line.startswith("  -> 10.")}
    assert reals["10.20.40.10:80"] == ["->", "10.20.40.10:80", "Route", "7/10", "12", "3",
                                       "up"]
    assert reals["10.20.40.11:80"][3:] == ["0/10", "2", "0", "up", "draining"]
    assert reals["10.20.40.12:80"][3:] == ["0/10", "-", "-", "down", "(connect:",
                                           "Connection", "refused)"]
    assert reals["10.20.40.13:80"][3:] == ["4/4*", "-", "-", "up", "overridden"]
    assert "FWM  5 rr  quorum-lost sorry-server 10.9.9.9:53" in lines
    # the real servers' columns line up under their header
    header = next(line for line in lines if line.startswith("  -> RemoteAddress"))
    row = next(line for line in lines if "10.20.40.10:80" in line)
    assert row.index("Route") == header.index("Forward")
    assert row.index("7/10") == header.index("Weight")


def test_status_of_a_daemon_with_nothing():
    text = status_text({"router_id": "x", "pid": 1, "backend": None, "reload": {},
                        "vrrp": {"instances": []}, "virtual_servers": [],
                        "not_running": ["main loop (stalled)"]})
    assert "NOT RUNNING: main loop (stalled)" in text and "(no VRRP instance" in text


def test_an_event_a_line():
    line = event_line({"id": 12, "at": 1796119822.5, "kind": "admin", "action": "drain",
                       "virtual_server": "fwmark 5/TCP", "actor": "ctl:uid=0", "n": 3})
    assert line == ('2026-12-01T10:10:22.500Z #12 admin action=drain '
                    'virtual_server="fwmark 5/TCP" actor="ctl:uid=0" n=3')


def test_results_for_people():
    assert result_text("drain", {"virtual_server": "v", "real_server": "r", "drained": True,
                                 "saved": False, "warning": "not saved"}) == \
        "drained r in v\nwarning: not saved\n"
    assert result_text("reload", {"result": "failure", "errors": ["k.conf:3: error: x"],
                                  "note": ""}) == "reload: failure\n  k.conf:3: error: x\n"
    assert result_text("dump", '{"a": 1}\n') == '{"a": 1}\n'
    assert json.loads(result_text("weight", {"weight": 7})) == {"weight": 7}


# === the command line and completion ============================================================

def test_usage_errors_exit_2(capsys):
    assert ctl.main([]) == 2
    assert ctl.main(["weight", "10.0.0.1:80", "10.0.1.1:80", "heavy"]) == 2
    assert ctl.main(["--state-dir", "a", "--socket", "b", "status"]) == 2
    assert "exit codes" in ctl.parser().format_help()


def test_no_socket_exits_3_and_says_where(tmp_path, capsys):
    assert ctl.main(["--state-dir", str(tmp_path), "status"]) == 3
    assert f"no control socket at {tmp_path}/control.sock" in capsys.readouterr().err


NAMES = {"192.168.1.11:80/TCP": ["10.20.40.10:80", "10.20.40.11:80"],
         "fwmark 5/TCP": ["10.20.40.12:80"]}


def _complete(line, wordbreaks=":="):
    asked = []

    def names(options):
        asked.append(options)
        return NAMES
    return ctl.completions(line, names, wordbreaks), asked


def test_completion_of_commands_and_names():
    assert _complete("director ")[0] == ["ctl", "genhash", "demo"]
    assert _complete("director ctl dr")[0] == ["drain"]
    assert _complete("directorctl re")[0] == ["restore", "reload"]
    assert _complete("director ctl --st")[0] == ["--state-dir"]
    found, asked = _complete("director ctl --state-dir /srv/d drain ")
    assert found == ["192.168.1.11:80/TCP", "'fwmark 5/TCP'"]
    assert asked == [["--state-dir", "/srv/d"]]         # the daemon of that state dir
    # bash splits words at ':': what it completes is the part after the last one
    assert _complete("director ctl drain 192.168.1.11:")[0] == ["80/TCP"]
    assert _complete("director ctl weight 192.168.1.11:80 10.20.40.1")[0] == \
        ["10.20.40.10:80", "10.20.40.11:80"]
    assert _complete("director ctl drain 192.168.1.11:80 10.20.40.11:")[0] == ["80"]
    assert _complete("director ctl drain 'fwmark 5' ")[0] == ["10.20.40.12:80"]
    assert _complete("director ctl completion ")[0] == ["bash"]
    assert _complete("director ctl weight a b ")[0] == []
    assert _complete("director -f ")[0] == []           # the shell's own file names
    assert _complete("director ctl --state-dir ")[0] == []


def test_completion_without_a_daemon_offers_nothing():
    def unreachable(options):
        raise ctl.Unreachable("no socket")
    assert ctl.completions("director ctl drain ", unreachable) == []


def test_the_bash_script(capsys):
    assert ctl.main(["completion", "bash"]) == 0
    script = capsys.readouterr().out
    assert "complete -o default -F _director_ctl directorctl director" in script
    assert "__complete" in script


# === the server's commands (director/control.py), on a stand-in daemon ==========================

class StandIn:
    """The daemon's side the control server uses: its configuration, command() (recorded;
    raising what ``raises`` holds) and the do_<name> it has."""

    def __init__(self, config, raises=None):
        self.config = config
        self.sent = []
        self.raises = raises

    def command(self, name, **arguments):
        self.sent.append((name, arguments))
        if self.raises is not None:
            raise self.raises
        return {"done": name}

    def do_drain(self, **arguments):
        raise AssertionError("runs on the main greenlet, through command()")

    do_reload = do_weight = do_preview = do_drain


@pytest.fixture
def standin(tmp_path):
    from director.config import load_config
    (tmp_path / "k.conf").write_text("""
virtual_server 192.168.1.11 80 {
    protocol TCP
    real_server 10.20.40.10 80 {
    }
    real_server 10.20.40.11 80 {
    }
}
virtual_server 192.168.1.11 53 {
    protocol UDP
    real_server 10.20.40.10 53 {
    }
}
virtual_server 192.168.1.11 53 {
    protocol TCP
    real_server 10.20.40.10 53 {
    }
}
""")
    result = load_config(str(tmp_path / "k.conf"), config_id="t")
    assert result.ok, result.diagnostics
    return StandIn(result.config)


def _handle(director, command, **arguments):
    from director.control import ControlServer
    server = ControlServer(director, "/nonexistent/control.sock")      # never started
    return server.handle(*decode_request(encode({"command": command, **arguments})),
                         "ctl:uid=0")


def test_the_server_sends_commands_with_the_full_names(standin):
    assert _handle(standin, "drain", virtual_server="192.168.1.11:80",
                   real_server="10.20.40.11") == {"ok": True, "result": {"done": "drain"}}
    assert _handle(standin, "restore", virtual_server="192.168.1.11:53/udp",
                   real_server="10.20.40.10:53")["ok"]
    assert _handle(standin, "weight", virtual_server="192.168.1.11:80/TCP",
                   real_server="10.20.40.10:80", weight=7)["ok"]
    assert _handle(standin, "reload")["ok"] and _handle(standin, "diff", path="/x.conf")["ok"]
    assert standin.sent == [
        ("drain", {"virtual_server": "192.168.1.11:80/TCP", "real_server": "10.20.40.11:80",
                   "drained": True, "actor": "ctl:uid=0"}),
        ("drain", {"virtual_server": "192.168.1.11:53/UDP", "real_server": "10.20.40.10:53",
                   "drained": False, "actor": "ctl:uid=0"}),
        ("weight", {"virtual_server": "192.168.1.11:80/TCP", "real_server": "10.20.40.10:80",
                    "weight": 7, "actor": "ctl:uid=0"}),
        ("reload", {"actor": "ctl:uid=0"}),
        ("preview", {"path": "/x.conf"})]
    assert _handle(standin, "names")["result"] == {
        "192.168.1.11:80/TCP": ["10.20.40.10:80", "10.20.40.11:80"],
        "192.168.1.11:53/UDP": ["10.20.40.10:53"], "192.168.1.11:53/TCP": ["10.20.40.10:53"]}


def test_the_server_refuses_clearly_and_goes_on(standin):
    from director import hub
    from director.errors import CommandError
    reply = _handle(standin, "drain", virtual_server="192.168.1.11:53", real_server="x")
    assert reply["kind"] == "refused" and "ambiguous" in reply["error"]
    reply = _handle(standin, "drain", virtual_server="192.168.1.11:80",
                    real_server="10.20.40.12:80")
    assert reply == {"ok": False, "kind": "refused", "error":
                     "no real server '10.20.40.12:80' in 192.168.1.11:80/TCP; real servers: "
                     "10.20.40.10:80, 10.20.40.11:80"}
    assert standin.sent == []                           # nothing reached the daemon
    standin.raises = CommandError("this daemon runs no checkers (-P)")
    assert _handle(standin, "reload")["error"] == "this daemon runs no checkers (-P)"
    standin.raises = hub.Timeout()
    assert _handle(standin, "reload")["kind"] == "unavailable"
    standin.raises = ZeroDivisionError("a bug")
    before = hub.crashes.get("control command", 0)
    reply = _handle(standin, "reload")
    assert reply["kind"] == "internal" and "ZeroDivisionError" in reply["error"]
    assert hub.crashes["control command"] == before + 1
    standin.raises = None
    del StandIn.do_weight                               # a daemon without that command yet
    try:
        reply = _handle(standin, "weight", virtual_server="192.168.1.11:80",
                        real_server="10.20.40.10", weight=3)
    finally:
        StandIn.do_weight = StandIn.do_drain
    assert reply == {"ok": False, "kind": "refused",
                     "error": "this daemon has no 'weight' command"}


# === claiming the socket's path =================================================================

def test_a_path_is_claimed_only_from_the_dead(tmp_path):
    import socket

    from director.control import ControlError, claim
    path = tmp_path / "control.sock"
    claim(str(path))                                    # nothing there: nothing to do
    path.write_text("not a socket")
    with pytest.raises(ControlError, match="exists and is not a socket"):
        claim(str(path))
    assert path.read_text() == "not a socket"
    path.unlink()
    with socket.socket(socket.AF_UNIX) as live:
        live.bind(str(path))
        live.listen(1)
        with pytest.raises(ControlError, match="a running daemon answers on it"):
            claim(str(path))
        assert path.exists()
    claim(str(path))                                    # closed: a crashed daemon's
    assert not path.exists()


def test_what_the_options_ask_for(tmp_path):
    from types import SimpleNamespace

    from director.control import ControlError, serve
    assert serve(None, SimpleNamespace(control_socket="off", state_dir=str(tmp_path))) is None
    deep = tmp_path / ("d" * 120)                        # too long a path for a socket
    deep.mkdir()
    # the default path is a convenience: the daemon runs without it
    assert serve(None, SimpleNamespace(control_socket=None, control_socket_group=None,
                                       state_dir=str(deep))) is None
    # a path asked for is a requirement
    with pytest.raises(ControlError, match="cannot serve the control socket"):
        serve(None, SimpleNamespace(control_socket=str(deep / "c.sock"),
                                    control_socket_group=None, state_dir=str(tmp_path)))
    with pytest.raises(ControlError, match="no-such-group-here: no such group"):
        serve(None, SimpleNamespace(control_socket=None, control_socket_group="no-such-group-here",
                                    state_dir=str(tmp_path)))
    assert list(deep.iterdir()) == [] and not (tmp_path / "control.sock").exists()


def test_a_preview_reads_as_a_diff():
    from director.ctlrender import preview_text
    preview = {
        "would_apply": True, "unchanged": False, "summary": "VRRP instances: 1 changed",
        "errors": [],
        "vrrp_instances": {"added": [], "removed": [{"name": "VI_2", "transition": None}],
                           "changed": [{"name": "VI_1", "settings": ["priority: 100 -> 90"],
                                        "transition": "stays MASTER"}]},
        "virtual_servers": {"added": ["10.0.0.1:80/TCP"], "removed": [], "changed": []},
        "real_servers": {"added": [], "removed": [{"virtual_server": "v", "real_server": "r1"}],
                         "changed": [{"virtual_server": "v", "real_server": "r2",
                                      "settings": ["weight: 1 -> 3"],
                                      "checkers_restart": False}]},
        "kernel": {"services": {"add": ["TCP 10.0.0.1:80 (wlc)"]},
                   "destinations": {"update": ["v -> r2: weight: 1 -> 3"]}},
        "other": []}
    assert preview_text(preview).splitlines() == [
        "VRRP instances: 1 changed",
        "- vrrp_instance VI_2",
        "~ vrrp_instance VI_1: priority: 100 -> 90; then: stays MASTER",
        "+ virtual_server 10.0.0.1:80/TCP",
        "- real_server r1 in v",
        "~ real_server r2 in v: weight: 1 -> 3",
        "+ kernel service TCP 10.0.0.1:80 (wlc)",
        "~ kernel destination v -> r2: weight: 1 -> 3"]
    refused = {"would_apply": False, "summary": "the reload would be refused (1 error)",
               "errors": ["k.conf:2: unknown lb_algo"]}
    assert preview_text(refused) == ("the reload would be refused (1 error)\n"
                                     "  error: k.conf:2: unknown lb_algo\n")
