#!/usr/bin/python3
"""Alert inbox: an Alertmanager webhook receiver that keeps the last alerts for people.

Alertmanager posts every notification to POST /alerts (webhook payload version 4);
the inbox keeps the newest --keep alerts (firing and resolved) in a JSON file, so a
restart loses nothing, and shows them at GET / (an HTML page) and GET /alerts.json.
Only the addresses in --post-from may post (Alertmanager runs on the same host); the
page is read-only. Python standard library only: it runs on any Debian host.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import tempfile
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

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


def make_handler(inbox: Inbox, post_from: frozenset[str]):
    class Handler(BaseHTTPRequestHandler):
        server_version = "alertmanager-inbox"

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
    args = parser.parse_args()
    if args.keep < 1:
        parser.error("--keep must be at least 1")
    inbox = Inbox(args.state, args.keep)
    post_from = frozenset(a.strip() for a in args.post_from.split(",") if a.strip())
    server = ThreadingHTTPServer((args.listen, args.port), make_handler(inbox, post_from))
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
