"""Prometheus text exposition of a run, written without prometheus-client (the bench
hosts lack it), pushed to a Pushgateway or written for node_exporter's textfile
collector.

Names and buckets are the ones the llm-latency-overview dashboard
(roles/grafana/files/dashboards/) and the alert rules use. With a state file the
counters and histograms keep growing across runs like a long-lived exporter's would,
so ``rate()`` and ``histogram_quantile()`` over the pushed series mean what they
usually mean.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import ssl
import tempfile
import time
from urllib.parse import quote, urlsplit

BUCKETS = {
    "llm_request_duration_seconds": (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
    "llm_ttft_seconds": (
        0.01,
        0.025,
        0.05,
        0.075,
        0.1,
        0.25,
        0.5,
        0.75,
        1,
        2.5,
        5,
        7.5,
        10,
        25,
        50,
        75,
        100,
    ),
    "llm_tpot_seconds": (
        0.001,
        0.0025,
        0.005,
        0.01,
        0.025,
        0.05,
        0.075,
        0.1,
        0.25,
        0.5,
        0.75,
        1,
        2.5,
    ),
}
HELP = {
    "llm_request_duration_seconds": "End-to-end latency of successful requests "
    "(request sent to last content chunk).",
    "llm_ttft_seconds": "Time to first content-bearing chunk of successful requests.",
    "llm_tpot_seconds": "Time per output token after the first: (e2e - ttft) / (tokens - 1).",
    "llm_requests_total": "Benchmark requests by outcome (status=success|error).",
    "llm_request_errors_total": "Failed benchmark requests by error type.",
    "llm_tokens_generated_total": "Output tokens of successful requests, by how they were "
    "counted (token_count_source: usage, tokenizer, tokenize_endpoint or estimate).",
    "llm_tokens_prompt_total": "Prompt tokens of successful requests, by how they were "
    "counted (token_count_source: usage, tokenizer, tokenize_endpoint or estimate).",
    "llm_benchmark_last_run_timestamp_seconds": "Unix time the last benchmark run ended.",
    "llm_benchmark_scheduling_lag_seconds": "How late the client sent requests compared "
    "to its plan, in the last run.",
    "llm_benchmark_request_throughput": "Successful requests per second in the last run.",
    "llm_benchmark_goodput_requests_per_second": "Requests per second meeting the goodput "
    "limits in the last run.",
}
COUNTERS = (
    "llm_requests_total",
    "llm_request_errors_total",
    "llm_tokens_generated_total",
    "llm_tokens_prompt_total",
)
LABELS = ("provider", "model", "endpoint")
# The client's error types (http_<status> ones come as they are seen).
ERROR_TYPES = (
    "connection",
    "deadline",
    "incomplete_stream",
    "malformed_chunk",
    "malformed_response",
    "not_event_stream",
    "stream_error",
    "timeout",
    "tls",
)


def _key(labels: dict) -> str:
    return json.dumps(labels, sort_keys=True)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: dict, extra: tuple[str, str] | None = None) -> str:
    items = list(labels.items()) + ([extra] if extra else [])
    return "{" + ",".join(f'{k}="{_escape(str(v))}"' for k, v in items) + "}"


def _num(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    return repr(float(value))


def empty_state() -> dict:
    return {"histograms": {}, "counters": {}}


def accumulate(state: dict, run: dict, labels: dict) -> dict:
    """Add one run's requests to the cumulative counters and histograms."""
    key = _key({k: labels[k] for k in LABELS})
    records = run["requests"]
    ok = [r for r in records if r["error_type"] is None]
    samples = {
        "llm_request_duration_seconds": [r["e2e_s"] for r in ok],
        "llm_ttft_seconds": [r["ttft_s"] for r in ok],
        "llm_tpot_seconds": [r["tpot_s"] for r in ok if r["tpot_s"] is not None],
    }
    for name, values in samples.items():
        hist = (
            state["histograms"]
            .setdefault(name, {})
            .setdefault(key, {"buckets": [0] * len(BUCKETS[name]), "sum": 0.0, "count": 0})
        )
        for value in values:
            for i, bound in enumerate(BUCKETS[name]):
                if value <= bound:
                    hist["buckets"][i] += 1
            hist["sum"] += value
            hist["count"] += 1
    counters = state["counters"]

    def bump(name: str, extra: tuple[str, str] | None, amount: float) -> None:
        series = dict(json.loads(key))
        if extra:
            series[extra[0]] = extra[1]
        bucket = counters.setdefault(name, {})
        bucket[_key(series)] = bucket.get(_key(series), 0) + amount

    bump("llm_requests_total", ("status", "success"), len(ok))
    bump("llm_requests_total", ("status", "error"), len(records) - len(ok))
    # Every known error type exists from the first run on (at 0): a series that
    # appears with its first errors has no rate() yet, and the error alert would
    # miss the first failing run.
    for error_type in ERROR_TYPES:
        bump("llm_request_errors_total", ("error_type", error_type), 0)
    for record in records:
        if record["error_type"]:
            bump("llm_request_errors_total", ("error_type", record["error_type"]), 1)
    # One series per way of counting (token_count_source=usage|tokenizer|
    # tokenize_endpoint|estimate): an estimate never passes for a count; sum by the
    # other labels for the total.
    for name, field in (
        ("llm_tokens_generated_total", "output_tokens"),
        ("llm_tokens_prompt_total", "input_tokens"),
    ):
        by_source: dict[str, int] = {}
        for record in ok:
            # records written before sources were kept (merged old results) say so
            source = record.get(field + "_source", "unknown")
            by_source[source] = by_source.get(source, 0) + record[field]
        for source, amount in sorted(by_source.items()):
            bump(name, ("token_count_source", source), amount)
    return state


def exposition(state: dict, summary: dict, labels: dict, ended_at: float | None = None) -> str:
    """Text format 0.0.4 of the cumulative state plus the last run's gauges."""
    base = {k: labels[k] for k in LABELS}
    lines: list[str] = []
    for name, bounds in BUCKETS.items():
        lines += [f"# HELP {name} {HELP[name]}", f"# TYPE {name} histogram"]
        for key, hist in sorted(state["histograms"].get(name, {}).items()):
            series = json.loads(key)
            for bound, count in zip(bounds, hist["buckets"], strict=True):
                lines.append(f"{name}_bucket{_labels(series, ('le', _num(bound)))} {count}")
            lines.append(f"{name}_bucket{_labels(series, ('le', '+Inf'))} {hist['count']}")
            lines.append(f"{name}_sum{_labels(series)} {_num(hist['sum'])}")
            lines.append(f"{name}_count{_labels(series)} {hist['count']}")
    for name in COUNTERS:
        lines += [f"# HELP {name} {HELP[name]}", f"# TYPE {name} counter"]
        for key, value in sorted(state["counters"].get(name, {}).items()):
            lines.append(f"{name}{_labels(json.loads(key))} {_num(value)}")
    stamp = time.time() if ended_at is None else ended_at
    name = "llm_benchmark_last_run_timestamp_seconds"
    lines += [
        f"# HELP {name} {HELP[name]}",
        f"# TYPE {name} gauge",
        f"{name}{_labels(base)} {_num(stamp)}",
    ]
    lag = summary["scheduling_lag_s"]
    name = "llm_benchmark_scheduling_lag_seconds"
    lines += [f"# HELP {name} {HELP[name]}", f"# TYPE {name} summary"]
    if lag["count"]:
        for quantile, field in (("0.5", "p50"), ("0.99", "p99"), ("1.0", "max")):
            lines.append(f"{name}{_labels(base, ('quantile', quantile))} {_num(lag[field])}")
        lines.append(f"{name}_sum{_labels(base)} {_num(lag['mean'] * lag['count'])}")
    lines.append(f"{name}_count{_labels(base)} {lag['count']}")
    name = "llm_benchmark_request_throughput"
    lines += [
        f"# HELP {name} {HELP[name]}",
        f"# TYPE {name} gauge",
        f"{name}{_labels(base)} {_num(summary['request_throughput'])}",
    ]
    if "goodput" in summary:
        name = "llm_benchmark_goodput_requests_per_second"
        lines += [
            f"# HELP {name} {HELP[name]}",
            f"# TYPE {name} gauge",
            f"{name}{_labels(base)} {_num(summary['goodput']['requests_per_s'])}",
        ]
    return "\n".join(lines) + "\n"


def load_state(path: str | None) -> dict:
    if not path or not os.path.exists(path):
        return empty_state()
    with open(path, encoding="utf-8") as handle:
        state = json.load(handle)
    if not isinstance(state, dict) or set(state) != {"histograms", "counters"}:
        raise ValueError(f"{path} is not a benchmark metrics state file")
    return state


def write_atomic(path: str, text: str, mode: int = 0o644) -> None:
    """Write via a temporary file in the same folder and rename: readers (the textfile
    collector) never see half a file."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".llm_bench.", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _segment(name: str, value: str) -> str:
    if value and "/" not in value:
        return f"{name}/{quote(value, safe='')}"
    encoded = base64.urlsafe_b64encode(value.encode()).decode()
    return f"{name}@base64/{encoded or '='}"


def push(
    url: str,
    job: str,
    grouping: dict,
    text: str,
    *,
    timeout_s: float = 10.0,
    validate_certs: bool = True,
    ca_file: str | None = None,
    username: str | None = None,
    password: str | None = None,
) -> str:
    """PUT the text to the Pushgateway group (replacing that group's metrics), over
    https checked against ca_file (else the system's CAs) and with basic auth when
    given. Returns the group URL; raises RuntimeError naming the status on failure."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"pushgateway url must be http(s)://host:port, got {url!r}")
    path = parts.path.rstrip("/") + "/metrics/" + _segment("job", job)
    for name, value in grouping.items():
        path += "/" + _segment(name, str(value))
    if parts.scheme == "https":
        context = ssl.create_default_context(cafile=ca_file)
        if not validate_certs:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            parts.hostname, parts.port or 443, timeout=timeout_s, context=context
        )
    else:
        conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout_s)
    headers = {"Content-Type": "text/plain; version=0.0.4"}
    if username:
        token = base64.b64encode(f"{username}:{password or ''}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    try:
        conn.request("PUT", path, body=text.encode(), headers=headers)
        response = conn.getresponse()
        body = response.read(500).decode("utf-8", "replace")
    except OSError as exc:
        raise RuntimeError(f"pushgateway {url} unreachable: {exc}") from exc
    finally:
        conn.close()
    if response.status >= 300:
        raise RuntimeError(f"pushgateway {url} answered HTTP {response.status}: {body}")
    return f"{url.rstrip('/')}{path[len(parts.path.rstrip('/')) :]}"
