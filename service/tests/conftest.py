"""Fixtures: a migrated throwaway database and the real server running against it."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from helpers import REDIS_URL, Server, cli, fresh_database, write_config


@pytest.fixture(scope="session")
def migrated_db() -> Iterator[str]:
    with fresh_database() as url:
        result = cli("migrate", env={"DATABASE_URL": url})
        assert result.returncode == 0, result.stderr
        yield url


@pytest.fixture(scope="session")
def server(migrated_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("server")
    running = Server(write_config(folder, migrated_db, REDIS_URL)).start()
    yield running
    running.stop()


@pytest.fixture(scope="session")
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as http:
        yield http
