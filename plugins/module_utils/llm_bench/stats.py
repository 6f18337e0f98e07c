"""Summaries of raw per-request samples, and merging of runs from several hosts.

Percentiles always come from the raw samples (merged first when several hosts ran),
never from averaging the percentiles of parts. Latency figures describe successful
requests only; failed requests are counted by error type.
"""

from __future__ import annotations

import math
from collections import Counter

QUANTILES = (("p50", 0.50), ("p90", 0.90), ("p95", 0.95), ("p99", 0.99), ("p99_9", 0.999))


def percentile(ordered: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default method)."""
    if not ordered:
        raise ValueError("no samples")
    pos = (len(ordered) - 1) * q
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def describe(values: list[float]) -> dict:
    """count, mean, min, max, std (sample) and p50/p90/p95/p99/p99.9."""
    if not values:
        return {"count": 0}
    ordered = sorted(values)
    n = len(ordered)
    mean = math.fsum(ordered) / n
    var = math.fsum((v - mean) ** 2 for v in ordered) / (n - 1) if n > 1 else 0.0
    out = {"count": n, "mean": mean, "min": ordered[0], "max": ordered[-1], "std": math.sqrt(var)}
    for name, q in QUANTILES:
        out[name] = percentile(ordered, q)
    return out


def _meets(record: dict, limits: dict) -> bool:
    for key in ("ttft_s", "tpot_s", "e2e_s"):
        if key in limits and record[key] is not None and record[key] > limits[key]:
            return False
    return True


def _achieved_rate(records: list[dict]) -> float | None:
    sends = sorted(r["send_offset_s"] for r in records if r["error_type"] != "deadline")
    if len(sends) < 2 or sends[-1] <= sends[0]:
        return None
    return (len(sends) - 1) / (sends[-1] - sends[0])


def _sources(records: list[dict], key: str) -> str | None:
    found = sorted({r[key] for r in records})
    return ",".join(found) if found else None


def summarize(run: dict, goodput: dict | None = None, rate: float | None = None) -> dict:
    """The summary of a run (one host or merged)."""
    records = run["requests"]
    ok = [r for r in records if r["error_type"] is None]
    errors = Counter(r["error_type"] for r in records if r["error_type"])
    duration = run["elapsed_s"] or 0.0
    out_tokens = sum(r["output_tokens"] for r in ok)
    in_tokens = sum(r["input_tokens"] for r in ok)
    summary = {
        "requests": len(records),
        "succeeded": len(ok),
        "failed": len(records) - len(ok),
        "not_sent": run.get("not_sent", 0),
        "errors_by_type": dict(sorted(errors.items())),
        "duration_s": duration,
        "ttft_s": describe([r["ttft_s"] for r in ok]),
        "itl_s": describe([gap for r in ok for gap in r["itl_s"]]),
        "tpot_s": describe([r["tpot_s"] for r in ok if r["tpot_s"] is not None]),
        "e2e_s": describe([r["e2e_s"] for r in ok]),
        "scheduling_lag_s": describe([r["lag_s"] for r in records]),
        "output_tokens": out_tokens,
        "input_tokens": in_tokens,
        # How the counts were obtained: usage, tokenizer, tokenize_endpoint, estimate
        # (several, comma-separated, when requests differed); approximate when any
        # request's count is an estimate.
        "output_tokens_source": _sources(ok, "output_tokens_source"),
        "input_tokens_source": _sources(ok, "input_tokens_source"),
        "output_tokens_approximate": any(r["output_tokens_source"] == "estimate" for r in ok),
        "input_tokens_approximate": any(r["input_tokens_source"] == "estimate" for r in ok),
        "request_throughput": len(ok) / duration if duration else 0.0,
        "output_token_throughput": out_tokens / duration if duration else 0.0,
        "total_token_throughput": (out_tokens + in_tokens) / duration if duration else 0.0,
        "achieved_send_rate": _achieved_rate(records),
        "requested_rate": rate,
        # The busiest client worker's CPU share while measuring (near 1.0: the client
        # may be what sets the pace; see scheduling_lag_s for how late it was).
        "client_cpu_share": run.get("client_cpu_share"),
        "event_loop": run.get("event_loop"),
    }
    if goodput:
        good = sum(1 for r in ok if _meets(r, goodput))
        summary["goodput"] = {
            "limits": dict(goodput),
            "requests": good,
            "requests_per_s": good / duration if duration else 0.0,
        }
    return summary


def merge(runs: list[dict]) -> dict:
    """One run from the runs of several hosts that ran at the same time.

    Raw samples are concatenated; the duration is the longest host's, so throughput
    is the total work over the common wall time."""
    if not runs:
        raise ValueError("nothing to merge")
    for run in runs:
        if "requests" not in run or "elapsed_s" not in run:
            raise ValueError(
                "each run to merge needs its raw 'requests' and 'elapsed_s' "
                "(run the hosts with return_samples: true)"
            )
    records = [r for run in runs for r in run["requests"]]
    return {
        "host": ",".join(sorted({run.get("host", "?") for run in runs})),
        "hosts": sorted({run.get("host", "?") for run in runs}),
        "started_at": min(run.get("started_at", 0.0) for run in runs),
        "workers": sum(run.get("workers", 1) for run in runs),
        "elapsed_s": max(run["elapsed_s"] for run in runs),
        "warmup_requests": sum(run.get("warmup_requests", 0) for run in runs),
        "warmup_errors": sum(run.get("warmup_errors", 0) for run in runs),
        "not_sent": sum(run.get("not_sent", 0) for run in runs),
        "connections_opened": sum(run.get("connections_opened", 0) for run in runs),
        "client_cpu_s": sum(run.get("client_cpu_s", 0.0) for run in runs),
        "client_cpu_share": max((run.get("client_cpu_share") or 0.0 for run in runs), default=None),
        "event_loop": ",".join(sorted({run.get("event_loop") or "?" for run in runs})),
        "planned_requests": sum(run.get("planned_requests") or 0 for run in runs),
        "requests": sorted(records, key=lambda r: r.get("wall_time", 0.0)),
    }
