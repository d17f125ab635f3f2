"""A director started in the test's own namespace (not through the lab's popen, which starts
one inside a namespace it made): ``python -m director -P -l -f CONFIG --state-dir ...
--web off`` plus what the test adds, its output in ``log_path``; TERM when the block ends,
killed after 20 s, so that no test leaves a daemon behind."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def director_here(config: Path, state_dir: Path, log_path: Path,
                  *extra: str) -> Iterator[subprocess.Popen]:
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "director", "-P", "-l", *extra,
                                 "-f", str(config), "--state-dir", str(state_dir),
                                 "--web", "off"], cwd=ROOT, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                env=dict(os.environ, PYTHONPATH=str(ROOT)))
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
