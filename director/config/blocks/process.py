"""global_defs keywords about the process itself, its files and the kernel's IPVS settings.

keepalived runs VRRP and the checkers in two child processes and sets these per child
(``vrrp_priority``, ``checker_priority``, ...). director is one process: where both are
given it takes the strictest (the higher real-time priority, the lower nice value, the
union of the CPU sets, ...) and ``-t`` warns that the two differ. director/process.py turns
the values into one plan and applies it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from ..schema import UINT_MAX, Custom, Flag, Int, Invalid, Kw, Word, one_value
from ..values import Script

ONE_PROCESS = ("director runs VRRP and the checkers in one process: with both the vrrp_ "
               "and the checker_ form given, the {which} applies (-t warns when they differ)")

LVS_MAX_TIMEOUT = 86400 * 31        # keepalived's LVS_MAX_TIMEOUT (31 days)


@dataclass(frozen=True, slots=True)
class LvsTimeouts:
    """IPVS connection timeouts in seconds; None leaves the kernel's value as it is."""

    tcp: int | None = None
    tcpfin: int | None = None
    udp: int | None = None


def lvs_timeouts(args: list[str], ctx) -> LvsTimeouts:
    """``lvs_timeouts [tcp N] [tcpfin N] [udp N]``: at least one, each 0..31 days (keepalived
    refuses the whole line with nothing in it, and each bad pair alone)."""
    if not args:
        raise Invalid("expects at least one of tcp N, tcpfin N, udp N")
    values: dict[str, int] = {}
    words = [str(word) for word in args]
    while words:
        name = words.pop(0)
        if name not in ("tcp", "tcpfin", "udp"):
            raise Invalid(f"unknown option '{name}' (expects tcp, tcpfin or udp)")
        if not words:
            raise Invalid(f"no value for {name}")
        word = words.pop(0)
        if not word.isdecimal() or int(word) > LVS_MAX_TIMEOUT:
            raise Invalid(f"{name} must be a number of seconds from 0 to {LVS_MAX_TIMEOUT}, "
                          f"got '{word}'")
        values[name] = int(word)
    return LvsTimeouts(**values)


_UMASK_BITS = {f"I{kind}{who}": bit << shift
               for who, shift in (("USR", 6), ("GRP", 3), ("OTH", 0))
               for kind, bit in (("R", 4), ("W", 2), ("X", 1))}


def umask(args: list[str], ctx) -> int:
    """``umask 022`` (hex, octal with a leading 0, or decimal, as strtol's base 0) or
    ``umask IWGRP | IWOTH``."""
    text = "".join(str(word) for word in args)
    if not text:
        raise Invalid("expects a number or BITS such as IWGRP|IWOTH")
    if text[0].isdecimal():
        try:
            value = int(text, 16) if text.lower().startswith("0x") else \
                int(text, 8) if text.startswith("0") else int(text, 10)
        except ValueError:
            raise Invalid(f"invalid umask value {text}") from None
        if value & ~0o777:
            raise Invalid(f"invalid umask value {text} (at most 0777)")
        return value
    value = 0
    for bit in text.split("|"):
        if bit not in _UMASK_BITS:
            raise Invalid(f"unknown umask bit '{bit}' (expects I{{R,W,X}}{{USR,GRP,OTH}})")
        value |= _UMASK_BITS[bit]
    return value


def cpu_list(args: list[str], ctx) -> tuple[int, ...]:
    """``vrrp_cpu_affinity 0 2 3``: CPU numbers as /proc/cpuinfo's 'processor' lines."""
    if not args:
        raise Invalid("expects one or more CPU numbers")
    cpus = []
    for word in args:
        if not str(word).isdecimal() or int(word) > 4095:
            raise Invalid(f"expects CPU numbers from 0 to 4095, got '{word}'")
        cpus.append(int(word))
    return tuple(sorted(set(cpus)))


def optional_path(args: list[str], ctx) -> str:
    """``reload_file [PATH]``, ``reload_check_config [LOG_FILE]``: a path, or "" for the
    default."""
    if not args:
        return ""
    return absolute_path(args, ctx)


def absolute_path(args: list[str], ctx) -> str:
    path = str(one_value(args, "an absolute path"))
    if not path.startswith("/"):
        raise Invalid(f"expects an absolute path, got '{path}'")
    return path


def auto_priority(args: list[str], ctx) -> int:
    """``max_auto_priority [-1..99]``: nothing means the highest (99)."""
    return 99 if not args else Int(-1, 99).parse(args, ctx)


_INCLUDE_CHECKS = ("readable", "match", "wildcard_match", "brace_match")


def include_check(args: list[str], ctx) -> tuple[str, ...]:
    """``include_check [[+|-]CHECK ...]``: nothing means every check."""
    checks: set[str] = set() if args else set(_INCLUDE_CHECKS)
    for word in (str(a) for a in args):
        sign, name = (word[0], word[1:]) if word[:1] in "+-" else ("+", word)
        if name not in _INCLUDE_CHECKS:
            raise Invalid(f"unknown include check '{name}' (expects "
                          f"{', '.join(_INCLUDE_CHECKS)})")
        (checks.add if sign == "+" else checks.discard)(name)
    if checks & {"match", "wildcard_match", "brace_match"}:
        checks.add("readable")          # each implies the readable check
    return tuple(name for name in _INCLUDE_CHECKS if name in checks)


_NAME = re.compile(r"[^\s/]{1,15}\Z")


def process_name(args: list[str], ctx) -> str:
    name = str(one_value(args, "a process name"))
    if not _NAME.match(name):
        raise Invalid(f"expects a name of 1 to 15 characters without '/', got '{name}' "
                      "(the kernel keeps 15)")
    return name


def _pair(name: str, value, default=None, doc: str = "", old: str = "") -> tuple[Kw, ...]:
    """The vrrp_ and checker_ forms of one process setting (and their deprecated
    spellings ``old``, which keepalived 2.2.7 still reads)."""
    forms = tuple(Kw(f"{who}_{name}", value, default=default, doc=doc)
                  for who in ("vrrp", "checker"))
    return forms + tuple(Kw(f"{who}_{old}", value, field=f"{who}_{name}",
                            deprecated=f"{who}_{old} is deprecated: write {who}_{name}")
                         for who in ("vrrp", "checker") if old)


NETLINK = ("SO_RCVBUF of director's {which} netlink socket{force}, set when it is opened "
           "(at start)")

PROCESS_KEYWORDS = (
    Kw("lvs_timeouts", Custom(lvs_timeouts, "[tcp SECS] [tcpfin SECS] [udp SECS]"),
       doc="IPVS connection timeouts, set in the kernel at start and on a reload that "
           "changes them (IPVS_CMD_SET_CONFIG); what is not given keeps the kernel's value, "
           "and nothing is restored on stop (as keepalived). The nftables backend has no "
           "such timeouts: they are conntrack's (sysctl net.netfilter."
           "nf_conntrack_tcp_timeout_*), and director warns that it leaves them alone."),
    Kw("umask", Custom(umask, "NUMBER | BITS (IWGRP|IWOTH)"),
       doc="The umask of the files director creates (state, dumps, the pid file: those "
           "also never more than 0644) and of the scripts it runs. Default: keepalived's "
           "IWGRP|IWOTH (022), set at start and by a reload that changes it."),
    Kw("process_names", Flag(),
       doc="Name the process 'keepalived' (as /proc/PID/comm, ps and top show it), unless "
           "process_name names it."),
    Kw("process_name", Custom(process_name, "a name (15 characters)"),
       doc="The process name (/proc/PID/comm), set at start and by a reload that changes "
           "it."),
    Kw("vrrp_process_name", Custom(process_name, "a name (15 characters)"),
       doc="keepalived's VRRP child's name: director's one process takes it when "
           "process_name is not given (then checker_process_name)."),
    Kw("checker_process_name", Custom(process_name, "a name (15 characters)"),
       doc="keepalived's checker child's name; see vrrp_process_name."),
    Kw("lvs_process_name", Custom(process_name, "a name (15 characters)"),
       field="checker_process_name",
       deprecated="lvs_process_name is deprecated: write checker_process_name"),
    *_pair("priority", Int(-20, 19),
           doc="The nice value (-20..19, lower runs first). " +
               ONE_PROCESS.format(which="lower")),
    *_pair("no_swap", Flag(),
           doc="Lock the process's memory (mlockall): never swapped out. " +
               ONE_PROCESS.format(which="either")),
    *_pair("rt_priority", Int(1, 99),
           doc="Real-time scheduling (SCHED_RR) at this priority. " +
               ONE_PROCESS.format(which="higher")),
    *_pair("rlimit_rttime", Int(1, UINT_MAX), old="rlimit_rtime",
           doc="With real-time scheduling, RLIMIT_RTTIME in microseconds: the CPU time "
               "between two blocking calls before the kernel sends SIGXCPU (default 10000, "
               "keepalived's). " + ONE_PROCESS.format(which="lower")),
    *_pair("cpu_affinity", Custom(cpu_list, "CPU numbers"),
           doc="The CPUs the process may run on. " +
               ONE_PROCESS.format(which="union of the two sets")),
    Kw("startup_script", Script(),
       doc="Run once at start, before VRRP and the checkers start (director waits for it); "
           "killed after startup_script_timeout. Its exit status is logged; director "
           "starts all the same, as keepalived."),
    Kw("startup_script_timeout", Int(1, 1000), default=10),
    Kw("shutdown_script", Script(),
       doc="Run once on stop, after VRRP and the checkers have stopped (priority 0 sent, "
           "VIPs removed); killed after shutdown_script_timeout."),
    Kw("shutdown_script_timeout", Int(1, 1000), default=10),
    Kw("state_dump_file", Custom(absolute_path, "an absolute path"),
       doc="Where SIGUSR1 writes the state dump (default <state-dir>/director.data)."),
    Kw("stats_dump_file", Custom(absolute_path, "an absolute path"),
       doc="Where SIGUSR2 writes the VRRP statistics (default <state-dir>/director.stats)."),
    Kw("json_dump_file", Custom(absolute_path, "an absolute path"),
       doc="Where SIGRTMIN+2 (keepalived's SIGJSON; `keepalived --signum=JSON`) writes the "
           "VRRP state as JSON (default <state-dir>/director.json)."),
    Kw("json_version", Int(1, 2), default=1,
       doc="The JSON dump's shape: 1 a list of {data, stats} per instance (keepalived's "
           "version 1), 2 the same under \"vrrp\" with a \"version\" key."),
    Kw("data_use_instance", Flag(),
       doc="Put the instance name (see instance) and net_namespace in the dump files' "
           "names: director_NAME_NS.data, as keepalived, so that two daemons on a host "
           "do not write one file."),
    Kw("reload_time_file", Custom(absolute_path, "an absolute path"),
       doc="A file holding HH:MM:SS, YY-MM-DD HH:MM:SS or YYYY-MM-DD HH:MM:SS (a 'Z' for "
           "UTC): director reloads at that time. Watched every second: created, changed "
           "or removed, the reload is scheduled, moved or cancelled. Removed after the "
           "reload unless reload_repeat."),
    Kw("reload_repeat", Flag(),
       doc="Keep reload_time_file after the reload: a time without a date reloads every "
           "day."),
    Kw("reload_file", Custom(optional_path, "[an absolute path]"),
       doc="Created (or truncated) when a reload starts reading the files and removed when "
           "it has read them, so that a tool updating the files can wait (default "
           "<state-dir>/keepalived.reload)."),
    Kw("reload_check_config", Custom(optional_path, "[LOG_FILE]"),
       doc="keepalived: check the file before a reload. director always does (a file with "
           "errors is never applied); with LOG_FILE, each reload's check (its diagnostics "
           "and 'configuration valid' or 'invalid') is written there."),
    Kw("config_save_dir", Custom(absolute_path, "an absolute path"),
       doc="On each applied reload, save the configuration before and after it, as -d "
           "prints it (secrets masked; keepalived's debugging aid): DIR/<time>-before.conf "
           "and -after.conf. The directory is created if missing (0700)."),
    Kw("tmp_config_directory", Custom(absolute_path, "an absolute path"),
       doc="keepalived copies the file for its children there. director has no children "
           "and reads the file in memory: -t only warns when the directory is missing."),
    Kw("include_check", Custom(include_check, "[[+|-]readable|match|wildcard_match|"
                                             "brace_match ...]"),
       doc="Make a missing include an error instead of a warning: 'match' a name without "
           "* ? [ that matches nothing, 'wildcard_match' any pattern that matches nothing, "
           "'brace_match' each {a,b} alternative that matches nothing ('readable': a named "
           "file that cannot be read is always an error in director). Nothing after it "
           "means all; applies from the line after it, to the end of the reading."),
    Kw("random_seed", Int(0, UINT_MAX),
       doc="Seed of ${_RANDOM}, so that a file expands the same each time (director's "
           "numbers, not keepalived's); applies from the line after it."),
    Kw("set_supplementary_groups", Flag(),
       doc="Notify scripts, startup_script and shutdown_script run with their user's "
           "supplementary groups besides its primary group (without it: the primary group "
           "only, as keepalived). vrrp_script and MISC_CHECK keep their own rule (a GROUP "
           "written ':NAME' asks for the supplementary groups)."),
    Kw("max_auto_priority", Custom(auto_priority, "[-1..99]"), default=0,
       doc="When the main loop runs late by min_auto_priority_delay or more, switch to "
           "real-time scheduling (SCHED_RR) at priority 1 and raise it by one at each "
           "further late run, up to this. 0 (default) never; -1 never and no warning."),
    Kw("min_auto_priority_delay", Int(1, 10000000), default=1000000,
       doc="The lateness in microseconds that raises the priority (max_auto_priority)."),
    Kw("vrrp_netlink_cmd_rcv_bufs", Int(0, UINT_MAX),
       doc=NETLINK.format(which="VRRP address (VIPs)", force="")),
    Kw("vrrp_netlink_cmd_rcv_bufs_force", Flag(),
       doc="Set it with SO_RCVBUFFORCE (past net.core.rmem_max)."),
    Kw("vrrp_netlink_monitor_rcv_bufs", Int(0, UINT_MAX),
       doc="keepalived's VRRP child monitors links over netlink; director's VRRP opens no "
           "such socket (it polls the links), so there is nothing to size: accepted "
           "without effect."),
    Kw("vrrp_netlink_monitor_rcv_bufs_force", Flag(),
       doc="See vrrp_netlink_monitor_rcv_bufs."),
    Kw("lvs_netlink_cmd_rcv_bufs", Int(0, UINT_MAX),
       doc=NETLINK.format(which="IPVS (generic netlink)", force="")),
    Kw("lvs_netlink_cmd_rcv_bufs_force", Flag(), doc="Set it with SO_RCVBUFFORCE."),
    Kw("lvs_netlink_monitor_rcv_bufs", Int(0, UINT_MAX),
       doc="keepalived's checker monitors links; director's checkers do not: the value "
           "applies to the IPVS socket when lvs_netlink_cmd_rcv_bufs is not given."),
    Kw("lvs_netlink_monitor_rcv_bufs_force", Flag(), doc="Set it with SO_RCVBUFFORCE."),
)

# keepalived reads these outside global_defs (install_keyword_root); files in the wild put
# them inside too, and director takes them in either place (the top level wins).
ROOT_PROCESS_KEYWORDS = (
    Kw("net_namespace", Word("a network namespace name"),
       doc="Run in this network namespace (/run/netns/NAME, as `ip netns` makes): VRRP, the "
           "checkers and IPVS live there; the web face and the control socket are opened "
           "in it too. Entered at start; a reload cannot change it."),
    Kw("net_namespace_ipvs", Custom(lambda args, ctx: str(args[0]) if args else "",
                                    "[a network namespace name]"),
       doc="keepalived: program IPVS in this namespace while the checks run in "
           "net_namespace's.",
       unsupported="left out: director programs IPVS in the namespace it runs in "
                   "(net_namespace's); a separate IPVS namespace is not implemented"),
    Kw("instance", Word("an instance name"),
       doc="This daemon's name when several run on one host: with data_use_instance it "
           "is in the dump files' names, with use_pid_dir in the pid file's."),
    Kw("use_pid_dir", Flag(),
       doc="Without -p, write the pid file /run/keepalived/keepalived[_INSTANCE].pid "
           "(keepalived's pid directory)."),
    Kw("child_wait_time", Int(1, 3600),
       doc="keepalived waits this long for its children to exit on stop. director waits "
           "this long for the notify scripts of the stop (priority 0, VIPs removed) "
           "before it exits (default 5)."),
)

BFD_KEYWORDS = ("bfd_process_name bfd_priority bfd_no_swap bfd_rt_priority bfd_rlimit_rtime "
                "bfd_rlimit_rttime bfd_cpu_affinity")


def top_level(config, name: str):
    """A keyword keepalived reads at the top level: there, else in global_defs."""
    value = getattr(config, name)
    return value if value is not None else getattr(config.global_defs, name)


def finish(values: dict, ctx) -> None:
    """One process for two keepalived children: say where the two forms differ."""
    folder = values.get("tmp_config_directory")
    if folder and not os.path.isdir(folder):
        ctx.warn(f"tmp_config_directory {folder} is not a directory (keepalived would not "
                 "start; director does not need it)")
    for name, rule in (("priority", "the lower nice value"), ("rt_priority", "the higher"),
                       ("rlimit_rttime", "the lower"), ("cpu_affinity", "the union"),
                       ("process_name", None)):
        vrrp, checker = values.get(f"vrrp_{name}"), values.get(f"checker_{name}")
        if vrrp is not None and checker is not None and vrrp != checker:
            if rule is None:
                if values.get("process_name") is None:
                    ctx.warn(f"vrrp_process_name {vrrp} and checker_process_name {checker} "
                             f"differ: director is one process and takes {vrrp}")
                continue
            ctx.warn(f"vrrp_{name} and checker_{name} differ ({_show(vrrp)} and "
                     f"{_show(checker)}): director is one process and applies {rule}")


def _show(value) -> str:
    return " ".join(map(str, value)) if isinstance(value, tuple) else str(value)

