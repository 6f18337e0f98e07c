"""Token counts after a run: exact whenever an exact source exists.

Order (the first that answers wins, per request and direction):

1. ``usage``: the server's own usage in the stream (``stream_options.include_usage``,
   Anthropic's message_start/message_delta);
2. ``tokenizer``: a tokenizer the user names (``tokenizer_file``: a local
   ``tokenizer.json``, read with the ``tokenizers`` package, never the hub); prompt
   tokens include the chat template when ``tokenizer_config.json`` beside it has one;
3. ``tokenize_endpoint``: the server's own tokenize endpoint (vLLM ``POST /tokenize``
   with ``prompt`` or ``messages``; llama.cpp ``POST /apply-template`` then
   ``POST /tokenize`` with ``content``), asked once per distinct text after the run;
4. ``estimate``: 4 characters a token. Marked as such in every output.
"""

from __future__ import annotations

import json
import os
import ssl
import urllib.error
import urllib.request
from urllib.parse import urlsplit, urlunsplit

from .config import TOKENIZE_APIS, ConfigError
from .prompts import approx_tokens

SOURCES = ("usage", "tokenizer", "tokenize_endpoint", "estimate")
EXACT = ("usage", "tokenizer", "tokenize_endpoint")
__all__ = ["SOURCES", "TOKENIZE_APIS", "finalize"]
_TIMEOUT_S = 10.0


class TokenizerCounter:
    """Counts with a local tokenizer.json (and its tokenizer_config.json's chat template)."""

    source = "tokenizer"

    def __init__(self, path: str) -> None:
        file = os.path.join(path, "tokenizer.json") if os.path.isdir(path) else path
        try:
            from tokenizers import Tokenizer  # noqa: PLC0415 - optional dependency
        except ImportError as exc:
            raise ConfigError(
                "tokenizer_file needs the Python package 'tokenizers' on the host that "
                "runs the benchmark (pip install tokenizers)"
            ) from exc
        try:
            self.tokenizer = Tokenizer.from_file(file)
        except Exception as exc:  # the Rust side raises plain Exception
            raise ConfigError(
                f"tokenizer_file {file}: not a readable tokenizer.json: {exc}"
            ) from exc
        self.template = None
        self.special: dict = {}
        config_path = os.path.join(os.path.dirname(file), "tokenizer_config.json")
        if os.path.isfile(config_path):
            self._read_config(config_path)

    def _read_config(self, path: str) -> None:
        try:
            with open(path, encoding="utf-8") as handle:
                config = json.load(handle)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path}: {exc}") from exc
        template = config.get("chat_template")
        if isinstance(template, list):  # named templates: the default one
            named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
            template = named.get("default")
        if not template:
            return
        try:
            from jinja2.sandbox import ImmutableSandboxedEnvironment  # noqa: PLC0415
        except ImportError as exc:
            raise ConfigError(
                f"{path} has a chat template: rendering it needs the Python package jinja2"
            ) from exc
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        self.template = env.from_string(template)
        for name in ("bos_token", "eos_token"):
            value = config.get(name)
            if isinstance(value, dict):
                value = value.get("content")
            self.special[name] = value or ""

    def count(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def prompt(self, text: str, chat: bool) -> int:
        if chat and self.template is not None:
            rendered = self.template.render(
                messages=[{"role": "user", "content": text}],
                add_generation_prompt=True,
                **self.special,
            )
            return len(self.tokenizer.encode(rendered, add_special_tokens=False).ids)
        return len(self.tokenizer.encode(text, add_special_tokens=True).ids)


class EndpointCounter:
    """Counts with the server's tokenize endpoint (vLLM or llama.cpp style)."""

    source = "tokenize_endpoint"

    def __init__(self, cfg: dict) -> None:
        parts = urlsplit(cfg["base_url"])
        path = parts.path.rstrip("/")
        path = path.removesuffix("/v1")  # both servers serve /tokenize at the root
        self.root = urlunsplit((parts.scheme, parts.netloc, path, "", ""))
        self.model = cfg["model"]
        self.style = cfg["tokenize_api"]
        self.headers = {"Content-Type": "application/json", **cfg["headers"]}
        if cfg["api_key"]:
            self.headers["Authorization"] = f"Bearer {cfg['api_key']}"
        context = None
        if parts.scheme == "https":
            context = ssl.create_default_context(cafile=cfg["ca_file"])
            if not cfg["validate_certs"]:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
        # urllib honours HTTP(S)_PROXY and NO_PROXY like the benchmark client does.
        self.opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context))
        self.problem: str | None = None

    def _post(self, path: str, body: dict) -> dict | None:
        request = urllib.request.Request(  # noqa: S310 - the URL is the user's http(s) base_url
            self.root + path, data=json.dumps(body).encode(), headers=self.headers, method="POST"
        )
        try:
            with self.opener.open(request, timeout=_TIMEOUT_S) as response:
                answer = json.loads(response.read(16 * 1024 * 1024))
        except (OSError, ValueError) as exc:
            self.problem = f"{path}: {exc}"
            return None
        return answer if isinstance(answer, dict) else None

    def _vllm(self, body: dict) -> int | None:
        answer = self._post("/tokenize", {"model": self.model, **body})
        if answer is None or not isinstance(answer.get("count"), int):
            return None
        return answer["count"]

    def _llamacpp(self, text: str, special: bool) -> int | None:
        answer = self._post("/tokenize", {"content": text, "add_special": special})
        if answer is None or not isinstance(answer.get("tokens"), list) or "count" in answer:
            return None
        return len(answer["tokens"])

    def _detect(self) -> None:
        """auto: a vLLM answer has ``count``; a llama.cpp one only ``tokens``."""
        if self.style != "auto":
            return
        if self._vllm({"prompt": "hello", "add_special_tokens": False}) is not None:
            self.style = "vllm"
        elif self._llamacpp("hello", False) is not None:
            self.style = "llamacpp"
        else:
            self.style = "none"

    def count(self, text: str) -> int | None:
        self._detect()
        if self.style == "vllm":
            return self._vllm({"prompt": text, "add_special_tokens": False})
        if self.style == "llamacpp":
            return self._llamacpp(text, False)
        return None

    def prompt(self, text: str, chat: bool) -> int | None:
        self._detect()
        messages = [{"role": "user", "content": text}]
        if self.style == "vllm":
            if chat:
                return self._vllm({"messages": messages, "add_generation_prompt": True})
            return self._vllm({"prompt": text, "add_special_tokens": True})
        if self.style == "llamacpp":
            if chat:
                applied = self._post("/apply-template", {"messages": messages})
                if applied is None or not isinstance(applied.get("prompt"), str):
                    return None
                text = applied["prompt"]
            return self._llamacpp(text, True)
        return None


def counters(cfg: dict) -> list:
    """The exact sources this run may use, in order."""
    found: list = []
    if cfg.get("tokenizer_file"):
        found.append(TokenizerCounter(cfg["tokenizer_file"]))
    if cfg.get("tokenize_api", "none") != "none" and cfg["api"].startswith("openai"):
        found.append(EndpointCounter(cfg))
    return found


def _first(sources: list, cache: dict, method: str, text: str, chat: bool) -> tuple[int, str]:
    for counter in sources:
        key = (counter.source, method, text)
        if key not in cache:
            value = counter.prompt(text, chat) if method == "prompt" else counter.count(text)
            cache[key] = value
        if cache[key] is not None:
            return cache[key], counter.source
    return approx_tokens(text), "estimate"


def finalize(cfg: dict, records: list[dict], sources: list | None = None) -> dict:
    """Fill in the token counts the server did not give, drop the texts kept for it,
    recompute TPOT; returns facts about the counting for the summary."""
    if sources is None:
        sources = counters(cfg)
    chat = cfg["api"] in ("openai_chat", "anthropic_messages")
    cache: dict = {}
    for record in records:
        prompt = record.pop("_prompt", "")
        output = record.pop("_output", "")
        if record["error_type"] is not None:
            continue
        if record["output_tokens_source"] != "usage":
            record["output_tokens"], record["output_tokens_source"] = _first(
                sources, cache, "count", output, chat
            )
        if record["input_tokens_source"] != "usage":
            record["input_tokens"], record["input_tokens_source"] = _first(
                sources, cache, "prompt", prompt, chat
            )
        ttft, e2e, out = record["ttft_s"], record["e2e_s"], record["output_tokens"]
        record["tpot_s"] = (e2e - ttft) / (out - 1) if ttft is not None and out > 1 else None
    problems = [c.problem for c in sources if getattr(c, "problem", None)]
    return {"tokenize_endpoint_problem": problems[0] if problems else None}
