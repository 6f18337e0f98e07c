"""Alert rules and dashboards against their contracts: every alert has promtool unit
tests that fire it and that keep it silent, and every LLM / registry metric they
query is one the benchmark module or the registry service really exports."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
RULE_FILES = sorted((REPO / "roles/prometheus/files/rules").glob("*.yml"))
RULE_TESTS = sorted((REPO / "tests/prometheus_rules").glob("*.yml"))
DASHBOARDS = sorted((REPO / "roles/grafana/files/dashboards").glob("*.json"))
METRIC = re.compile(r"\b((?:llm|schema_registry)_[a-zA-Z0-9_]+)")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def alert_rules() -> list[dict]:
    rules = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            rules += [rule for rule in group["rules"] if "alert" in rule]
    return rules


def rule_test_cases() -> list[dict]:
    cases = []
    for path in RULE_TESTS:
        for test in yaml.safe_load(path.read_text())["tests"]:
            cases += test.get("alert_rule_test", [])
    return cases


def exported_llm_metrics() -> set[str]:
    spec = importlib.util.spec_from_file_location(
        "llm_bench_prom", REPO / "plugins/module_utils/llm_bench/prom.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return set(module.HELP)


def exported_registry_metrics() -> set[str]:
    source = (REPO / "service/src/schema_registry/metrics.py").read_text()
    return {"schema_registry_" + name for name in re.findall(r'_P \+ "([a-z_]+)"', source)}


def base_name(metric: str) -> str:
    for suffix in HISTOGRAM_SUFFIXES:
        if metric.endswith(suffix):
            return metric[: -len(suffix)]
    return metric


def test_promtool_unit_tests_pass() -> None:
    result = subprocess.run(
        ["promtool", "test", "rules", *map(str, RULE_TESTS)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_and_severity_has_a_test_that_fires_it() -> None:
    fired = {
        (case["alertname"], alert["exp_labels"]["severity"])
        for case in rule_test_cases()
        for alert in case.get("exp_alerts") or []
    }
    defined = {(rule["alert"], rule["labels"]["severity"]) for rule in alert_rules()}
    assert defined - fired == set()


def test_every_alert_has_a_test_where_it_must_stay_silent() -> None:
    silent = {case["alertname"] for case in rule_test_cases() if not case.get("exp_alerts")}
    assert {rule["alert"] for rule in alert_rules()} - silent == set()


def test_every_alert_routes_by_severity_and_team() -> None:
    for rule in alert_rules():
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert rule["labels"].get("team"), rule["alert"]
        assert rule["annotations"].get("summary"), rule["alert"]


def test_no_alert_filters_a_histogram_on_a_quantile_label() -> None:
    """Upstream's HighLLMLatency selected quantile="0.95" on a histogram: never matches."""
    for rule in alert_rules():
        assert "quantile=" not in rule["expr"], rule["alert"]


def test_queried_metrics_are_exported_by_their_producers() -> None:
    exported = exported_llm_metrics() | exported_registry_metrics()
    queries = [rule["expr"] for rule in alert_rules()]
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        queries += [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
        queries += [v.get("definition", "") for v in board["templating"]["list"]]
    used = {base_name(name) for query in queries for name in METRIC.findall(query)}
    assert used, "no LLM or registry metric found in the queries"
    assert used - exported == set()
