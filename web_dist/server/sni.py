"""Certificates chosen by SNI: one TLS listener, a certificate per set of names.

granian takes one certificate per listener and has no SNI callback, so a listener with
several certificates is served by Hypercorn on Python's `ssl` (web_dist.server.sni_listener):
one SSLContext per certificate, and the default context's `sni_callback` moves each handshake
to the context whose certificate names the server name the client sent (an exact name first,
then a wildcard one level up, as RFC 6125 matches; none: the default certificate). The names
are the certificate's own subject alternative names, so the config lists files, not names.
Every context offers h2 and http/1.1 by ALPN, TLS 1.2 and 1.3.
"""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509

ALPN = ["h2", "http/1.1"]
# TLS 1.2's suites: forward-secret AEAD ones only, as RFC 9113 section 9.2.2 asks of h2 (and
# as rustls, granian's TLS, offers); TLS 1.3's are all AEAD.
CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


def certificate_names(cert: Path) -> list[str]:
    """The DNS names and IP addresses a PEM certificate (its first, the leaf) is for, lower-cased."""
    leaf = x509.load_pem_x509_certificate(cert.read_bytes())
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [n.lower() for n in san.get_values_for_type(x509.DNSName)] + [
        str(a) for a in san.get_values_for_type(x509.IPAddress)
    ]


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server context for one pair: TLS 1.2 and 1.3, ALPN h2 and http/1.1."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(CIPHERS)
    context.set_alpn_protocols(ALPN)
    context.load_cert_chain(cert, key)
    return context


class SniCertificates:
    """The contexts of a listener: the default pair's, and one per further pair, by name."""

    def __init__(self, default: tuple[Path, Path], others: Sequence[tuple[Path, Path]]) -> None:
        self.pairs = [default, *others]
        self.contexts = [server_context(*pair) for pair in self.pairs]
        self.contexts[0].sni_callback = self._choose
        self._by_name: dict[str, ssl.SSLContext] = {}
        self._index()

    @property
    def default(self) -> ssl.SSLContext:
        return self.contexts[0]

    def for_name(self, server_name: str | None) -> ssl.SSLContext:
        """The context whose certificate covers `server_name` (else the default)."""
        if not server_name:
            return self.default
        name = server_name.lower().rstrip(".")
        found = self._by_name.get(name)
        if found is None and "." in name and not _is_address(name):
            found = self._by_name.get("*." + name.split(".", 1)[1])
        return found or self.default

    def reload(self, index: int) -> None:
        """Pair `index`'s files again (new handshakes get it), and the names they now hold."""
        self.contexts[index].load_cert_chain(*self.pairs[index])
        self._index()

    def _index(self) -> None:
        by_name: dict[str, ssl.SSLContext] = {}
        for pair, context in reversed(list(zip(self.pairs, self.contexts, strict=True))):  # earlier pairs win
            by_name.update(dict.fromkeys(certificate_names(pair[0]), context))
        self._by_name = by_name

    def _choose(self, sock: ssl.SSLObject, server_name: str | None, _: ssl.SSLContext) -> None:
        context = self.for_name(server_name)
        if context is not self.default:
            sock.context = context


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True
