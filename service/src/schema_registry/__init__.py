"""LLM schema registry service."""

from schema_registry._version import BROKEN, __version__

__all__ = ["BROKEN", "__version__"]
