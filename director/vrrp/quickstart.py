"""The address owner's VIPs at exec: what the last start of the same files decided, done
again before the interpreter loads anything else (issue 17).

An address owner (priority 255) goes MASTER at once (RFC 5798 6.4.1): its first advert, its
VIPs and its gratuitous ARPs depend on nothing it will hear, only on the configuration.
keepalived has them out about 15 ms after exec; director, a Python program, only once gevent,
the configuration engine and the VRRP modules are loaded (about 0.4 s: docs/BENCHMARKS.md,
"exec -> VIP, address owner"). So a daemon whose VRRP has started writes
``STATE_DIR/quickstart.plan``: each owner's advert, its VIPs as netlink arguments and its ARP
frames, all made by the daemon's own code (Instance.advert_messages, Addresses.address_args,
Announcer.frames), under a key: the command line, the working directory, the host name,
the network namespace, and the bytes of every file the configuration was read from. At the
next exec (director/__main__.py, before gevent and the configuration), a plan whose key
still holds is carried out, per owner: the advert, the VIPs, one round of GARP / NA. Then
the daemon starts as always; its VRRP service takes these instances over without removing
their VIPs as leftovers, and their MASTER transition (notify scripts, FIFO, the GARP
rounds, the adverts on their timer) comes when VRRP runs, as before.

A plan holds only what start-up cannot decide otherwise: instances of priority 255 on a
multicast interface, with no tracking of any kind, no sync group, VMAC, AH, firewall
(accept mode off), virtual routes or rules, nor paced GARPs, in a daemon that runs no
virtual servers (-P, or a file without them: the pools would not be there yet for the
traffic the VIP draws) and no vrrp_startup_delay. At exec the interface must be the same
(index, MAC), up with carrier, and no daemon may hold the pid file's lock. Otherwise, or on
any error, nothing is done and the start is as before.

If the daemon fails before its VRRP took the instances over, ``undo`` removes the VIPs the
quick start added (director/__main__.py's ``finally``).

This half (``QuickStart``) runs first thing in the process: only the lightest standard
modules and director's start-up-path ones (rtnl, transport, link) may be imported here; the
writing half imports what it needs when called."""

from __future__ import annotations

import errno
import marshal
import os
import socket
import time

from .. import DEFAULT_STATE_DIR
from ..files import directory_problem, writable_by_others
from .link import interface_up, linkbeat_interfaces
from .proto import OWNER_PRIORITY
from .rtnl import RtnlAddresses
from .transport import VrrpSocket

PLAN_FILE = "quickstart.plan"
FORMAT = 1
MAX_PLAN_BYTES = 64 << 20           # the key holds the configuration's bytes (limits: lexer)


def state_dir(argv: list[str]) -> str:
    """--state-dir as the daemon's argparse will read it (an abbreviation of the option
    finds no plan here, and is then merely slower)."""
    for index, word in enumerate(argv):
        if word == "--state-dir" and index + 1 < len(argv):
            return argv[index + 1]
        if word.startswith("--state-dir="):
            return word.split("=", 1)[1]
    return DEFAULT_STATE_DIR


def key(argv: list[str]) -> tuple:
    """What a plan is for, but for the files: they are compared one by one."""
    return (FORMAT, tuple(argv), os.getcwd(), os.uname().nodename,
            os.stat("/proc/self/ns/net").st_ino)


class QuickStart:
    def __init__(self) -> None:
        self.argv: list[str] | None = None      # set by run(): a daemon may write a plan
        self.taken: set[str] = set()            # instances whose VIPs went up at exec
        self.added: list[tuple] = []            # (index, address, prefixlen, local) we added
        self.errors: list[str] = []
        self.took: float | None = None          # seconds from run() to the last owner done
        self.handed = False

    def run(self, argv: list[str]) -> None:
        """Best effort; never raises (the daemon's start follows whatever happens here)."""
        self.argv = list(argv)
        started = time.monotonic()
        try:
            plan = self._plan()
            if plan is None:
                return
            rtnl = RtnlAddresses()
            try:
                for entry in plan["instances"]:
                    try:
                        self._take(entry, rtnl)
                    except (OSError, ValueError, KeyError, TypeError) as exc:
                        self.errors.append(f"{entry.get('name')}: {exc}")
            finally:
                rtnl.close()
            self.took = time.monotonic() - started
        except Exception as exc:        # noqa: BLE001 (a bad plan must not stop the start)
            self.errors.append(f"plan: {exc!r}")

    def _plan(self) -> dict | None:
        path = os.path.join(state_dir(self.argv), PLAN_FILE)
        try:
            handle = open(path, "rb")
        except FileNotFoundError:
            return None
        with handle:
            # ours alone, as the daemon's state directory must be (files.py): a plan that
            # another user could have written would have root add what it names
            mine, folder = os.fstat(handle.fileno()), os.stat(os.path.dirname(path) or ".")
            if mine.st_uid != os.geteuid() or writable_by_others(mine.st_gid, mine.st_mode) \
                    or directory_problem(folder.st_uid, folder.st_gid, folder.st_mode,
                                         os.geteuid()):
                self.errors.append(f"{path}: not ours alone; ignored")
                return None
            plan = marshal.loads(handle.read(MAX_PLAN_BYTES))
        if not isinstance(plan, dict) or plan.get("key") != key(self.argv):
            return None
        for name, data in plan["files"]:
            try:
                with open(name, "rb") as handle:
                    if handle.read(len(data) + 1) != data:
                        return None
            except OSError:
                return None
        if plan["lock"] is not None and _held(plan["lock"]):
            return None
        return plan

    def _take(self, entry: dict, rtnl: RtnlAddresses) -> None:
        ifname = entry["interface"]
        if socket.if_nametoindex(ifname) != entry["index"] or \
                not interface_up(ifname, entry["linkbeat"]):
            return
        for frames in entry["frames"]:
            if not _same_link(frames[0], frames[1], frames[2]):
                return
        family, source, group = entry["socket"]
        sender = VrrpSocket(ifname, family, source, group=group).open()
        try:
            for destination, message, ttl, source6 in entry["adverts"]:
                sender.send(message, destination, ttl, source6)
        finally:
            sender.close()
        for index, address, prefixlen, options in entry["addresses"]:
            try:
                rtnl.add(index, address, prefixlen, **options)
            except OSError as exc:
                if exc.errno != errno.EEXIST:
                    raise
                continue                    # there already: not ours to remove on failure
            self.added.append((index, address, prefixlen, options.get("local")))
        self.taken.add(entry["name"])
        for ifname, _index, _mac, frames in entry["frames"]:
            with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0) as packets:
                packets.setblocking(False)
                packets.bind((ifname, 0))
                for proto, frame in frames:
                    packets.sendto(frame, (ifname, proto))

    def hand_over(self) -> set[str]:
        """VRRP's start takes the instances over: their VIPs are its to keep or remove."""
        self.handed = True
        return self.taken

    def undo(self) -> None:
        """The daemon stops before its VRRP took over: the VIPs added at exec go."""
        if self.handed or not self.added:
            return
        rtnl = RtnlAddresses()
        try:
            for index, address, prefixlen, local in self.added:
                try:
                    rtnl.delete(index, address, prefixlen, local=local)
                except OSError:
                    pass
        finally:
            rtnl.close()
        self.added = []


def _held(lock: bytes) -> bool:
    """Whether a daemon holds the pid file's lock (pidfile.py's abstract socket)."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(lock)
        return True
    except OSError:
        return False
    finally:
        probe.close()


def _same_link(ifname: str, index: int, mac: str) -> bool:
    try:
        with open(f"/sys/class/net/{ifname}/address") as handle:
            return handle.read().strip() == mac and socket.if_nametoindex(ifname) == index
    except OSError:
        return False


QUICK = QuickStart()


# -- the writing half: the daemon, once its VRRP has started -------------------------------

def write(directory: str, argv: list[str], sources, service, config, options,
          pid_file: str | None) -> list[str]:
    """Writes the plan for the next exec of ``argv``, or removes an old one when nothing
    qualifies. Returns the instances it holds."""
    path = os.path.join(directory, PLAN_FILE)
    entries = []
    if sources is not None and runs_no_pools(config, options) and \
            not config.global_defs.vrrp_startup_delay:
        made = (_entry(instance, service, config) for instance in service.instances)
        entries = [entry for entry in made if entry is not None]
    if not entries:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        return []
    from ..files import open_private
    from ..pidfile import lock_name
    plan = {"key": key(argv), "files": [list(item) for item in sources],
            "lock": lock_name(pid_file) if pid_file else None, "instances": entries}
    temporary = f"{path}.{os.getpid()}.tmp"
    with open_private(temporary, "wb", 0o600) as handle:    # the files may hold passwords
        handle.write(marshal.dumps(plan))
    os.replace(temporary, path)
    return [entry["name"] for entry in entries]


def runs_no_pools(config, options) -> bool:
    return bool(options.vrrp) or not (config.virtual_servers or config.virtual_server_groups)


def _entry(instance, service, config) -> dict | None:
    """The instance's plan entry, or None when start-up could decide otherwise for it."""
    from .firewall import blocks
    from .packet import AUTH_AH
    from .tracked import tracked_for
    item = instance.config
    own_link = f"interface {item.interface}"          # tracked by default: checked at exec
    if instance.params is None or instance.params.priority != OWNER_PRIORITY or \
            not item.interface or item.unicast_peer or instance.vmac is not None or \
            item.dont_track_primary or item.virtual_routes or item.virtual_rules or \
            instance.auth()[0] == AUTH_AH or \
            any(t.key != own_link for t in tracked_for(config, item)[0]) or \
            any(item.name in group.group for group in config.vrrp_sync_groups) or \
            (service.firewall.settings is not None and
             blocks(item, instance.global_defs, instance.version)):
        return None
    announced = instance.announced()
    if any(service.announcer.interval(ifname, family, own)
           for ifname in announced
           for family, own in ((4, item.garp_interval), (6, item.gna_interval))):
        return None                         # paced GARPs: the daemon's pacer's business
    key_ = instance.socket_keys[0]
    linkbeat = linkbeat_interfaces(config)
    linkbeat = linkbeat is True or item.interface in linkbeat
    frames = []
    for ifname, addresses in announced.items():
        index, made = service.announcer.announcer.frames(ifname, addresses)
        if made:
            with open(f"/sys/class/net/{ifname}/address") as handle:
                mac = handle.read().strip()
            frames.append([ifname, index, mac, [[proto, frame] for _, _, proto, frame in made]])
    return {
        "name": instance.name, "interface": item.interface,
        "index": socket.if_nametoindex(item.interface), "linkbeat": linkbeat,
        "socket": [key_[1], key_[2], key_[4]],
        "adverts": [list(message) for message in instance.advert_messages(OWNER_PRIORITY)],
        "addresses": [list(service.addresses.address_args(vip, instance.vip_interface))
                      for vip in instance.placed(item.virtual_ipaddress +
                                                 item.virtual_ipaddress_excluded)],
        "frames": frames}
