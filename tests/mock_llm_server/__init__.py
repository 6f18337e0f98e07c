"""Mock OpenAI/Anthropic-compatible streaming server for tests and benchmarks."""

from .server import WORD, MockConfig, MockServer, serve

__all__ = ["WORD", "MockConfig", "MockServer", "serve"]
