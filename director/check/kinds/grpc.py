"""GRPC_CHECK (a director extension): ``grpc.health.v1.Health/Check`` for a service name,
in clear or over TLS, SERVING being up (director/check/grpc.py)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from .kind import Kind

if TYPE_CHECKING:
    from ...config.blocks.checkers import Vocabulary
    from ...config.schema import Kw

# The shared keywords grpcio gives no way to honour: a channel makes its own sockets, and
# its Python API sets no source address, interface or mark on them.
REFUSED = ("bindto", "bind_port", "bind_if", "fwmark")
REFUSED_WHY = ("grpcio makes its own sockets and has no option for their source address, "
               "interface or mark")
DOC = ("A gRPC health check: grpc.health.v1.Health/Check for service_name, in clear or over "
       "TLS; SERVING is up, any other answer, an error or connect_timeout is a failed attempt, "
       "its cause first in the error (NOT_SERVING, SERVICE_UNKNOWN, UNAVAILABLE, "
       "DEADLINE_EXCEEDED, TLS_ERROR, NOT_GRPC...).")


def _implementation() -> type:
    from ..grpc import GrpcCheck   # here, not above: -t reads the keywords without grpcio
    return GrpcCheck


def _keywords(c: type[Vocabulary]) -> tuple[Kw, ...]:
    def service(args, ctx):
        # service_name "" is the server's overall health, as grpc_health_probe's default
        return " ".join(str(a) for a in args)

    def pem_file(args, ctx):
        path = c.one_value(args, "a PEM file")
        if not os.access(path, os.R_OK):
            raise c.Invalid(f"cannot read '{path}'")
        return path

    pem = c.Custom(pem_file, "a PEM file")
    return (
        c.Kw("service_name", c.Custom(service, "a service name"), default="",
             doc="The service whose health is asked; \"\" (the default) is "
                 "the server's overall health."),
        c.Kw("tls", c.Flag(), doc="Speak TLS. The server certificate is always "
                                  "verified (grpcio cannot skip that): against tls_ca, else the "
                                  "SSL block's ca, else the system's CAs; a self-signed "
                                  "certificate is its own CA."),
        c.Kw("tls_ca", pem, doc="CA certificates (PEM) the server's is "
                                "verified against. Default: the SSL block's ca."),
        c.Kw("tls_certificate", pem,
             doc="Client certificate chain (PEM). Default: the SSL block's "
                 "certificate, as SSL_GET presents it."),
        c.Kw("tls_key", pem, doc="Its private key (PEM; the SSL block's "
                                 "password decrypts it). Default: the SSL block's key."),
        c.Kw("tls_server_name", c.Word("a host name"),
             doc="The name sent as SNI and checked against the certificate. "
                 "Default: the real or virtual server's virtualhost, else the address."),
    )


def _finish(values, ctx):
    if not values.get("tls"):
        given = [name for name in ("tls_ca", "tls_certificate", "tls_key", "tls_server_name")
                 if values.get(name) is not None]
        if given:
            ctx.error(f"GRPC_CHECK: {', '.join(given)} without 'tls'")
    if (values.get("tls_certificate") is None) != (values.get("tls_key") is None) and \
            not {"tls_certificate", "tls_key"} & ctx.invalid:
        ctx.error("GRPC_CHECK needs both tls_certificate and tls_key, or neither")


def _inputs(config, real, settings) -> dict:
    """The top-level SSL block (its ca, client certificate, key and password: the defaults
    of the tls_ keywords) and the virtualhost (the default server name)."""
    return {"ssl_defs": config.ssl}


# Like HTTP_GET: a retry, 3 s apart, before a server is marked down.
KINDS = (Kind("GRPC_CHECK", "GrpcCheck", _implementation, _keywords, finish=_finish,
              delay_before_retry=3.0, inputs=_inputs, refused=REFUSED, refused_why=REFUSED_WHY,
              extension=True, doc=DOC),)
