"""director: a keepalived-compatible load-balancer director daemon."""

__version__ = "0.1.0"
