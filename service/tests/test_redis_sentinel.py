"""Redis Sentinel: real redis-server master + replica and three redis-sentinel processes
on loopback (ports 56390-56394), ACL users as in production; SENTINEL FAILOVER under reads.
Twice: plain text, and TLS only (port 0, tls-port, tls-replication: replication and
Sentinel's links are TLS too) with the throwaway CA of scripts/test-services.sh, the
registry reaching sentinels and master with rediss:// and that CA."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from helpers import Server, auth, redis_server_argv, write_config
from test_redis_tls import CA, TLS_DIR

MASTER, REPLICA = 56390, 56391
SENTINELS = (56392, 56393, 56394)
USER, PASSWORD, SENTINEL_PASSWORD = "registry", "cache-pw-for-tests", "sentinel-pw-for-tests"
CHAT = {"type": "object", "properties": {"prompt": {"type": "string"}}}

pytestmark = pytest.mark.skipif(
    shutil.which("redis-sentinel") is None, reason="redis-sentinel is not installed"
)


# redis-py options of the running cluster: {} (plain) or TLS with the test CA.
_CLIENT_TLS: dict = {}


def _wait_port(port: int, password: str | None = None, username: str | None = None) -> None:
    client = redis.Redis(
        port=port, username=username, password=password, socket_timeout=0.5, **_CLIENT_TLS
    )
    # A loaded machine (CI runs lab hosts beside these tests) can take seconds to start
    # a server: wait by the clock, not by a number of tries.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            client.ping()
            return
        except redis.RedisError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing answers on {port} within 30 s")


def _data(port: int) -> redis.Redis:
    return redis.Redis(port=port, username=USER, password=PASSWORD, socket_timeout=2, **_CLIENT_TLS)


def _sentinel(port: int) -> redis.Redis:
    return redis.Redis(port=port, password=SENTINEL_PASSWORD, socket_timeout=2, **_CLIENT_TLS)


# The running cluster: its folder (TLS: its own copy of the certificate and key, so a
# test may rotate them) and its processes (sentinels by port).
_CLUSTER: dict = {}


def _server_tls(port: int) -> list[str]:
    """TLS-only listener on port (the roles' settings), replication over TLS."""
    folder = _CLUSTER["folder"]
    return [
        "--port",
        "0",
        "--tls-port",
        str(port),
        "--tls-cert-file",
        str(folder / "server.crt"),
        "--tls-key-file",
        str(folder / "server.key"),
        "--tls-ca-cert-file",
        str(CA),
        "--tls-auth-clients",
        "no",
        "--tls-replication",
        "yes",
    ]


@pytest.fixture(params=["plain", "tls"])
def sentinel_cluster(request) -> Iterator[bool]:
    tls = request.param == "tls"
    _CLIENT_TLS.clear()
    if tls:
        _CLIENT_TLS.update(ssl=True, ssl_ca_certs=str(CA), ssl_cert_reqs="required")
    folder = Path(tempfile.mkdtemp(prefix="sr-test-sentinel-"))
    _CLUSTER.clear()
    _CLUSTER.update(folder=folder, sentinels={})
    if tls:
        for name in ("server.crt", "server.key"):
            shutil.copy(TLS_DIR / name, folder / name)
    processes: list[subprocess.Popen] = []
    acl = ["--user", "default", "off", "--user", USER, "on", f">{PASSWORD}", "~*", "&*", "+@all"]
    try:
        for port in (MASTER, REPLICA):
            extra = ["--replicaof", "127.0.0.1", str(MASTER)] if port == REPLICA else []
            command = redis_server_argv(
                port, folder, "--masteruser", USER, "--masterauth", PASSWORD, *acl, *extra
            ) + (_server_tls(port) if tls else [])
            processes.append(subprocess.Popen(command, stdout=subprocess.DEVNULL))
            _wait_port(port, PASSWORD, USER)
        for port in SENTINELS:
            conf = folder / f"sentinel-{port}.conf"
            listener = (
                f"port 0\ntls-port {port}\ntls-cert-file {folder / 'server.crt'}\n"
                f"tls-key-file {folder / 'server.key'}\ntls-ca-cert-file {CA}\n"
                "tls-auth-clients no\ntls-replication yes\n"
                if tls
                else f"port {port}\n"
            )
            conf.write_text(
                f"{listener}bind 127.0.0.1\ndir {folder}\n"
                f"requirepass {SENTINEL_PASSWORD}\nsentinel sentinel-pass {SENTINEL_PASSWORD}\n"
                f"sentinel monitor registry 127.0.0.1 {MASTER} 2\n"
                f"sentinel auth-user registry {USER}\nsentinel auth-pass registry {PASSWORD}\n"
                "sentinel down-after-milliseconds registry 2000\n"
                "sentinel failover-timeout registry 10000\n"
            )
            processes.append(
                subprocess.Popen(["redis-sentinel", str(conf)], stdout=subprocess.DEVNULL)
            )
            _CLUSTER["sentinels"][port] = len(processes) - 1
            _wait_port(port, SENTINEL_PASSWORD)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            info = _sentinel(SENTINELS[0]).sentinel_master("registry")
            if int(info["num-slaves"]) >= 1 and int(info["num-other-sentinels"]) >= 2:
                break
            time.sleep(0.2)
        else:
            raise RuntimeError("sentinels did not discover the replica and each other")
        if tls:
            # The replication link is TLS: nothing answers in plain text, yet it is up.
            with pytest.raises((redis.ConnectionError, redis.TimeoutError)):
                redis.Redis(port=MASTER, socket_timeout=1).ping()
            replication = _data(REPLICA).info("replication")
            assert replication["master_link_status"] == "up", replication
        _CLUSTER["processes"] = processes
        yield tls
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)


class Reader(threading.Thread):
    def __init__(self, base_url: str, ids: list[str]) -> None:
        super().__init__(daemon=True)
        self.base_url, self.ids = base_url, ids
        self.stop = threading.Event()
        self.ok = 0
        self.failed: list[str] = []

    def run(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=10) as http:
            while not self.stop.is_set():
                for schema_id in self.ids:
                    try:
                        answer = http.get(f"/api/v1/schemas/{schema_id}")
                    except httpx.HTTPError as exc:
                        self.failed.append(repr(exc))
                        continue
                    if answer.status_code == 200:
                        self.ok += 1
                    else:
                        self.failed.append(f"{answer.status_code} {answer.text[:200]}")
                time.sleep(0.01)


def _register(http: httpx.Client, subject: str) -> str:
    body = {"subject": subject, "schema": CHAT, "schema_type": "json"}
    answer = http.post("/api/v1/schemas", json=body, headers=auth())
    assert answer.status_code in (200, 201), answer.text
    return answer.json()["id"]


def _cached_on(port: int, schema_id: str, timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _data(port).exists(f"schema:{schema_id}"):
            return True
        time.sleep(0.1)
    return False


def test_cache_follows_a_sentinel_failover_and_reads_never_fail(
    sentinel_cluster, migrated_db, tmp_path
):
    # The URL's host:port point at nothing: with sentinels only its user, password and
    # database count, the master comes from the sentinels.
    tls = sentinel_cluster
    scheme = "rediss" if tls else "redis"
    url = f"{scheme}://{USER}:{PASSWORD}@127.0.0.1:56398/0"
    config = write_config(
        tmp_path,
        migrated_db,
        url,
        redis={
            "sentinels": [f"127.0.0.1:{port}" for port in SENTINELS],
            "sentinel_master": "registry",
            "sentinel_password": SENTINEL_PASSWORD,
            **({"tls_ca_file": str(CA)} if tls else {}),
        },
        cache={"local_ttl_seconds": 0},  # every read goes to Redis: shows the cache tier
    )
    server = Server(config).start()
    reader = None
    try:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            first = _register(http, "llm.sentinel.before")
            assert http.get(f"/api/v1/schemas/{first}").status_code == 200
            assert _cached_on(MASTER, first), "the cache did not write to the first master"
            assert http.get("/health").json()["components"]["redis"]["status"] == "up"
            reader = Reader(server.url, [first])
            reader.start()
            time.sleep(0.5)
            assert _sentinel(SENTINELS[0]).execute_command("SENTINEL", "FAILOVER", "registry")
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                address = _sentinel(SENTINELS[1]).sentinel_get_master_addr_by_name("registry")
                moved = address is not None and int(address[1]) == REPLICA
                if moved and _data(REPLICA).execute_command("ROLE")[0] == b"master":
                    break
                time.sleep(0.1)
            else:
                raise AssertionError("the failover did not complete")
            # Written after the failover: it must land on the new master.
            second = _register(http, "llm.sentinel.after")
            deadline = time.monotonic() + 20
            while not _data(REPLICA).exists(f"schema:{second}") and time.monotonic() < deadline:
                assert http.get(f"/api/v1/schemas/{second}").status_code == 200
                time.sleep(0.2)
            assert _data(REPLICA).exists(f"schema:{second}"), "the cache did not follow"
            time.sleep(1.0)
            reader.stop.set()
            reader.join(timeout=30)
            assert not reader.failed, reader.failed[:5]
            assert reader.ok > 0
            assert http.get("/health").json()["components"]["redis"]["status"] == "up"
    finally:
        if reader is not None:
            reader.stop.set()
        server.stop()


@pytest.mark.parametrize("sentinel_cluster", ["tls"], indirect=True)
def test_sentinel_over_tls_refuses_a_wrong_ca(sentinel_cluster, migrated_db, tmp_path):
    config = write_config(
        tmp_path,
        migrated_db,
        f"rediss://{USER}:{PASSWORD}@127.0.0.1:56398/0",
        redis={
            "sentinels": [f"127.0.0.1:{port}" for port in SENTINELS],
            "sentinel_password": SENTINEL_PASSWORD,
            "tls_ca_file": str(TLS_DIR / "other-ca.crt"),
        },
    )
    server = Server(config).start()
    try:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            assert http.get("/health").json()["components"]["redis"]["status"] == "down"
    finally:
        server.stop()


def _served_serial(port: int) -> str:
    context = ssl.create_default_context(cafile=str(CA))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        return tls.getpeercert()["serialNumber"]


@pytest.mark.parametrize("sentinel_cluster", ["tls"], indirect=True)
def test_tls_certificate_rotation_under_reads_fails_nothing(
    sentinel_cluster, migrated_db, tmp_path
):
    """What role pki does after a new certificate: Redis reloads it (CONFIG SET
    tls-cert-file: a new TLS context, same process), the Sentinels, which cannot, are
    restarted one at a time. The registry reads through Sentinel meanwhile: none fails."""
    folder, processes = _CLUSTER["folder"], _CLUSTER["processes"]
    config = write_config(
        tmp_path,
        migrated_db,
        f"rediss://{USER}:{PASSWORD}@127.0.0.1:56398/0",
        redis={
            "sentinels": [f"127.0.0.1:{port}" for port in SENTINELS],
            "sentinel_password": SENTINEL_PASSWORD,
            "tls_ca_file": str(CA),
        },
        cache={"local_ttl_seconds": 0},
    )
    server = Server(config).start()
    reader = None
    try:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            first = _register(http, "llm.sentinel.rotation")
            reader = Reader(server.url, [first])
            reader.start()
            time.sleep(1.0)
            before = {port: _served_serial(port) for port in (MASTER, REPLICA, *SENTINELS)}
            pids = {port: _data(port).info("server")["process_id"] for port in (MASTER, REPLICA)}
            # A new key and certificate from the same test CA, written over the old files.
            subprocess.run(
                [
                    "openssl",
                    "req",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-subj",
                    "/CN=localhost",
                    "-keyout",
                    str(folder / "new.key"),
                    "-out",
                    str(folder / "new.csr"),
                ],
                check=True,
                capture_output=True,
            )
            subprocess.run(
                [
                    "openssl",
                    "x509",
                    "-req",
                    "-in",
                    str(folder / "new.csr"),
                    "-CA",
                    str(CA),
                    "-CAkey",
                    str(TLS_DIR / "ca.key"),
                    "-CAcreateserial",
                    "-days",
                    "2",
                    "-extfile",
                    str(TLS_DIR / "server.ext"),
                    "-out",
                    str(folder / "new.crt"),
                ],
                check=True,
                capture_output=True,
            )
            shutil.copy(folder / "new.crt", folder / "server.crt")
            shutil.copy(folder / "new.key", folder / "server.key")
            for port in (MASTER, REPLICA):
                assert _data(port).config_set("tls-cert-file", str(folder / "server.crt"))
            for port, index in _CLUSTER["sentinels"].items():
                processes[index].terminate()
                processes[index].wait(timeout=10)
                processes[index] = subprocess.Popen(
                    ["redis-sentinel", str(folder / f"sentinel-{port}.conf")],
                    stdout=subprocess.DEVNULL,
                )
                _wait_port(port, SENTINEL_PASSWORD)
            time.sleep(2.0)
            reader.stop.set()
            reader.join(timeout=30)
            after = {port: _served_serial(port) for port in before}
            assert all(after[port] != before[port] for port in before), (before, after)
            assert {
                port: _data(port).info("server")["process_id"] for port in (MASTER, REPLICA)
            } == pids
            assert _data(REPLICA).info("replication")["master_link_status"] == "up"
            print(f"\nTLS rotation: {reader.ok} reads ok, {len(reader.failed)} failed")
            assert not reader.failed, reader.failed[:5]
            assert reader.ok > 0
            assert http.get("/health").json()["components"]["redis"]["status"] == "up"
    finally:
        if reader is not None:
            reader.stop.set()
        server.stop()
