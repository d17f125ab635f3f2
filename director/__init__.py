"""director: a keepalived-compatible load-balancer director daemon."""

__version__ = "0.1.0"
DEFAULT_STATE_DIR = "/var/lib/director"     # --state-dir (cli.py, ctl.py, vrrp/quickstart.py)
