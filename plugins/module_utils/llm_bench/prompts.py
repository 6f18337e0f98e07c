"""Prompt sources: a list, a JSONL file, or synthetic prompts of a given token length."""

from __future__ import annotations

import json
import math
import random

from .config import ConfigError

# Short common words: each is one token in the usual BPE vocabularies (with its
# leading space), so N words make a prompt of about N tokens.
_WORDS = tuple(
    "the of and to in is you that it he was for on are as with his they at be "  # noqa: SIM905 - reads better as one string
    "this have from or one had by word but not what all were we when your can said "
    "there use an each which she do how their if will up other about out many then "
    "them these so some her would make like him into time has look two more write "
    "go see number no way could people my than first water been call who its now "
    "find long down day did get come made may part".split()
)


def approx_tokens(text: str) -> int:
    """Token estimate when the server sends no usage: about 4 characters a token."""
    return math.ceil(len(text) / 4) if text else 0


def synthetic(count: int, tokens: int, seed: int) -> list[str]:
    """``count`` distinct prompts of ``tokens`` words; the number up front defeats
    prefix caching between requests."""
    rng = random.Random(seed)  # noqa: S311 - prompt text, not security
    prompts = []
    for i in range(count):
        words = [rng.choice(_WORDS) for _attempt in range(max(tokens - 1, 0))]
        prompts.append(" ".join([str(i), *words]))
    return prompts


def from_file(path: str) -> list[str]:
    """JSONL: each line a JSON string or an object with a ``prompt`` (or ``text``) field."""
    prompts = []
    try:
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    item = json.loads(line)
                except ValueError as exc:
                    raise ConfigError(f"prompts_file {path} line {number}: not JSON") from exc
                if isinstance(item, dict):
                    item = item.get("prompt", item.get("text"))
                if not isinstance(item, str) or not item:
                    raise ConfigError(
                        f"prompts_file {path} line {number}: needs a string "
                        "or an object with a 'prompt' string"
                    )
                prompts.append(item)
    except OSError as exc:
        raise ConfigError(f"prompts_file {path}: {exc.strerror}") from exc
    if not prompts:
        raise ConfigError(f"prompts_file {path} holds no prompts")
    return prompts


def load(cfg: dict, count: int) -> list[str]:
    """The prompts of a run; requests cycle through them by index."""
    if cfg["prompts"]:
        return list(cfg["prompts"])
    if cfg["prompts_file"]:
        return from_file(cfg["prompts_file"])
    return synthetic(max(count, 1), cfg["synthetic_prompt_tokens"], cfg["seed"])
