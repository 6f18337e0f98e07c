"""How accurate and how fast is our benchmark client? (issue 7; a benchmark, not a test)

Runs the mock LLM server as a separate process with exact timings (TTFT 200 ms,
64 tokens, 20 ms between tokens) and measures, for our engine and for GuideLLM:
  - TTFT and ITL error (measured minus configured) p50/p99 at concurrency 1, 64, 256;
  - achieved versus requested send rate in constant-rate mode.
Targets: error p50 < 1 ms at concurrency 1, p99 < 10 ms at 256; rate >= 99 %.

The error includes the mock server's own lateness (asyncio timers, ~1 ms epoll
granularity; the mock measures it and the table prints it under each row) and
whatever else runs on this 2-core machine: the load average is saved with the
figures. GuideLLM runs from its own venv (/opt/guidellm-venv, never in CI); without
it the GuideLLM column says so. GuideLLM reports one mean ITL per request, not each
gap, so its ITL column compares per-request means; ours is shown both ways.

The mock starts every response's schedule at the kernel's receive time of its request
(SO_TIMESTAMPNS), so the time it takes to read hundreds of requests arriving at once
is not counted as the client's error; it is printed as the mock's read wait.
Our client runs on uvloop when it is installed (the run says which loop ran).

Usage: python3 benchmarks/llm_client_bench.py [--quick] [--no-guidellm] [--repeat 3]
Prints a table and saves benchmarks/results/llm_client_bench.json; the c=256 point
runs --repeat times and every run is saved (the table shows the spread).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins" / "module_utils"))
sys.path.insert(0, str(ROOT / "tests"))

from llm_bench import engine, stats  # noqa: E402
from mock_llm_server.process import running  # noqa: E402

TTFT_S, ITL_S, TOKENS = 0.200, 0.020, 64
GUIDELLM = Path(os.environ.get("GUIDELLM_VENV", "/opt/guidellm-venv")) / "bin"
RESULTS = ROOT / "benchmarks" / "results" / "llm_client_bench.json"

# A tiny local tokenizer for GuideLLM (it insists on one; the Hub is not reachable).
_TOKENIZER_SCRIPT = """
import sys
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast
words = "the of and to in is you that it he was for on are as with his they word".split()
tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
tok.train_from_iterator([" ".join(words)] * 5, trainers.WordLevelTrainer(special_tokens=["[UNK]"]))
PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]").save_pretrained(sys.argv[1])
"""


def error_stats(values_s: list[float]) -> dict:
    """p50/p99/mean/max of errors, in milliseconds."""
    if not values_s:
        return {"count": 0}
    d = stats.describe(values_s)
    return {
        "count": d["count"],
        "p50_ms": d["p50"] * 1e3,
        "p99_ms": d["p99"] * 1e3,
        "mean_ms": d["mean"] * 1e3,
        "max_ms": d["max"] * 1e3,
    }


def server_lateness(url: str, reset: bool = False) -> dict:
    """The mock server's own lateness (how late it wrote events compared with their
    schedule): part of every client's measured error, and not the client's doing.
    One server process only (the default), as the figures are per process."""
    path = "/mock/stats/reset" if reset else "/mock/stats"
    method = "POST" if reset else "GET"
    # Our own mock on loopback over http: never a user-supplied scheme.
    request = urllib.request.Request(url.removesuffix("/v1") + path, method=method)  # noqa: S310
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
        return json.loads(answer.read())


def ours_concurrency(url: str, concurrency: int, requests: int, client: dict) -> dict:
    server_lateness(url, reset=True)
    result = engine.benchmark(
        {
            **client,
            "base_url": url,
            "model": "mock-model",
            "synthetic_prompt_tokens": 16,
            "max_tokens": TOKENS,
            "concurrency": concurrency,
            "num_requests": requests,
            # One unmeasured request per connection: the server has set every one up.
            "warmup_requests": concurrency,
            "request_timeout_s": 30,
        }
    )
    ok = [r for r in result["run"]["requests"] if r["error_type"] is None]
    return {
        "requests": len(result["run"]["requests"]),
        "succeeded": len(ok),
        "workers": result["run"]["workers"],
        "ttft_error": error_stats([r["ttft_s"] - TTFT_S for r in ok]),
        "itl_error": error_stats([g - ITL_S for r in ok for g in r["itl_s"]]),
        "itl_mean_per_request_error": error_stats(
            [sum(r["itl_s"]) / len(r["itl_s"]) - ITL_S for r in ok if r["itl_s"]]
        ),
        "scheduling_lag": error_stats([r["lag_s"] for r in result["run"]["requests"]]),
        "tokens_exact": all(r["output_tokens"] == TOKENS for r in ok),
        "client_cpu_share": result["run"]["client_cpu_share"],
        "event_loop": result["run"]["event_loop"],
        "server_lateness": server_lateness(url),
    }


def ours_rate(url: str, rate: float, duration: float, client: dict) -> dict:
    result = engine.benchmark(
        {
            **client,
            "base_url": url,
            "model": "mock-model",
            "synthetic_prompt_tokens": 16,
            "max_tokens": TOKENS,
            "mode": "constant",
            "rate": rate,
            "duration_s": duration,
            "request_timeout_s": 30,
        }
    )
    summary = result["summary"]
    return {
        "requested_rate": rate,
        "achieved_rate": summary["achieved_send_rate"],
        "achieved_ratio": (summary["achieved_send_rate"] or 0) / rate,
        "requests": summary["requests"],
        "succeeded": summary["succeeded"],
        "workers": result["run"]["workers"],
        "event_loop": result["run"]["event_loop"],
        "scheduling_lag": error_stats([r["lag_s"] for r in result["run"]["requests"]]),
        "ttft_error": error_stats(
            [r["ttft_s"] - TTFT_S for r in result["run"]["requests"] if r["error_type"] is None]
        ),
    }


def guidellm_available() -> str | None:
    if not (GUIDELLM / "guidellm").exists():
        return f"GuideLLM not installed ({GUIDELLM}/guidellm missing): column skipped"
    return None


def guidellm_run(url: str, workdir: Path, profile: str, constraint: str) -> dict:
    out = workdir / f"guidellm-{len(list(workdir.iterdir()))}.json"
    command = [
        str(GUIDELLM / "guidellm"),
        "run",
        "--backend",
        f"kind=openai_http,target={url.removesuffix('/v1')},model=mock-model",
        "--tokenizer",
        f"kind=huggingface_auto,model={workdir / 'tokenizer'}",
        "--profile",
        profile,
        "--constraint",
        constraint,
        "--data",
        f"kind=synthetic_text,prompt_tokens=16,output_tokens={TOKENS}",
        "--output",
        f"kind=json,path={out}",
        "--disable-progress",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(  # noqa: S603 - fixed argv, our own paths
        command, capture_output=True, text=True, timeout=600, env=env, check=False
    )
    if done.returncode != 0 or not out.exists():
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["?"]
        return {"error": f"guidellm exited {done.returncode}: {tail[0][:200]}"}
    bench = json.loads(out.read_text())["benchmarks"][0]
    ok = bench["requests"]["successful"]
    starts = sorted(r["request_start_time"] for r in ok)
    achieved = (len(starts) - 1) / (starts[-1] - starts[0]) if len(starts) > 1 else None
    return {
        "requests": sum(len(v) for v in bench["requests"].values() if isinstance(v, list)),
        "succeeded": len(ok),
        "ttft_error": error_stats([r["time_to_first_token_ms"] / 1e3 - TTFT_S for r in ok]),
        "itl_mean_per_request_error": error_stats(
            [
                r["inter_token_latency_ms"] / 1e3 - ITL_S
                for r in ok
                if r["inter_token_latency_ms"] is not None
            ]
        ),
        "achieved_rate": achieved,
        "tokens_exact": all(r["output_tokens"] == TOKENS for r in ok),
    }


def make_tokenizer(workdir: Path) -> None:
    # Fixed argv: GuideLLM's own venv python and our script, no shell.
    subprocess.run(  # noqa: S603
        [
            str(GUIDELLM / "python"),
            "-c",
            _TOKENIZER_SCRIPT,
            str(workdir / "tokenizer"),
        ],
        check=True,
        capture_output=True,
    )


def fmt(d: dict | None, key: str = "ttft_error") -> str:
    if not d or "error" in d:
        return (d or {}).get("error", "-")[:40]
    e = d.get(key) or {}
    if not e.get("count"):
        return "-"
    return f"p50 {e['p50_ms']:7.2f}  p99 {e['p99_ms']:7.2f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests")
    parser.add_argument("--no-guidellm", action="store_true")
    parser.add_argument("--server-workers", type=int, default=1, help="mock processes")
    parser.add_argument(
        "--mock-event-loop", choices=["asyncio", "uvloop", "auto"], default="asyncio"
    )
    parser.add_argument(
        "--client-event-loop", choices=["auto", "asyncio", "uvloop"], default="auto"
    )
    parser.add_argument("--client-workers", type=int, default=0, help="0: the engine picks")
    parser.add_argument("--repeat", type=int, default=3, help="runs of the c=256 point")
    parser.add_argument(
        "--only",
        choices=["concurrency", "constant_rate"],
        help="run one section and update it in the saved results",
    )
    args = parser.parse_args()
    skip = "skipped (--no-guidellm)" if args.no_guidellm else guidellm_available()
    scale = 0.25 if args.quick else 1.0
    plan = [
        (1, max(5, int(20 * scale))),
        (64, max(64, int(256 * scale))),
        *[(256, max(256, int(768 * scale)))] * max(1, args.repeat),
    ]
    client = {"event_loop": args.client_event_loop, "workers": args.client_workers}
    rates = [(20.0, 5.0), (100.0, 5.0), (200.0, 5.0)]
    results: dict = {
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "loadavg_before": os.getloadavg(),
        },
        "mock": {
            "ttft_s": TTFT_S,
            "itl_s": ITL_S,
            "output_tokens": TOKENS,
            "server_workers": args.server_workers,
            "event_loop": args.mock_event_loop,
        },
        "client": client,
        "concurrency": [],
        "constant_rate": [],
        "guidellm": skip or "ran",
    }
    if args.only:
        plan = plan if args.only == "concurrency" else []
        rates = rates if args.only == "constant_rate" else []
    with (
        tempfile.TemporaryDirectory() as tmp,
        running(
            "--ttft-ms",
            str(TTFT_S * 1e3),
            "--itl-ms",
            str(ITL_S * 1e3),
            "--output-tokens",
            str(TOKENS),
            "--usage",
            "on",
            "--workers",
            str(args.server_workers),
            "--event-loop",
            args.mock_event_loop,
        ) as url,
    ):
        workdir = Path(tmp)
        if not skip:
            make_tokenizer(workdir)
        done_points: set[int] = set()
        for concurrency, requests in plan:
            row = {
                "concurrency": concurrency,
                "requests": requests,
                "ours": ours_concurrency(url, concurrency, requests, client),
            }
            if not skip and concurrency not in done_points:  # GuideLLM once per point
                row["guidellm"] = guidellm_run(
                    url,
                    workdir,
                    f"kind=concurrent,streams={concurrency}",
                    f"kind=max_requests,count={requests}",
                )
            done_points.add(concurrency)
            results["concurrency"].append(row)
            print(
                f"c={concurrency:4d} TTFT err ms ours {fmt(row['ours'])} | "
                f"guidellm {fmt(row.get('guidellm'))}",
                flush=True,
            )
        for rate, duration in rates:
            row = {
                "rate": rate,
                "duration_s": duration,
                "ours": ours_rate(url, rate, duration, client),
            }
            if not skip:
                row["guidellm"] = guidellm_run(
                    url,
                    workdir,
                    f"kind=constant,rate={rate}",
                    f"kind=max_duration,seconds={duration}",
                )
            results["constant_rate"].append(row)
            print(
                f"rate={rate:5.0f}/s achieved ours {row['ours']['achieved_rate']:.2f}", flush=True
            )
    results["machine"]["loadavg_after"] = os.getloadavg()
    if args.only and RESULTS.exists():
        saved = json.loads(RESULTS.read_text())
        saved[args.only] = results[args.only]
        saved.setdefault("machine_per_section", {})[args.only] = results["machine"]
        results = saved
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    print_table(results)
    print(f"\nsaved {RESULTS.relative_to(ROOT)}")
    return 0


def spread_256(results: dict) -> None:
    """Every run of the c=256 point, so the spread is seen, not the best run."""
    runs = [row["ours"] for row in results["concurrency"] if row["concurrency"] == 256]
    if len(runs) < 2:
        return
    print(f"\nc=256 over {len(runs)} runs (min / median / max), milliseconds")
    for label, key, part in (
        ("ours TTFT error p50", "ttft_error", "p50_ms"),
        ("ours TTFT error p99", "ttft_error", "p99_ms"),
        ("ours ITL error p99", "itl_error", "p99_ms"),
    ):
        values = sorted(run[key][part] for run in runs)
        print(
            f"  {label:<28} {values[0]:7.2f} / {values[len(values) // 2]:7.2f} / {values[-1]:7.2f}"
        )
    values = sorted(run["server_lateness"]["first_token_late"]["p99_ms"] for run in runs)
    print(
        f"  {'mock first-token late p99':<28} {values[0]:7.2f} / "
        f"{values[len(values) // 2]:7.2f} / {values[-1]:7.2f}"
    )


def print_table(results: dict) -> None:
    print("\nClient error vs configured (TTFT 200 ms, 64 tokens, ITL 20 ms), milliseconds")
    print(
        f"{'conc':>5} | {'ours TTFT':>24} | {'ours ITL (each gap)':>24} | "
        f"{'ours ITL (req mean)':>24} | {'guidellm TTFT':>24} | {'guidellm ITL (req mean)':>24}"
    )
    for row in results["concurrency"]:
        g = row.get("guidellm")
        print(
            f"{row['concurrency']:>5} | {fmt(row['ours']):>24} | "
            f"{fmt(row['ours'], 'itl_error'):>24} | "
            f"{fmt(row['ours'], 'itl_mean_per_request_error'):>24} | "
            f"{fmt(g) if g else results['guidellm'][:24]:>24} | "
            f"{fmt(g, 'itl_mean_per_request_error') if g else '':>24}"
        )
        mock = row["ours"].get("server_lateness", {})
        late = mock.get("first_token_late", {})
        gaps = mock.get("later_tokens_late", {})
        wait = mock.get("request_read_wait", {})
        if late.get("count"):
            print(
                f"{'':>5}   mock wrote first tokens late by p50 {late['p50_ms']:.2f} "
                f"p99 {late['p99_ms']:.2f} ms, later tokens p99 {gaps.get('p99_ms', 0):.2f} "
                "(part of both columns); it read requests after p50 "
                f"{wait.get('p50_ms', 0):.1f} p99 {wait.get('p99_ms', 0):.1f} ms, "
                f"counted from receive times {mock.get('request_clock', 'read')}"
            )
            print(
                f"{'':>5}   ours ran on {row['ours'].get('event_loop', '?')} with "
                f"{row['ours']['workers']} worker(s), busiest at "
                f"{row['ours'].get('client_cpu_share') or 0:.0%} of a CPU, scheduling lag p99 "
                f"{row['ours']['scheduling_lag'].get('p99_ms', 0):.2f} ms"
            )
    spread_256(results)
    print("\nConstant rate: requested vs achieved send rate (req/s)")
    for row in results["constant_rate"]:
        ours = row["ours"]
        g = row.get("guidellm") or {}
        gtext = (
            f"{g['achieved_rate']:.2f}"
            if g.get("achieved_rate")
            else g.get("error", results["guidellm"])[:40]
        )
        print(
            f"{row['rate']:>7.1f} | ours {ours['achieved_rate'] or 0:8.2f} "
            f"({ours['achieved_ratio']:.1%}, lag p99 "
            f"{ours['scheduling_lag'].get('p99_ms', 0):.2f} ms) | guidellm {gtext}"
        )
    print(
        f"\nload average before {results['machine']['loadavg_before']}, "
        f"after {results['machine']['loadavg_after']}"
    )


if __name__ == "__main__":
    sys.exit(main())
