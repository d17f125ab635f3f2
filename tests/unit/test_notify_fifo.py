"""Notify FIFOs: keepalived's line formats, one FIFO per path, and a writer that never blocks
(a full pipe or a replaced FIFO is counted or reopened, not waited for)."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from director.config.values import Command, NotifyFifo
from director.notify_fifo import (LVS, VRRP, Fifo, FifoSetting, NotifyFifos, rs_line,
                                  service_label, settings, vrrp_line, vs_line)


def virtual(**fields):
    base = dict(address="10.0.0.1", port=80, protocol="TCP", fwmark=None, group=None)
    return SimpleNamespace(**{**base, **fields})


def real(address="10.0.1.1", port=8080):
    return SimpleNamespace(address=address, port=port)


def defs(**fields):
    names = ("notify_fifo", "vrrp_notify_fifo", "lvs_notify_fifo")
    base = {name: None for name in names} | {f"{name}_script": None for name in names}
    return SimpleNamespace(**{**base, "script_user": None, "enable_script_security": False,
                              **fields})


def test_lines_in_keepalived_format():
    assert vrrp_line("INSTANCE", "VI_1", "MASTER", 100) == 'INSTANCE "VI_1" MASTER 100\n'
    assert vrrp_line("GROUP", "VG 1", "BACKUP", 0) == 'GROUP "VG 1" BACKUP 0\n'
    assert vs_line(virtual(), True) == "VS [10.0.0.1]:tcp:80 UP\n"
    assert rs_line(virtual(protocol="UDP", port=53), real("2001:db8::5", 53), False) == \
        "RS [2001:db8::5]:udp:53 [10.0.0.1]:udp:53 DOWN\n"
    assert service_label(virtual(fwmark=7, address=None, port=None)) == "FWM 7"
    assert service_label(virtual(group="WEB", address=None, port=None)) == "[WEB]:0"
    assert rs_line(virtual(fwmark=7, address=None, port=None), real(port=None), True) == \
        "RS [10.0.1.1]:tcp:0 FWM 7 UP\n"


def test_one_fifo_per_path_with_the_lines_of_every_keyword_naming_it():
    found = settings(defs(notify_fifo=NotifyFifo("/run/a"), notify_fifo_script=Command("/x"),
                          vrrp_notify_fifo=NotifyFifo("/run/a"),
                          vrrp_notify_fifo_script=Command("/y"),
                          lvs_notify_fifo=NotifyFifo("/run/b", "nobody")))
    assert found == (
        FifoSetting("/run/a", (VRRP, LVS), None, None, Command("/x"),
                    ("notify_fifo", "vrrp_notify_fifo")),
        FifoSetting("/run/b", (LVS,), "nobody", None, None, ("lvs_notify_fifo",)))


def read_all(fd: int) -> bytes:
    chunks = []
    while True:
        try:
            chunks.append(os.read(fd, 65536))
        except BlockingIOError:
            return b"".join(chunks)


def test_created_read_write_and_removed_at_close(tmp_path):
    path = tmp_path / "fifo"
    fifos = NotifyFifos()
    fifos.configure(defs(vrrp_notify_fifo=NotifyFifo(str(path))))
    assert stat.S_ISFIFO(os.lstat(path).st_mode)
    assert stat.S_IMODE(os.lstat(path).st_mode) == 0o644 & ~current_umask()
    reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        fifos.vrrp(vrrp_line("INSTANCE", "VI_1", "BACKUP", 100))
        fifos.lvs(vs_line(virtual(), True))          # not a VRRP FIFO's line
        assert read_all(reader) == b'INSTANCE "VI_1" BACKUP 100\n'
    finally:
        os.close(reader)
    fifos.close()
    assert not path.exists()


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_fifo_nobody_reads_fills_and_drops_without_blocking(tmp_path):
    """The pipe is ours too (read-write), so lines wait for a reader; once it is full each
    further line is a counted drop, returned at once."""
    fifo = Fifo(FifoSetting(str(tmp_path / "f"), (VRRP,), None, None, None, ("notify_fifo",)))
    fifo.open()
    line = vrrp_line("INSTANCE", "VI_1", "MASTER", 100)
    started = time.monotonic()
    results = [fifo.write(line) for _ in range(10000)]   # 270 kB > the 64 kB of a pipe
    assert time.monotonic() - started < 2
    assert results[0] and not results[-1]
    assert fifo.written == results.count(True) > 1000
    assert fifo.dropped == {"full": results.count(False)}
    assert fifo.view().dropped == {"full": results.count(False)}
    fifo.close()


def test_a_replaced_fifo_is_reopened_and_an_existing_one_is_kept(tmp_path):
    path = tmp_path / "f"
    os.mkfifo(path)                                      # the consumer made it: not ours
    fifo = Fifo(FifoSetting(str(path), (VRRP,), None, None, None, ("notify_fifo",)))
    fifo.open()
    assert not fifo.created
    path.unlink()                                        # a consumer that recreates it
    os.mkfifo(path)
    reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        assert fifo.write("GROUP \"VG1\" MASTER 0\n")
        assert read_all(reader) == b'GROUP "VG1" MASTER 0\n'
    finally:
        os.close(reader)
    fifo.close()
    assert path.exists()                                 # not ours to remove


@pytest.mark.parametrize("make", [lambda p: p.write_text("data\n"), lambda p: p.mkdir()])
def test_a_path_that_is_not_a_fifo_is_refused_and_left_alone(tmp_path, make):
    path = tmp_path / "x"
    make(path)
    fifo = Fifo(FifoSetting(str(path), (VRRP,), None, None, None, ("notify_fifo",)))
    fifo.open()
    assert fifo.fd is None and fifo.error
    assert not fifo.write("INSTANCE \"VI_1\" MASTER 100\n")
    assert fifo.dropped == {"closed": 1}
    fifo.close()
    assert path.exists() and (path.is_dir() or path.read_text() == "data\n")


def test_the_script_gets_the_path_and_a_reload_restarts_only_what_changed(tmp_path):
    out = tmp_path / "out"
    script = tmp_path / "reader.sh"
    script.write_text(f'#!/bin/sh\nwhile read -r l; do echo "$l" >> {out}; done < "$1"\n')
    script.chmod(0o755)
    path = tmp_path / "fifo"
    fifos = NotifyFifos()
    config = defs(notify_fifo=NotifyFifo(str(path)), notify_fifo_script=Command(str(script)))
    fifos.configure(config)
    first = fifos.fifos[str(path)].process
    fifos.vrrp(vrrp_line("INSTANCE", "VI_1", "BACKUP", 100))
    fifos.lvs(rs_line(virtual(), real(), False))
    wait(lambda: out.exists() and len(out.read_text().splitlines()) == 2)
    fifos.configure(config)                              # unchanged: same process
    assert fifos.fifos[str(path)].process is first
    fifos.configure(defs(notify_fifo=NotifyFifo(str(tmp_path / "other")),
                         notify_fifo_script=Command(str(script))))
    assert not path.exists()                             # ours, closed and removed
    wait(lambda: first.poll() is not None)
    assert fifos.views()[0].script_running
    fifos.close(fifos.terminate_scripts())
    assert out.read_text().splitlines() == [
        'INSTANCE "VI_1" BACKUP 100', "RS [10.0.1.1]:tcp:8080 [10.0.0.1]:tcp:80 DOWN"]


def wait(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "not true in time"
        time.sleep(0.02)


def vrrp_service(tmp_path, text: str):
    from director.clock import FakeClock
    from director.config import load_config
    from director.vrrp.service import VrrpService
    path = tmp_path / "k.conf"
    path.write_text(text)
    result = load_config(str(path), config_id="t", interface_exists=None)
    assert result.ok, [str(d) for d in result.errors]
    return VrrpService(result.config, FakeClock(), announcer=None), result.config


INSTANCES = "".join(f"""
vrrp_instance {name} {{
    interface eth0
    virtual_router_id {vrid}
    {extra}
}}""" for name, vrid, extra in (("VI_1", 1, ""), ("VI_2", 2, "notify_priority_changes false"),
                                ("VI_3", 3, ""), ("VI_4", 4, "notify_priority_changes")))


@pytest.mark.parametrize("global_value, expected", [
    ("", {"VI_1": False, "VI_2": False, "VI_3": True, "VI_4": True}),
    ("vrrp_notify_priority_changes", {"VI_1": True, "VI_2": False, "VI_3": True,
                                      "VI_4": True})])
def test_notify_priority_changes_instance_then_sync_group_then_global(tmp_path, global_value,
                                                                      expected):
    service, config = vrrp_service(tmp_path, f"global_defs {{\n    {global_value}\n}}\n"
                                   "vrrp_sync_group VG1 {\n    group {\n        VI_2\n"
                                   "        VI_3\n    }\n    notify_priority_changes\n}\n" +
                                   INSTANCES)
    assert {item.name: service.notices.priority_changes(item) for item in config.vrrp_instances} \
        == expected


def test_a_sync_group_line_has_priority_zero(tmp_path):
    service, config = vrrp_service(tmp_path, f"global_defs {{\n    notify_fifo "
                                   f"{tmp_path / 'f'}\n}}\n" + INSTANCES)
    service.notifier.fifos.configure(config.global_defs)
    reader = os.open(tmp_path / "f", os.O_RDONLY | os.O_NONBLOCK)
    try:
        group = SimpleNamespace(notify_master=None, notify_backup=None, notify_fault=None,
                                notify_stop=None, notify=None)
        service.notices.notify(group, "GROUP", "VG1", "MASTER", 0)
        assert read_all(reader) == b'GROUP "VG1" MASTER 0\n'
    finally:
        os.close(reader)
        service.notifier.fifos.close()


def test_dash_t_says_what_keepalived_logs_about_its_fifos(tmp_path):
    from director.config import load_config
    regular = tmp_path / "file"
    regular.write_text("")
    path = tmp_path / "k.conf"
    path.write_text(f"""global_defs {{
    vrrp_notify_fifo {regular}
    notify_fifo {tmp_path / 'f'}
    notify_fifo_script /bin/cat
    lvs_notify_fifo {tmp_path / 'f'} nobody
    lvs_notify_fifo_script /bin/cat
}}
""")
    result = load_config(str(path), config_id="t", interface_exists=lambda name: True)
    warnings = [str(d).split(": warning: ")[1] for d in result.warnings]
    assert f"vrrp_notify_fifo {regular} exists and is not a FIFO: director will not write to " \
           "it" in warnings
    assert f"lvs_notify_fifo {tmp_path / 'f'} is also notify_fifo: its script is not run " \
           "(notify_fifo_script reads it)" in warnings
    path.write_text("global_defs {\n    vrrp_notify_fifo_script /bin/cat\n}\n")
    result = load_config(str(path), config_id="t", interface_exists=None)
    assert [str(d) for d in result.warnings] == [
        f"{path}:1: warning: vrrp_notify_fifo_script without vrrp_notify_fifo: it is not run",
        f"{path}:1: warning: the configuration defines no vrrp_instance and no virtual_server: "
        "a reload with it removes every instance and pool"]


def test_owner_of_a_created_fifo_and_the_script_s_user():
    """The FIFO keepalived creates belongs to the keyword's USER (its primary group); the
    script runs as its own USER, as any notify script does."""
    import pwd
    import shutil
    import tempfile
    nobody = pwd.getpwnam("nobody")
    folder = Path(tempfile.mkdtemp(dir="/tmp"))          # pytest's tmp_path is closed to nobody
    try:
        folder.chmod(0o755)
        out = folder / "who"
        out.touch()
        out.chmod(0o666)
        script = folder / "who.sh"
        script.write_text(f'#!/bin/sh\nid -u > {out}\n')
        script.chmod(0o755)
        path = folder / "fifo"
        fifos = NotifyFifos()
        fifos.configure(defs(vrrp_notify_fifo=NotifyFifo(str(path), "nobody"),
                             vrrp_notify_fifo_script=Command(str(script), "nobody")))
        info = os.lstat(path)
        assert (info.st_uid, info.st_gid) == (nobody.pw_uid, nobody.pw_gid)
        wait(lambda: out.read_text().strip() == str(nobody.pw_uid))
        fifos.close(fifos.terminate_scripts())
    finally:
        shutil.rmtree(folder)


def test_lower_priority_adverts_in_a_loop_run_one_script_at_a_time(tmp_path):
    from director import hub
    service, config = vrrp_service(tmp_path, INSTANCES.replace(
        "virtual_router_id 1\n", f"virtual_router_id 1\n    notify_master_rx_lower_pri "
                                 f"\"/bin/sleep 0.3\"\n    notify_priority_changes\n", 1))
    instance = SimpleNamespace(name="VI_1", config=config.vrrp_instances[0],
                               state=SimpleNamespace(priority=100))
    for _ in range(50):                        # an advert flood: no fork each
        service.notices.noticed(instance, "MASTER_RX_LOWER_PRI")
    hub.joinall(list(service.notifier.running), timeout=10)
    service.notices.noticed(instance, "MASTER_RX_LOWER_PRI")    # done: the next one runs
    hub.joinall(list(service.notifier.running), timeout=10)
    assert service.notifier.results == {"ok": 2}


def test_only_the_fifos_of_what_runs_are_opened(tmp_path):
    """-P: no load balancer runs, so lvs_notify_fifo is not created (keepalived's checker
    process would have); notify_fifo is, for the VRRP lines."""
    fifos = NotifyFifos()
    fifos.configure(defs(notify_fifo=NotifyFifo(str(tmp_path / "all")),
                         lvs_notify_fifo=NotifyFifo(str(tmp_path / "lvs"))), (VRRP,))
    assert list(fifos.fifos) == [str(tmp_path / "all")]
    assert not (tmp_path / "lvs").exists()
    fifos.close()


def test_an_unsafe_script_is_not_started_with_enable_script_security(tmp_path):
    folder = tmp_path / "open"
    folder.mkdir()
    folder.chmod(0o777)                      # anyone may replace what root would run
    script = folder / "reader.sh"
    script.write_text("#!/bin/sh\nexec cat \"$1\"\n")
    script.chmod(0o755)
    fifos = NotifyFifos()
    fifos.configure(defs(notify_fifo=NotifyFifo(str(tmp_path / "f")),
                         notify_fifo_script=Command(str(script)), script_user="root",
                         enable_script_security=True))
    (view,) = fifos.views()
    assert view.open and not view.script_running
    fifos.close()
