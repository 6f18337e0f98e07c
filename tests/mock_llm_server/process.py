"""Start the mock server as a separate process on a free port in 18000-18999."""

from __future__ import annotations

import contextlib
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

PORT_RANGE = (18000, 18999)
_HERE = os.path.dirname(os.path.abspath(__file__))


def free_port() -> int:
    """A port in PORT_RANGE that nothing listens on right now (127.0.0.1 only)."""
    candidates = list(range(PORT_RANGE[0], PORT_RANGE[1] + 1))
    random.shuffle(candidates)
    for port in candidates:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 18000-18999")


def _wait_listening(port: int, proc: subprocess.Popen, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"mock server exited with {proc.returncode}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise RuntimeError(f"mock server did not listen on {port} within {timeout}s")


@contextlib.contextmanager
def running(*args: str) -> Iterator[str]:
    """Yield the base URL (with /v1) of a mock server process; stop it afterwards."""
    for _attempt in range(5):
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "mock_llm_server", "--port", str(port), *args],
            cwd=os.path.dirname(_HERE),
            stderr=subprocess.PIPE,
        )
        try:
            _wait_listening(port, proc)
        except RuntimeError:
            proc.kill()
            proc.wait()
            continue  # the port was taken between probe and bind: try another
        try:
            yield f"http://127.0.0.1:{port}/v1"
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return
    raise RuntimeError("could not start the mock server")
