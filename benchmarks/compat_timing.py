#!/usr/bin/env python3
"""Timing of JSON Schema compatibility checks and validation, this tree against a git ref
(a benchmark, not a test: it prints figures only; service_bench.py needs wrk and a
machine to itself, this one only the service venv).

Times reader_rejections (both directions, as FULL does) and validate on realistic LLM
request/response schemas, with the json_schema module of this tree and with the one at
--ref, and saves the figures to benchmarks/results/compat_timing.json.

    service/.venv/bin/python benchmarks/compat_timing.py [--ref 083ed21] [--rounds 2000]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
MODULE = "service/src/schema_registry/formats/json_schema.py"

MESSAGE = {
    "type": "object",
    "properties": {
        "role": {"enum": ["system", "user", "assistant", "tool"]},
        "content": {"type": "string", "maxLength": 32000},
        "name": {"type": "string", "pattern": "^[a-zA-Z0-9_-]{1,64}$"},
    },
    "required": ["role", "content"],
    "additionalProperties": False,
}
REQUEST = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "definitions": {"message": MESSAGE},
    "properties": {
        "model": {"type": "string"},
        "messages": {"type": "array", "items": {"$ref": "#/definitions/message"}, "minItems": 1},
        "temperature": {"type": "number", "minimum": 0, "maximum": 2},
        "max_tokens": {"type": "integer", "minimum": 1},
        "stop": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
        "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "required": ["model", "messages"],
    "additionalProperties": False,
}
REQUEST_V2 = json.loads(json.dumps(REQUEST))
REQUEST_V2["properties"]["top_p"] = {"type": "number", "minimum": 0, "maximum": 1}
REQUEST_V2["properties"]["temperature"]["maximum"] = 1.5
RESPONSE = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "choices": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "index": {"type": "integer"},
                    "message": MESSAGE,
                    "finish_reason": {"enum": ["stop", "length", "tool_calls", None]},
                },
                "required": ["index", "message"],
            },
        },
        "usage": {
            "type": "object",
            "properties": {"prompt_tokens": {"type": "integer"}, "total": {"type": "integer"}},
        },
    },
    "required": ["id", "choices"],
}
RESPONSE_V2 = json.loads(json.dumps(RESPONSE))
RESPONSE_V2["properties"]["usage"]["properties"]["cost"] = {"type": "number"}
PAIRS = {"request v1->v2": (REQUEST, REQUEST_V2), "response v1->v2": (RESPONSE, RESPONSE_V2)}
DATA = {
    "model": "m",
    "messages": [{"role": "user", "content": "hello " * 50}] * 4,
    "temperature": 0.7,
    "stop": ["\n"],
}


def load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def measure(module, rounds: int) -> dict[str, float]:
    out = {}
    for label, (old, new) in PAIRS.items():
        a = module.parse(orjson.dumps(old).decode())
        b = module.parse(orjson.dumps(new).decode())
        started = time.perf_counter()
        for _ in range(rounds):
            module.reader_rejections(b, a)
            module.reader_rejections(a, b)
        out[f"compat {label} (us)"] = round((time.perf_counter() - started) / rounds * 1e6, 1)
    parsed = module.parse(orjson.dumps(REQUEST).decode())
    started = time.perf_counter()
    for _ in range(rounds):
        module.validate(parsed, DATA)
    out["validate request (us)"] = round((time.perf_counter() - started) / rounds * 1e6, 1)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", default="083ed21")
    parser.add_argument("--rounds", type=int, default=2000)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "service/src"))
    old_text = subprocess.run(  # noqa: S603 - git with fixed arguments
        ["git", "-C", str(ROOT), "show", f"{args.ref}:{MODULE}"],  # noqa: S607
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    with tempfile.TemporaryDirectory() as folder:
        old_path = Path(folder) / "json_schema_ref.py"
        old_path.write_text(old_text)
        before = measure(load(old_path, "json_schema_ref"), args.rounds)
    after = measure(load(ROOT / MODULE, "json_schema_now"), args.rounds)
    result = {"ref": args.ref, "rounds": args.rounds, "before": before, "after": after}
    for key in before:
        print(f"{key:32} before {before[key]:>9}  after {after[key]:>9}")
    target = ROOT / "benchmarks/results/compat_timing.json"
    target.write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
