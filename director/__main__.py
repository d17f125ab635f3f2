"""``python -m director`` and the ``director`` command. gevent's monkey-patching comes first,
before anything imports socket, subprocess or threading.

Except for ``director ctl``: the control client blocks as a command line may and needs no
gevent; without it, it answers in a fifth of the time (0.4 s, not 2, measured on a busy
host), which a shell's completion feels."""

import sys

CTL = sys.argv[1:2] == ["ctl"]

if not CTL:
    from gevent import monkey

    monkey.patch_all()


def main() -> None:
    if CTL:
        from director.ctl import run as run_ctl
        del sys.argv[1]
        run_ctl()
    from director.cli import run
    run()


if __name__ == "__main__":
    main()
