"""vrrp_strict / strict_mode: keepalived 2.2.7's refusals and resets (vrrp.c,
vrrp_complete_instance), each a FILE:LINE diagnostic at the instance, and what the instance
then runs with (config/strict.py)."""

from __future__ import annotations

import pytest

from director.config import load_config
from director.config.strict import accept_mode, overrides, strict_mode

STRICT = "global_defs {\n vrrp_strict\n}\n"


def load(tmp_path, text: str):
    path = tmp_path / "keepalived.conf"
    path.write_text(text)
    return load_config(str(path), config_id="t", interface_exists=None)


def instance(body: str, vips: str = "10.0.0.9") -> str:
    address = f" virtual_ipaddress {{\n  {vips}\n }}\n" if vips else ""
    return (f"vrrp_instance VI_1 {{\n interface eth0\n virtual_router_id 1\n{body}\n"
            f"{address}}}\n")


def said(result) -> list[str]:
    return [f"{d.location.line}: {d.severity}: {d.message}" for d in result.diagnostics]


@pytest.mark.parametrize("body, vips, message", [
    (" priority 100", "", "error: vrrp_instance VI_1: strict mode needs at least one "
                          "virtual_ipaddress"),
    (" state MASTER\n priority 100", "10.0.0.9", "warning: vrrp_instance VI_1: strict mode "
     "takes 'state MASTER' for the address owner (priority 255) only: the initial state is "
     "BACKUP"),
    (" authentication {\n  auth_type PASS\n  auth_pass secret\n }", "10.0.0.9",
     "warning: vrrp_instance VI_1: strict mode has no authentication: ignored, adverts "
     "carry none"),
    (" preempt_delay 10", "10.0.0.9", "warning: vrrp_instance VI_1: strict mode has no "
                                      "preempt_delay: reset to 0"),
    (" down_timer_adverts 5", "10.0.0.9", "warning: vrrp_instance VI_1: strict mode has no "
                                          "down_timer_adverts: reset to 3"),
    (" garp_lower_prio_repeat 2", "10.0.0.9", "warning: vrrp_instance VI_1: strict mode "
     "sends no repeated gratuitous ARPs: garp_lower_prio_repeat reset to 0"),
    (" garp_lower_prio_delay 2", "10.0.0.9", "warning: vrrp_instance VI_1: strict mode "
     "sends no repeated gratuitous ARPs: garp_lower_prio_delay reset to 0"),
    (" lower_prio_no_advert false", "10.0.0.9", "warning: vrrp_instance VI_1: strict mode "
     "answers no lower priority advert: lower_prio_no_advert reset to on"),
    (" higher_prio_send_advert", "10.0.0.9", "warning: vrrp_instance VI_1: strict mode "
     "sends no advert before stepping down: higher_prio_send_advert reset to off"),
    (" accept", "10.0.0.9", "warning: vrrp_instance VI_1: strict mode with VRRPv2 has no "
     "accept mode (RFC 3768): accept reset to off, the VIPs are not answered"),
    (" version 2", "fe80::1\n  2001:db8::1", "warning: vrrp_instance VI_1: strict mode "
     "runs IPv6 with VRRP version 3: version 2 reset to 3"),
    ("", "2001:db8::1", "warning: vrrp_instance VI_1: strict mode wants the first IPv6 "
     "virtual address link-local (RFC 5798); running as written"),
    (" unicast_peer {\n  10.0.0.2\n }", "10.0.0.9", "warning: vrrp_instance VI_1: strict "
     "mode should not use unicast_peer (keepalived's documentation), but keepalived 2.2.7 "
     "runs it (its check comes before it knows the instance is unicast); so does director"),
])
def test_each_strict_refusal_or_reset_is_said_at_the_instance(tmp_path, body, vips,
                                                              message):
    result = load(tmp_path, STRICT + instance(body, vips))
    assert said(result) == [f"4: {message}"]
    assert result.ok == message.startswith("warning")
    # the same instance without strict mode: nothing said (keepalived: nothing either)
    quiet = load(tmp_path, instance(body, vips) if vips else instance(body))
    assert not [d for d in said(quiet) if "strict" in d]


def test_strict_mode_in_the_instance_wins_over_the_global(tmp_path):
    result = load(tmp_path, STRICT + instance(" strict_mode off\n preempt_delay 5"))
    assert said(result) == [] and result.ok
    result = load(tmp_path, instance(" strict_mode\n preempt_delay 5"))
    assert said(result) == ["1: warning: vrrp_instance VI_1: strict mode has no "
                            "preempt_delay: reset to 0"]


def test_what_a_strict_instance_runs_with(tmp_path):
    cfg = load(tmp_path, STRICT + instance(" priority 100\n preempt_delay 5")).config
    item, defs = cfg.vrrp_instances[0], cfg.global_defs
    assert strict_mode(item, defs)
    assert overrides(item, defs) == {
        "authentication": None, "preempt_delay": 0.0, "down_timer_adverts": 3,
        "garp_lower_prio_repeat": 0, "garp_lower_prio_delay": 0,
        "lower_prio_no_advert": True, "higher_prio_send_advert": False}
    plain = load(tmp_path, instance(" priority 100")).config
    assert overrides(plain.vrrp_instances[0], plain.global_defs) == {}


@pytest.mark.parametrize("strict, body, version, accepts", [
    (False, "", 2, True),                   # keepalived's default: accept
    (False, " no_accept", 2, False),
    (False, " no_accept\n priority 255", 2, True),    # the owner always accepts
    (True, "", 3, False),                   # strict: off unless owner
    (True, " priority 255", 2, True),
    (True, " accept", 3, True),
    (True, " accept", 2, False),            # RFC 3768 has no accept mode
])
def test_accept_mode(tmp_path, strict, body, version, accepts):
    cfg = load(tmp_path, (STRICT if strict else "") + instance(body)).config
    assert accept_mode(cfg.vrrp_instances[0], cfg.global_defs, version) is accepts


def test_a_bad_table_name_is_an_error_at_its_line(tmp_path):
    result = load(tmp_path, "global_defs {\n nftables bad-name!\n}\n" + instance(""))
    assert said(result)[0].startswith("2: error:")
    assert "table name must be a letter" in said(result)[0]


def test_vrrp_iptables_says_the_rules_are_nftables_ones(tmp_path):
    result = load(tmp_path, "global_defs {\n vrrp_iptables IN OUT\n}\n" + instance(""))
    assert said(result) == ["2: warning: director has no iptables: accept mode's rules are "
                            "nftables ones (table keepalived, or global_defs 'nftables "
                            "NAME'); write 'nftables'"]
    assert result.config.global_defs.vrrp_iptables == ("IN", "OUT")
