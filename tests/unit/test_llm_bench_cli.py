"""bin/llm-latency-bench: config files with several endpoints, --check, merge."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLI = ROOT / "bin" / "llm-latency-bench"
sys.path.insert(0, str(ROOT / "tests"))

from mock_llm_server.process import running  # noqa: E402


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(CLI), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )


def test_check_refuses_a_bad_config_with_exit_2_and_names_the_setting(tmp_path):
    config = tmp_path / "bench.json"
    config.write_text(
        json.dumps(
            {
                "defaults": {"model": "m", "prompts": ["x"], "num_requests": 1},
                "endpoints": [{"endpoint": "a", "base_url": "ftp://x"}],
            }
        )
    )
    done = cli("--check", "--config", str(config))
    assert done.returncode == 2
    assert "endpoint a: base_url must be an http" in done.stderr


def test_config_runs_every_endpoint_then_merge_combines_the_result_files(tmp_path):
    with running("--ttft-ms", "10", "--itl-ms", "1", "--output-tokens", "3") as url:
        config = tmp_path / "bench.json"
        config.write_text(
            json.dumps(
                {
                    "defaults": {
                        "base_url": url,
                        "model": "mock-model",
                        "prompts": ["x"],
                        "num_requests": 3,
                        "output_dir": str(tmp_path),
                    },
                    # Rate mode sizes its open files for rate x request_timeout_s in
                    # flight: 50/s x 10 s fits the 1024 soft limit ansible-test sets
                    # (the default 60 s would need 3064).
                    "endpoints": [
                        {"endpoint": "one", "output_name": "one"},
                        {
                            "endpoint": "two",
                            "output_name": "two",
                            "mode": "constant",
                            "rate": 50,
                            "request_timeout_s": 10,
                        },
                    ],
                }
            )
        )
        done = cli("--config", str(config), "--no-progress")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[0].startswith("endpoint=one requests=3 ok=3 ")
    assert lines[1].startswith("endpoint=two requests=3 ok=3 ")
    merged = cli("--merge", str(tmp_path / "one.json"), str(tmp_path / "two.json"), "--json")
    assert merged.returncode == 0, merged.stderr
    summary = json.loads(merged.stdout)
    assert (summary["requests"], summary["output_tokens"]) == (6, 18)


def test_api_key_comes_from_the_environment_never_the_command_line():
    done = cli(
        "--check",
        "--base-url",
        "http://127.0.0.1:1/v1",
        "--model",
        "m",
        "--prompt",
        "x",
        "--num-requests",
        "1",
        "--api-key-env",
        "NO_SUCH_VAR_X",
        env={"PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 2
    assert "NO_SUCH_VAR_X is not set" in done.stderr
