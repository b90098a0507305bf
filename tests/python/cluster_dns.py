"""A stand-in for a cluster's DNS, as far as a headless Service goes: one name
whose A records are the ready pods' addresses. Any other name does not
exist; the name has no AAAA records (an IPv4 cluster)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from dnslib import QTYPE, RCODE, RR, A
from dnslib.server import BaseResolver, DNSLogger, DNSServer

# As CoreDNS answers for a Service: short, so a pod that stops being ready
# drops out of its peers' lookups soon.
TTL_SECONDS = 5


class _HeadlessService(BaseResolver):
    def __init__(self, name: str, addresses: list[str]):
        self.name = name.rstrip(".")
        self.addresses = addresses

    def resolve(self, request, handler):
        reply = request.reply()
        question = request.q
        if str(question.qname).rstrip(".") != self.name:
            reply.header.rcode = RCODE.NXDOMAIN
        elif question.qtype == QTYPE.A:
            for address in self.addresses:
                reply.add_answer(RR(question.qname, QTYPE.A, rdata=A(address), ttl=TTL_SECONDS))
        return reply


@contextlib.contextmanager
def headless_service(name: str, addresses: list[str]) -> Iterator[str]:
    """Answers `name` with `addresses` over UDP on a free loopback port for the
    with-block; yields the server's `IP:PORT`."""
    quiet = DNSLogger(log="-request,-reply,-truncated,-error,-recv,-send,-data", logf=logging.debug)
    server = DNSServer(_HeadlessService(name, addresses), address="127.0.0.1", port=0, logger=quiet)
    server.start_thread()
    try:
        host, port = server.server.server_address
        yield f"{host}:{port}"
    finally:
        server.stop()
