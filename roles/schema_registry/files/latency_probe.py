#!/usr/bin/env python3
"""Median and p90 latency of N sequential GETs to one URL, as JSON (release latency gate)."""

import argparse
import json
import statistics
import time
import urllib.request


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--count", type=int, default=30)
    args = parser.parse_args()
    if not args.url.startswith(("http://127.0.0.1:", "http://localhost:")):
        raise SystemExit("latency_probe: only loopback URLs are probed")
    samples = []
    for _attempt in range(args.count):
        start = time.monotonic()
        with urllib.request.urlopen(args.url, timeout=5) as response:  # noqa: S310 - loopback only
            response.read()
        samples.append((time.monotonic() - start) * 1000)
    samples.sort()
    print(
        json.dumps(
            {
                "count": len(samples),
                "p50_ms": round(statistics.median(samples), 3),
                "p90_ms": round(samples[int(len(samples) * 0.9) - 1], 3),
            }
        )
    )


if __name__ == "__main__":
    main()
