#!/usr/bin/python3
"""Alert inbox: an Alertmanager webhook receiver that keeps the last alerts for people.

Alertmanager posts every notification to POST /alerts (webhook payload version 4);
the inbox keeps the newest --keep alerts (firing and resolved) in a JSON file, so a
restart loses nothing, and shows them at GET / (an HTML page) and GET /alerts.json.
Only the addresses in --post-from may post (Alertmanager runs on the same host); the
page is read-only. With --tls-cert/--tls-key it speaks https only (TLS 1.2+) and loads
the files again when they change (certificate rotation needs no restart); with
--htpasswd every request must log in (HTTP basic auth, bcrypt hashes as in htpasswd
-B, checked with the system's crypt(3)). Python standard library only: it runs on any
Debian host.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hmac
import html
import json
import os
import ssl
import tempfile
import threading
import warnings
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # Python 3.11-3.12; libxcrypt does bcrypt
    try:
        import crypt
    except ImportError:  # Python 3.13 removed it
        crypt = None

MAX_BODY = 1024 * 1024
FIELDS = ("status", "labels", "annotations", "startsAt", "endsAt", "generatorURL", "fingerprint")


class Inbox:
    """The newest alerts first, saved atomically after every post."""

    def __init__(self, path: str, keep: int) -> None:
        self.path = path
        self.keep = keep
        self.lock = threading.Lock()
        self.alerts: list[dict] = []
        try:
            with open(path, encoding="utf-8") as handle:
                loaded = json.load(handle)
            if isinstance(loaded, list):
                self.alerts = loaded[:keep]
        except (OSError, ValueError):
            self.alerts = []

    def add(self, payload: dict) -> int:
        received = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        new = [
            {
                **{key: alert.get(key) for key in FIELDS},
                "receiver": payload.get("receiver"),
                "receivedAt": received,
            }
            for alert in payload["alerts"]
            if isinstance(alert, dict)
        ]
        with self.lock:
            self.alerts = (list(reversed(new)) + self.alerts)[: self.keep]
            self._save()
        return len(new)

    def snapshot(self) -> list[dict]:
        with self.lock:
            return list(self.alerts)

    def _save(self) -> None:
        folder = os.path.dirname(self.path) or "."
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".alerts.")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(self.alerts, handle)
        os.replace(tmp, self.path)


def render(alerts: list[dict]) -> bytes:
    rows = []
    for alert in alerts:
        labels = alert.get("labels") or {}
        annotations = alert.get("annotations") or {}
        status = str(alert.get("status"))
        rows.append(
            "<tr class='{cls}'><td>{received}</td><td>{status}</td><td>{name}</td>"
            "<td>{severity}</td><td>{instance}</td><td>{summary}</td><td>{since}</td></tr>".format(
                cls="firing" if status == "firing" else "resolved",
                received=html.escape(str(alert.get("receivedAt"))),
                status=html.escape(status),
                name=html.escape(str(labels.get("alertname", ""))),
                severity=html.escape(str(labels.get("severity", ""))),
                instance=html.escape(str(labels.get("instance", labels.get("job", "")))),
                summary=html.escape(
                    str(annotations.get("summary", annotations.get("description", "")))
                ),
                since=html.escape(str(alert.get("startsAt"))),
            )
        )
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><meta http-equiv='refresh' content='15'>"
        "<title>Alert inbox</title><style>body{font-family:sans-serif}td,th{padding:2px 8px}"
        ".firing{background:#fdd}.resolved{background:#dfd}</style></head><body>"
        f"<h1>Alert inbox</h1><p>The last {len(alerts)} alerts Alertmanager sent here, newest "
        "first (JSON: <a href='alerts.json'>alerts.json</a>). Refreshes every 15 s.</p>"
        "<table><tr><th>received</th><th>status</th><th>alert</th><th>severity</th>"
        "<th>instance</th><th>summary</th><th>since</th></tr>"
        + "".join(rows)
        + "</table></body></html>"
    )
    return page.encode()


class Logins:
    """user -> bcrypt hash from an htpasswd file; a checked password is remembered."""

    def __init__(self, path: str) -> None:
        if crypt is None:
            raise SystemExit("--htpasswd needs Python's crypt module (Python 3.12 or older)")
        self.users: dict[str, str] = {}
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                user, sep, hashed = line.strip().partition(":")
                if sep and user and hashed.startswith(("$2a$", "$2b$", "$2y$")):
                    self.users[user] = hashed
        if not self.users:
            raise SystemExit(f"{path}: no user:bcrypt-hash line")
        self.checked: set[tuple[str, str]] = set()
        self.lock = threading.Lock()

    def allows(self, header: str | None) -> bool:
        scheme, _sep, encoded = (header or "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, sep, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        hashed = self.users.get(user)
        if not sep or hashed is None:
            return False
        with self.lock:
            if (user, password) in self.checked:
                return True
        if not hmac.compare_digest(crypt.crypt(password, hashed) or "", hashed):
            return False
        with self.lock:
            self.checked.add((user, password))
        return True


class TLSFiles:
    """A server context for the certificate and key, made again when either file changes."""

    def __init__(self, cert: str, key: str) -> None:
        self.cert, self.key = cert, key
        self.lock = threading.Lock()
        self.stamp: tuple[float, float] | None = None
        self.context = self._load()  # a bad file stops the start, with its error

    def _load(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert, self.key)
        self.stamp = (os.stat(self.cert).st_mtime, os.stat(self.key).st_mtime)
        return context

    def current(self) -> ssl.SSLContext:
        with self.lock:
            try:
                if (os.stat(self.cert).st_mtime, os.stat(self.key).st_mtime) != self.stamp:
                    self.context = self._load()
            except (OSError, ssl.SSLError):
                pass  # half-written files during a rotation: keep serving the old pair
            return self.context


class InboxServer(ThreadingHTTPServer):
    daemon_threads = True
    tls: TLSFiles | None = None

    def finish_request(self, request, client_address) -> None:
        # The TLS handshake runs in the request's own thread, so a slow client never
        # holds up accept().
        if self.tls is not None:
            request.settimeout(10)
            try:
                request = self.tls.current().wrap_socket(request, server_side=True)
            except (OSError, ssl.SSLError):
                return
        super().finish_request(request, client_address)


def make_handler(inbox: Inbox, post_from: frozenset[str], logins: Logins | None = None):
    class Handler(BaseHTTPRequestHandler):
        server_version = "alertmanager-inbox"

        def parse_request(self) -> bool:
            # Every method logs in first; False ends the request (the 401 is sent).
            return super().parse_request() and self._logged_in()

        def _logged_in(self) -> bool:
            if logins is None or logins.allows(self.headers.get("Authorization")):
                return True
            # Read what the client sends before answering, so it sees the 401 and not
            # a reset connection (bounded: a larger body is not read).
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = MAX_BODY + 1
            if 0 < length <= MAX_BODY:
                self.rfile.read(length)
            self.close_connection = True
            body = json.dumps({"error": "log in (HTTP basic auth)"}).encode()
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="alert inbox"')
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return False

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def _error(self, status: int, message: str) -> None:
            self._send(status, json.dumps({"error": message}).encode(), "application/json")

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path in ("/", "/index.html"):
                self._send(200, render(inbox.snapshot()), "text/html; charset=utf-8")
            elif path == "/alerts.json":
                self._send(200, json.dumps(inbox.snapshot()).encode(), "application/json")
            elif path == "/-/healthy":
                self._send(200, b"OK\n", "text/plain")
            else:
                self._error(404, f"no such page: {path}")

        def do_POST(self) -> None:
            if self.path.split("?", 1)[0] != "/alerts":
                self._error(404, "post alerts to /alerts")
                return
            if self.client_address[0] not in post_from:
                allowed = ", ".join(sorted(post_from))
                self._error(403, f"{self.client_address[0]} may not post (allowed: {allowed})")
                return
            try:
                length = int(self.headers.get("Content-Length", ""))
            except ValueError:
                self._error(411, "Content-Length required")
                return
            if length > MAX_BODY:
                self._error(413, f"body over {MAX_BODY} bytes")
                return
            try:
                payload = json.loads(self.rfile.read(length))
            except ValueError as exc:
                self._error(400, f"body is not JSON: {exc}")
                return
            if not isinstance(payload, dict) or not isinstance(payload.get("alerts"), list):
                self._error(400, "body is not an Alertmanager webhook payload (no 'alerts' list)")
                return
            count = inbox.add(payload)
            self._send(200, json.dumps({"stored": count}).encode(), "application/json")

        def log_message(self, format: str, *args) -> None:
            # Requests are not logged: one line per page view is noise in the journal.
            return

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9095)
    parser.add_argument("--state", required=True, help="JSON file that keeps the alerts")
    parser.add_argument("--keep", type=int, default=200, help="how many alerts to keep")
    parser.add_argument(
        "--post-from", default="127.0.0.1,::1", help="addresses that may post, comma-separated"
    )
    parser.add_argument("--tls-cert", help="certificate (PEM, chain): serve https only")
    parser.add_argument("--tls-key", help="private key of --tls-cert (PEM)")
    parser.add_argument("--htpasswd", help="user:bcrypt-hash lines: every request logs in")
    args = parser.parse_args()
    if args.keep < 1:
        parser.error("--keep must be at least 1")
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    inbox = Inbox(args.state, args.keep)
    post_from = frozenset(a.strip() for a in args.post_from.split(",") if a.strip())
    logins = Logins(args.htpasswd) if args.htpasswd else None
    server = InboxServer((args.listen, args.port), make_handler(inbox, post_from, logins))
    if args.tls_cert:
        server.tls = TLSFiles(args.tls_cert, args.tls_key)
    server.serve_forever()


if __name__ == "__main__":
    main()
