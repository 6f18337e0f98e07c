"""The scheduled benchmark chain on a real lab host, in order: the timer runs the
benchmark against the stand-in endpoint -> Pushgateway -> Prometheus -> alerts ->
dashboard queries. HighLLMLatency fires from real runs against a slow spell of the
stand-in and resolves when fast runs follow; a run with no success fails its unit
and fires HighErrorRate; playbooks/benchmark.yml works as the README gives it.

The tests run in file order and build on each other (one lab, one timeline)."""

from __future__ import annotations

import json
import re
import time

from dashboard_checks import panel_queries, prometheus_api, queries_without_data, wait_for
from lab_inventory import host_vars, hosts
from monitoring_web import WRONG_PASSWORD, probe_on

from playbooks import Playbooks

testinfra_hosts = ["bench"]

REQUESTS = 40  # benchmark_schedule_defaults.num_requests in molecule.yml
STAND_IN = {"endpoint": "stand-in-mock", "provider": "stand-in", "model": "stand-in-mock"}
P95_ABOVE_5S = (
    "histogram_quantile(0.95, sum by (le) "
    '(rate(llm_request_duration_seconds_bucket{provider="stand-in"}[5m]))) > 5'
)
COUNTED = {"token_count_source": "usage"}  # a label, not a secret
ESTIMATED = {"token_count_source": "estimate"}
SLOW = {"override": {"ttft_ms": 6000}, "requests": 8}  # one wave at concurrency 8


def address() -> str:
    """The bench host's address; it is the monitoring host too (Prometheus, Pushgateway)."""
    (bench,) = hosts("bench")
    assert bench in hosts("monitoring")
    return host_vars(bench)["ansible_host"]


def prometheus_url() -> str:
    return f"https://{address()}:9090"


def query(expr: str) -> list:
    return prometheus_api(prometheus_url(), "/api/v1/query", query=expr)["result"]


# The lab host has no curl: Python's standard library does the HTTP there.
_HTTP = (
    "import sys, urllib.request as u; "
    "body = sys.argv[3].encode() if len(sys.argv) > 3 else None; "
    "r = u.Request(sys.argv[2], data=body, method=sys.argv[1]); "
    "print(u.urlopen(r, timeout=10).read().decode())"
)


def http_on(host, method: str, url: str, body: str | None = None) -> str:
    """An HTTP request made on the lab host (its loopback-only services)."""
    if body is None:
        return host.check_output("python3 -c %s %s %s", _HTTP, method, url)
    return host.check_output("python3 -c %s %s %s %s", _HTTP, method, url, body)


def pushgateway(host) -> str:
    """The Pushgateway's metrics, read on the host over https with the stack's login."""
    answer = probe_on(host, f"https://{address()}:9091/metrics")
    assert answer["status"] == 200, answer
    return answer["body"]


def sample(text: str, name: str, **labels) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def run_once(host, expect: int = 0) -> None:
    """One run of the timer's service (blocks until the oneshot ends)."""
    with host.sudo():
        host.run_expect([expect], "systemctl start llm-latency-bench.service")


def poll(check, timeout_s: float) -> bool:
    """True as soon as check() is truthy (every 5 s, a scrape interval), else False."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(5)
    return False


def firing(alert: str) -> list:
    return query(f'ALERTS{{alertname="{alert}",alertstate="firing",provider="stand-in"}}')


def test_the_stand_in_is_labelled_and_serves_on_loopback_only(host):
    unit = host.check_output("systemctl show mock-llm-endpoint.service -p Description")
    assert "Stand-in mock LLM endpoint (not a model" in unit
    assert host.socket("tcp://127.0.0.1:18080").is_listening
    assert not host.socket("tcp://0.0.0.0:18080").is_listening
    with host.sudo():
        config = json.loads(host.file("/etc/llm-latency-bench/bench.json").content_string)
    assert [e["endpoint"] for e in config["endpoints"]] == ["stand-in-mock"]


def test_the_runs_push_over_https_with_the_login_and_others_cannot(host):
    with host.sudo():
        config = json.loads(host.file("/etc/llm-latency-bench/bench.json").content_string)
    assert config["defaults"]["pushgateway_url"] == f"https://{address()}:9091"
    assert config["defaults"]["pushgateway_ca_file"] == "/etc/llmops/tls/ca.crt"
    assert config["defaults"]["pushgateway_username"] == "monitoring"
    group = f"https://{address()}:9091/metrics/job/llm_benchmark/instance/intruder"
    for password in (None, WRONG_PASSWORD):
        answer = probe_on(host, group, password=password, method="PUT", body="intruder_total 1\n")
        assert answer["status"] == 401, answer
    assert "intruder" not in pushgateway(host)


def test_the_timer_ran_by_itself_and_pushed(host):
    assert host.service("llm-latency-bench.timer").is_enabled
    text = wait_for(
        lambda: (
            (t := pushgateway(host))
            and sample(t, "llm_requests_total", status="success", **STAND_IN)
            and t
        ),
        90,
        "the timer's first run in the Pushgateway",
    )
    assert sample(text, "llm_requests_total", status="success", **STAND_IN) >= REQUESTS
    # the stand-in streams usage when asked: exact counts, and the series says so
    assert sample(text, "llm_tokens_generated_total", **COUNTED, **STAND_IN)
    assert sample(text, "llm_tokens_generated_total", **ESTIMATED) is None
    with host.sudo():
        journal = host.check_output("journalctl -u llm-latency-bench.service --no-pager -n 50")
    assert re.search(rf"endpoint=stand-in-mock requests={REQUESTS} ok={REQUESTS} ", journal)
    assert "output_tokens=" in journal and "(usage)" in journal


def test_runs_reach_prometheus(host):
    run_once(host)
    result = host.check_output("systemctl show llm-latency-bench.service -p Result")
    assert result.strip() == "Result=success"
    wait_for(
        lambda: query('sum(llm_requests_total{endpoint="stand-in-mock",status="success"})'),
        60,
        "the benchmark counters in Prometheus",
    )


def test_a_slow_spell_fires_high_llm_latency_and_fast_runs_resolve_it(host):
    assert not firing("HighLLMLatency")
    http_on(host, "POST", "http://127.0.0.1:18080/mock/config", json.dumps(SLOW))
    # 8 requests take ~6.6 s each. p95 over the 5 min window passes 5 s once they are over
    # 5 % of the window's requests, which the earlier runs (and the timer's) may not
    # allow after one slow run: slow runs until the rule's expression holds.
    for _unused in range(4):
        run_once(host)
        if poll(lambda: query(P95_ABOVE_5S), 30):
            break
    wait_for(lambda: firing("HighLLMLatency"), 120, "HighLLMLatency firing", interval_s=5)
    answer = probe_on(host, f"https://{address()}:9093/api/v2/alerts")
    assert answer["status"] == 200, answer
    alerts = json.loads(answer["body"])
    assert any(a["labels"]["alertname"] == "HighLLMLatency" for a in alerts)
    # Fast runs only: once the 8 slow requests are under 5 % of the window's, p95 is fast.
    for _unused in range(12):
        run_once(host)
        if not query(P95_ABOVE_5S):
            break
    wait_for(lambda: not firing("HighLLMLatency"), 120, "HighLLMLatency resolved", interval_s=5)


def test_a_run_without_success_fails_its_unit_and_fires_high_error_rate(host):
    with host.sudo():
        host.run_expect([0], "systemctl stop mock-llm-endpoint.service")
        try:
            run_once(host, expect=1)
            result = host.check_output("systemctl show llm-latency-bench.service -p Result")
            journal = host.check_output("journalctl -u llm-latency-bench.service --no-pager -n 20")
        finally:
            host.run_expect([0], "systemctl start mock-llm-endpoint.service")
    assert result.strip() == "Result=exit-code"
    assert "no request succeeded" in journal and "'connection': 40" in journal
    errors = sample(pushgateway(host), "llm_request_errors_total", error_type="connection")
    assert errors == REQUESTS  # the errors were pushed before the unit failed
    # (the error series existed at 0 before: rate() sees this first failing run)
    wait_for(lambda: firing("HighErrorRate"), 120, "HighErrorRate firing", interval_s=5)


def test_the_llm_latency_overview_panels_have_data():
    board = [q for q in panel_queries() if q.dashboard == "llm-latency-overview"]
    assert board
    missing = queries_without_data(prometheus_url(), board, timeout_s=60)
    assert missing == [], "\n".join(map(str, missing))


def test_benchmark_playbook_runs_as_the_readme_gives_it():
    """`ansible-playbook playbooks/benchmark.yml`: no endpoints in the inventory, so it
    measures the stand-in, and pushes the merged result (last: it replaces the timer's
    Pushgateway group of the same host)."""
    proc = Playbooks().run("playbooks/benchmark.yml")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert re.search(r"stand-in-mock: 40/40 ok", proc.stdout), proc.stdout[-3000:]


def _alerts_firing_now(host) -> set[str]:
    answer = probe_on(host, f"https://{address()}:9093/api/v2/alerts?active=true&silenced=false")
    assert answer["status"] == 200, answer
    return {a["labels"]["alertname"] for a in json.loads(answer["body"])}


def test_status_says_what_the_bench_and_monitoring_host_serves(host):
    """status.yml on a bench + monitoring host (issue 18): each monitoring service ready
    (the alert inbox over https with the login), no Grafana line (grafana_enabled is
    false here), the benchmark timer and its last run, the stand-in, the alerts firing."""
    before = _alerts_firing_now(host)
    proc = Playbooks().run("playbooks/status.yml", json_report=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    (bench,) = hosts("bench")
    (report,) = [
        task["hosts"][bench]["msg"]
        for play in Playbooks.report(proc)["plays"]
        for task in play["tasks"]
        if task["task"]["name"] == "Report" and bench in task["hosts"]
    ]
    serves = report["serves"]
    for name, port in (("prometheus", 9090), ("alertmanager", 9093), ("pushgateway", 9091)):
        assert any(re.match(rf"{name} :{port}( version \S+)? ready$", s) for s in serves), serves
    assert "alert inbox :9095 ready" in serves, serves
    assert not [s for s in serves if s.startswith("grafana")], serves
    timer = r"llm benchmark timer active, next run \S.*, last run \S.* (ok|FAILED \(\S+\))$"
    assert any(re.match(timer, s) for s in serves), serves
    assert "stand-in llm endpoint (mock server, not a model) 127.0.0.1:18080 ready" in serves
    firing = {line.split()[0] for line in report["alerts_firing"]}
    assert before & _alerts_firing_now(host) <= firing, (before, report["alerts_firing"])
    assert isinstance(report["alerts_about_this_host"], list), report
