"""Each checker kind's block as keepalived 2.2.7 reads it: what its keywords mean, the defaults
it inherits (base.resolve_settings), and nb_get_retry, which only HTTP_GET and SSL_GET read."""

from __future__ import annotations

import pytest

from director.check.base import resolve_settings
from director.config import load_config

OWN = {"MISC_CHECK": "misc_path /bin/true\n", "HTTP_GET": "url {\n path /\n}\n",
       "SSL_GET": "url {\n path /\n}\n"}


def load(tmp_path, kind: str, body: str):
    """(the parsed checker block with its virtual and real server, the warnings)"""
    path = tmp_path / "keepalived.conf"
    path.write_text(f"""virtual_server 192.0.2.1 80 {{
    protocol TCP
    real_server 10.0.0.1 80 {{
        {kind} {{
{OWN.get(kind, "")}{body}
        }}
    }}
}}
""")
    result = load_config(str(path), config_id="t", interface_exists=None)
    assert result.ok, [str(d) for d in result.diagnostics]
    virtual = result.config.virtual_servers[0]
    real = virtual.real_servers[0]
    warnings = [str(d).replace(str(path), "K") for d in result.diagnostics]
    return (virtual, real, real.checkers[0]), warnings


@pytest.mark.parametrize("kind, default", [("TCP_CHECK", 1), ("SMTP_CHECK", 1), ("DNS_CHECK", 3),
                                           ("UDP_CHECK", 1), ("PING_CHECK", 1),
                                           ("MISC_CHECK", 0)])
def test_nb_get_retry_is_ignored_where_keepalived_does_not_read_it(tmp_path, kind, default):
    """keepalived 2.2.7 installs nb_get_retry in check_http.c only: elsewhere it is an unknown
    keyword, dropped, and the retry count stays the kind's default."""
    (virtual, real, block), warnings = load(tmp_path, kind, "nb_get_retry 7\n")
    line = 5 + OWN.get(kind, "").count("\n")
    assert warnings == [f"K:{line}: warning: nb_get_retry is ignored in {kind}: keepalived 2 "
                        f"reads it only in HTTP_GET and SSL_GET (use 'retry')"]
    assert resolve_settings(virtual, real, block).retry == default


@pytest.mark.parametrize("kind", ["HTTP_GET", "SSL_GET"])
def test_nb_get_retry_is_retry_in_http_checks(tmp_path, kind):
    (virtual, real, block), warnings = load(tmp_path, kind, "nb_get_retry 7\n")
    assert warnings == ["K:8: warning: nb_get_retry is deprecated: use 'retry'"]
    assert resolve_settings(virtual, real, block).retry == 7


# -- one declaration per kind, and what parsing loads ------------------------------------------

EVERY_KIND = """global_defs {
    script_user nobody
}
track_file tf {
    file /tmp/director-test-track
    weight 3
}
SSL {
    certificate /etc/ssl/client.pem
}
virtual_server 192.0.2.1 80 {
    delay_loop 7
    protocol TCP
    real_server 10.0.0.1 80 {
        weight 5
        TCP_CHECK {
        }
        HTTP_GET {
            url {
                path /
            }
        }
        SSL_GET {
            url {
                path /
            }
        }
        MISC_CHECK {
            misc_path /bin/true
        }
        SMTP_CHECK {
        }
        DNS_CHECK {
        }
        UDP_CHECK {
        }
        ICMP_CHECK {
        }
        FILE_CHECK {
            track_file tf
        }
        BFD_CHECK {
            name b
        }
        AGENT_CHECK {
            connect_port 8081
        }
        GRPC_CHECK {
            service_name "svc"
        }
    }
}
"""


def test_every_declaration_module_is_in_the_registry():
    """A kind declared in a module of kinds/ but left out of KINDS would parse nowhere."""
    import importlib
    import pkgutil

    from director.check import kinds

    for module in pkgutil.iter_modules(kinds.__path__):
        declared = getattr(importlib.import_module(f"{kinds.__name__}.{module.name}"),
                           "KINDS", ())
        for kind in declared:
            assert kinds.KINDS[kind.name] is kind, module.name
    assert len(kinds.KINDS) == 12


def test_each_kind_builds_its_checker_with_what_it_needs(tmp_path):
    """The kinds' factories (Kind.inputs), through the check service as the daemon runs it."""
    from director.check.file import FileCheck
    from director.check.http import HttpCheck
    from director.check.misc import MiscCheck
    from director.check.ping import PingCheck
    from director.check.service import CheckService
    from director.check.tcp import TcpCheck
    from director.clock import FakeClock
    from director.notify import Notifier

    path = tmp_path / "keepalived.conf"
    path.write_text(EVERY_KIND)
    result = load_config(str(path), config_id="t", interface_exists=None)
    assert result.ok, [str(d) for d in result.diagnostics]
    checks = CheckService(result.config, FakeClock(), Notifier(), workers=0)
    checks.start()                       # the jobs are built; nothing runs without a yield
    try:
        (state,) = checks.real_servers
        by_kind = {job.key[2]: job.checker for job in state.jobs}
        assert list(by_kind) == ["TCP_CHECK", "HTTP_GET", "SSL_GET", "MISC_CHECK", "SMTP_CHECK",
                                 "DNS_CHECK", "UDP_CHECK", "PING_CHECK", "FILE_CHECK",
                                 "AGENT_CHECK", "GRPC_CHECK"]  # no BFD
        assert isinstance(by_kind["TCP_CHECK"], TcpCheck)
        assert isinstance(by_kind["PING_CHECK"], PingCheck)
        http, ssl = by_kind["HTTP_GET"], by_kind["SSL_GET"]
        assert isinstance(http, HttpCheck) and http.ssl_defs is None and not http.tls
        assert ssl.tls and ssl.ssl_defs is result.config.ssl
        misc = by_kind["MISC_CHECK"]
        assert isinstance(misc, MiscCheck)
        assert (misc.script_user, misc.timeout) == ("nobody", 7.0)   # delay_loop
        assert [job.settings.retry for job in state.jobs] == [1, 1, 1, 0, 1, 3, 1, 1, 0, 0, 1]
        file = by_kind["FILE_CHECK"]
        assert isinstance(file, FileCheck) and file.base_weight == 5
        assert file.track_file is result.config.track_files[0] and file.weight == 3
        assert state.jobs[-3].settings.delay_loop == 1.0    # FILE_CHECK reads at least 1/s
        grpc = by_kind["GRPC_CHECK"]
        assert grpc.ssl_defs is result.config.ssl and grpc.service == "svc" and not grpc.tls
    finally:
        checks.stop()


def test_parsing_loads_no_checker(tmp_path):
    """-t reads every kind's keywords and loads none of the checkers nor their I/O: no
    gevent, ssl, subprocess or logging (the I/O the checker modules import)."""
    import subprocess
    import sys
    from pathlib import Path

    path = tmp_path / "keepalived.conf"
    path.write_text(EVERY_KIND)
    code = ("import sys\nfrom director.config import load_config\n"
            f"assert load_config({str(path)!r}, config_id='t', interface_exists=None).ok\n"
            "print(' '.join(sorted(sys.modules)))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr
    loaded = set(done.stdout.split())
    assert "director.check.kinds.tcp" in loaded          # the declarations are read ...
    checkers = {f"director.check.{name}" for name in
                ("tcp", "http", "misc", "smtp", "dns", "udp", "ping", "file", "grpc",
                              "scheduler")}
    assert not loaded & (checkers | {"director.hub", "director.genhash", "director.log",
                                     "gevent", "ssl", "subprocess", "logging", "grpc",
                                     "grpc_health.v1.health_pb2"})   # ... only


def test_dns_check_takes_the_types_the_checker_can_send():
    from director.check.dns import TYPES
    from director.config.blocks.checkers import BLOCKS

    assert BLOCKS["DNS_CHECK"].lookup("type").value.options == tuple(TYPES)
