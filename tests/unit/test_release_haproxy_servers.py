"""The haproxy_servers module and its module_utils against a real HAProxy on loopback.

HAProxy runs in the foreground with an admin socket in a temp folder and health-checks
three tiny HTTP servers, named like the release lab's servers (<host>_<instance>).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from test_release_lib import HaproxyError, run_module, set_servers

SERVERS = ["registry1_a", "registry1_b", "registry2_a"]
OWN = ["registry1_a", "registry1_b"]


class Ok(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *_args: object) -> None:
        return None


def admin(sock: Path, line: str) -> str:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.connect(str(sock))
        client.sendall(line.encode() + b"\n")
        return b"".join(iter(lambda: client.recv(65536), b"")).decode()


def statuses(sock: Path) -> dict[str, str]:
    text = admin(sock, "show stat").lstrip("# ").splitlines()
    header = text[0].split(",")
    rows = [dict(zip(header, line.split(","), strict=False)) for line in text[1:] if line]
    return {
        r["svname"]: r["status"] for r in rows if r["pxname"] == "be" and r["svname"] in SERVERS
    }


@pytest.fixture
def haproxy(tmp_path: Path) -> Iterator[Path]:
    """A real HAProxy whose three servers are UP; yields its admin socket."""
    binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not Path(binary).exists():
        pytest.fail("haproxy is not installed (`make deps` installs it)")
    backends = [ThreadingHTTPServer(("127.0.0.1", 0), Ok) for _attempt in SERVERS]
    for server in backends:
        threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
    sock = tmp_path / "admin.sock"
    lines = "\n".join(
        f"    server {name} 127.0.0.1:{srv.server_address[1]} check"
        for name, srv in zip(SERVERS, backends, strict=True)
    )
    (tmp_path / "haproxy.cfg").write_text(
        f"global\n    stats socket {sock} mode 600 level admin\n"
        "defaults\n    mode http\n    timeout connect 1s\n    timeout client 5s\n"
        "    timeout server 5s\n"
        "backend be\n    option httpchk GET /ready\n"
        "    default-server inter 100ms fall 2 rise 1\n"
        f"{lines}\n"
    )
    proc = subprocess.Popen(
        [binary, "-db", "-f", str(tmp_path / "haproxy.cfg")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if sock.exists() and set(statuses(sock).values()) == {"UP"}:
                break
            time.sleep(0.05)
        else:
            pytest.fail("HAProxy did not show every server UP within 10 s")
        yield sock
    finally:
        proc.terminate()
        proc.wait(timeout=5)
        for server in backends:
            server.shutdown()
            server.server_close()


def test_drain_with_another_server_up_puts_both_into_maintenance(haproxy: Path) -> None:
    result = set_servers(
        socket_path=str(haproxy), backend="be", servers=OWN, state="drained", min_others_up=1
    )
    assert result["acted"] and result["changed"]
    assert result["others_up"] == ["registry2_a"]
    assert statuses(haproxy) == {
        "registry1_a": "MAINT",
        "registry1_b": "MAINT",
        "registry2_a": "UP",
    }
    assert [s["status_after"] for s in result["servers"]] == ["MAINT", "MAINT"]


def test_drain_without_enough_servers_up_elsewhere_changes_nothing(haproxy: Path) -> None:
    admin(haproxy, "set server be/registry2_a state maint")
    result = set_servers(
        socket_path=str(haproxy), backend="be", servers=OWN, state="drained", min_others_up=1
    )
    assert not result["acted"] and not result["changed"]
    assert result["others_up"] == []
    assert statuses(haproxy)["registry1_a"] == "UP"
    assert statuses(haproxy)["registry1_b"] == "UP"


def test_enable_waits_until_up_and_a_second_run_changes_nothing(haproxy: Path) -> None:
    set_servers(socket_path=str(haproxy), backend="be", servers=OWN, state="drained")
    result = set_servers(socket_path=str(haproxy), backend="be", servers=OWN, state="enabled")
    assert result["changed"]
    assert set(statuses(haproxy).values()) == {"UP"}
    again = set_servers(socket_path=str(haproxy), backend="be", servers=OWN, state="enabled")
    assert not again["changed"]
    drained = set_servers(socket_path=str(haproxy), backend="be", servers=OWN, state="drained")
    assert drained["changed"]
    drained_again = set_servers(
        socket_path=str(haproxy), backend="be", servers=OWN, state="drained"
    )
    assert not drained_again["changed"]


def test_enable_of_a_server_whose_check_fails_times_out_naming_it(haproxy: Path) -> None:
    set_servers(socket_path=str(haproxy), backend="be", servers=["registry2_a"], state="drained")
    admin(haproxy, "set server be/registry2_a addr 127.0.0.1 port 1")
    with pytest.raises(HaproxyError, match=r"not UP within 1 s: registry2_a: DOWN"):
        set_servers(
            socket_path=str(haproxy),
            backend="be",
            servers=["registry2_a"],
            state="enabled",
            timeout=1,
        )


def test_health_up_marks_servers_up_at_once_and_checks_still_take_a_bad_one_out(
    haproxy: Path,
) -> None:
    set_servers(socket_path=str(haproxy), backend="be", servers=OWN, state="drained")
    result = set_servers(
        socket_path=str(haproxy), backend="be", servers=OWN, state="enabled", health_up=True
    )
    assert [s["status_after"] for s in result["servers"]] == ["UP", "UP"]
    # registry1_a's check port closes after the enable (closing it before raced the
    # module's first look on a loaded machine: two failed 100 ms checks and it was DOWN
    # already): HAProxy's own checks go on and take it out again.
    admin(haproxy, "set server be/registry1_a check-port 1")
    deadline = time.monotonic() + 5
    while statuses(haproxy)["registry1_a"] != "DOWN" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert statuses(haproxy)["registry1_a"] == "DOWN"
    assert statuses(haproxy)["registry1_b"] == "UP"


def test_unknown_names_and_bad_input_fail_before_any_change(haproxy: Path) -> None:
    before = statuses(haproxy)
    with pytest.raises(HaproxyError, match="has no server registry9_a"):
        set_servers(
            socket_path=str(haproxy), backend="be", servers=["registry1_a", "registry9_a"],
            state="drained",
        )  # fmt: skip
    with pytest.raises(HaproxyError, match="no backend 'nope'"):
        set_servers(socket_path=str(haproxy), backend="nope", servers=OWN, state="drained")
    with pytest.raises(HaproxyError, match="twice"):
        set_servers(
            socket_path=str(haproxy), backend="be", servers=["registry1_a"] * 2, state="drained"
        )
    with pytest.raises(HaproxyError, match="admin socket"):
        set_servers(
            socket_path=str(haproxy) + ".missing", backend="be", servers=OWN, state="drained"
        )
    assert statuses(haproxy) == before


def test_module_check_mode_reports_and_changes_nothing(haproxy: Path) -> None:
    args = {"socket": str(haproxy), "backend": "be", "servers": OWN, "state": "drained"}
    result = run_module("haproxy_servers", dict(args, min_others_up=1), check_mode=True)
    assert result["changed"] and result["acted"], result
    assert statuses(haproxy)["registry1_a"] == "UP"
    result = run_module("haproxy_servers", dict(args, servers=["x"]))
    assert result["failed"] and "has no server x" in result["msg"]
