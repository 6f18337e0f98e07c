"""Which event loop runs the client: uvloop (libuv, in C) when it is installed, the
standard library's asyncio otherwise. Bench hosts may have only the standard
library, so uvloop is never required unless asked for by name."""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Coroutine
from typing import Any

CHOICES = ("auto", "asyncio", "uvloop")


def uvloop_installed() -> bool:
    return importlib.util.find_spec("uvloop") is not None


def resolve(choice: str) -> str:
    """The loop a setting means on this host: ``asyncio`` or ``uvloop``."""
    if choice == "auto":
        return "uvloop" if uvloop_installed() else "asyncio"
    return choice


def run(main: Coroutine[Any, Any, Any], name: str) -> Any:
    """``asyncio.run`` on the named loop."""
    if name == "uvloop":
        import uvloop  # noqa: PLC0415 - optional, only on hosts that have it

        # Runner rather than uvloop.run: Debian 12 packages uvloop 0.17, which has none.
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(main)
    return asyncio.run(main)
