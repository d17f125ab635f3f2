"""``director demo``: the demo on the embedded lab configuration (lab.conf beside this file).

Today it checks the embedded configuration for both directors of the lab and shows what
each one parsed; the network-namespace lab that runs both directors, real servers and a
client is issue 7's, and will start from here.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..config import load_config
from ..config.render import dump_text

LAB_CONFIG = Path(__file__).with_name("lab.conf")
DIRECTORS = ("lb1", "lb2")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="director demo",
                                     description="Show the demo lab's configuration as each "
                                                 "director reads it.")
    parser.add_argument("--config", default=str(LAB_CONFIG),
                        help="configuration to use instead of the embedded lab.conf")
    args = parser.parse_args(argv)
    status = 0
    for director in DIRECTORS:
        # The lab's interfaces live in its namespaces, not on this host: do not check them.
        result = load_config(args.config, config_id=director, interface_exists=None)
        print(f"=== director {director}: {args.config} (-i {director})")
        for diagnostic in result.diagnostics:
            print(f"  {diagnostic}")
        if not result.ok:
            status = 1
            continue
        sys.stdout.write(dump_text(result.config, director))
    print("\nEach director above is what `director -f lab.conf -i <id> -d` prints. Check your own"
          " file with: python -m director -t -f /etc/keepalived/keepalived.conf")
    return status
