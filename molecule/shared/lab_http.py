"""JSON over HTTP(S) to lab hosts, for the scenarios' verifiers."""

from __future__ import annotations

import json
import os
import ssl
import urllib.error
import urllib.request
from functools import cache
from pathlib import Path


def lab_cafile() -> str:
    """The internal CA the pki role made beside the scenario's inventory (<inventory>/.pki)."""
    inventory = Path(os.environ["MOLECULE_INVENTORY_FILE"])
    cafile = inventory.parent / ".pki" / "ca.crt"
    if not cafile.is_file():
        raise FileNotFoundError(f"no internal CA at {cafile}: has the pki role run?")
    return str(cafile)


@cache
def lab_tls_context() -> ssl.SSLContext:
    """Verifies the lab's servers against the internal CA, names included."""
    return ssl.create_default_context(cafile=lab_cafile())


def http_json(method: str, url: str, body: dict | None = None, key: str | None = None):
    """(status, decoded JSON body); HTTP errors come back as their status, not raised."""
    data = json.dumps(body).encode() if body is not None else None
    # Only URLs built from lab host addresses reach here.
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310
    request.add_header("Content-Type", "application/json")
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    context = lab_tls_context() if url.startswith("https://") else None
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:  # noqa: S310
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")
