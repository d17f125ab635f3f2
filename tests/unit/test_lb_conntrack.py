"""Connections per real server from /proc/net/nf_conntrack (the nftables backend's drain)."""

from director.lb.conntrack import parse

TEXT = """\
ipv4     2 tcp      6 431999 ESTABLISHED src=192.168.1.100 dst=192.168.1.11 sport=40000 dport=80 src=10.20.40.10 dst=192.168.1.100 sport=80 dport=40000 [ASSURED] mark=0 zone=0 use=2
ipv4     2 tcp      6 431999 ESTABLISHED src=192.168.1.100 dst=192.168.1.11 sport=40001 dport=80 src=10.20.40.10 dst=192.168.1.100 sport=80 dport=40001 [ASSURED] mark=0 zone=0 use=2
ipv4     2 tcp      6 118 TIME_WAIT src=192.168.1.100 dst=192.168.1.11 sport=40002 dport=80 src=10.20.40.11 dst=192.168.1.100 sport=80 dport=40002 [ASSURED] mark=0 zone=0 use=2
ipv4     2 udp      17 29 src=192.168.1.100 dst=192.168.1.11 sport=5353 dport=53 src=10.20.40.12 dst=192.168.1.100 sport=53 dport=5353 mark=0 zone=0 use=2
ipv6     10 tcp      6 300 ESTABLISHED src=2001:db8::100 dst=2001:db8::11 sport=1 dport=443 src=2001:db8::10 dst=2001:db8::100 sport=443 dport=1 [ASSURED] mark=0 zone=0 use=2
ipv4     2 icmp     1 29 src=192.168.1.100 dst=192.168.1.11 type=8 code=0 id=1 src=192.168.1.11 dst=192.168.1.100 type=0 code=0 id=1 mark=0 zone=0 use=2
garbage
"""


def test_flows_are_counted_per_service_and_real_server():
    counts = parse(TEXT)
    assert counts[("192.168.1.11", 80, "10.20.40.10", 80)] == (2, 0)
    assert counts[("192.168.1.11", 80, "10.20.40.11", 80)] == (0, 1)
    assert counts[("192.168.1.11", 53, "10.20.40.12", 53)] == (0, 1)
    assert counts[("2001:db8::11", 443, "2001:db8::10", 443)] == (1, 0)
    assert len(counts) == 4            # the ICMP flow and the garbage line are skipped
