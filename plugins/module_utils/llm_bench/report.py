"""Result files: JSON (everything), CSV (one row per request) and a self-contained
HTML report with inline SVG plots (no scripts, no CDN)."""

from __future__ import annotations

import csv
import html
import io
import json
import math
import os
import time

from .prom import write_atomic

CSV_FIELDS = (
    "host",
    "worker",
    "index",
    "wall_time",
    "planned_offset_s",
    "send_offset_s",
    "lag_s",
    "connect_s",
    "ttft_s",
    "e2e_s",
    "tpot_s",
    "itl_count",
    "itl_mean_s",
    "itl_max_s",
    "content_chunks",
    "input_tokens",
    "input_tokens_source",
    "output_tokens",
    "output_tokens_source",
    "finish_reason",
    "http_status",
    "error_type",
    "error",
)


def to_csv(run: dict) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, extrasaction="ignore")
    writer.writeheader()
    for record in run["requests"]:
        itl = record["itl_s"]
        row = dict(
            record,
            itl_count=len(itl),
            itl_mean_s=sum(itl) / len(itl) if itl else None,
            itl_max_s=max(itl) if itl else None,
        )
        writer.writerow(row)
    return buffer.getvalue()


def _histogram_svg(title: str, values: list[float], bins: int = 40) -> str:
    width, height, pad = 560, 220, 36
    if not values:
        return f"<figure><figcaption>{html.escape(title)}: no samples</figcaption></figure>"
    low, high = min(values), max(values)
    span = (high - low) or max(abs(high) * 0.01, 1e-6)
    counts = [0] * bins
    for value in values:
        counts[min(int((value - low) / span * bins), bins - 1)] += 1
    top = max(counts)
    bar_w = (width - 2 * pad) / bins
    bars = []
    for i, count in enumerate(counts):
        h = (height - 2 * pad) * count / top
        bars.append(
            f'<rect x="{pad + i * bar_w:.1f}" y="{height - pad - h:.1f}" '
            f'width="{max(bar_w - 1, 1):.1f}" height="{h:.1f}" fill="#4a78b0">'
            f"<title>{low + i * span / bins:.4f}s: {count}</title></rect>"
        )
    axis = (
        f'<text x="{pad}" y="{height - 10}" font-size="11">{low * 1000:.2f} ms</text>'
        f'<text x="{width - pad}" y="{height - 10}" font-size="11" text-anchor="end">'
        f"{high * 1000:.2f} ms</text>"
        f'<text x="{pad}" y="{pad - 8}" font-size="11">max bin {top}</text>'
    )
    return (
        f"<figure><figcaption>{html.escape(title)} ({len(values)} samples)</figcaption>"
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">'
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" '
        f'stroke="#333"/>{"".join(bars)}{axis}</svg></figure>'
    )


def _scatter_svg(title: str, points: list[tuple[float, float]]) -> str:
    width, height, pad = 1140, 260, 40
    if not points:
        return f"<figure><figcaption>{html.escape(title)}: no samples</figcaption></figure>"
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    x0, x1 = min(xs), max(xs)
    y1 = max(ys) or 1e-6
    xspan = (x1 - x0) or 1.0
    dots = "".join(
        f'<circle cx="{pad + (x - x0) / xspan * (width - 2 * pad):.1f}" '
        f'cy="{height - pad - y / y1 * (height - 2 * pad):.1f}" r="2" fill="#c0504d"/>'
        for x, y in points
    )
    axis = (
        f'<text x="{pad}" y="{height - 12}" font-size="11">{x0:.1f} s</text>'
        f'<text x="{width - pad}" y="{height - 12}" font-size="11" text-anchor="end">'
        f"{x1:.1f} s</text>"
        f'<text x="4" y="{pad - 10}" font-size="11">{y1 * 1000:.1f} ms</text>'
    )
    return (
        f"<figure><figcaption>{html.escape(title)}</figcaption>"
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">'
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" '
        f'stroke="#333"/><line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" '
        f'stroke="#333"/>{dots}{axis}</svg></figure>'
    )


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.6g}"
    return html.escape(str(value))


def to_html(run: dict, summary: dict, settings: dict) -> str:
    ok = [r for r in run["requests"] if r["error_type"] is None]
    rows = []
    for metric in ("ttft_s", "itl_s", "tpot_s", "e2e_s", "scheduling_lag_s"):
        d = summary[metric]
        cells = "".join(
            f"<td>{_fmt(d[k] * 1000) if k in d else '-'}</td>"
            for k in ("mean", "min", "p50", "p90", "p95", "p99", "p99_9", "max")
        )
        rows.append(f"<tr><th>{metric}</th><td>{d['count']}</td>{cells}</tr>")
    facts = {k: v for k, v in summary.items() if not isinstance(v, dict)}
    facts["errors_by_type"] = json.dumps(summary["errors_by_type"])
    if "goodput" in summary:
        facts["goodput_requests_per_s"] = summary["goodput"]["requests_per_s"]
    fact_rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{_fmt(v)}</td></tr>" for k, v in facts.items()
    )
    setting_rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{_fmt(v)}</td></tr>" for k, v in settings.items()
    )
    plots = [
        _histogram_svg("TTFT distribution", [r["ttft_s"] for r in ok]),
        _histogram_svg("ITL distribution", [g for r in ok for g in r["itl_s"]]),
        _histogram_svg("TPOT distribution", [r["tpot_s"] for r in ok if r["tpot_s"]]),
        _histogram_svg("End-to-end latency distribution", [r["e2e_s"] for r in ok]),
        _scatter_svg(
            "TTFT over time (x: send time since start, y: TTFT)",
            [(r["send_offset_s"], r["ttft_s"]) for r in ok],
        ),
    ]
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(run.get("started_at", 0)))
    counted = (
        f"Output tokens: {html.escape(str(summary.get('output_tokens_source')))}; "
        f"prompt tokens: {html.escape(str(summary.get('input_tokens_source')))}."
    )
    if summary.get("output_tokens_approximate") or summary.get("input_tokens_approximate"):
        counted += (
            " <strong>Token counts marked estimate are approximate (4 characters a "
            "token): no usage, tokenizer or tokenize endpoint was available.</strong>"
        )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>LLM latency benchmark</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 8px;text-align:right}}th{{text-align:left}}
figure{{display:inline-block;margin:1em}}</style></head><body>
<h1>LLM latency benchmark</h1>
<p>Host(s) {html.escape(str(run.get("host")))}, started {started}.
Latencies of successful requests, in milliseconds. {counted}</p>
<table><tr><th>metric</th><th>n</th><th>mean</th><th>min</th><th>p50</th><th>p90</th>
<th>p95</th><th>p99</th><th>p99.9</th><th>max</th></tr>{"".join(rows)}</table>
<h2>Plots</h2>{"".join(plots)}
<h2>Summary</h2><table>{fact_rows}</table>
<h2>Settings</h2><table>{setting_rows}</table>
</body></html>
"""


def write_all(folder: str, name: str, run: dict, summary: dict, settings: dict) -> dict:
    """Write <name>.json, <name>.csv and <name>.html into folder; returns the paths."""
    os.makedirs(folder, exist_ok=True)
    paths = {kind: os.path.join(folder, f"{name}.{kind}") for kind in ("json", "csv", "html")}
    document = {"settings": settings, "summary": summary, "run": run}
    write_atomic(paths["json"], json.dumps(document, indent=1, default=str) + "\n")
    write_atomic(paths["csv"], to_csv(run))
    write_atomic(paths["html"], to_html(run, summary, settings))
    return paths
