"""Mock OpenAI/Anthropic-compatible streaming server for tests and benchmarks."""

from .server import WORD, MockConfig, MockServer, chat_template, count_tokens, serve

__all__ = ["WORD", "MockConfig", "MockServer", "chat_template", "count_tokens", "serve"]
