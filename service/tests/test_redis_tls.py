"""Redis over TLS (issue 15): the cache reaches a real TLS-only redis-server
(scripts/test-services.sh: tls-port 56380, no plain port, certificate from a throwaway
CA naming 127.0.0.1 and localhost only) through a rediss:// URL, and refuses it when the
certificate does not check out: a CA that did not sign it, or an address the
certificate does not name. Verification cannot be turned off from the config."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import pytest
import redis
from helpers import Server, auth, cli, write_config

TLS_DIR = Path(
    os.environ.get("TEST_REDIS_TLS_DIR", "/tmp/schema-registry-test-services/tls")  # noqa: S108 - the test services' folder
)
CA = TLS_DIR / "ca.crt"
OTHER_CA = TLS_DIR / "other-ca.crt"
TLS_PORT = int(os.environ.get("TEST_REDIS_TLS_PORT", "56380"))
URL = f"rediss://127.0.0.1:{TLS_PORT}/0"
# The server listens here too, but its certificate does not name this address.
UNNAMED_URL = f"rediss://127.0.0.2:{TLS_PORT}/0"
CHAT = {"type": "object", "properties": {"prompt": {"type": "string"}}}


def _direct() -> redis.Redis:
    return redis.Redis(
        port=TLS_PORT, ssl=True, ssl_ca_certs=str(CA), ssl_cert_reqs="required", socket_timeout=2
    )


@pytest.fixture(scope="module", autouse=True)
def _tls_redis_runs() -> None:
    try:
        _direct().ping()
    except (redis.RedisError, OSError) as exc:
        pytest.fail(f"no TLS redis on {TLS_PORT}: run scripts/test-services.sh start ({exc})")


def _start(tmp_path: Path, db: str, url: str, ca: Path | None) -> Server:
    redis_section = {"tls_ca_file": str(ca)} if ca is not None else {}
    config = write_config(
        tmp_path,
        db,
        url,
        redis=redis_section,
        cache={"local_ttl_seconds": 0},  # every read goes to Redis
    )
    return Server(config).start()


def _redis_status(server: Server) -> str:
    with httpx.Client(base_url=server.url, timeout=10) as http:
        return http.get("/health").json()["components"]["redis"]["status"]


def test_plain_text_is_refused_by_the_tls_port() -> None:
    plain = redis.Redis(port=TLS_PORT, socket_timeout=1)
    with pytest.raises((redis.ConnectionError, redis.TimeoutError)):
        plain.ping()


def test_cache_writes_and_reads_over_verified_tls(migrated_db, tmp_path) -> None:
    server = _start(tmp_path, migrated_db, URL, CA)
    try:
        assert _redis_status(server) == "up"
        with httpx.Client(base_url=server.url, timeout=10) as http:
            body = {"subject": "llm.tls.cache", "schema": CHAT, "schema_type": "json"}
            answer = http.post("/api/v1/schemas", json=body, headers=auth())
            assert answer.status_code in (200, 201), answer.text
            schema_id = answer.json()["id"]
            assert http.get(f"/api/v1/schemas/{schema_id}").status_code == 200
            deadline = time.monotonic() + 10
            while not _direct().exists(f"schema:{schema_id}") and time.monotonic() < deadline:
                assert http.get(f"/api/v1/schemas/{schema_id}").status_code == 200
                time.sleep(0.1)
            assert _direct().exists(f"schema:{schema_id}"), "nothing cached in the TLS Redis"
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("url", "ca", "why"),
    [
        (URL, OTHER_CA, "a CA that did not sign the server's certificate"),
        (UNNAMED_URL, CA, "an address the certificate does not name"),
    ],
)
def test_cache_refuses_a_server_it_cannot_verify(migrated_db, tmp_path, url, ca, why) -> None:
    server = _start(tmp_path, migrated_db, url, ca)
    try:
        assert _redis_status(server) == "down", why
        # Reads still succeed (the cache is optional, the database answers); the
        # cache's failure is logged with its reason.
        with httpx.Client(base_url=server.url, timeout=10) as http:
            body = {"subject": "llm.tls.refused", "schema": CHAT, "schema_type": "json"}
            answer = http.post("/api/v1/schemas", json=body, headers=auth())
            assert answer.status_code in (200, 201), answer.text
            time.sleep(2.5)  # past the cache's back-off after the failed /health ping
            assert http.get(f"/api/v1/schemas/{answer.json()['id']}").status_code == 200
        log = server.log_path.read_text()
        assert "CERTIFICATE_VERIFY_FAILED" in log or "certificate verify failed" in log, why
    finally:
        server.stop()


def test_redis_py_itself_checks_the_ca_and_the_name() -> None:
    """The same checks without the service, so a test above cannot pass by accident."""
    assert _direct().ping()
    wrong_ca = redis.Redis(port=TLS_PORT, ssl=True, ssl_ca_certs=str(OTHER_CA), socket_timeout=2)
    with pytest.raises(redis.ConnectionError, match=r"(?i)certificate verify failed"):
        wrong_ca.ping()
    unnamed = redis.Redis(
        host="127.0.0.2", port=TLS_PORT, ssl=True, ssl_ca_certs=str(CA), socket_timeout=2
    )
    with pytest.raises(redis.ConnectionError, match=r"(?i)certificate verify failed"):
        unnamed.ping()


@pytest.mark.parametrize(
    "url",
    [
        f"{URL}?ssl_cert_reqs=none",
        f"{URL}?ssl_check_hostname=false",
        f"{URL}?db=0&ssl_ca_certs=/etc/ssl/certs/ca-certificates.crt",
    ],
)
def test_config_refuses_to_turn_verification_off(tmp_path, url) -> None:
    config = write_config(tmp_path, "postgresql://u@db:5432/x", url, redis={"tls_ca_file": str(CA)})
    result = cli("check-config", config=config)
    assert result.returncode != 0
    assert "redis.url" in result.stderr + result.stdout


def test_config_takes_a_ca_file_with_rediss_only(tmp_path) -> None:
    config = write_config(
        tmp_path,
        "postgresql://u@db:5432/x",
        "redis://127.0.0.1:6379/0",
        redis={"tls_ca_file": str(CA)},
    )
    result = cli("check-config", config=config)
    assert result.returncode != 0
    assert "redis.tls_ca_file" in result.stderr + result.stdout
    config = write_config(tmp_path, "postgresql://u@db:5432/x", URL, redis={"tls_ca_file": str(CA)})
    result = cli("check-config", config=config)
    assert result.returncode == 0, result.stderr
    assert '"redis_tls": true' in result.stdout
