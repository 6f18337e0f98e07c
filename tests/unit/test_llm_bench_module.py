"""The llm_latency_benchmark module and playbooks/benchmark.yml, run by real
ansible-playbook on this machine (two inventory hosts on a local connection stand
in for two bench hosts) against the mock server and a real Pushgateway."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# The controller tools next to the Python running the tests (the checkout's .venv, also
# under ansible-test units, whose tree copy has no .venv link).
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT / "tests"))

from mock_llm_server.process import free_port, running  # noqa: E402
from test_release_lib import COLLECTIONS  # noqa: E402

pytestmark = pytest.mark.skipif(
    not (BIN / "ansible-playbook").exists(), reason="controller venv missing"
)


def ansible(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    # The controller as a user runs it: the checkout's ansible.cfg, the tools' own
    # ansible (not the module_utils-only one ansible-test puts on PYTHONPATH), none of
    # the ANSIBLE_* settings ansible-test sets for its test process.
    inherited = {
        key: value
        for key, value in os.environ.items()
        if key != "PYTHONPATH" and not key.startswith("ANSIBLE_")
    }
    env = {
        **inherited,
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_COLLECTIONS_PATH": str(COLLECTIONS),
        "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json",
        "ANSIBLE_NOCOLOR": "1",
    }
    return subprocess.run(
        list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )


def task_results(output: str, task: str) -> dict:
    document = json.loads(output[output.index("{") :])
    for play in document["plays"]:
        for item in play["tasks"]:
            if item["task"]["name"] == task:
                return item["hosts"]
    raise AssertionError(f"task {task!r} not in the output")


def test_ansible_doc_renders_the_module():
    done = ansible(str(BIN / "ansible-doc"), "-j", "llmops.registry.llm_latency_benchmark")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)["llmops.registry.llm_latency_benchmark"]
    assert doc["doc"]["options"]["api_key"]["type"] == "str"
    assert "ttft_s" in doc["return"]["summary"]["description"]


def write_inventory(tmp_path: Path, extra: dict) -> Path:
    # Host vars: above playbooks/group_vars/all (the wiring of the Pushgateway URL).
    host = {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        # The Pushgateway's login (role monitoring_web), wired like an inventory's vault.
        "vault_monitoring_web_password": "unit-test-web-password",
        **extra,
    }
    inventory = {"all": {"children": {"bench": {"hosts": {"bench-a": host, "bench-b": host}}}}}
    path = tmp_path / "inventory.json"
    path.write_text(json.dumps(inventory))
    return path


def test_check_mode_sends_nothing_and_returns_the_plan(tmp_path):
    nobody = f"http://127.0.0.1:{free_port()}/v1"  # a request here would fail
    inventory = write_inventory(
        tmp_path,
        {
            "benchmark_schedule_endpoints": [
                {"name": "e1", "base_url": nobody, "model": "m", "api_key": "sk-hidden"}
            ]
        },
    )
    done = ansible(
        str(BIN / "ansible-playbook"), "-i", str(inventory), "--check", "playbooks/benchmark.yml"
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr
    hosts = task_results(done.stdout, "Run the benchmark on each bench host")
    assert set(hosts) == {"bench-a", "bench-b"}
    assert "sk-hidden" not in done.stdout


def test_playbook_merges_two_hosts_and_pushes_once(tmp_path, secured_pushgateway):
    """Against a real Pushgateway behind TLS and basic auth, as deploy.yml sets it up."""
    gw = secured_pushgateway
    with running("--ttft-ms", "20", "--itl-ms", "2", "--output-tokens", "5") as url:
        inventory = write_inventory(
            tmp_path,
            {
                "benchmark_schedule_pushgateway_url": gw.url,
                "vault_monitoring_web_password": gw.password,
                "monitoring_web_ca_file": gw.ca_file,
                "benchmark_output_dir": str(tmp_path / "out"),
                "benchmark_schedule_defaults": {
                    "prompts": ["hi"],
                    "num_requests": 4,
                    "concurrency": 2,
                    "max_tokens": 5,
                },
                "benchmark_schedule_endpoints": [
                    {
                        "name": "mock",
                        "base_url": url,
                        "model": "mock-model",
                        "provider": "mock",
                        "api_key": "sk-hidden",
                    }
                ],
            },
        )
        done = ansible(
            str(BIN / "ansible-playbook"), "-i", str(inventory), "playbooks/benchmark.yml"
        )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    merged = task_results(done.stdout, "Merge the hosts' samples per endpoint and publish them")
    (result,) = merged.values()
    summary = result["results"][0]["summary"]
    assert (summary["requests"], summary["succeeded"]) == (8, 8)
    assert summary["output_tokens"] == 40
    assert "sk-hidden" not in done.stdout
    body = gw.get("/metrics")
    assert (
        'llm_requests_total{endpoint="mock",instance="bench-a,bench-b",'
        'job="llm_benchmark",model="mock-model",provider="mock",status="success"} 8'
    ) in body
    assert len(list((tmp_path / "out").glob("*.html"))) == 1
