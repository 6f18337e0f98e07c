"""SIGTERM lets in-flight requests finish; both workers serve."""

from __future__ import annotations

import http.client
import json
import signal
import socket
import time
from pathlib import Path

import httpx
from helpers import REDIS_URL, Server, auth, write_config


def test_sigterm_finishes_in_flight_request_then_exits(migrated_db, tmp_path):
    server = Server(write_config(tmp_path, migrated_db, REDIS_URL, server={"workers": 2}))
    server.start()
    try:
        body = json.dumps(
            {"subject": "llm.graceful.req", "schema": {"type": "object"}, "schema_type": "json"}
        ).encode()
        token = auth()["Authorization"]
        head = (
            f"POST /api/v1/schemas HTTP/1.1\r\nHost: x\r\nAuthorization: {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        ).encode()
        with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
            sock.sendall(head + body[:10])  # the request is now in flight
            time.sleep(0.5)
            assert server.process is not None
            server.process.send_signal(signal.SIGTERM)
            time.sleep(1.0)
            sock.sendall(body[10:])
            response = b""
            while chunk := sock.recv(65536):
                response += chunk
        assert response.startswith(b"HTTP/1.1 201"), response[:200]
        assert server.process.wait(timeout=40) == 0
    finally:
        server.stop()


def test_two_workers_share_the_load(migrated_db, tmp_path):
    server = Server(write_config(tmp_path, migrated_db, REDIS_URL, server={"workers": 2}))
    server.start()
    try:
        # Each worker process writes its request counters to its own file, named by pid.
        writers: set[str] = set()
        deadline = time.monotonic() + 60
        while len(writers) < 2 and time.monotonic() < deadline:
            for _ in range(20):
                assert _get_on_new_connection(server, "/livez") == 200
            writers = {
                p.stem.rsplit("_", 1)[1] for p in Path(server.multiproc).glob("counter_*.db")
            }
        assert len(writers) == 2
        _deleted_schema_disappears_from_every_worker(server)
    finally:
        server.stop()


def _deleted_schema_disappears_from_every_worker(server: Server) -> None:
    body = {"subject": "llm.twoworkers.chat", "schema": {"type": "object"}, "schema_type": "json"}
    schema_id = httpx.post(server.url + "/api/v1/schemas", json=body, headers=auth()).json()["id"]
    for _ in range(20):  # new connections land on both workers and fill their memory tier
        assert _get_on_new_connection(server, f"/api/v1/schemas/{schema_id}") == 200
    deleted = httpx.delete(f"{server.url}/api/v1/schemas/{schema_id}", headers=auth())
    assert deleted.status_code == 200
    time.sleep(0.1)  # the invalidation message crosses Redis pub/sub
    statuses = {_get_on_new_connection(server, f"/api/v1/schemas/{schema_id}") for _ in range(20)}
    assert statuses == {404}


def _get_on_new_connection(server: Server, path: str) -> int:
    """The kernel spreads new connections over the workers sharing the socket."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=20)
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    finally:
        connection.close()
