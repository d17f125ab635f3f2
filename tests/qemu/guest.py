"""Run a command inside a Debian kernel under qemu, for what this host's kernel lacks (IPVS).

The guest's root filesystem is this host's ``/``, shared read-only over 9p with a tmpfs
overlay on top, so the guest runs the same files (the repository, its venv, ipvsadm). A
small busybox initramfs loads the virtio/9p/overlay modules, mounts that root, bind-mounts
the unpacked kernel's modules at /lib/modules, chroots, runs the command with a writable 9p
share for results (``$RESULTS`` in the guest), writes the command's exit code there and
powers off. See ../shared/notes/ipvs-in-qemu.md for the recipe and its pitfalls.

The kernel package is fetched with ``apt-get download`` (never installed) and unpacked, and
the initramfs built, once, into a cache directory outside the repository:
``$DIRECTOR_QEMU_CACHE`` or /var/tmp/director-qemu. ``GuestUnavailable`` says why a guest
cannot run here (tests skip with it).

Command line: ``python tests/qemu/guest.py 'ipvsadm -Ln'`` prints the command's output.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

CACHE = Path(os.environ.get("DIRECTOR_QEMU_CACHE", "/var/tmp/director-qemu"))
KERNEL_META_PACKAGE = "linux-image-amd64"
BOOT_MODULES = ("virtio_pci", "9pnet_virtio", "9p", "overlay")
RESULTS_IN_GUEST = "/run/qemu-results"

INIT = """#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /modules.load); do insmod "/$m" || echo "init: insmod $m failed"; done
mkdir -p /lower /upper /host
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144 hostroot /lower || exec poweroff -f
mount -t tmpfs tmpfs /upper
mkdir -p /upper/u /upper/w
mount -t overlay overlay -o lowerdir=/lower,upperdir=/upper/u,workdir=/upper/w /host
mkdir -p /host{results} /host/lib/modules /lib/modules
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 results /host{results}
mount --bind /host{modules} /host/lib/modules
mount --bind /host{modules} /lib/modules
mount -t proc proc /host/proc
mount -t sysfs sys /host/sys
mount -t devtmpfs dev /host/dev
mount -t tmpfs tmpfs /host/run/lock 2>/dev/null
ip link set lo up
chroot /host /bin/sh -c 'cd {results} && RESULTS={results} /bin/sh ./run.sh \
    >{results}/stdout 2>{results}/stderr; echo $? >{results}/rc'
sync
poweroff -f
"""


class GuestUnavailable(Exception):
    """Why no guest can run on this machine (qemu missing, kernel not fetchable, ...)."""


@dataclass
class Guest:
    vmlinuz: Path
    initramfs: Path
    version: str


@dataclass
class GuestResult:
    rc: int | None          # None: the command did not finish (timeout, crash)
    stdout: str
    stderr: str
    console: str
    seconds: float
    files: dict[str, str]   # other files the command wrote to $RESULTS


def _run(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=True, capture_output=True, text=True, **kwargs)


def _kernel_package() -> str:
    try:
        out = _run(["apt-cache", "depends", KERNEL_META_PACKAGE]).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise GuestUnavailable(f"cannot resolve {KERNEL_META_PACKAGE}: {exc}") from exc
    match = re.search(r"Depends: (linux-image-[0-9]\S*)", out)
    if not match:
        raise GuestUnavailable(f"{KERNEL_META_PACKAGE} depends on no linux-image-<version>")
    return match.group(1)


def _unpacked_kernel() -> tuple[Path, str]:
    """The unpacked kernel package (cached): its folder and the kernel version."""
    existing = sorted(CACHE.glob("kernel-*/boot/vmlinuz-*"))
    if existing:
        vmlinuz = existing[-1]
        return vmlinuz.parents[1], vmlinuz.name.removeprefix("vmlinuz-")
    package = _kernel_package()
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        try:
            _run(["apt-get", "download", package], cwd=tmp)
        except (OSError, subprocess.CalledProcessError) as exc:
            detail = getattr(exc, "stderr", "") or exc
            raise GuestUnavailable(f"cannot download {package}: {detail}") from exc
        deb = next(Path(tmp).glob("*.deb"))
        unpacked = Path(tmp) / "unpacked"
        _run(["dpkg-deb", "-x", str(deb), str(unpacked)])
        vmlinuz = next((unpacked / "boot").glob("vmlinuz-*"))
        version = vmlinuz.name.removeprefix("vmlinuz-")
        _run([_busybox(), "depmod", "-b", str(unpacked), version])
        final = CACHE / f"kernel-{version}"
        try:
            unpacked.rename(final)
        except OSError:
            if not final.exists():          # else another run unpacked it meanwhile
                raise
    return final, version


def _busybox() -> str:
    for candidate in ("/bin/busybox", "/usr/bin/busybox"):
        if os.access(candidate, os.X_OK):
            with open(candidate, "rb") as f:
                if b"ld-linux" not in f.read(4096):       # no ELF interpreter: static
                    return candidate
    raise GuestUnavailable("no static busybox (apt-get install busybox-static)")


def _module_order(modules_dir: Path, names: tuple[str, ...]) -> list[str]:
    """Module files (relative to modules_dir) in load order, dependencies first."""
    deps: dict[str, list[str]] = {}
    for line in (modules_dir / "modules.dep").read_text().splitlines():
        path, _, rest = line.partition(":")
        deps[path] = rest.split()
    by_name = {Path(p).name.split(".ko")[0].replace("-", "_"): p for p in deps}
    order: list[str] = []

    def visit(path: str) -> None:
        if path in order:
            return
        for dep in deps[path]:
            visit(dep)
        order.append(path)

    for name in names:
        if name in by_name:            # absent: built into this kernel
            visit(by_name[name])
    return order


def _newc(entries: list[tuple[str, int, bytes]]) -> bytes:
    """A cpio archive in the "newc" format the kernel unpacks: (name, mode, data)."""
    out = bytearray()
    for ino, (name, mode, data) in enumerate(entries + [("TRAILER!!!", 0, b"")], start=1):
        raw = name.encode() + b"\0"
        fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(raw), 0)
        out += b"070701" + b"".join(b"%08X" % f for f in fields) + raw
        out += b"\0" * (-len(out) % 4)
        out += data
        out += b"\0" * (-len(out) % 4)
    return bytes(out)


def _build_initramfs(kernel_dir: Path, version: str, target: Path) -> None:
    modules_dir = kernel_dir / "lib" / "modules" / version
    order = _module_order(modules_dir, BOOT_MODULES)
    directory, regular, link = 0o040755, 0o100755, 0o120777
    entries: list[tuple[str, int, bytes]] = [
        (d, directory, b"") for d in ("bin", "sbin", "proc", "sys", "dev", "lib", "modules")]
    entries.append(("bin/busybox", regular, Path(_busybox()).read_bytes()))
    entries.append(("sbin/modprobe", link, b"/bin/busybox"))    # the kernel calls it in /
    init = INIT.replace("{results}", RESULTS_IN_GUEST).replace(
        "{modules}", str(kernel_dir / "lib" / "modules"))
    entries.append(("init", regular, init.encode()))
    for rel in order:
        entries.append((f"modules/{Path(rel).name}", 0o100644, (modules_dir / rel).read_bytes()))
    load = "".join(f"modules/{Path(rel).name}\n" for rel in order)
    entries.append(("modules.load", 0o100644, load.encode()))
    partial = target.with_suffix(f".{os.getpid()}.tmp")
    partial.write_bytes(_newc(entries))
    partial.rename(target)


def prepare() -> Guest:
    """The kernel and initramfs, fetched and built on first use; raises GuestUnavailable."""
    if not shutil.which("qemu-system-x86_64"):
        raise GuestUnavailable("qemu-system-x86_64 missing (apt-get install qemu-system-x86)")
    if sys.platform != "linux" or os.uname().machine != "x86_64":
        raise GuestUnavailable("the qemu guest needs an x86_64 Linux host")
    kernel_dir, version = _unpacked_kernel()
    # Keyed by what goes into it, so that a changed init script is rebuilt, not reused.
    recipe = hashlib.sha256((INIT + " ".join(BOOT_MODULES)).encode()).hexdigest()[:12]
    initramfs = CACHE / f"initramfs-{version}-{recipe}.cpio"
    if not initramfs.exists():
        _build_initramfs(kernel_dir, version, initramfs)
    return Guest(kernel_dir / "boot" / f"vmlinuz-{version}", initramfs, version)


def prepare_or_skip() -> Guest:
    """prepare() for a pytest fixture: the test skips, saying why, where no guest can run."""
    try:
        return prepare()
    except GuestUnavailable as exc:
        import pytest
        pytest.skip(f"no qemu guest: {exc}")


class Running:
    """A guest run in progress, for a caller that must be able to stop it from another thread
    (tests/qemu/jobs.py at the end of a pytest session). kill() before the qemu process
    exists makes run() kill it as soon as it starts."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self.results: Path | None = None        # the results folder, while it exists
        self.killed = False

    def _started(self, proc: subprocess.Popen, results: Path) -> None:
        with self._lock:
            self._proc, self.results = proc, results
            if self.killed:
                _kill_group(proc)

    def _ended(self) -> None:
        with self._lock:
            self._proc = self.results = None

    def kill(self) -> None:
        """Kill the qemu process and its ``timeout`` wrapper (one process group)."""
        with self._lock:
            self.killed = True
            if self._proc is not None:
                _kill_group(self._proc)


def _kill_group(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _nice_session(pid: int, nice: int) -> None:
    """With the scheduler's autogroups (kernel.sched_autogroup_enabled), each session shares
    the CPU as one group and a process's nice only counts inside its group: qemu, in a session
    of its own, took its group's full share beside the namespace tests' daemons (each in a
    session of its own too) and their VRRP timers slipped. The group's own nice fixes that."""
    try:
        Path(f"/proc/{pid}/autogroup").write_text(str(nice))
    except OSError:            # no autogroups here (then nice alone counts), or not root
        pass


def run(script: str, timeout: float = 240, guest: Guest | None = None,
        kvm: bool | None = None, nice: int = 0, running: Running | None = None) -> GuestResult:
    """Boot the guest, run ``script`` (sh) as root in it, power off. ``kvm`` (default: the
    DIRECTOR_QEMU_KVM environment variable) uses hardware acceleration instead of TCG.
    ``nice`` lowers qemu's CPU priority (a run in the background of other tests);
    ``running.kill()`` stops the run from another thread."""
    guest = guest or prepare()
    if kvm is None:
        kvm = os.environ.get("DIRECTOR_QEMU_KVM", "") == "1"
    accel = ["-enable-kvm", "-cpu", "host"] if kvm else ["-accel", "tcg,thread=multi",
                                                        "-cpu", "max"]
    # qemu and its `timeout` share a new process group (killed together); the parent's death
    # (pytest killed with SIGKILL) sends `timeout` a SIGTERM that it passes on to qemu.
    wrapper = ["setpriv", "--pdeathsig", "TERM"] if shutil.which("setpriv") else []
    if nice:
        wrapper += ["nice", "-n", str(nice)]
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="run-", dir=CACHE) as results:
        Path(results, "run.sh").write_text(script)
        argv = [*wrapper, "timeout", "-k", "5", str(int(timeout)), "qemu-system-x86_64", *accel,
                "-machine", "q35", "-smp", "2", "-m", "1024", "-nographic", "-no-reboot",
                "-nic", "none", "-kernel", str(guest.vmlinuz), "-initrd", str(guest.initramfs),
                "-append", "console=ttyS0 quiet loglevel=3 panic=-1",
                "-virtfs", "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,"
                           "multidevs=remap",
                "-virtfs", f"local,path={results},mount_tag=results,security_model=none"]
        start = time.monotonic()
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, text=True, errors="replace",
                                start_new_session=True)
        try:
            if nice:
                _nice_session(proc.pid, nice)
            if running is not None:
                running._started(proc, Path(results))
            out, err = proc.communicate()
        finally:                    # an exception here (pytest's timeout, Ctrl-C): no orphan
            _kill_group(proc)
            proc.wait()
            if running is not None:
                running._ended()
        seconds = time.monotonic() - start
        files = {}
        for path in glob.glob(os.path.join(results, "*")):
            name = os.path.basename(path)
            if name != "run.sh" and os.path.isfile(path):
                files[name] = Path(path).read_text(errors="replace")
        rc_text = files.pop("rc", "").strip()
        return GuestResult(int(rc_text) if rc_text else None, files.pop("stdout", ""),
                           files.pop("stderr", ""), out + err, seconds, files)


def main() -> int:
    result = run(" ".join(sys.argv[1:]) or "uname -a")
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    if result.rc is None:
        sys.stderr.write(result.console[-4000:])
    print(f"guest: rc={result.rc} in {result.seconds:.1f} s", file=sys.stderr)
    return 1 if result.rc is None else result.rc


if __name__ == "__main__":
    sys.exit(main())

