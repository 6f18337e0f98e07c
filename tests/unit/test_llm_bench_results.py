"""Pure parts of the benchmark engine: SSE decoding, statistics, merging of hosts,
Prometheus exposition (checked by prometheus-client's parser, promtool and a real
Pushgateway) and the result files."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import random
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "plugins" / "module_utils"))
sys.path.insert(0, str(ROOT / "tests"))

from llm_bench import client, engine, prom, report, stats  # noqa: E402
from llm_bench.config import ConfigError, validate  # noqa: E402
from llm_bench.sse import SSEDecoder, StreamError, StreamState, openai_event  # noqa: E402

LABELS = {"provider": "vllm", "model": "m-1", "endpoint": "east"}


def record(
    ttft: float,
    e2e: float,
    *,
    error: str | None = None,
    tokens: int = 10,
    host: str = "h1",
    offset: float = 0.0,
) -> dict:
    return {
        "host": host,
        "worker": 0,
        "index": 0,
        "wall_time": 1.0 + offset,
        "planned_offset_s": offset,
        "send_offset_s": offset,
        "lag_s": 0.001,
        "connect_s": 0.0,
        "ttft_s": None if error else ttft,
        "itl_s": [] if error else [(e2e - ttft) / (tokens - 1)] * (tokens - 1),
        "e2e_s": None if error else e2e,
        "tpot_s": None if error else (e2e - ttft) / (tokens - 1),
        "content_chunks": tokens,
        "input_tokens": 5,
        "input_tokens_source": "usage",
        "output_tokens": 0 if error else tokens,
        "output_tokens_source": "usage",
        "finish_reason": None if error else "stop",
        "http_status": 200,
        "error_type": error,
        "error": error,
    }


def run_of(records: list[dict], elapsed: float = 10.0, host: str = "h1") -> dict:
    return {
        "host": host,
        "started_at": 1.0,
        "workers": 1,
        "elapsed_s": elapsed,
        "warmup_requests": 0,
        "warmup_errors": 0,
        "not_sent": 0,
        "connections_opened": 1,
        "planned_requests": len(records),
        "requests": records,
    }


def test_sse_decoder_gives_the_same_events_whatever_the_byte_boundaries():
    stream = (
        b'data: {"a":1}\n\n: comment\n\nevent: x\ndata: {"b":\ndata: 2}\r\n\r\ndata: [DONE]\n\n'
    )
    whole = SSEDecoder().feed(stream)
    assert whole == [("", '{"a":1}'), ("x", '{"b":\n2}'), ("", "[DONE]")]
    rng = random.Random(3)  # noqa: S311 - split points, not security
    for _attempt in range(50):
        decoder, events, pos = SSEDecoder(), [], 0
        while pos < len(stream):
            step = rng.randint(1, 7)
            events += decoder.feed(stream[pos : pos + step])
            pos += step
        assert events == whole


def _chunked(*events: bytes, extension: bytes = b"") -> bytes:
    return b"".join(b"%x%s\r\n%s\r\n" % (len(e), extension, e) for e in events) + b"0\r\n\r\n"


def _parse_response(pieces: list[bytes]) -> tuple:
    """Feed a response to the client's protocol in the given pieces; what it learnt."""

    async def feed() -> tuple:
        conn = client._Response()
        exchange = client.Exchange("openai_chat")
        conn._reset(exchange, asyncio.get_running_loop())
        for piece in pieces:
            conn.data_received(piece)
            if conn.finished.done():
                break
        state = exchange.state
        outcome = conn.finished.result() if conn.finished.done() else "unfinished"
        error = outcome.kind if isinstance(outcome, StreamError) else outcome
        counts = (len(state.content_ns), state.output_chars)
        return (*counts, state.finish_reason, state.usage_out, error)

    with patch_clock():
        return asyncio.run(feed())


class patch_clock:
    """Every data_received call sees the next integer as its timestamp."""

    def __enter__(self) -> None:
        self.saved = client.time.perf_counter_ns
        ticks = iter(range(1, 10**6))
        client.time.perf_counter_ns = lambda: next(ticks)

    def __exit__(self, *exc: object) -> None:
        client.time.perf_counter_ns = self.saved


@pytest.mark.parametrize("extension", [b"", b";ext=1"])
def test_response_parsing_is_the_same_whatever_the_read_boundaries(extension):
    """The whole-chunk fast path and the general parser agree, for every way the
    bytes can arrive: one read, a read per chunk, random splits, byte by byte."""
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    role = b'data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}\n\n'
    token = b'data: {"choices":[{"index":0,"delta":{"content":" w%d"}}]}\n\n'
    tokens = [token % i for i in range(9)]
    two_in_one = tokens[7] + tokens[8]  # one chunk, two events
    crlf = b'data: {"choices":[{"index":0,"delta":{"content":"x"}}]}\r\n\r\n'
    finish = b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"length"}]}\n\n'
    usage = b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":10}}\n\n'
    chunks = [role, *tokens[:7], two_in_one, crlf, finish, usage, b"data: [DONE]\n\n"]
    body = _chunked(*chunks, extension=extension)
    expected = (10, 28, "length", 10, None)
    assert _parse_response([head + body]) == expected
    per_chunk = [head] + [_chunked(c, extension=extension)[:-5] for c in chunks] + [b"0\r\n\r\n"]
    assert b"".join(per_chunk) == head + body
    assert _parse_response(per_chunk) == expected
    data = head + body
    assert _parse_response([data[i : i + 1] for i in range(len(data))]) == expected
    rng = random.Random(11)  # noqa: S311 - split points, not security
    for _attempt in range(30):
        cuts = sorted(rng.sample(range(1, len(data)), 12))
        pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
        assert _parse_response(pieces) == expected


def test_a_bad_chunk_is_refused_by_the_fast_path_as_by_the_general_parser():
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    good = b'data: {"choices":[{"index":0,"delta":{"content":"a"}}]}\n\n'
    for bad in (
        b"data: {not json\n\n",
        b'data: {"choices":[]} trailing\n\n',
        b"data: [1, 2]\n\n",
    ):
        data = head + _chunked(good, bad)
        whole = _parse_response([data])
        assert whole[-1] == "malformed_chunk", bad
        assert _parse_response([data[i : i + 1] for i in range(len(data))]) == whole
    # Leading whitespace is valid JSON: json.loads decides, as before.
    spaced = b'data:  {"choices":[{"index":0,"delta":{"content":"a"}}]}\n\n'
    assert _parse_response([head + _chunked(good, spaced)[:-5]])[:2] == (2, 2)
    # A chunk whose size does not match its data breaks the stream, not the client.
    assert _parse_response([head + b"5\r\nabcdefgh\r\n"])[-1] == "malformed_response"


def test_openai_chunks_role_only_and_usage_are_read_per_spec():
    state = StreamState()
    openai_event(
        state,
        "",
        '{"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}',
        1,
    )
    assert state.content_ns == []
    openai_event(state, "", '{"choices":[{"index":0,"delta":{"content":"Hi"}}]}', 2)
    openai_event(state, "", '{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}', 3)
    openai_event(state, "", '{"choices":[],"usage":{"prompt_tokens":4,"completion_tokens":1}}', 4)
    assert (state.content_ns, state.finish_reason, state.usage_out, state.usage_in) == (
        [2],
        "stop",
        1,
        4,
    )
    with pytest.raises(StreamError) as err:
        openai_event(state, "", "{oops", 5)
    assert err.value.kind == "malformed_chunk"


def test_percentiles_interpolate_like_numpy():
    values = sorted(float(v) for v in range(1, 101))
    assert stats.percentile(values, 0.5) == pytest.approx(50.5)
    assert stats.percentile(values, 0.99) == pytest.approx(99.01)
    assert stats.percentile([7.0], 0.999) == 7.0
    summary = stats.describe([1.0, 2.0, 3.0, 4.0])
    assert summary["mean"] == 2.5 and summary["std"] == pytest.approx(1.2909944)
    assert summary["p99_9"] == pytest.approx(3.997)


def test_merged_percentiles_come_from_raw_samples_not_averaged_percentiles():
    fast = run_of([record(0.1, 1.0, offset=i) for i in range(90)], host="a")
    slow = run_of([record(2.0, 5.0, offset=i) for i in range(10)], host="b")
    merged = stats.merge([fast, slow])
    summary = stats.summarize(merged)
    ttfts = sorted([0.1] * 90 + [2.0] * 10)
    assert summary["ttft_s"]["p95"] == pytest.approx(stats.percentile(ttfts, 0.95))
    averaged = (stats.summarize(fast)["ttft_s"]["p95"] + stats.summarize(slow)["ttft_s"]["p95"]) / 2
    assert summary["ttft_s"]["p95"] != pytest.approx(averaged)
    assert summary["requests"] == 100 and merged["hosts"] == ["a", "b"]
    assert summary["request_throughput"] == pytest.approx(100 / 10.0)


def test_merge_refuses_runs_without_raw_samples():
    with pytest.raises(ValueError, match="raw 'requests'"):
        stats.merge([{"summary": {}}])


def test_summary_counts_errors_by_type_and_goodput():
    run = run_of(
        [
            record(0.1, 1.0),
            record(0.5, 1.0),
            record(0, 0, error="timeout"),
            record(0, 0, error="http_429"),
            record(0, 0, error="http_429"),
        ],
        elapsed=2.0,
    )
    summary = stats.summarize(run, goodput={"ttft_s": 0.2})
    assert summary["errors_by_type"] == {"http_429": 2, "timeout": 1}
    assert (summary["succeeded"], summary["failed"]) == (2, 3)
    assert summary["goodput"]["requests"] == 1
    assert summary["goodput"]["requests_per_s"] == pytest.approx(0.5)
    assert summary["output_tokens"] == 20


def exposition_for(run: dict, state: dict | None = None) -> str:
    state = state or prom.empty_state()
    prom.accumulate(state, run, LABELS)
    return prom.exposition(state, stats.summarize(run), LABELS, ended_at=1700000000.0)


def sample_run() -> dict:
    return run_of(
        [
            record(0.03, 0.7),
            record(0.2, 3.0),
            record(0.08, 0.4),
            record(0, 0, error="incomplete_stream"),
        ]
    )


def test_exposition_parses_with_spec_names_buckets_and_labels():
    parser = pytest.importorskip("prometheus_client.parser")
    families = {
        f.name: f for f in parser.text_string_to_metric_families(exposition_for(sample_run()))
    }
    assert {
        "llm_request_duration_seconds",
        "llm_ttft_seconds",
        "llm_tpot_seconds",
        "llm_requests",
        "llm_request_errors",
        "llm_tokens_generated",
        "llm_tokens_prompt",
        "llm_benchmark_last_run_timestamp_seconds",
        "llm_benchmark_scheduling_lag_seconds",
    } <= set(families)
    ttft = {(s.name, s.labels.get("le")): s.value for s in families["llm_ttft_seconds"].samples}
    assert [float(b) for (n, b) in ttft if n.endswith("_bucket") and b != "+Inf"] == list(
        map(float, prom.BUCKETS["llm_ttft_seconds"])
    )
    assert ttft[("llm_ttft_seconds_bucket", "0.05")] == 1
    assert ttft[("llm_ttft_seconds_bucket", "0.1")] == 2
    assert ttft[("llm_ttft_seconds_count", None)] == 3
    requests = {
        s.labels["status"]: s.value
        for s in families["llm_requests"].samples
        if s.name == "llm_requests_total"
    }
    assert requests == {"success": 3, "error": 1}
    errors = [
        s for s in families["llm_request_errors"].samples if s.name == "llm_request_errors_total"
    ]
    (err,) = [s for s in errors if s.value]
    assert err.labels == {**LABELS, "error_type": "incomplete_stream"}
    assert err.value == 1
    # every known type is there from the start, at 0: rate() sees a first failure
    assert {s.labels["error_type"] for s in errors} == set(prom.ERROR_TYPES)


def test_state_keeps_counters_and_histograms_growing_across_runs():
    state = prom.empty_state()
    exposition_for(sample_run(), state)
    text = exposition_for(sample_run(), state)
    assert (
        'llm_requests_total{endpoint="east",model="m-1",provider="vllm",status="success"}'
        " 6.0" in text
    )
    assert 'llm_ttft_seconds_count{endpoint="east",model="m-1",provider="vllm"} 6' in text


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_promtool_accepts_the_exposition():
    result = subprocess.run(
        ["promtool", "check", "metrics"],
        input=exposition_for(sample_run()),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_push_lands_in_a_real_pushgateway_under_its_group(pushgateway):
    text = exposition_for(sample_run())
    where = prom.push(
        pushgateway, "llm_benchmark", {"instance": "bench/1", "endpoint": "east"}, text
    )
    assert "/metrics/job/llm_benchmark/instance@base64/" in where
    with urllib.request.urlopen(pushgateway + "/metrics", timeout=5) as response:  # noqa: S310 - http to our own gateway
        body = response.read().decode()
    assert (
        'llm_ttft_seconds_bucket{endpoint="east",instance="bench/1",'
        'job="llm_benchmark",model="m-1",provider="vllm",le="0.1"} 2'
    ) in body
    assert 'llm_benchmark_last_run_timestamp_seconds{endpoint="east",instance="bench/1"' in body
    assert 'error_type="incomplete_stream"' in body


def test_push_failure_names_the_status(pushgateway):
    with pytest.raises(RuntimeError, match="HTTP 400"):
        prom.push(pushgateway, "llm_benchmark", {"instance": "x"}, "this is not metrics\n")


def test_push_over_https_with_the_ca_and_login(secured_pushgateway):
    gw = secured_pushgateway
    text = exposition_for(sample_run())
    where = prom.push(
        gw.url,
        "llm_benchmark",
        {"instance": "b1"},
        text,
        ca_file=gw.ca_file,
        username=gw.user,
        password=gw.password,
    )
    assert where.startswith(gw.url + "/metrics/job/llm_benchmark/instance/b1")
    assert 'instance="b1"' in gw.get("/metrics")


@pytest.mark.parametrize("password", [None, "not-the-password"])
def test_push_without_the_login_is_refused(secured_pushgateway, password):
    gw = secured_pushgateway
    with pytest.raises(RuntimeError, match="HTTP 401"):
        prom.push(
            gw.url,
            "llm_benchmark",
            {"instance": "b1"},
            "x 1\n",
            ca_file=gw.ca_file,
            username=gw.user if password else None,
            password=password,
        )


def test_push_without_the_ca_is_refused(secured_pushgateway):
    gw = secured_pushgateway
    with pytest.raises(RuntimeError, match="CERTIFICATE_VERIFY_FAILED"):
        prom.push(
            gw.url,
            "llm_benchmark",
            {"instance": "b1"},
            "x 1\n",
            username=gw.user,
            password=gw.password,
        )


def test_result_files_json_csv_and_self_contained_html(tmp_path):
    run = sample_run()
    summary = stats.summarize(run)
    paths = report.write_all(str(tmp_path), "r1", run, summary, {"model": "m"})
    document = json.loads(Path(paths["json"]).read_text())
    assert document["summary"]["requests"] == 4
    rows = list(csv.DictReader(io.StringIO(Path(paths["csv"]).read_text())))
    assert len(rows) == 4 and rows[3]["error_type"] == "incomplete_stream"
    page = Path(paths["html"]).read_text()
    assert page.count("<svg") == 5
    assert "<script" not in page and "src=" not in page and "https://" not in page


def test_textfile_output_is_written_atomically_and_must_end_in_prom(tmp_path):
    with pytest.raises(ConfigError, match=r"\.prom"):
        engine.check_outputs({"textfile_path": str(tmp_path / "x.txt")})
    target = tmp_path / "llm.prom"
    prom.write_atomic(str(target), exposition_for(sample_run()))
    assert target.read_text().startswith("# HELP")
    assert [p.name for p in tmp_path.iterdir()] == ["llm.prom"]


def test_config_errors_name_the_setting():
    base = {"base_url": "http://127.0.0.1:1/v1", "model": "m", "prompts": ["x"], "num_requests": 1}
    assert validate(base)["endpoint_path"] == "/chat/completions"
    cases = {
        "api": ("api", "grpc"),
        "goodput": ("goodput", {"ttft": 1}),
        "prompts": ("prompts", [""]),
        "workers": ("workers", 1000),
        "headers": ("headers", {"x": 1}),
        "max_tokens": ("max_tokens", 1.5),
    }
    for name, (key, value) in cases.items():
        with pytest.raises(ConfigError, match=name):
            validate({**base, key: value})
    with pytest.raises(ConfigError, match="exactly one of prompts"):
        validate({**base, "synthetic_prompt_tokens": 10})
