"""A real browser for the dashboard tests: headless Chromium (Debian's), driven by Selenium
through Debian's chromedriver, running inside a lab namespace so that all its traffic stays
there (the daemon's --web is that namespace's loopback).

The test process cannot reach a namespace's loopback, so the driver runs in the namespace
as ``python -m tests.functional.browser`` and takes one JSON command a line on stdin,
answering one JSON line on stdout: ``get`` (url), ``eval`` (a script returning a value),
``screenshot`` (path), ``quit``. ``Browser`` is the test side.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ROOT = Path(__file__).resolve().parents[2]


def unavailable() -> str | None:
    if not os.access(CHROMIUM, os.X_OK):
        return "chromium missing (apt-get install chromium)"
    if not os.access(CHROMEDRIVER, os.X_OK):
        return "chromedriver missing (apt-get install chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium missing (pip install -r requirements.txt)"
    return None


class Browser:
    """The test side of one driver process: ``Browser.in_host(host)`` in a lab host's
    namespace (the lab also kills it at close), ``Browser.in_namespace(ns, log)`` in a
    namespace of the caller's (the benchmarks); ``quit()`` ends it."""

    def __init__(self, proc: subprocess.Popen, log_path) -> None:
        self.proc, self.log_path = proc, Path(log_path)
        self.call("ready", timeout=60)

    @staticmethod
    def argv() -> list[str]:
        return [sys.executable, "-m", "tests.functional.browser", "1400", "1000"]

    @classmethod
    def in_host(cls, host) -> Browser:
        reason = unavailable()
        if reason:
            pytest.skip(reason)
        log_path = host.lab.tmp / f"{host.name}-browser.log"
        return cls(host.lab._popen(host, cls.argv(), log_path=log_path,
                                   env={"PYTHONPATH": str(ROOT)}, pipes=True), log_path)

    @classmethod
    def in_namespace(cls, ns: str, log_path) -> Browser:
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(["ip", "netns", "exec", ns, *cls.argv()],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                                    text=True, cwd=ROOT, start_new_session=True,
                                    env={**os.environ, "PYTHONPATH": str(ROOT)})
        return cls(proc, log_path)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def call(self, op: str, timeout: float = 30, **arguments):
        self.proc.stdin.write(json.dumps({"op": op, **arguments}) + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            raise AssertionError(f"browser: no answer to {op} in {timeout} s: "
                                 f"{self.log()[-2000:]}")
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"browser exited: {self.log()[-3000:]}")
        answer = json.loads(line)
        if not answer["ok"]:
            raise AssertionError(f"browser: {op} failed: {answer['error']}")
        return answer.get("value")

    def get(self, url: str) -> float:
        """Loads url; returns the seconds until first paint the page reports."""
        return self.call("get", url=url, timeout=60)

    def eval(self, script: str):
        return self.call("eval", script=script)

    def screenshot(self, path) -> None:
        self.call("screenshot", path=str(path))

    def quit(self) -> None:
        if self.proc.poll() is None:
            try:
                self.call("quit", timeout=10)
                self.proc.wait(10)
            except (AssertionError, subprocess.TimeoutExpired, OSError):
                self.proc.kill()
                self.proc.wait(5)


def serve(width: int, height: int) -> None:
    """The namespace side: one Chromium, commands from stdin."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="director-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--no-first-run", "--disable-extensions",
                     "--disable-background-networking", "--disable-component-update",
                     f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        options.add_argument(argument)
    os.environ["HOME"] = profile               # crash reports and caches stay in the profile
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(30)
    try:
        for line in sys.stdin:
            command = json.loads(line)
            try:
                value = _do(driver, command)
                answer = {"ok": True, "value": value}
            except Exception as exc:             # reported to the test, which fails
                answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            sys.stdout.write(json.dumps(answer) + "\n")
            sys.stdout.flush()
            if command["op"] == "quit":
                break
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


FIRST_PAINT = """
const paints = performance.getEntriesByType('paint');
const first = paints.find((p) => p.name === 'first-contentful-paint') || paints[0];
return first ? first.startTime / 1000 : null;
"""


def _do(driver, command: dict):
    op = command["op"]
    if op in ("ready", "quit"):
        return None
    if op == "get":
        driver.get(command["url"])
        for _ in range(100):                    # first paint is recorded just after load
            value = driver.execute_script(FIRST_PAINT)
            if value is not None:
                return value
            time.sleep(0.05)
        return None
    if op == "eval":
        return driver.execute_script(command["script"])
    if op == "screenshot":
        return driver.save_screenshot(command["path"])
    raise ValueError(f"unknown op {op!r}")


if __name__ == "__main__":
    serve(int(sys.argv[1]), int(sys.argv[2]))
