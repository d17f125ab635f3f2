"""``python -m director`` and the ``director`` command. A daemon first carries out its quick
start (director/vrrp/quickstart.py) and opens its early VRRP capture (director/vrrp/early.py);
then the dataclasses' code table is installed (director/codecache.py) and gevent's
monkey-patching comes, before anything imports subprocess or threading (socket may come
first: patching changes its module in place).

Except for ``director ctl``: the control client blocks as a command line may and needs no
gevent; without it, it answers in a fifth of the time (0.4 s, not 2, measured on a busy
host), which a shell's completion feels."""

import sys

CTL = sys.argv[1:2] == ["ctl"]
# ``-t`` checks the file and exits: gevent's patching (a third of a second of CPU with the
# imports it brings: ssl, importlib.metadata's entry points) is for the daemon alone, and was
# a tenth of ``-t`` on a 100,000-line file (issue 17). Only the exact words, and not for a
# subcommand (genhash, demo) whose own options they might be: ``-tn`` is patched as before.
# argparse never takes "-t" as an option's value; cli.run_daemon patches all the same should
# a daemon ever start unpatched.
CONFIG_TEST = sys.argv[1:2] not in (["ctl"], ["genhash"], ["demo"]) and \
    ("-t" in sys.argv[1:] or "--config-test" in sys.argv[1:])

DAEMON = not CTL and not CONFIG_TEST and sys.argv[1:2] not in (["genhash"], ["demo"])

if CONFIG_TEST:
    # ``-t`` reads the file, prints the verdict and leaves (cli._leave): the objects its
    # imports make live to the end, and the load rests the collector anyway; its passes
    # over the imports were 7 ms of ``-t`` (issue 17).
    import gc

    gc.disable()

if DAEMON:
    # First thing: an address owner's VIPs, as the last start of the same files planned them
    # (director/vrrp/quickstart.py); then VRRP adverts are heard from now on, so that a
    # BACKUP's master down timer need not wait for the imports and the configuration
    # (director/vrrp/early.py).
    from director.vrrp.quickstart import QUICK

    QUICK.run(sys.argv[1:])
    from director.vrrp.early import CAPTURE

    CAPTURE.open()

# The methods of the dataclasses about to be made, compiled ahead (director/codecache.py).
from director.codecache import install as install_code_cache  # noqa: E402

install_code_cache()

if not CTL and not CONFIG_TEST:
    from director.patching import patch_all

    patch_all()


def main() -> None:
    if CTL:
        from director.ctl import run as run_ctl
        del sys.argv[1]
        run_ctl()
    from director.cli import run
    try:
        run()
    finally:
        if DAEMON:
            QUICK.undo()        # VIPs added at exec, if the daemon stopped before VRRP ran


if __name__ == "__main__":
    main()
