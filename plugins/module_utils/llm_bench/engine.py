"""The whole benchmark: validate, run, summarize, publish. Shared by the Ansible
module and the command-line tool so both behave the same."""

from __future__ import annotations

import json
import time

from . import config as config_mod
from . import prom, report, runner, stats

OUTPUT_DEFAULTS = {
    "output_dir": None,  # JSON, CSV and HTML files go here
    "output_name": None,  # file name stem; default llm-bench-<endpoint>-<utc time>
    "pushgateway_url": None,
    "pushgateway_job": "llm_benchmark",
    "pushgateway_instance": None,  # default: the host name(s)
    "pushgateway_ca_file": None,  # CA to verify an https Pushgateway with
    "pushgateway_username": None,  # basic auth (with pushgateway_password)
    "pushgateway_password": None,
    "textfile_path": None,  # node_exporter textfile collector file (*.prom)
    "state_file": None,  # keeps counters/histograms cumulative across runs
}


def check_outputs(outputs: dict) -> dict:
    unknown = set(outputs) - set(OUTPUT_DEFAULTS)
    if unknown:
        raise config_mod.ConfigError(f"unknown output settings: {', '.join(sorted(unknown))}")
    merged = {**OUTPUT_DEFAULTS, **{k: v for k, v in outputs.items() if v is not None}}
    path = merged["textfile_path"]
    if path and not path.endswith(".prom"):
        raise config_mod.ConfigError(
            f"textfile_path must end in .prom (node_exporter reads only those), got {path!r}"
        )
    url = merged["pushgateway_url"]
    if url and not url.startswith(("http://", "https://")):
        raise config_mod.ConfigError(f"pushgateway_url must be an http(s) URL, got {url!r}")
    if bool(merged["pushgateway_username"]) != bool(merged["pushgateway_password"]):
        raise config_mod.ConfigError(
            "pushgateway_username and pushgateway_password go together (basic auth)"
        )
    return merged


def failure(
    run: dict, summary: dict, fail_on_error_rate: float | None, allow_no_success: bool = False
) -> str | None:
    """Why this run counts as failed, or None. A run that measured nothing (no request
    succeeded) fails unless allow_no_success; fail_on_error_rate limits partial failure."""
    errors = summary["errors_by_type"]
    if not summary["succeeded"] and not allow_no_success:
        first = next((r["error"] for r in run["requests"] if r.get("error")), None)
        return (
            f"no request succeeded ({summary['requests']} sent, "
            f"{summary.get('not_sent', 0)} not sent): errors by type {errors}"
            + (f"; first error: {first}" if first else "")
        )
    if fail_on_error_rate is not None and summary["requests"]:
        rate = summary["failed"] / summary["requests"]
        if rate > fail_on_error_rate:
            return (
                f"error rate {rate:.1%} is above fail_on_error_rate "
                f"{fail_on_error_rate:.1%}: errors by type {errors}"
            )
    return None


def labels_of(cfg: dict) -> dict:
    return {"provider": cfg["provider"], "model": cfg["model"], "endpoint": cfg["endpoint"]}


def publish(run: dict, cfg: dict, outputs: dict) -> dict:
    """Summarize a (possibly merged) run and write every requested output."""
    summary = stats.summarize(
        run, cfg["goodput"], cfg["rate"] if cfg["mode"] != "concurrency" else None
    )
    published: dict = {}
    settings = config_mod.public(cfg)
    if outputs["output_dir"]:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(run["started_at"]))
        name = outputs["output_name"] or f"llm-bench-{cfg['endpoint']}-{stamp}"
        published["files"] = report.write_all(outputs["output_dir"], name, run, summary, settings)
    if outputs["pushgateway_url"] or outputs["textfile_path"]:
        labels = labels_of(cfg)
        state = prom.load_state(outputs["state_file"])
        prom.accumulate(state, run, labels)
        text = prom.exposition(state, summary, labels)
        if outputs["textfile_path"]:
            prom.write_atomic(outputs["textfile_path"], text)
            published["textfile"] = outputs["textfile_path"]
        if outputs["pushgateway_url"]:
            grouping = {
                "instance": outputs["pushgateway_instance"] or run["host"],
                "endpoint": cfg["endpoint"],
            }
            published["pushgateway"] = prom.push(
                outputs["pushgateway_url"],
                outputs["pushgateway_job"],
                grouping,
                text,
                validate_certs=cfg["validate_certs"],
                ca_file=outputs["pushgateway_ca_file"],
                username=outputs["pushgateway_username"],
                password=outputs["pushgateway_password"],
            )
        if outputs["state_file"]:
            prom.write_atomic(outputs["state_file"], json.dumps(state), mode=0o600)
    return {"summary": summary, "published": published}


def benchmark(
    raw: dict, outputs: dict | None = None, progress: runner.ProgressFn | None = None
) -> dict:
    """Validate, run, publish. Raises ConfigError before sending anything on bad input."""
    cfg = config_mod.validate(raw)
    outs = check_outputs(outputs or {})
    run = runner.run(cfg, progress)
    done = publish(run, cfg, outs)
    return {"settings": config_mod.public(cfg), "run": run, **done}
