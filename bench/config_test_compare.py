"""Same output from two trees: ``director -t`` and ``--dump-json`` of one tree against another's.

    .venv/bin/python bench/config_test_compare.py --base /tmp/wt/base [--other .] [FILE ...]

For each configuration (by default: the issue 2 file of 1,000 virtual servers x 10,000 real
servers that bench/config_parse.py makes, every *.conf under tests/golden, and every file
under ../shared/configs when it is there) runs ``python -m director -t`` and ``--dump-json``
(``-i director-test``) in both trees, each as its own process, and compares the exit code,
stdout and stderr. A change meant to make ``-t`` faster (issue 17) must say exactly the same
things, in the same order, with the same exit code. Exits 1 and prints the first lines of
each difference when any output differs.
"""

from __future__ import annotations

import argparse
import difflib
import glob
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))

from config_parse import generate  # noqa: E402

MODES = (["-t"], ["--dump-json"])


def configurations(big: str) -> list[str]:
    found = [big]
    found += sorted(glob.glob(os.path.join(ROOT, "tests", "golden", "**", "*.conf"),
                              recursive=True))
    shared = os.path.join(os.path.dirname(ROOT), "shared", "configs")
    if not os.path.isdir(shared):
        shared = "/work/shared/configs"
    found += sorted(path for path in glob.glob(os.path.join(shared, "**", "*"), recursive=True)
                    if os.path.isfile(path))
    return found


def run(tree: str, mode: list[str], path: str) -> tuple[int, str, str]:
    done = subprocess.run([sys.executable, "-m", "director", *mode, "-f", path,
                           "-i", "director-test"], capture_output=True, text=True, cwd=tree,
                          env=dict(os.environ, PYTHONPATH=tree), timeout=300)
    return done.returncode, done.stdout, done.stderr


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", required=True, help="the tree to compare against")
    parser.add_argument("--other", default=ROOT, help="the tree under test (default: this one)")
    parser.add_argument("files", nargs="*", help="configurations (default: see above)")
    args = parser.parse_args()
    differences = 0
    with tempfile.TemporaryDirectory() as folder:
        big = os.path.join(folder, "big.conf")
        generate(big, 1000, 10)
        files = args.files or configurations(big)
        for path in files:
            for mode in MODES:
                base = run(args.base, mode, path)
                other = run(args.other, mode, path)
                if base == other:
                    continue
                differences += 1
                print(f"DIFFERENT: {' '.join(mode)} {path}: exit {base[0]} / {other[0]}")
                for name, one, two in (("stdout", base[1], other[1]),
                                       ("stderr", base[2], other[2])):
                    diff = list(difflib.unified_diff(one.splitlines(), two.splitlines(),
                                                     f"base {name}", f"other {name}",
                                                     lineterm="", n=1))
                    print("\n".join(diff[:20]))
    print(f"{len(files)} configurations x {len(MODES)} modes: "
          f"{differences} difference(s)")
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main())
