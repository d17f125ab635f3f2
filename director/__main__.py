"""``python -m director`` and the ``director`` command. gevent's monkey-patching comes first,
before anything imports socket, subprocess or threading."""

from gevent import monkey

monkey.patch_all()

from director.cli import run  # noqa: E402


def main() -> None:
    run()


if __name__ == "__main__":
    main()
