"""JSON over HTTP to lab hosts, for the scenarios' verifiers."""

from __future__ import annotations

import json
import urllib.error
import urllib.request


def http_json(method: str, url: str, body: dict | None = None, key: str | None = None):
    """(status, decoded JSON body); HTTP errors come back as their status, not raised."""
    data = json.dumps(body).encode() if body is not None else None
    # Only http:// URLs built from lab host addresses reach here.
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310
    request.add_header("Content-Type", "application/json")
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")
