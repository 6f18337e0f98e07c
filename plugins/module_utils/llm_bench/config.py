"""Benchmark settings: one validated dict shared by the Ansible module and the CLI.

Validation happens before anything is sent, and every error names the setting.
"""

from __future__ import annotations

import math
from urllib.parse import urlsplit

from . import loops

APIS = {
    # api name: (default path appended to base_url, as the vendors' SDKs do)
    "openai_chat": "/chat/completions",
    "openai_completions": "/completions",
    "anthropic_messages": "/v1/messages",
}
MODES = ("concurrency", "constant", "poisson")

DEFAULTS = {
    "api": "openai_chat",
    "base_url": None,
    "endpoint_path": None,
    "model": None,
    "api_key": None,
    "headers": {},
    "extra_body": {},
    "validate_certs": True,
    "ca_file": None,
    "include_usage": True,
    "prompts": None,
    "prompts_file": None,
    "synthetic_prompt_tokens": None,
    "max_tokens": 128,
    "mode": "concurrency",
    "concurrency": 1,
    "rate": None,
    "num_requests": None,
    "duration_s": None,
    "warmup_requests": 0,
    "request_timeout_s": 60.0,
    "max_run_s": None,
    "workers": 0,
    "event_loop": "auto",
    "seed": 0,
    "goodput": {},
    "provider": "openai",
    "endpoint": "default",
    "tokenizer_file": None,
    "tokenize_api": "auto",
}
TOKENIZE_APIS = ("auto", "vllm", "llamacpp", "none")
# Far above what one client host can drive well (the client opens one connection per
# stream); a larger figure is almost always a typo.
MAX_CONCURRENCY = 4096
MAX_RATE = 5000.0
GOODPUT_KEYS = ("ttft_s", "tpot_s", "e2e_s")
MAX_WORKERS = 64


class ConfigError(ValueError):
    """A setting is missing or wrong; the message names it."""


def _positive(cfg: dict, key: str, kind: type, allow_zero: bool = False) -> None:
    value = cfg[key]
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{key} must be a number, got {value!r}")
    if kind is int and int(value) != value:
        raise ConfigError(f"{key} must be a whole number, got {value!r}")
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{key} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    cfg[key] = kind(value)


def _check_url(cfg: dict) -> None:
    url = cfg["base_url"]
    if not url or not isinstance(url, str):
        raise ConfigError("base_url is required (e.g. http://127.0.0.1:8000/v1)")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"base_url must be an http:// or https:// URL, got {url!r}")
    try:
        _unused = parts.port
    except ValueError as exc:
        raise ConfigError(f"base_url has a bad port: {url!r}") from exc


def _check_prompts(cfg: dict) -> None:
    sources = [
        k
        for k in ("prompts", "prompts_file", "synthetic_prompt_tokens")
        if cfg[k] not in (None, [], "")
    ]
    if len(sources) != 1:
        raise ConfigError(
            "give exactly one of prompts, prompts_file, "
            f"synthetic_prompt_tokens (got {sources or 'none'})"
        )
    if cfg["prompts"] is not None and (
        not isinstance(cfg["prompts"], list)
        or not all(isinstance(p, str) and p for p in cfg["prompts"])
    ):
        raise ConfigError("prompts must be a list of non-empty strings")
    _positive(cfg, "synthetic_prompt_tokens", int)


def _check_load(cfg: dict) -> None:
    if cfg["mode"] not in MODES:
        raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {cfg['mode']!r}")
    if (cfg["num_requests"] is None) == (cfg["duration_s"] is None):
        raise ConfigError("give exactly one of num_requests and duration_s")
    for key, kind in (
        ("num_requests", int),
        ("duration_s", float),
        ("concurrency", int),
        ("rate", float),
        ("request_timeout_s", float),
        ("max_run_s", float),
        ("max_tokens", int),
    ):
        _positive(cfg, key, kind)
    _positive(cfg, "warmup_requests", int, allow_zero=True)
    _positive(cfg, "workers", int, allow_zero=True)
    if cfg["workers"] > MAX_WORKERS:
        raise ConfigError(f"workers must be <= {MAX_WORKERS}, got {cfg['workers']}")
    if cfg["event_loop"] not in loops.CHOICES:
        raise ConfigError(
            f"event_loop must be one of {', '.join(loops.CHOICES)}, got {cfg['event_loop']!r}"
        )
    if cfg["event_loop"] == "uvloop" and not loops.uvloop_installed():
        raise ConfigError("event_loop uvloop: the uvloop package is not installed on this host")
    if cfg["mode"] == "concurrency" and not cfg["concurrency"]:
        raise ConfigError("mode concurrency needs concurrency > 0")
    if cfg["concurrency"] > MAX_CONCURRENCY:
        raise ConfigError(
            f"concurrency {cfg['concurrency']} is above the sane maximum {MAX_CONCURRENCY} "
            "for one client host (one connection per stream): run several bench hosts"
        )
    if cfg["rate"] is not None and cfg["rate"] > MAX_RATE:
        raise ConfigError(f"rate {cfg['rate']:g}/s is above the sane maximum {MAX_RATE:g}/s")
    if cfg["mode"] != "concurrency" and cfg["rate"] is None:
        raise ConfigError(f"mode {cfg['mode']} needs rate (requests per second)")


def validate(raw: dict) -> dict:
    """Return a complete settings dict with defaults applied, or raise ConfigError."""
    unknown = set(raw) - set(DEFAULTS)
    if unknown:
        raise ConfigError(f"unknown settings: {', '.join(sorted(unknown))}")
    cfg = {**DEFAULTS, **{k: v for k, v in raw.items() if v is not None}}
    if cfg["api"] not in APIS:
        raise ConfigError(f"api must be one of {', '.join(APIS)}, got {cfg['api']!r}")
    _check_url(cfg)
    if not cfg["model"] or not isinstance(cfg["model"], str):
        raise ConfigError("model is required")
    for key in ("headers", "extra_body", "goodput"):
        if not isinstance(cfg[key], dict):
            raise ConfigError(f"{key} must be a mapping")
    if any(not isinstance(v, str) for v in cfg["headers"].values()):
        raise ConfigError("headers values must be strings")
    bad = set(cfg["goodput"]) - set(GOODPUT_KEYS)
    if bad:
        raise ConfigError(
            f"goodput keys must be among {', '.join(GOODPUT_KEYS)}: "
            f"unknown {', '.join(sorted(bad))}"
        )
    for key, value in cfg["goodput"].items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ConfigError(f"goodput.{key} must be a positive number of seconds")
    _check_prompts(cfg)
    _check_load(cfg)
    if cfg["tokenize_api"] not in TOKENIZE_APIS:
        raise ConfigError(
            f"tokenize_api must be one of {', '.join(TOKENIZE_APIS)}, got {cfg['tokenize_api']!r}"
        )
    if cfg["tokenizer_file"] is not None and not isinstance(cfg["tokenizer_file"], str):
        raise ConfigError("tokenizer_file must be a path")
    if cfg["endpoint_path"] is None:
        cfg["endpoint_path"] = APIS[cfg["api"]]
    return cfg


def run_deadline_s(cfg: dict) -> float:
    """The whole run ends by this many seconds after it starts, whatever happens."""
    if cfg["max_run_s"]:
        return cfg["max_run_s"]
    if cfg["duration_s"]:
        return cfg["duration_s"] + cfg["request_timeout_s"] + 5
    return 600.0


def public(cfg: dict) -> dict:
    """Settings safe to print or return: the key and header values are hidden."""
    shown = dict(cfg)
    if shown.get("api_key"):
        shown["api_key"] = "********"
    shown["headers"] = {k: "********" for k in cfg.get("headers", {})}
    shown.pop("prompts", None)
    return shown
