#!/usr/bin/python
"""Ansible module: measure LLM serving latency (TTFT, ITL, TPOT, e2e) and publish it."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: llm_latency_benchmark
short_description: Benchmark the streaming latency of an LLM serving endpoint
version_added: "0.1.0"
description:
  - Sends streaming requests to an OpenAI-compatible (chat completions, completions) or
    Anthropic messages endpoint from the target host and measures, per request, time
    to first token (TTFT), every inter-token latency (ITL), time per output token
    (TPOT), end-to-end latency, token counts and their source, finish reason and error
    type; and the client's own scheduling lag, so a client bottleneck is visible.
  - "Definitions: TTFT is request sent to the first chunk carrying generated content (a
    role-only chunk does not count); ITL are the gaps between content chunks; TPOT is
    (e2e - TTFT) / (output tokens - 1); e2e is request sent to the last content chunk.
    Token counts are exact whenever an exact source exists, in this order: the
    server's usage (requested with C(stream_options.include_usage)); the tokenizer
    named by I(tokenizer_file) (prompt tokens include its chat template); the
    server's tokenize endpoint (vLLM, llama.cpp; I(tokenize_api)). Only without any
    of them they are estimated (4 characters a token). Each request's source is
    reported (C(usage), C(tokenizer), C(tokenize_endpoint), C(estimate)) in the
    results, the files and the C(token_count_source) label of the token metrics. A
    stream that ends without a finish reason is an C(incomplete_stream) error; a
    complete non-streaming answer is a C(not_event_stream) error naming its content
    type."
  - Load is a fixed concurrency, a constant rate or a Poisson rate, for a number of
    requests or a duration, after unmeasured warm-up requests. The run is spread over
    worker processes when it needs more than one CPU. Every request has a timeout and
    the run as a whole never outlives I(max_run_s).
  - Results can be written as JSON, CSV and a self-contained HTML report, and as
    Prometheus metrics (names and buckets of the llm-latency-overview dashboard) pushed
    to a Pushgateway or written for node_exporter's textfile collector.
  - Several hosts can run the same benchmark at once; a second call with I(merge) (run
    once) merges their raw samples and computes percentiles from the merged data.
  - The engine needs only the Python 3.11 standard library on the target.
author:
  - llmops maintainers (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Sends nothing, writes nothing and returns the plan of the run.
  diff_mode:
    support: none
    details: The result files are new for every run; there is nothing to compare.
  platform:
    support: full
    platforms: posix
options:
  api:
    description: Which streaming API the endpoint speaks.
    type: str
    choices: [openai_chat, openai_completions, anthropic_messages]
    default: openai_chat
  base_url:
    description:
      - Base URL as the vendors' SDKs take it. For the OpenAI APIs it includes C(/v1)
        (C(http://host:8000/v1)); for Anthropic it does not (C(https://api.anthropic.com)).
      - Required unless I(merge) is given.
    type: str
  endpoint_path:
    description: Path appended to I(base_url); defaults to the API's usual path.
    type: str
  model:
    description: Model name sent in the request body. Required unless I(merge) is given.
    type: str
  api_key:
    description: API key (Bearer token, or C(x-api-key) for Anthropic). Never logged.
    type: str
  headers:
    description: Extra request headers. Hidden from logs, as they often carry tokens.
    type: dict
    default: {}
  extra_body:
    description: Extra request body fields passed through, e.g. C(min_tokens), C(ignore_eos).
    type: dict
    default: {}
  validate_certs:
    description: Verify the server's TLS certificate.
    type: bool
    default: true
  ca_file:
    description: CA bundle to verify the server with.
    type: path
  include_usage:
    description: Ask OpenAI-compatible servers for usage (exact token counts) in the stream.
    type: bool
    default: true
  prompts:
    description: Prompts to cycle through. Exactly one of I(prompts), I(prompts_file),
      I(synthetic_prompt_tokens).
    type: list
    elements: str
  prompts_file:
    description: JSONL file on the target; each line a string or an object with C(prompt).
    type: path
  synthetic_prompt_tokens:
    description: Generate distinct prompts of about this many tokens.
    type: int
  max_tokens:
    description: Output token limit per request.
    type: int
    default: 128
  mode:
    description: Load model.
    type: str
    choices: [concurrency, constant, poisson]
    default: concurrency
  concurrency:
    description: Requests in flight at once (mode C(concurrency)).
    type: int
    default: 1
  rate:
    description: Requests per second (modes C(constant) and C(poisson)).
    type: float
  num_requests:
    description: Measured requests. Exactly one of I(num_requests) and I(duration_s).
    type: int
  duration_s:
    description: Send measured requests for this many seconds.
    type: float
  warmup_requests:
    description: Unmeasured requests sent first (they also open the connections).
    type: int
    default: 0
  request_timeout_s:
    description: Deadline of one request, from its start to the end of its stream.
    type: float
    default: 60
  max_run_s:
    description: Deadline of the measured phase; requests still running then are
      stopped and reported as C(deadline) errors. Default is I(duration_s) plus
      I(request_timeout_s) plus 5 seconds, or 600 seconds.
    type: float
  workers:
    description: Worker processes; C(0) picks one per 32 streams (or 50 req/s), at most
      one per CPU.
    type: int
    default: 0
  event_loop:
    description:
      - Event loop of the client. C(auto) uses uvloop when the host has it installed
        (less client overhead per chunk at high concurrency), the standard library's
        asyncio otherwise; C(uvloop) fails when it is not installed.
      - The loop that ran is returned as RV(summary.event_loop).
    type: str
    choices: [auto, asyncio, uvloop]
    default: auto
  seed:
    description: Seed of synthetic prompts and Poisson arrival times.
    type: int
    default: 0
  goodput:
    description: Limits a request must meet to count for goodput, keys C(ttft_s),
      C(tpot_s), C(e2e_s) (seconds).
    type: dict
    default: {}
  provider:
    description: Value of the C(provider) label of the metrics.
    type: str
    default: openai
  endpoint:
    description: Name of this endpoint; the C(endpoint) label of the metrics and part of
      the file names.
    type: str
    default: default
  output_dir:
    description: Write C(<name>.json), C(<name>.csv) and C(<name>.html) here (created if needed).
    type: path
  output_name:
    description: File name stem of the result files.
    type: str
  pushgateway_url:
    description: Push the metrics to this Pushgateway (C(https://host:9091)).
    type: str
  pushgateway_job:
    description: Pushgateway job name.
    type: str
    default: llm_benchmark
  pushgateway_instance:
    description: Pushgateway C(instance) grouping label; default the host name(s).
    type: str
  pushgateway_ca_file:
    description: CA bundle to verify an https Pushgateway with (default the system's).
    type: path
  pushgateway_username:
    description: Basic auth user for the Pushgateway (with I(pushgateway_password)).
    type: str
  pushgateway_password:
    description: Basic auth password for the Pushgateway. Hidden from logs.
    type: str
  textfile_path:
    description: Write the metrics atomically to this C(.prom) file for node_exporter.
    type: path
  state_file:
    description: Keep counters and histograms cumulative across runs in this file, so
      C(rate()) over the pushed series works like over any exporter's.
    type: path
  return_samples:
    description: Return the raw per-request samples (needed by a later I(merge)).
    type: bool
    default: false
  merge:
    description:
      - Results registered from this module on several hosts (each run with
        I(return_samples=true)). The module sends nothing; it merges the raw samples,
        computes the summary from them and writes the outputs. Run it once.
    type: list
    elements: dict
  fail_on_error_rate:
    description: Fail the task when the share of failed requests is above this (0-1).
    type: float
  allow_no_success:
    description:
      - A run in which no request succeeded fails the task (after its results are
        published), with the error counts by type in the message. C(true) returns it
        as a success instead.
    type: bool
    default: false
  tokenizer_file:
    description:
      - A local C(tokenizer.json) (or the folder holding it) of the served model, for
        exact token counts when the server sends no usage. Read with the Python
        package C(tokenizers) on the target; never downloaded. A
        C(tokenizer_config.json) beside it with a C(chat_template) makes prompt
        tokens include the template (needs C(jinja2)).
    type: path
  tokenize_api:
    description:
      - The server's tokenize endpoint, asked after the run for the texts the server
        gave no usage for and I(tokenizer_file) did not count. C(auto) tries vLLM's
        then llama.cpp's C(/tokenize) at the root of I(base_url) (without C(/v1));
        C(none) never asks.
    type: str
    choices: [auto, vllm, llamacpp, none]
    default: auto
notes:
  - The client honours C(HTTPS_PROXY), C(HTTP_PROXY) and C(NO_PROXY) of the target's
    environment (https through a C(CONNECT) tunnel); set them with the task's
    C(environment) keyword.
  - Concurrency above 4096, a rate above 5000/s, or more streams per worker than the
    open-file limit (C(RLIMIT_NOFILE)) allows are refused before anything is sent.
  - Latency statistics describe successful requests; failures are counted by type
    (C(http_<status>), C(timeout), C(connection), C(tls), C(incomplete_stream), C(not_event_stream),
    C(malformed_chunk), C(malformed_response), C(stream_error), C(deadline)).
  - Timings use the monotonic clock only; wall-clock time is kept for display.
"""

EXAMPLES = r"""
- name: Measure a vLLM endpoint at 64 concurrent streams
  llmops.registry.llm_latency_benchmark:
    base_url: http://10.0.0.5:8000/v1
    model: meta-llama/Llama-3.1-8B-Instruct
    api_key: "{{ vault_llm_api_key }}"
    synthetic_prompt_tokens: 512
    max_tokens: 128
    extra_body:
      min_tokens: 128
      ignore_eos: true
    concurrency: 64
    num_requests: 640
    warmup_requests: 64
    goodput:
      ttft_s: 0.5
      tpot_s: 0.05
    output_dir: /var/lib/llm-bench/results
    pushgateway_url: https://monitor-1:9091
    pushgateway_ca_file: /etc/llmops/tls/ca.crt
    pushgateway_username: monitoring
    pushgateway_password: "{{ vault_monitoring_web_password }}"
    provider: vllm
    endpoint: gpu-east
  register: bench

- name: Constant rate for two minutes against Anthropic
  llmops.registry.llm_latency_benchmark:
    api: anthropic_messages
    base_url: https://api.anthropic.com
    model: claude-3-5-haiku-latest
    api_key: "{{ vault_anthropic_key }}"
    prompts_file: /etc/llm-bench/prompts.jsonl
    mode: constant
    rate: 2
    duration_s: 120
    provider: anthropic

- name: Every bench host runs its share, raw samples returned
  llmops.registry.llm_latency_benchmark:
    base_url: "{{ llm_url }}"
    model: "{{ llm_model }}"
    synthetic_prompt_tokens: 256
    concurrency: 32
    duration_s: 60
    return_samples: true
  register: part

- name: Merge the hosts' samples once and publish
  llmops.registry.llm_latency_benchmark:
    merge: "{{ ansible_play_hosts | map('extract', hostvars, 'part') | list }}"
    pushgateway_url: http://monitor-1:9091
    output_dir: /var/lib/llm-bench/results
  run_once: true
"""

RETURN = r"""
summary:
  description: Request counts, errors by type, distributions (count, mean, min, max, std,
    p50, p90, p95, p99, p99_9) of ttft_s, itl_s, tpot_s, e2e_s and scheduling_lag_s,
    throughput, token totals, how they were counted (output_tokens_source and
    input_tokens_source - usage, tokenizer, tokenize_endpoint, estimate, comma-separated
    when requests differed) and whether they are approximate, achieved send rate, goodput,
    client_cpu_share (the busiest client worker's CPU share while measuring; near 1.0
    means the client itself may set the pace) and event_loop (C(uvloop) or C(asyncio),
    the loop the client ran on).
  returned: success, not in check mode
  type: dict
  sample:
    requests: 640
    succeeded: 638
    errors_by_type: {timeout: 2}
    ttft_s: {count: 638, p50: 0.21, p99: 0.48}
  contains:
    event_loop:
      description: The event loop the client ran on.
      returned: success, not in check mode
      type: str
      sample: uvloop
plan:
  description: What the run does (mode, planned requests, workers, the event loop the
    client will run on, deadlines).
  returned: always except with merge
  type: dict
  sample:
    mode: concurrency
    planned_requests: 640
    workers: 2
    event_loop: uvloop
    run_deadline_s: 600
published:
  description: Paths of the result files, the textfile and the Pushgateway group URL.
  returned: success
  type: dict
  sample: {files: {json: /var/lib/llm-bench/results/r.json}, pushgateway: http://m:9091/metrics/job/llm_benchmark/instance/b1}
run:
  description: Raw run with per-request samples (send time, lag, TTFT, every ITL, e2e,
    tokens and source, finish reason, error type).
  returned: when return_samples is true
  type: dict
settings:
  description: The settings used, API key and header values hidden.
  returned: success
  type: dict
host:
  description: Host name(s) the samples come from.
  returned: success
  type: str
"""

# Ansible modules keep their imports after the documentation strings.
from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.llmops.registry.plugins.module_utils.llm_bench import (  # noqa: E402
    config as config_mod,
)
from ansible_collections.llmops.registry.plugins.module_utils.llm_bench import (  # noqa: E402
    engine,
    loops,
    runner,
    stats,
)

OUTPUT_KEYS = tuple(engine.OUTPUT_DEFAULTS)
ARGUMENT_SPEC = {
    "api": {"type": "str", "default": "openai_chat", "choices": list(config_mod.APIS)},
    "base_url": {"type": "str"},
    "endpoint_path": {"type": "str"},
    "model": {"type": "str"},
    "api_key": {"type": "str", "no_log": True},
    "headers": {"type": "dict", "default": {}, "no_log": True},
    "extra_body": {"type": "dict", "default": {}},
    "validate_certs": {"type": "bool", "default": True},
    "ca_file": {"type": "path"},
    "include_usage": {"type": "bool", "default": True},
    "prompts": {"type": "list", "elements": "str"},
    "prompts_file": {"type": "path"},
    "synthetic_prompt_tokens": {"type": "int", "no_log": False},  # a count
    "max_tokens": {"type": "int", "default": 128, "no_log": False},  # a count, not a token secret
    "mode": {"type": "str", "default": "concurrency", "choices": list(config_mod.MODES)},
    "concurrency": {"type": "int", "default": 1},
    "rate": {"type": "float"},
    "num_requests": {"type": "int"},
    "duration_s": {"type": "float"},
    "warmup_requests": {"type": "int", "default": 0},
    "request_timeout_s": {"type": "float", "default": 60.0},
    "max_run_s": {"type": "float"},
    "workers": {"type": "int", "default": 0},
    "event_loop": {"type": "str", "default": "auto", "choices": list(loops.CHOICES)},
    "seed": {"type": "int", "default": 0},
    "goodput": {"type": "dict", "default": {}},
    "provider": {"type": "str", "default": "openai"},
    "endpoint": {"type": "str", "default": "default"},
    "output_dir": {"type": "path"},
    "output_name": {"type": "str"},
    "pushgateway_url": {"type": "str"},
    "pushgateway_job": {"type": "str", "default": "llm_benchmark"},
    "pushgateway_instance": {"type": "str"},
    "pushgateway_ca_file": {"type": "path"},
    "pushgateway_username": {"type": "str"},
    "pushgateway_password": {"type": "str", "no_log": True},
    "textfile_path": {"type": "path"},
    "state_file": {"type": "path"},
    "return_samples": {"type": "bool", "default": False},
    "merge": {"type": "list", "elements": "dict"},
    "fail_on_error_rate": {"type": "float"},
    "allow_no_success": {"type": "bool", "default": False},
    "tokenizer_file": {"type": "path"},
    "tokenize_api": {"type": "str", "default": "auto", "choices": list(config_mod.TOKENIZE_APIS)},
}
NOT_ENGINE = {"return_samples", "merge", "fail_on_error_rate", "allow_no_success", *OUTPUT_KEYS}


def _error_rate_check(module: AnsibleModule, run: dict, summary: dict, result: dict) -> None:
    """Fail (after publishing, so the errors reach Prometheus) a run that measured
    nothing, or whose error rate is above fail_on_error_rate."""
    why = engine.failure(
        run, summary, module.params["fail_on_error_rate"], module.params["allow_no_success"]
    )
    if why:
        module.fail_json(msg=why, **result)


def _merge(module: AnsibleModule, outputs: dict) -> None:
    parts = module.params["merge"]
    runs, settings = [], None
    for number, part in enumerate(parts):
        if "run" not in part or "settings" not in part:
            module.fail_json(
                msg=f"merge item {number} has no 'run'/'settings': register "
                "the per-host task and run it with return_samples: true"
            )
        runs.append(part["run"])
        settings = settings or part["settings"]
    try:
        merged = stats.merge(runs)
    except ValueError as exc:
        module.fail_json(msg=f"cannot merge: {exc}")
    # the settings come from our own per-host results (keys already hidden)
    cfg = {**config_mod.DEFAULTS, **{k: v for k, v in settings.items() if k in config_mod.DEFAULTS}}
    if module.check_mode:
        summary = stats.summarize(merged, cfg["goodput"])
        module.exit_json(changed=False, summary=summary, published={}, host=merged["host"])
    try:
        done = engine.publish(merged, cfg, outputs)
    except (OSError, RuntimeError, ValueError) as exc:
        module.fail_json(msg=f"merged results could not be published: {exc}")
    result = {
        "changed": bool(done["published"]),
        "summary": done["summary"],
        "published": done["published"],
        "host": merged["host"],
        "settings": config_mod.public(cfg),
    }
    if module.params["return_samples"]:
        result["run"] = merged
    _error_rate_check(module, merged, done["summary"], result)
    module.exit_json(**result)


def main() -> None:
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        supports_check_mode=True,
        mutually_exclusive=[
            ("prompts", "prompts_file", "synthetic_prompt_tokens"),
            ("num_requests", "duration_s"),
        ],
    )
    params = module.params
    try:
        outputs = engine.check_outputs({k: params[k] for k in OUTPUT_KEYS})
    except config_mod.ConfigError as exc:
        module.fail_json(msg=str(exc))
    if params["merge"] is not None:
        _merge(module, outputs)
        return
    raw = {k: v for k, v in params.items() if k not in NOT_ENGINE}
    try:
        cfg = config_mod.validate(raw)
        plan = runner.plan(cfg)
    except config_mod.ConfigError as exc:
        module.fail_json(msg=str(exc))
    if module.check_mode:
        module.exit_json(changed=False, plan=plan, settings=config_mod.public(cfg))
    try:
        run = runner.run(cfg)
    except config_mod.ConfigError as exc:
        module.fail_json(msg=str(exc), plan=plan)
    except (OSError, RuntimeError) as exc:
        module.fail_json(msg=f"benchmark failed: {exc}", plan=plan)
    try:
        done = engine.publish(run, cfg, outputs)
    except (OSError, RuntimeError, ValueError) as exc:
        module.fail_json(
            msg=f"results could not be published: {exc}",
            plan=plan,
            summary=stats.summarize(run, cfg["goodput"]),
        )
    result = {
        "changed": bool(done["published"]),
        "plan": plan,
        "summary": done["summary"],
        "published": done["published"],
        "host": run["host"],
        "settings": config_mod.public(cfg),
    }
    if params["return_samples"]:
        result["run"] = run
    _error_rate_check(module, run, done["summary"], result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
