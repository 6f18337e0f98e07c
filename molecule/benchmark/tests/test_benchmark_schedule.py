"""The scheduled benchmark on a real lab host: systemd runs it, the Pushgateway has
the metrics with the SPEC names, the journal has the run."""

import json
import re

testinfra_hosts = ["bench"]

REQUESTS = 20  # benchmark_schedule_defaults.num_requests in molecule.yml
TOKENS = 16  # the mock server's --output-tokens


def metrics(host) -> str:
    return host.check_output("curl -sf http://127.0.0.1:9091/metrics")


def sample(text: str, name: str, **labels) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} {labels} not in the Pushgateway")


def run_once(host) -> None:
    with host.sudo():
        host.run_expect([0], "systemctl start llm-latency-bench.service")


def test_config_holds_the_keys_for_the_bench_user_only(host):
    with host.sudo():  # the folder is 0700 llm-bench: even reading its metadata needs root
        config = host.file("/etc/llm-latency-bench/bench.json")
        assert (config.user, config.group, config.mode) == ("llm-bench", "llm-bench", 0o600)
        document = json.loads(config.content_string)
    assert [e["endpoint"] for e in document["endpoints"]] == ["mock-chat", "mock-anthropic"]


def test_timer_is_scheduled_and_service_is_oneshot(host):
    assert host.service("llm-latency-bench.timer").is_enabled
    assert host.service("llm-latency-bench.timer").is_running
    show = host.check_output("systemctl show llm-latency-bench.service -p Type -p User")
    assert "Type=oneshot" in show and "User=llm-bench" in show


def test_a_run_pushes_spec_metrics_and_logs_to_the_journal(host):
    run_once(host)
    result = host.check_output("systemctl show llm-latency-bench.service -p Result")
    assert result.strip() == "Result=success"
    text = metrics(host)
    chat = {"endpoint": "mock-chat", "provider": "mock", "model": "mock-model"}
    assert sample(text, "llm_requests_total", status="success", **chat) >= REQUESTS
    assert sample(text, "llm_tokens_generated_total", **chat) == TOKENS * sample(
        text, "llm_requests_total", status="success", **chat
    )
    # The mock answers after 50 ms: no first token can be seen before that.
    assert sample(text, "llm_ttft_seconds_bucket", le="0.025", **chat) == 0
    assert sample(text, "llm_ttft_seconds_count", **chat) == sample(
        text, "llm_ttft_seconds_bucket", le="+Inf", **chat
    )
    for name in (
        "llm_request_duration_seconds_bucket",
        "llm_tpot_seconds_bucket",
        "llm_benchmark_last_run_timestamp_seconds",
        "llm_benchmark_scheduling_lag_seconds_count",
    ):
        sample(text, name, endpoint="mock-anthropic")
    with host.sudo():
        journal = host.check_output("journalctl -u llm-latency-bench.service --no-pager -n 50")
    assert re.search(rf"endpoint=mock-chat requests={REQUESTS} ok={REQUESTS} ", journal)
    assert "endpoint=mock-anthropic requests=" in journal


def test_counters_are_cumulative_across_runs(host):
    chat = {"endpoint": "mock-chat", "status": "success"}
    before = sample(metrics(host), "llm_requests_total", **chat)
    run_once(host)
    assert sample(metrics(host), "llm_requests_total", **chat) == before + REQUESTS


def test_the_api_key_is_not_in_the_journal(host):
    with host.sudo():
        journal = host.check_output("journalctl --no-pager -n 500")
    assert "molecule-bench-key" not in journal
