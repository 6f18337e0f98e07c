"""The /metrics listener of the main process.

Plain HTTP, or (with a certificate) https that asks every client for a certificate
from the given CA: Prometheus shows its host's, as it does to redis_exporter. The
certificate, key and CA are read again when one of them changes, so a rotated
certificate is served on the next connection without a restart. The TLS handshake
runs in the connection's own thread: a slow or silent client never holds up accept().
"""

from __future__ import annotations

import os
import socket
import ssl
import threading
from http.server import ThreadingHTTPServer

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import MetricsHandler

HANDSHAKE_TIMEOUT_S = 10
TLS_HANDSHAKE_RECORD = b"\x16"
PLAIN_HTTP_ANSWER = (
    b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n"
    b"Client sent an HTTP request to an HTTPS server.\n"
)


class TLSFiles:
    """A server context for the files, made again when any of them changes."""

    def __init__(self, cert: str, key: str, client_ca: str | None) -> None:
        self.paths = tuple(p for p in (cert, key, client_ca) if p)
        self.cert, self.key, self.client_ca = cert, key, client_ca
        self.lock = threading.Lock()
        self.stamp = self._stamp()
        self.context = self._load()  # a bad file stops the start, with its error

    def _stamp(self) -> tuple[float, ...]:
        return tuple(os.stat(path).st_mtime for path in self.paths)

    def _load(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert, self.key)
        if self.client_ca:
            context.load_verify_locations(cafile=self.client_ca)
            context.verify_mode = ssl.CERT_REQUIRED
        return context

    def current(self) -> ssl.SSLContext:
        with self.lock:
            try:
                stamp = self._stamp()
                if stamp != self.stamp:
                    self.context, self.stamp = self._load(), stamp
            except (OSError, ssl.SSLError):
                pass  # files half written during a rotation: keep serving the old ones
            return self.context


class MetricsServer(ThreadingHTTPServer):
    daemon_threads = True
    tls: TLSFiles | None = None

    def finish_request(self, request, client_address) -> None:
        if self.tls is not None:
            request.settimeout(HANDSHAKE_TIMEOUT_S)
            try:
                # Plain HTTP gets a 400 that says why (as Go's TLS servers answer it).
                if request.recv(1, socket.MSG_PEEK) != TLS_HANDSHAKE_RECORD:
                    request.sendall(PLAIN_HTTP_ANSWER)
                    return
                request = self.tls.current().wrap_socket(request, server_side=True)
            except (OSError, ssl.SSLError):
                return  # no certificate from the CA, a scan: nothing to answer
        super().finish_request(request, client_address)


def start(
    port: int,
    host: str,
    registry: CollectorRegistry,
    *,
    cert: str | None = None,
    key: str | None = None,
    client_ca: str | None = None,
) -> MetricsServer:
    """Serves registry on host:port in a daemon thread; https when cert is given."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    server_class = type("MetricsServerFamily", (MetricsServer,), {"address_family": family})
    server = server_class((host, port), MetricsHandler.factory(registry))
    if cert:
        server.tls = TLSFiles(cert, key or cert, client_ca)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
