"""Bearer API keys: hashed in the config, needed for writes, for reads only if protected.

The scope matrix (read < write < admin) is in test_scopes.py."""

from __future__ import annotations

import hashlib

import pytest
from starlette.requests import Request

from schema_registry.app import Service
from schema_registry.config import load_config
from schema_registry.errors import ApiError

KEY = "k-" + "x" * 30


def service(tmp_path, protect_reads: bool) -> Service:
    path = tmp_path / "config.yml"
    digest = hashlib.sha256(KEY.encode()).hexdigest()
    path.write_text(
        "database: {url: 'postgresql://u@127.0.0.1:1/db'}\n"
        f"auth: {{protect_reads: {str(protect_reads).lower()}, "
        f"api_keys: [{{name: deployer, sha256: {digest}}}]}}\n"
    )
    return Service(load_config(str(path), env={}))


def request(authorization: str | None = None) -> Request:
    headers = [(b"authorization", authorization.encode())] if authorization else []
    return Request({"type": "http", "method": "GET", "path": "/", "headers": headers})


@pytest.mark.parametrize(
    ("protect_reads", "scope", "header", "outcome"),
    [
        (False, "read", None, None),
        (False, "write", None, "AUTH_REQUIRED"),
        (False, "write", "Bearer wrong", "INVALID_API_KEY"),
        (False, "write", "Basic " + KEY, "AUTH_REQUIRED"),
        (False, "write", "Bearer " + KEY, "deployer"),
        (True, "read", None, "AUTH_REQUIRED"),
        (True, "read", "Bearer " + KEY, "deployer"),
    ],
)
def test_authorize(tmp_path, protect_reads, scope, header, outcome):
    svc = service(tmp_path, protect_reads)
    if outcome in ("AUTH_REQUIRED", "INVALID_API_KEY"):
        with pytest.raises(ApiError) as error:
            svc.authorize(request(header), scope)
        assert (error.value.status, error.value.error_code) == (401, outcome)
    else:
        assert svc.authorize(request(header), scope) == outcome


def test_no_configured_keys_refuses_every_write(tmp_path):
    path = tmp_path / "config.yml"
    path.write_text("database: {url: 'postgresql://u@127.0.0.1:1/db'}\n")
    svc = Service(load_config(str(path), env={}))
    with pytest.raises(ApiError):
        svc.authorize(request("Bearer anything"), "write")
