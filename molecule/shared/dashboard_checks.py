"""Every Grafana dashboard panel query, run against a scenario's live Prometheus.

Shared by the Molecule scenarios that run Prometheus (all_in_one checks every
dashboard, monitoring every dashboard but the registry one, having no registry
host). Their tests/conftest.py puts this folder on sys.path. Grafana itself cannot be
installed in the lab, so the queries are run the way Grafana would run them: the
template variables replaced by what Grafana substitutes at query time.
"""

from __future__ import annotations

import importlib.util
import json
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from lab_http import lab_cafile
from monitoring_web import USER, web_password, web_request

REPO = Path(__file__).resolve().parents[2]
DASHBOARD_DIR = REPO / "roles/grafana/files/dashboards"
BENCH_PROM = REPO / "plugins/module_utils/llm_bench/prom.py"
# Grafana's $__rate_interval is max(4 x scrape interval, step + scrape interval): 1m
# for the role's 15 s scrape interval. $provider's "All" matches every provider.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$provider": ".*"}


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    panel: str
    expr: str  # with the Grafana variables substituted

    def __str__(self) -> str:
        return f"{self.dashboard} / {self.panel}: {self.expr}"


def concrete(expr: str) -> str:
    for name, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(name, value)
    return expr


def panel_queries(skip_uids: frozenset[str] = frozenset()) -> list[PanelQuery]:
    """Every target of every panel (rows' inner panels included) of every dashboard
    file the grafana role ships, except the dashboards in skip_uids."""
    queries = []
    for path in sorted(DASHBOARD_DIR.glob("*.json")):
        board = json.loads(path.read_text(encoding="utf-8"))
        if board["uid"] in skip_uids:
            continue
        queries.extend(
            PanelQuery(board["uid"], title, concrete(expr)) for title, expr in board_queries(board)
        )
    return queries


def board_queries(board: dict) -> list[tuple[str, str]]:
    """(panel title, expr as written) of every target of every panel, rows included."""
    return [
        (inner["title"], target["expr"])
        for panel in board["panels"]
        for inner in [panel, *panel.get("panels", [])]
        for target in inner.get("targets", [])
    ]


def dashboard_uids() -> set[str]:
    return {
        json.loads(path.read_text(encoding="utf-8"))["uid"] for path in DASHBOARD_DIR.glob("*.json")
    }


def prometheus_api(base_url: str, path: str, **params: str) -> dict:
    """GET one Prometheus HTTP API path (https, the monitoring stack's user); fails
    unless Prometheus says success."""
    url = f"{base_url}{path}"
    if params:
        url += "?" + urllib.parse.urlencode(params)
    status, raw = web_request("GET", url)
    if status != 200:
        raise AssertionError(f"Prometheus answered HTTP {status} {raw[:300]!r} to {url}")
    body = json.loads(raw)
    if body.get("status") != "success":
        raise AssertionError(f"Prometheus answered {body} to {url}")
    return body["data"]


def query_result(base_url: str, expr: str) -> list:
    return prometheus_api(base_url, "/api/v1/query", query=expr)["result"]


def queries_without_data(
    base_url: str, queries: list[PanelQuery], timeout_s: float, interval_s: float = 5.0
) -> list[PanelQuery]:
    """Runs the queries until each has returned data once, or the time is up; returns
    the ones that never did (rate() needs two scrapes after the first sample)."""
    waiting = list(queries)
    deadline = time.monotonic() + timeout_s
    while True:
        waiting = [query for query in waiting if not query_result(base_url, query.expr)]
        if not waiting or time.monotonic() >= deadline:
            return waiting
        time.sleep(interval_s)


def wait_for(check, timeout_s: float, what: str, interval_s: float = 2.0):
    """Polls check() until it returns something truthy; raises naming what never
    happened (and what check() last returned)."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"{what} within {timeout_s:.0f} s (last seen: {last!r})")


def _bench_prom():
    """The benchmark module's own exposition code (plugins/module_utils/llm_bench)."""
    spec = importlib.util.spec_from_file_location("llm_bench_prom", BENCH_PROM)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def push_sample_benchmark_runs(pushgateway_url: str, pause_s: float) -> None:
    """Two pushes of a benchmark run through the benchmark module's own exposition
    (9 successes, 1 incomplete stream), pause_s apart (longer than a scrape interval),
    the counters growing in between, so rate() over the pushed series has samples.
    Stands in for a scheduled run: the lab has no LLM endpoint to measure. Pushes over
    https with the lab's CA and the monitoring stack's user, as a bench host does."""
    prom = _bench_prom()
    labels = {"provider": "molecule", "model": "sample-model", "endpoint": "http://sample"}
    success = {"error_type": None, "ttft_s": 0.2, "tpot_s": 0.02}
    requests = [
        {**success, "e2e_s": 1.5 + i / 10, "output_tokens": 64, "input_tokens": 32}
        for i in range(9)
    ]
    requests.append(
        {
            "error_type": "incomplete_stream",
            "e2e_s": None,
            "ttft_s": None,
            "tpot_s": None,
            "output_tokens": 0,
            "input_tokens": 32,
        }
    )
    summary = {
        "scheduling_lag_s": {"count": 10, "p50": 0.001, "p99": 0.004, "max": 0.005, "mean": 0.002},
        "request_throughput": 2.0,
    }
    state = prom.empty_state()
    for _attempt in range(2):
        prom.accumulate(state, {"requests": requests}, labels)
        text = prom.exposition(state, summary, labels)
        prom.push(
            pushgateway_url,
            "llm_benchmark",
            {"instance": "molecule", "endpoint": "sample"},
            text,
            ca_file=lab_cafile(),
            username=USER,
            password=web_password(),
        )
        time.sleep(pause_s)
