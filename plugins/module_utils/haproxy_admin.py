# Copyright: llmops maintainers
# Apache License 2.0 (see LICENSE)
"""Several HAProxy servers drained or enabled in one call over the admin socket.

Behind the module llmops.registry.haproxy_servers. community.general.haproxy changes one
server per call and cannot look at the other servers first; a rollback that takes a
whole registry host out needs both in one round trip: "is another host UP?" and "drain
these". Stdlib only (it runs on the load balancer).
"""

from __future__ import annotations

import csv
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# What `show stat` calls the rows that are not servers.
NOT_SERVERS = {"FRONTEND", "BACKEND"}
# The state each wanted state ends in, and the command that gets there.
FINAL_STATUS = {"drained": "MAINT", "enabled": "UP"}


class HaproxyError(Exception):
    """The socket, a name or a command failed; says which."""


@dataclass
class ServerState:
    name: str
    status: str
    sessions: int


class AdminSocket:
    """One command per connection (HAProxy's non-interactive mode)."""

    def __init__(self, path: str, timeout: float = 5.0) -> None:
        self.path = path
        self.timeout = timeout

    def command(self, line: str) -> str:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(self.timeout)
                sock.connect(self.path)
                sock.sendall(line.encode() + b"\n")
                chunks = []
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
        except OSError as exc:
            raise HaproxyError(f"HAProxy admin socket {self.path}: {exc}") from None
        return b"".join(chunks).decode("utf-8", "replace")

    def states(self, backend: str) -> dict[str, ServerState]:
        """Every server of the backend from `show stat`."""
        text = self.command("show stat").lstrip("# ")
        states = {}
        for row in csv.DictReader(text.splitlines()):
            if row.get("pxname") == backend and row.get("svname") not in NOT_SERVERS:
                states[row["svname"]] = ServerState(
                    name=row["svname"],
                    status=row.get("status", ""),
                    sessions=int(row.get("scur") or 0),
                )
        return states

    def set_state(self, backend: str, server: str, state: str) -> None:
        self._set(f"set server {backend}/{server} state {state}")

    def set_health_up(self, backend: str, server: str) -> None:
        self._set(f"set server {backend}/{server} health up")

    def _set(self, line: str) -> None:
        answer = self.command(line).strip()
        if answer:
            raise HaproxyError(f"{line}: {answer}")


def _free(state: ServerState) -> bool:
    return state.sessions == 0


def _in_maint(state: ServerState) -> bool:
    return state.status == "MAINT" and state.sessions == 0


def _up(state: ServerState) -> bool:
    return state.status == "UP"


def _wait(
    admin: AdminSocket,
    backend: str,
    *,
    servers: list[str],
    done: Callable[[ServerState], bool],
    what: str,
    timeout: float,
    interval: float,
) -> dict[str, ServerState]:
    """Poll `show stat` until every server is done; fail naming the late ones."""
    deadline = time.monotonic() + timeout
    while True:
        states = admin.states(backend)
        late = [s for s in servers if not done(states[s])]
        if not late:
            return states
        if time.monotonic() >= deadline:
            seen = ", ".join(
                f"{s}: {states[s].status} ({states[s].sessions} sessions)" for s in late
            )
            raise HaproxyError(f"{backend}: not {what} within {timeout:g} s: {seen}")
        time.sleep(interval)


def _validate(admin: AdminSocket, backend: str, servers: list[str], state: str) -> dict:
    if state not in FINAL_STATUS:
        raise HaproxyError(f"state must be one of {sorted(FINAL_STATUS)}, got {state!r}")
    if not servers:
        raise HaproxyError("servers is empty: name at least one server of the backend")
    if len(set(servers)) != len(servers):
        raise HaproxyError(f"servers lists a name twice: {servers}")
    before = admin.states(backend)
    if not before:
        raise HaproxyError(f"HAProxy has no backend {backend!r} with servers")
    unknown = [s for s in servers if s not in before]
    if unknown:
        raise HaproxyError(
            f"backend {backend} has no server {', '.join(unknown)} (it has {', '.join(before)})"
        )
    return before


def set_servers(
    *,
    socket_path: str,
    backend: str,
    servers: list[str],
    state: str,
    min_others_up: int = 0,
    health_up: bool = False,
    timeout: float = 30.0,
    interval: float = 0.1,
    check_mode: bool = False,
) -> dict[str, Any]:
    admin = AdminSocket(socket_path)
    before = _validate(admin, backend, servers, state)
    others_up = sorted(n for n, s in before.items() if n not in servers and s.status == "UP")
    result: dict[str, Any] = {
        "backend": backend,
        "others_up": others_up,
        "acted": False,
        "changed": False,
        "servers": [
            {"name": s, "status_before": before[s].status, "status_after": before[s].status}
            for s in servers
        ],
        "seconds": 0.0,
    }
    if state == "drained" and len(others_up) < min_others_up:
        # Not enough capacity elsewhere: leave everything as it is, the caller picks a
        # gentler path.
        return result
    result["acted"] = True
    to_change = [s for s in servers if before[s].status != FINAL_STATUS[state]]
    result["changed"] = bool(to_change)
    if check_mode:
        for item in result["servers"]:
            item["status_after"] = FINAL_STATUS[state]
        return result

    started = time.monotonic()
    waits: dict[str, Any] = {"servers": servers, "timeout": timeout, "interval": interval}
    if state == "drained":
        # No new requests, then wait until the running ones have finished.
        for server in to_change:
            if before[server].status != "DRAIN":
                admin.set_state(backend, server, "drain")
        _wait(admin, backend, done=_free, what="free of requests", **waits)
        for server in to_change:
            admin.set_state(backend, server, "maint")
        after = _wait(admin, backend, done=_in_maint, what="in MAINT", **waits)
    else:
        for server in to_change:
            admin.set_state(backend, server, "ready")
            if health_up:
                # The caller has just seen the server ready itself: skip the wait for
                # HAProxy's next checks. Those go on and take it out again if they fail.
                admin.set_health_up(backend, server)
        after = _wait(admin, backend, done=_up, what="UP", **waits)
    for item in result["servers"]:
        item["status_after"] = after[item["name"]].status
    result["seconds"] = round(time.monotonic() - started, 3)
    return result
