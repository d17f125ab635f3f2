"""A network-namespace lab, for the functional tests and the demo: switches (Linux bridges)
and hosts (namespaces with veths plugged into the switches), each in a namespace of its own.
A harness, not part of the daemon: it lives in the demo's package because ``director demo``
builds its lab with it at run time (tests/functional/lab.py adds what only tests need).

    with Lab() as lab:                       # or the `lab` fixture of tests/functional
        sw = lab.switch()
        a = lab.host("a", links=[(sw, "eth0", ["192.0.2.1/24", "2001:db8::1/64"])])
        b = lab.host("b", links=[(sw, "eth0", ["192.0.2.2/24", "2001:db8::2/64"])])
        assert a.ping("192.0.2.2")
        sw.set_port(b, "eth0", up=False)     # partition b (its carrier stays up)
        keepalived = start_keepalived(a, CONFIG)    # tests/functional/lab.py
        wait_for(lambda: a.has_address("eth0", "192.0.2.100"), 5,
                 message=lambda: lab.log_of(keepalived))

Nothing is created on the host: every bridge, veth and process lives in a namespace the
lab made, with a unique name (pid, counter, random suffix), and `close()` kills the
processes and deletes exactly those namespaces, then checks with `ip netns list`.
Every wait has a deadline (`wait_for`); nothing sleeps for a fixed time. lab.tmp (configs,
process logs) is removed at close unless the environment variable KEEP_LAB is set.
"""
from __future__ import annotations

import atexit
import ipaddress
import itertools
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from functools import cache
from pathlib import Path

KILL_GRACE = 3.0          # seconds between TERM and KILL at close
SETUP_TIMEOUT = 5.0       # seconds a link or a port may take to become usable
IFNAMSIZ = 15             # longest Linux interface name
KEEPALIVED_PATHS = ("/usr/sbin/keepalived", "/sbin/keepalived")

_lab_numbers = itertools.count(1)
_open_labs: set["Lab"] = set()
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")


def wait_for(predicate, timeout, interval=0.01, message=""):
    """Poll predicate() until it returns something truthy and return that value.

    At the deadline raise AssertionError with message (a string, or a callable returning one,
    called then: `message=lambda: lab.log_of(proc)`), the elapsed time and the last value.
    Bounded in time (timeout) and in count (about timeout / interval polls)."""
    start = time.monotonic()
    deadline = start + timeout
    max_polls = int(timeout / max(interval, 0.001)) + 2
    value = None
    for polls in range(1, max_polls + 1):
        value = predicate()
        if value:
            return value
        left = deadline - time.monotonic()
        if left <= 0:
            break
        time.sleep(min(interval, left))
    elapsed = time.monotonic() - start
    if callable(message):
        message = message()
    raise AssertionError(f"not true after {elapsed:.2f} s (timeout {timeout} s, {polls} polls, "
                         f"last value {value!r}): {message or 'condition'}")


def _run(argv, check=True, timeout=10, **kw):
    """subprocess.run with captured text output; a failure names the command and its stderr."""
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    result = subprocess.run(argv, timeout=timeout, **kw)
    if check and result.returncode != 0:
        raise subprocess.CalledProcessError(
            result.returncode, argv, result.stdout,
            f"{' '.join(map(str, argv))} exited {result.returncode}: {result.stderr}")
    return result


def _ip_json(ns, *args):
    out = _run(["ip", "-n", ns, "-j", *args]).stdout.strip()
    return json.loads(out) if out else []


def _netns_names() -> set[str]:
    return {line.split()[0] for line in _run(["ip", "netns", "list"]).stdout.splitlines()
            if line.strip()}


@cache
def netns_unavailable() -> str | None:
    """Why network namespace tests cannot run here, or None if they can (probed once)."""
    if os.geteuid() != 0:
        return "needs root (euid 0) for network namespaces; run the functional tests as root"
    if shutil.which("ip") is None:
        return "needs iproute2's `ip` command"
    probe = f"dlab-probe-{os.getpid()}-{secrets.token_hex(3)}"
    try:
        added = _run(["ip", "netns", "add", probe], check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"`ip netns add` failed: {exc}"
    if added.returncode != 0:
        return f"`ip netns add` failed: {added.stderr.strip()}"
    _run(["ip", "netns", "del", probe], check=False)
    return None


def _check_ifname(ifname):
    if not (0 < len(ifname) <= IFNAMSIZ) or not re.fullmatch(r"[A-Za-z0-9_.-]+", ifname):
        raise ValueError(f"bad interface name {ifname!r} (1-{IFNAMSIZ} chars of [A-Za-z0-9_.-])")


class Lab:
    """Owns namespaces, processes and a temp dir; close() (or leaving `with`) removes them all."""

    def __init__(self):
        self.id = f"dl{os.getpid()}-{next(_lab_numbers)}{secrets.token_hex(2)}"
        self.tmp = Path(tempfile.mkdtemp(prefix=f"director-{self.id}-"))
        self.namespaces: list[str] = []            # in creation order
        self.processes: list[subprocess.Popen] = []
        self._logs: dict[subprocess.Popen, Path] = {}
        self._names: set[str] = set()
        self._closed = False
        _open_labs.add(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"Lab({self.id}, {len(self.namespaces)} namespaces, tmp={self.tmp})"

    def _new_namespace(self, name) -> str:
        if self._closed:
            raise RuntimeError("lab is closed")
        if not _NAME_RE.match(name) or name in self._names:
            raise ValueError(f"lab name {name!r} is taken or not [A-Za-z0-9_.-]{{1,32}}")
        self._names.add(name)
        ns = f"{self.id}-{name}"
        self.namespaces.append(ns)          # first: close() deletes it even if add is interrupted
        _run(["ip", "netns", "add", ns])
        _run(["ip", "-n", ns, "link", "set", "lo", "up"])
        return ns

    def switch(self, name="sw") -> "Switch":
        """A Linux bridge `br0` in a namespace of its own (IPv6 off there, so it sends nothing)."""
        ns = self._new_namespace(name)
        _sysctl(ns, {"net.ipv6.conf.all.disable_ipv6": 1, "net.ipv6.conf.default.disable_ipv6": 1})
        _run(["ip", "-n", ns, "link", "add", "br0", "type", "bridge",
              "stp_state", "0", "forward_delay", "0", "mcast_snooping", "0"])
        _run(["ip", "-n", ns, "link", "set", "br0", "up"])
        return Switch(self, name, ns)

    def host(self, name, links=(), sysctls=None) -> "Host":
        """A namespace with lo up and one veth per (switch, ifname, addresses) in links.

        sysctls are written before the links are made (so `default.` keys apply to them),
        except keys naming one of the links' interfaces, written once it exists."""
        ns = self._new_namespace(name)
        sysctls = dict(sysctls or {})
        ifnames = {ifname for _, ifname, _ in links}
        later = {k: v for k, v in sysctls.items() if ifnames & set(re.split(r"[./]", k))}
        _sysctl(ns, {"net.ipv6.conf.all.accept_dad": 0, "net.ipv6.conf.default.accept_dad": 0,
                     **{k: v for k, v in sysctls.items() if k not in later}})
        host = Host(self, name, ns)
        for switch, ifname, addresses in links:
            host.add_link(switch, ifname, addresses)
        _sysctl(ns, later)
        return host

    def _popen(self, host, argv, log_path=None, env=None, pipes=False):
        """pipes: stdin and stdout are text pipes to the caller, only stderr goes to the log."""
        if self._closed:
            raise RuntimeError("lab is closed")
        argv = [str(a) for a in argv]
        number = len(self.processes) + 1
        log_path = Path(log_path or self.tmp / f"{host.name}-{Path(argv[0]).name}-{number}.log")
        with open(log_path, "ab") as log:
            if pipes:
                streams = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "stderr": log,
                           "text": True}
            else:
                streams = {"stdin": subprocess.DEVNULL, "stdout": log,
                           "stderr": subprocess.STDOUT}
            proc = subprocess.Popen(["ip", "netns", "exec", host.ns, *argv], **streams,
                                    env={**os.environ, **(env or {})}, start_new_session=True)
        self.processes.append(proc)
        self._logs[proc] = log_path
        return proc

    def log_of(self, proc) -> str:
        """The output (stdout and stderr) a process started with popen() has written so far."""
        path = self._logs.get(proc)
        if path is None:
            return f"(no log: pid {proc.pid} was not started by this lab)"
        try:
            return path.read_text(errors="replace")
        except OSError as exc:
            return f"(log {path} unreadable: {exc})"

    def close(self):
        """Kill the processes, delete the namespaces, check `ip netns list`; idempotent."""
        if self._closed:
            return
        self._closed = True
        _open_labs.discard(self)
        try:
            self._kill(self.processes)
            for ns in self.namespaces:
                self._kill_namespace_pids(ns)
        finally:
            for ns in reversed(self.namespaces):      # hosts first, then their switches
                _run(["ip", "netns", "del", ns], check=False)
            if os.environ.get("KEEP_LAB"):
                print(f"lab {self.id}: configs and logs kept in {self.tmp}", file=sys.stderr)
            else:
                shutil.rmtree(self.tmp, ignore_errors=True)
        left = sorted(_netns_names() & set(self.namespaces))
        if left:
            raise AssertionError(f"lab {self.id}: namespaces still present after close: {left}")

    @staticmethod
    def _kill(procs):
        """TERM (or its close_signal) the process group of every live process, KILL it after
        KILL_GRACE, reap.

        Groups are signalled only while their leader is unreaped (so the id cannot have been
        reused); children that outlive their leader are found by _kill_namespace_pids."""
        live = [p for p in procs if p.poll() is None]
        for proc in live:
            # a process may name its own: SIGKILL for a peer whose clean stop is not under test
            # (keepalived takes a second to stop on TERM, a second of every test using it)
            _signal_group(proc.pid, getattr(proc, "close_signal", signal.SIGTERM))
        deadline = time.monotonic() + KILL_GRACE
        for proc in live:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(proc.pid, signal.SIGKILL)
        for proc in live:
            try:
                proc.wait(KILL_GRACE)
            except subprocess.TimeoutExpired:
                pass

    @staticmethod
    def _kill_namespace_pids(ns):
        """Processes still in a namespace of ours (daemonised, escaped the group): TERM, KILL."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            pids = _run(["ip", "netns", "pids", ns], check=False).stdout.split()
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(int(pid), sig)
                except (ProcessLookupError, ValueError):
                    pass
            try:
                wait_for(lambda: not _run(["ip", "netns", "pids", ns], check=False).stdout.split(),
                         KILL_GRACE, interval=0.05)
                return
            except AssertionError:
                continue


def _signal_group(pgid, sig):
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _sysctl(ns, values):
    if values:
        _run(["ip", "netns", "exec", ns, "sysctl", "-q", "-w",
              *(f"{k}={v}" for k, v in values.items())])


@atexit.register
def _close_forgotten_labs():
    for lab in list(_open_labs):
        try:
            lab.close()
        except Exception as exc:  # at exit there is nobody left to raise to
            print(f"lab {lab.id}: close at exit failed: {exc}", file=sys.stderr)


class Switch:
    """A bridge `br0` in namespace `ns`; ports are veth ends named p<N>-<ifname>."""

    def __init__(self, lab, name, ns):
        self.lab, self.name, self.ns = lab, name, ns
        self.bridge = "br0"
        self._ports: dict[tuple[str, str], str] = {}

    def __repr__(self):
        return f"Switch({self.name}, ns={self.ns})"

    def _plug(self, host, ifname) -> str:
        if (host.ns, ifname) in self._ports:
            raise ValueError(f"{host.name}:{ifname} is already plugged into {self.name}")
        port = f"p{len(self._ports) + 1}-{ifname}"[:IFNAMSIZ]
        _run(["ip", "-n", self.ns, "link", "add", port, "type", "veth",
              "peer", "name", ifname, "netns", host.ns])
        self._ports[(host.ns, ifname)] = port
        _run(["ip", "-n", self.ns, "link", "set", port, "master", self.bridge])
        _run(["ip", "-n", self.ns, "link", "set", port, "up"])
        return port

    def port(self, host, ifname) -> str:
        """The bridge-side veth of host's ifname."""
        try:
            return self._ports[(host.ns, ifname)]
        except KeyError:
            raise KeyError(f"{host.name}:{ifname} is not plugged into {self.name}") from None

    def port_state(self, host, ifname) -> str:
        """The bridge port's STP state: 'forwarding', 'disabled', ..."""
        info = _ip_json(self.ns, "-d", "link", "show", "dev", self.port(host, ifname))
        return info[0].get("linkinfo", {}).get("info_slave_data", {}).get("state", "")

    def set_port(self, host, ifname, up: bool):
        """Partition (up=False) or heal host's ifname: the bridge port stops/starts forwarding.

        The carrier stays up, as when a switch in between fails: the host sees no link change,
        it just hears nobody (use host.link() for a link going down). Waits for the state."""
        state = "forwarding" if up else "disabled"
        # `bridge link set`: `ip link set ... type bridge_slave state 0` exits 0 but leaves the
        # port forwarding (iproute2 6.1)
        _run(["bridge", "-n", self.ns, "link", "set", "dev", self.port(host, ifname),
              "state", "3" if up else "0"])
        wait_for(lambda: self.port_state(host, ifname) == state, SETUP_TIMEOUT,
                 message=f"{self.name} port of {host.name}:{ifname} {state}")


class Host:
    """A namespace `ns` with interfaces plugged into switches; commands run inside it."""

    def __init__(self, lab, name, ns):
        self.lab, self.name, self.ns = lab, name, ns

    def __repr__(self):
        return f"Host({self.name}, ns={self.ns})"

    def add_link(self, switch, ifname, addresses=()):
        """A veth named ifname here, its peer a port of switch; addresses added, link up,
        DAD off; returns once the bridge port forwards and (with IPv6) link-local exists."""
        _check_ifname(ifname)
        switch._plug(self, ifname)
        _sysctl(self.ns, {f"net.ipv6.conf.{ifname}.accept_dad": 0})
        for address in addresses:
            extra = ["nodad"] if ipaddress.ip_interface(address).version == 6 else []
            _run(["ip", "-n", self.ns, "addr", "add", address, "dev", ifname, *extra])
        self.link(ifname, True)
        wait_for(lambda: switch.port_state(self, ifname) == "forwarding", SETUP_TIMEOUT,
                 message=f"{switch.name} port of {self.name}:{ifname} forwarding")
        ipv6_off = self.run(["sysctl", "-n", f"net.ipv6.conf.{ifname}.disable_ipv6"]).stdout
        if ipv6_off.strip() == "0":
            wait_for(lambda: any(a.startswith("fe80:") for a in self.addresses(ifname)),
                     SETUP_TIMEOUT, message=f"{self.name}:{ifname} IPv6 link-local address")

    def run(self, argv, check=True, timeout=10, **kw) -> subprocess.CompletedProcess:
        """Run argv in this namespace, output captured as text; check raises with stderr."""
        return _run(["ip", "netns", "exec", self.ns, *map(str, argv)], check=check,
                    timeout=timeout, **kw)

    def popen(self, argv, log_path=None, env=None) -> subprocess.Popen:
        """Start argv here, stdout+stderr to a log in lab.tmp (see lab.log_of); env is added to
        the inherited environment. The lab kills it at close (TERM, KILL after 3 s)."""
        return self.lab._popen(self, argv, log_path, env)

    def addresses(self, ifname) -> list[str]:
        """Addresses on ifname with their prefix, e.g. ['192.0.2.1/24', 'fe80::1/64']."""
        return [f"{a['local']}/{a['prefixlen']}"
                for link in _ip_json(self.ns, "addr", "show", "dev", ifname)
                for a in link.get("addr_info", [])]

    def has_address(self, ifname, address) -> bool:
        """Whether address (no prefix) is on ifname."""
        wanted = ipaddress.ip_address(address)
        return any(ipaddress.ip_interface(a).ip == wanted for a in self.addresses(ifname))

    def mac(self, ifname) -> str:
        return _ip_json(self.ns, "link", "show", "dev", ifname)[0]["address"]

    def neighbour(self, ip) -> str | None:
        """The link-layer address this host's neighbour table has for ip, or None."""
        for entry in _ip_json(self.ns, "neigh", "show", "to", str(ip)):
            if entry.get("lladdr"):
                return entry["lladdr"]
        return None

    def link(self, ifname, up: bool):
        _run(["ip", "-n", self.ns, "link", "set", "dev", ifname, "up" if up else "down"])

    def ping(self, address, count=1, timeout=1) -> bool:
        """Send count ICMP echo requests from here, each waiting up to timeout seconds for
        its own reply (matched by source, id, sequence and payload); True if any came back."""
        result = self.run([sys.executable, "-I", "-c", _PING_SCRIPT, address, count, timeout],
                          check=False, timeout=count * timeout + 10)
        if result.returncode not in (0, 3):
            raise RuntimeError(f"ping {address} from {self.name} failed: {result.stderr}")
        return result.returncode == 0


# Run as `python -c _PING_SCRIPT ADDRESS COUNT TIMEOUT` inside a namespace (no ping binary is
# needed): raw ICMP / ICMPv6 sockets, exit 0 if any echo reply of ours came back, 3 if none
# did (an error sending, e.g. no route, counts as no reply); anything else is a broken ping.
_PING_SCRIPT = r"""
import ipaddress, os, select, socket, struct, sys, time
address, count, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
family, _, _, _, sockaddr = socket.getaddrinfo(address, None, 0, socket.SOCK_RAW)[0]
target = ipaddress.ip_address(address.split("%")[0])
if family == socket.AF_INET6:
    sock = socket.socket(family, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    request, reply = 128, 129          # the kernel fills in the ICMPv6 checksum
else:
    sock = socket.socket(family, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    request, reply = 8, 0

def checksum(data):
    data += b"\0" * (len(data) % 2)
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF

ident = os.getpid() & 0xFFFF
for seq in range(1, count + 1):
    payload = os.urandom(16)
    packet = struct.pack("!BBHHH", request, 0, 0, ident, seq) + payload
    if family == socket.AF_INET:
        packet = packet[:2] + struct.pack("!H", checksum(packet)) + packet[4:]
    try:
        sock.sendto(packet, sockaddr)
    except OSError:
        continue
    deadline = time.monotonic() + timeout
    for _ in range(10000):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([sock], [], [], left)[0]:
            break
        data, source = sock.recvfrom(65535)
        if family == socket.AF_INET:
            data = data[(data[0] & 0x0F) * 4:]
        if (ipaddress.ip_address(source[0].split("%")[0]) == target and len(data) >= 24
                and data[0] == reply and struct.unpack("!HH", data[4:8]) == (ident, seq)
                and data[8:24] == payload):
            sys.exit(0)
sys.exit(3)
"""


def keepalived_binary() -> str | None:
    return shutil.which("keepalived") or next(
        (p for p in KEEPALIVED_PATHS if os.access(p, os.X_OK)), None)
