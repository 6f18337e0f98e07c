"""Bounded load through the load balancer while releases and rollbacks run.

Workers send a fixed request rate (GET a known schema, and every fifth request
registers a new one) over keep-alive connections until --stop-file appears or
--max-seconds pass, then write a JSON summary: requests, failures (any non-2xx or
connection error, with time and reason), the versions that answered /health, per kind
of request the answered and failed counts (with every failure's time), and every
acknowledged registration (time and schema id: the fault drills check none was lost).
Only the load balancer's own address is a target (a lab host or loopback).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import ssl
import threading
import time
import uuid
from dataclasses import dataclass, field


@dataclass
class Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: int = 0
    failures: list[dict] = field(default_factory=list)
    versions: dict[str, int] = field(default_factory=dict)
    by_request: dict[str, dict] = field(default_factory=dict)
    written: list[list] = field(default_factory=list)

    def _kind(self, what: str) -> dict:
        return self.by_request.setdefault(what, {"ok": 0, "failed": 0, "failed_at": []})

    def ok(self, what: str) -> None:
        with self.lock:
            self.requests += 1
            self._kind(what)["ok"] += 1

    def failed(self, started: float, what: str, reason: str) -> None:
        with self.lock:
            self.requests += 1
            self.failures.append({"at": round(started, 3), "request": what, "reason": reason})
            self._kind(what)["failed"] += 1
            self._kind(what)["failed_at"].append(round(started, 3))

    def wrote(self, started: float, schema_id: str) -> None:
        with self.lock:
            self.written.append([round(started, 3), schema_id])

    def version(self, name: str) -> None:
        with self.lock:
            self.versions[name] = self.versions.get(name, 0) + 1


class Client:
    def __init__(self, host: str, port: int, key: str, cafile: str | None = None) -> None:
        self.host, self.port, self.key = host, port, key
        # https, the certificate checked (name included) against the CA or the system's.
        self.context = ssl.create_default_context(cafile=cafile)
        self.conn: http.client.HTTPConnection | None = None

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, bytes]:
        if self.conn is None:
            self.conn = http.client.HTTPSConnection(
                self.host, self.port, timeout=10, context=self.context
            )
        headers = {"Authorization": f"Bearer {self.key}"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            self.conn.request(method, path, body=data, headers=headers)
            response = self.conn.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()
            self.conn = None
            raise


def schema_body(subject: str) -> dict:
    return {
        "subject": subject,
        "schema_type": "JSON",
        "schema": {"type": "object", "properties": {"prompt": {"type": "string"}}},
    }


def worker(
    client: Client,
    schema_id: str,
    *,
    interval: float,
    deadline: float,
    stop_file: str,
    tally: Tally,
    worker_no: int,
) -> None:
    next_at = time.monotonic()
    count = 0
    while time.monotonic() < deadline and not os.path.exists(stop_file):
        count += 1
        if count % 5 == 0:
            what = "POST /api/v1/schemas"
            call = (
                "POST",
                "/api/v1/schemas",
                schema_body(f"loadgen.w{worker_no}.s{uuid.uuid4().hex[:12]}"),
            )
        elif count % 7 == 0:
            what = "GET /health"
            call = ("GET", "/health", None)
        else:
            what = "GET /api/v1/schemas/{id}"
            call = ("GET", f"/api/v1/schemas/{schema_id}", None)
        started = time.time()
        try:
            status, payload = client.call(*call)
        except (OSError, http.client.HTTPException) as exc:
            tally.failed(started, what, f"{type(exc).__name__}: {exc}")
        else:
            if 200 <= status < 300:
                tally.ok(what)
                if what == "GET /health":
                    tally.version(json.loads(payload).get("version", "?"))
                elif call[0] == "POST":
                    tally.wrote(started, str(json.loads(payload).get("id", "")))
            else:
                tally.failed(started, what, f"HTTP {status}: {payload[:200]!r}")
        next_at += interval
        time.sleep(max(0.0, next_at - time.monotonic()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--host", required=True, help="load balancer address")
    parser.add_argument("--port", type=int, default=8443)
    parser.add_argument(
        "--cafile", help="CA of the load balancer's certificate (default: the system's)"
    )
    parser.add_argument("--api-key-file", required=True, help="file holding an API key")
    parser.add_argument("--rate", type=float, default=40.0, help="requests per second, total")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--max-seconds", type=float, default=900.0)
    parser.add_argument("--stop-file", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    with open(args.api_key_file, encoding="utf-8") as f:
        key = f.read().strip()

    seed = Client(args.host, args.port, key, args.cafile)
    status, payload = seed.call(
        "POST", "/api/v1/schemas", schema_body(f"loadgen.seed.s{uuid.uuid4().hex[:12]}")
    )
    if status not in (200, 201):
        raise SystemExit(
            f"loadgen: cannot register the seed schema: HTTP {status} {payload[:200]!r}"
        )
    schema_id = json.loads(payload)["id"]

    tally = Tally()
    started = time.time()
    deadline = time.monotonic() + args.max_seconds
    interval = args.workers / args.rate
    threads = [
        threading.Thread(
            target=worker,
            args=(Client(args.host, args.port, key, args.cafile), schema_id),
            kwargs={
                "interval": interval,
                "deadline": deadline,
                "stop_file": args.stop_file,
                "tally": tally,
                "worker_no": n,
            },
        )
        for n in range(args.workers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    summary = {
        "started": started,
        "seconds": round(time.time() - started, 1),
        "requests": tally.requests,
        "failed": len(tally.failures),
        "failures": tally.failures[:200],
        "versions_seen": tally.versions,
        "by_request": tally.by_request,
        "written": tally.written,
        "rate_target": args.rate,
    }
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)
    brief = {k: v for k, v in summary.items() if k not in ("failures", "by_request", "written")}
    print(json.dumps(brief))


if __name__ == "__main__":
    main()
