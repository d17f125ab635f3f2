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
