"""Server-sent events: an incremental decoder and the per-API stream interpreters.

Definitions (README.md, "Definitions used by the LLM benchmark"): a chunk "carries
content" only when it holds generated text (a role-only first chunk does not); a
stream without a finish reason is incomplete, whatever its end looks like.
"""

from __future__ import annotations

import json


class StreamError(Exception):
    """The stream broke a rule; ``kind`` is the error type reported for the request."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class SSEDecoder:
    """Feed bytes, get complete events as (event name, data) pairs."""

    def __init__(self) -> None:
        self._buffer = b""
        self._event = ""
        self._data: list[str] = []

    def idle(self) -> bool:
        """No partial event pending: the next bytes start a new line and event."""
        return not self._buffer and not self._data and not self._event

    def feed(self, data: bytes) -> list[tuple[str, str]]:
        # Fast path for the usual chunk: exactly one "data: ...\n\n" event.
        if (
            not self._buffer
            and not self._data
            and data.startswith(b"data: ")
            and data.endswith(b"\n\n")
            and data.count(b"\n") == 2
        ):
            return [("", data[6:-2].decode("utf-8", "replace"))]
        self._buffer += data
        events = []
        *lines, self._buffer = self._buffer.split(b"\n")
        for raw in lines:
            line = raw.rstrip(b"\r").decode("utf-8", "replace")
            if not line:
                if self._data:
                    events.append((self._event, "\n".join(self._data)))
                self._event, self._data = "", []
            elif line.startswith("data:"):
                self._data.append(line[5:].removeprefix(" "))
            elif line.startswith("event:"):
                self._event = line[6:].strip()
            # comments (":...") and other fields (id, retry) carry nothing we measure
        return events


class StreamState:
    """What the client learns from one response stream, API independent."""

    __slots__ = (
        "content_ns",
        "done",
        "finish_reason",
        "output_chars",
        "texts",
        "usage_in",
        "usage_out",
    )

    def __init__(self) -> None:
        self.content_ns: list[int] = []
        self.output_chars = 0
        self.texts: list[str] = []  # the generated text, counted after the run
        self.finish_reason: str | None = None
        self.usage_in: int | None = None
        self.usage_out: int | None = None
        self.done = False

    def content(self, text: str, ts: int) -> None:
        if text:
            self.content_ns.append(ts)
            self.output_chars += len(text)
            self.texts.append(text)


_raw_decode = json.JSONDecoder().raw_decode


def _loads(data: str) -> dict:
    try:
        # json.loads without its Python wrappers (one chunk, thousands per second);
        # whatever raw_decode does not take as a whole goes to json.loads, which
        # decides exactly as before (leading/trailing whitespace, errors).
        obj, end = _raw_decode(data)
        if end != len(data):
            obj = json.loads(data)
    except ValueError:
        try:
            obj = json.loads(data)
        except ValueError as exc:
            raise StreamError("malformed_chunk", f"non-JSON data: {data[:80]!r}") from exc
    if not isinstance(obj, dict):
        raise StreamError("malformed_chunk", f"data is not an object: {data[:80]!r}")
    return obj


def _stream_error(obj: dict) -> StreamError:
    error = obj.get("error")
    message = error.get("message", "") if isinstance(error, dict) else str(error)
    return StreamError("stream_error", f"error event in stream: {message[:200]}")


def openai_event(state: StreamState, _event: str, data: str, ts: int) -> None:
    """Chat completions and completions chunks (and vLLM/llama.cpp variants)."""
    if data == "[DONE]":
        state.done = True
        return
    obj = _loads(data)
    if obj.get("error"):
        raise _stream_error(obj)
    for choice in obj.get("choices") or ():
        if choice.get("index", 0) != 0:
            continue
        delta = choice.get("delta")
        if isinstance(delta, dict):
            text = (delta.get("content") or "") + (delta.get("reasoning_content") or "")
        else:
            text = choice.get("text") or ""
        state.content(text, ts)
        if choice.get("finish_reason"):
            state.finish_reason = choice["finish_reason"]
    usage = obj.get("usage")
    if isinstance(usage, dict):
        if usage.get("completion_tokens") is not None:
            state.usage_out = int(usage["completion_tokens"])
        if usage.get("prompt_tokens") is not None:
            state.usage_in = int(usage["prompt_tokens"])


def anthropic_event(state: StreamState, _event: str, data: str, ts: int) -> None:
    """Anthropic messages streaming events."""
    obj = _loads(data)
    kind = obj.get("type")
    if kind == "content_block_delta":
        delta = obj.get("delta") or {}
        state.content((delta.get("text") or "") + (delta.get("thinking") or ""), ts)
    elif kind == "message_start":
        usage = (obj.get("message") or {}).get("usage") or {}
        if usage.get("input_tokens") is not None:
            state.usage_in = int(usage["input_tokens"])
    elif kind == "message_delta":
        stop = (obj.get("delta") or {}).get("stop_reason")
        if stop:
            state.finish_reason = stop
        usage = obj.get("usage") or {}
        if usage.get("output_tokens") is not None:
            state.usage_out = int(usage["output_tokens"])
    elif kind == "message_stop":
        state.done = True
    elif kind == "error":
        raise _stream_error(obj)


INTERPRETERS = {
    "openai_chat": openai_event,
    "openai_completions": openai_event,
    "anthropic_messages": anthropic_event,
}
