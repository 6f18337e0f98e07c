"""The benchmark engine against the mock server run as a separate process.

Bounds: a client can never see a chunk before the server sends it, so measured
TTFT/e2e must be >= the configured value; the upper slack covers the mock's
timer granularity (~1 ms) and a loaded 2-core build machine.
"""

from __future__ import annotations

import itertools
import json
import math
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "plugins" / "module_utils"))
sys.path.insert(0, str(ROOT / "tests"))

from llm_bench import engine, loops  # noqa: E402
from llm_bench.config import ConfigError  # noqa: E402
from mock_llm_server import WORD  # noqa: E402
from mock_llm_server.process import free_port, running  # noqa: E402

EARLY_S = 0.0015  # the mock's clock reads the request a little after the client sent it
MEDIAN_SLACK_S = 0.025  # typical lateness: timer granularity plus a busy machine
MAX_SLACK_S = 0.250  # worst single sample on a shared, overloaded 2-core machine


@pytest.fixture(scope="module")
def base_url():
    with running("--ttft-ms", "50", "--itl-ms", "5", "--output-tokens", "8") as url:
        yield url


def bench(base_url: str, mock: dict | None = None, **settings) -> dict:
    cfg = {
        "base_url": base_url,
        "model": "mock-model",
        "prompts": ["hello there"],
        "num_requests": 3,
        "request_timeout_s": 5.0,
        **settings,
    }
    if mock:
        cfg["headers"] = {"x-mock": json.dumps(mock)}
    return engine.benchmark(cfg)


def assert_close_above(values: list[float], configured: float) -> None:
    """Never earlier than configured (impossible for a correct client), the median
    within 25 ms, no sample more than 250 ms late (a shared, overloaded machine:
    the figures that matter are in benchmarks/llm_client_bench.py)."""
    ordered = sorted(values)
    assert ordered[0] >= configured - EARLY_S, ordered
    assert ordered[(len(ordered) - 1) // 2] <= configured + MEDIAN_SLACK_S, ordered
    assert ordered[-1] <= configured + MAX_SLACK_S, ordered


def measured(run, check, attempts: int = 3) -> None:
    """Run ``check(run())``; on a timing miss try again (a shared machine can starve
    any process for a moment). A client that is wrong every time still fails."""
    for attempt in range(attempts):
        try:
            check(run())
            return
        except AssertionError:
            if attempt == attempts - 1:
                raise


def only_ok(result: dict) -> list[dict]:
    assert result["summary"]["failed"] == 0, result["summary"]["errors_by_type"]
    return result["run"]["requests"]


def test_chat_stream_measures_configured_ttft_itl_e2e_and_exact_tokens(base_url):
    mock = {"ttft_ms": 80, "itl_ms": 10, "output_tokens": 12}

    def check(result: dict) -> None:
        records = only_ok(result)
        assert len(records) == 4
        assert_close_above([r["ttft_s"] for r in records], 0.080)
        assert_close_above([r["e2e_s"] for r in records], 0.080 + 11 * 0.010)
        for r in records:
            assert r["output_tokens"] == 12 and r["output_tokens_source"] == "usage"
            assert r["content_chunks"] == 12  # the role-only first chunk is not content
            assert len(r["itl_s"]) == 11
            assert sum(r["itl_s"]) / 11 == pytest.approx(0.010, abs=0.002)
            assert r["tpot_s"] == pytest.approx((r["e2e_s"] - r["ttft_s"]) / 11)
            assert r["finish_reason"] == "length"

    measured(lambda: bench(base_url, mock, num_requests=4, concurrency=2), check)


def test_role_only_first_chunk_does_not_count_as_first_token(base_url):
    mock = {"ttft_ms": 120, "itl_ms": 5, "output_tokens": 3, "role_first_chunk": True}
    (r,) = only_ok(bench(base_url, mock, num_requests=1))
    assert r["ttft_s"] >= 0.120 - EARLY_S


def test_without_any_exact_source_tokens_are_estimated_and_marked(base_url):
    mock = {"ttft_ms": 30, "itl_ms": 5, "output_tokens": 10, "usage": False, "tokenize": "none"}
    result = bench(base_url, mock, api="openai_completions", num_requests=2)
    for r in only_ok(result):
        assert r["output_tokens_source"] == "estimate"
        assert r["output_tokens"] == math.ceil(len(WORD * 10) / 4)
        assert r["content_chunks"] == 10
    assert result["summary"]["output_tokens_approximate"] is True
    assert result["summary"]["output_tokens_source"] == "estimate"


def test_anthropic_messages_stream_is_measured_with_exact_usage(base_url):
    mock = {"ttft_ms": 60, "itl_ms": 8, "output_tokens": 6, "prompt_tokens": 21}

    def check(result: dict) -> None:
        records = only_ok(result)
        assert_close_above([r["ttft_s"] for r in records], 0.060)
        for r in records:
            assert (r["output_tokens"], r["input_tokens"]) == (6, 21)
            assert r["input_tokens_source"] == "usage"
            assert r["finish_reason"] == "max_tokens"

    measured(
        lambda: bench(
            base_url.removesuffix("/v1"),
            mock,
            api="anthropic_messages",
            api_key="sk-test",
            num_requests=4,
            concurrency=2,
        ),
        check,
    )


def test_bundled_chunks_keep_exact_token_counts_and_per_token_tpot(base_url):
    mock = {"ttft_ms": 40, "itl_ms": 20, "output_tokens": 16, "tokens_per_chunk": 4}

    def check(result: dict) -> None:
        (r,) = only_ok(result)
        assert (r["output_tokens"], r["content_chunks"]) == (16, 4)
        # 3 gaps of 20 ms spread over 15 tokens after the first
        assert r["tpot_s"] == pytest.approx(0.060 / 15, abs=0.002)

    measured(lambda: bench(base_url, mock, num_requests=1), check)


def test_request_and_extra_body_reach_the_server(base_url):
    mock = {"ttft_ms": 1, "itl_ms": 1, "output_tokens": 2}
    result = bench(
        base_url,
        mock,
        num_requests=1,
        api_key="sk-secret",
        extra_body={"min_tokens": 2, "ignore_eos": True},
        max_tokens=7,
    )
    only_ok(result)
    assert result["settings"]["api_key"] == "********"
    assert "sk-secret" not in json.dumps(result)


@pytest.mark.parametrize("mode", ["done", "eof"])
def test_stream_cut_without_finish_reason_is_an_incomplete_stream_error(base_url, mode):
    mock = {
        "ttft_ms": 10,
        "itl_ms": 2,
        "output_tokens": 8,
        "truncate_after": 3,
        "truncate_mode": mode,
    }
    result = bench(base_url, mock, num_requests=2)
    assert result["summary"]["errors_by_type"] == {"incomplete_stream": 2}
    assert result["summary"]["succeeded"] == 0


def test_http_401_is_reported_with_its_status(base_url):
    result = bench(base_url, {"http_status": 401}, num_requests=2)
    assert result["summary"]["errors_by_type"] == {"http_401": 2}
    assert all(r["http_status"] == 401 for r in result["run"]["requests"])


def test_non_json_chunk_is_a_malformed_chunk_error(base_url):
    mock = {"ttft_ms": 5, "itl_ms": 2, "output_tokens": 6, "malformed_after": 2}
    result = bench(base_url, mock, num_requests=1)
    assert result["summary"]["errors_by_type"] == {"malformed_chunk": 1}


def test_server_that_never_answers_times_out_without_hanging(base_url):
    start = time.monotonic()
    result = bench(
        base_url, {"never_answer": True}, num_requests=3, concurrency=3, request_timeout_s=0.5
    )
    assert time.monotonic() - start < 3
    assert result["summary"]["errors_by_type"] == {"timeout": 3}


def test_run_deadline_stops_a_duration_run_that_would_hang(base_url):
    start = time.monotonic()
    result = bench(
        base_url,
        {"never_answer": True},
        num_requests=None,
        duration_s=0.3,
        concurrency=2,
        request_timeout_s=30,
        max_run_s=1.0,
    )
    assert time.monotonic() - start < 3
    assert set(result["summary"]["errors_by_type"]) == {"deadline"}


def test_requests_left_unsent_at_the_run_deadline_are_counted(base_url):
    result = bench(
        base_url,
        {"never_answer": True},
        num_requests=5,
        concurrency=1,
        request_timeout_s=30,
        max_run_s=0.5,
    )
    assert result["summary"]["errors_by_type"] == {"deadline": 1}
    assert result["summary"]["not_sent"] == 4


def test_unreachable_endpoint_is_a_connection_error():
    url = f"http://127.0.0.1:{free_port()}/v1"
    result = bench(url, num_requests=2)
    assert result["summary"]["errors_by_type"] == {"connection": 2}


def test_constant_rate_mode_achieves_the_requested_rate(base_url):
    mock = {"ttft_ms": 5, "itl_ms": 2, "output_tokens": 4}

    def check(result: dict) -> None:
        summary = result["summary"]
        assert summary["succeeded"] == 30
        assert summary["achieved_send_rate"] == pytest.approx(40.0, rel=0.1)
        assert summary["scheduling_lag_s"]["p50"] < 0.020

    measured(lambda: bench(base_url, mock, mode="constant", rate=40.0, num_requests=30), check)


def test_poisson_mode_sends_every_planned_request(base_url):
    mock = {"ttft_ms": 5, "itl_ms": 2, "output_tokens": 4}
    result = bench(base_url, mock, mode="poisson", rate=50.0, num_requests=25, seed=7)
    assert result["summary"]["succeeded"] == 25
    offsets = [r["planned_offset_s"] for r in result["run"]["requests"]]
    gaps = {round(b - a, 6) for a, b in itertools.pairwise(sorted(offsets))}
    assert len(gaps) > 5  # exponential gaps, not a constant rate


def test_two_worker_processes_share_the_load_and_the_start_time(base_url):
    mock = {"ttft_ms": 30, "itl_ms": 3, "output_tokens": 4}

    def check(result: dict) -> None:
        records = only_ok(result)
        assert {r["worker"] for r in records} == {0, 1}
        assert sorted(r["index"] for r in records) == list(range(8))
        assert result["run"]["workers"] == 2
        assert min(r["send_offset_s"] for r in records) < 0.05
        assert_close_above([r["ttft_s"] for r in records], 0.030)

    measured(
        lambda: bench(base_url, mock, num_requests=8, concurrency=4, workers=2, warmup_requests=2),
        check,
    )


def test_synthetic_prompts_have_the_requested_length(base_url):
    mock = {"ttft_ms": 1, "itl_ms": 1, "output_tokens": 2}
    (r,) = only_ok(bench(base_url, mock, prompts=None, synthetic_prompt_tokens=50, num_requests=1))
    # the mock counts whitespace-separated words of the JSON messages
    assert 50 <= r["input_tokens"] <= 54


def test_bad_settings_are_refused_before_anything_is_sent(base_url):
    with pytest.raises(ConfigError, match="rate"):
        bench(base_url, mode="constant")
    with pytest.raises(ConfigError, match="num_requests and duration_s"):
        bench(base_url, duration_s=1.0)
    with pytest.raises(ConfigError, match="base_url"):
        bench("ftp://x", num_requests=1)
    with pytest.raises(ConfigError, match="concurrency"):
        bench(base_url, concurrency=0)
    with pytest.raises(ConfigError, match="unknown settings: colour"):
        bench(base_url, colour="red")


def test_fixed_concurrency_opens_one_connection_per_slot_before_the_clock(base_url):
    mock = {"ttft_ms": 5, "itl_ms": 1, "output_tokens": 2}
    result = bench(base_url, mock, num_requests=12, concurrency=6, warmup_requests=0)
    records = only_ok(result)
    # Every slot found its connection open: no handshake inside the measured run.
    assert [r["connect_s"] for r in records] == [0.0] * 12
    assert result["run"]["connections_opened"] == 6
    # The client reports how busy it was itself: a share of one CPU.
    assert 0.0 < result["summary"]["client_cpu_share"] <= 1.05


def test_the_mock_reports_how_late_it_wrote_each_event(base_url):
    """The client benchmark subtracts nothing, but prints this next to its errors."""
    root = base_url.removesuffix("/v1")

    def stats(path: str, method: str) -> dict:
        request = urllib.request.Request(root + path, method=method)  # noqa: S310 - loopback
        with urllib.request.urlopen(request, timeout=5) as answer:  # noqa: S310
            return json.loads(answer.read())

    assert stats("/mock/stats/reset", "POST")["first_token_late"] == {"count": 0}
    only_ok(bench(base_url, {"ttft_ms": 5, "itl_ms": 1, "output_tokens": 4}, num_requests=3))
    late = stats("/mock/stats", "GET")
    assert late["first_token_late"]["count"] == 3
    assert late["later_tokens_late"]["count"] == 9
    assert 0 <= late["first_token_late"]["p50_ms"] < MAX_SLACK_S * 1e3
    # Schedules start at the kernel's receive time of each request (Linux), and how
    # long requests waited to be read is reported, never negative.
    assert late["request_clock"] == {"kernel": 3, "read": 0}
    assert late["request_read_wait"]["count"] == 3
    assert 0 <= late["request_read_wait"]["p50_ms"] < MAX_SLACK_S * 1e3


def test_the_event_loop_that_ran_is_reported_and_asyncio_can_be_chosen(base_url):
    mock = {"ttft_ms": 5, "itl_ms": 1, "output_tokens": 3}
    result = bench(base_url, mock, num_requests=2, event_loop="asyncio")
    assert only_ok(result) and result["summary"]["event_loop"] == "asyncio"
    expected = "uvloop" if loops.uvloop_installed() else "asyncio"
    result = bench(base_url, mock, num_requests=4, concurrency=2, workers=2)
    assert [r["output_tokens"] for r in only_ok(result)] == [3] * 4
    assert result["summary"]["event_loop"] == expected
    with pytest.raises(ConfigError, match="event_loop must be one of"):
        bench(base_url, event_loop="trio")


def test_asking_for_uvloop_where_it_is_missing_names_the_package(base_url, monkeypatch):
    monkeypatch.setattr(loops, "uvloop_installed", lambda: False)
    with pytest.raises(ConfigError, match="uvloop package is not installed"):
        bench(base_url, event_loop="uvloop")
