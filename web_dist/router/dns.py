"""A small authoritative DNS server: a distribution's domains resolve to the chosen edge.

It answers A (and AAAA) questions for the names its resolver serves with the address of the
edge picked for the asking client's address, as DNS-based CDNs do; names it does not serve
get REFUSED, and a served name with no healthy edge gets SERVFAIL so resolvers try again soon.
UDP only: the answers are tiny. Parsing and building messages is dnslib's.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from typing import Protocol, cast

from dnslib import AAAA, CNAME, QTYPE, RCODE, RR, A, DNSError, DNSRecord

log = logging.getLogger("cdn.dns")


class Resolver(Protocol):
    def serves(self, name: str) -> bool: ...

    def resolve(self, name: str, client: str) -> str | None:
        """The address (IP or host name) of the edge for this client; None: no healthy edge."""
        ...


class DnsServer:
    """Answers DNS questions over UDP from a `Resolver` (the request router)."""

    def __init__(self, resolver: Resolver, *, ttl: int = 5) -> None:
        self.resolver = resolver
        self.ttl = ttl
        self._transport: asyncio.DatagramTransport | None = None

    @property
    def port(self) -> int:
        assert self._transport is not None, "start() first"
        return int(self._transport.get_extra_info("sockname")[1])

    async def start(self, listen: str) -> None:
        host, _, port = listen.rpartition(":")
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(
            lambda: _Protocol(self), local_addr=(host.strip("[]"), int(port))
        )
        log.info("dns listening on udp %s", listen)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def answer(self, packet: bytes, client: str) -> bytes | None:
        """The reply to one query message (None: not a DNS query, dropped)."""
        try:
            query = DNSRecord.parse(packet)
        except (DNSError, ValueError, IndexError):
            return None
        if query.header.qr:  # a response, not a question: never answer those
            return None
        reply = query.reply()
        reply.header.ra = 0  # authoritative only, no recursion
        if query.header.opcode != 0:
            reply.header.rcode = RCODE.NOTIMP
            return bytes(reply.pack())
        for question in query.questions:
            reply.header.rcode = self._answer_one(reply, question.qname, question.qtype, client)
            if reply.header.rcode != RCODE.NOERROR:
                break
        return bytes(reply.pack())

    def _answer_one(self, reply: DNSRecord, qname: object, qtype: int, client: str) -> int:
        name = str(qname).rstrip(".").lower()
        if not self.resolver.serves(name):
            return int(RCODE.REFUSED)
        if qtype not in (QTYPE.A, QTYPE.AAAA, QTYPE.ANY):
            return int(RCODE.NOERROR)  # the name exists, with no records of that type
        address = self.resolver.resolve(name, client)
        if address is None:
            return int(RCODE.SERVFAIL)
        record = _record(address, qtype)
        if record is not None:
            reply.add_answer(RR(qname, record[0], rdata=record[1], ttl=self.ttl))
        return int(RCODE.NOERROR)


def _record(address: str, qtype: int) -> tuple[int, object] | None:
    """The resource record for `address` answering `qtype`, or None when it has none of that type."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return QTYPE.CNAME, CNAME(address + ".")
    if ip.version == 4 and qtype in (QTYPE.A, QTYPE.ANY):
        return QTYPE.A, A(str(ip))
    if ip.version == 6 and qtype in (QTYPE.AAAA, QTYPE.ANY):
        return QTYPE.AAAA, AAAA(str(ip))
    return None


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # asyncio's UDP transport does not subclass DatagramTransport on every loop: trust the type.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        reply = self.server.answer(data, str(addr[0]))
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)
