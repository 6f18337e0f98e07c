"""Mock LLM streaming server with exact, configurable timings.

Speaks three streaming APIs over HTTP/1.1 with chunked SSE bodies and keep-alive:
OpenAI chat completions (/v1/chat/completions), OpenAI completions (/v1/completions)
and Anthropic messages (/v1/messages). It is a test double: the real servers (vLLM,
llama.cpp, hosted APIs) cannot run here, and tests need exact known timings.

It also behaves like the real servers seen in the field where they differ: no usage
chunk (llama.cpp ignores ``include_usage``: ``usage: false``), a role-only first
chunk, several tokens in one chunk (``tokens_per_chunk``), a tokenize endpoint
(``POST /tokenize`` in vLLM's or llama.cpp's form, llama.cpp's
``POST /apply-template``), a complete non-streaming JSON answer to a streaming
request (``non_streaming``). Its tokenizer is simple and exact: every word and every
punctuation mark is one token (``count_tokens``); a chat prompt is rendered with
``chat_template`` first, and its usage counts that rendering.

Behaviour comes from the server defaults (``MockConfig``) and can be overridden per
request with the JSON header ``x-mock`` (same field names), so one server serves
every test case.

Timings are scheduled on absolute deadlines measured from the moment the request
body was read (token k leaves at ttft + k * itl), so lateness never accumulates.
Every stream's next event waits on one heap with one loop timer (``_Timeline``), and
every event's bytes are built before the first one is due, so a tick that serves
hundreds of streams costs one callback plus one socket write per stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import heapq
import importlib.util
import itertools
import json
import math
import os
import re
import signal
import socket
import time
from collections.abc import Callable
from typing import Any

from .conn import BadRequest, Conn, enable_timestamps

# Every token is this word: one token per word, 5 characters.
WORD = " word"
# How early the event loop is asked to wake for an event, which then waits out the
# rest by reading the clock: asyncio's epoll sleeps round up to whole milliseconds.
_SPIN_S = 0.0015
_SPIN_MAX_STREAMS = 8
# The mock's clock: CLOCK_MONOTONIC, like the client's. Not loop.time(): uvloop's is
# cached per loop iteration in whole milliseconds.
_now = time.perf_counter


_TOKEN = re.compile(r"\w+|[^\w\s]")


def count_tokens(text: str) -> int:
    """The mock's tokenizer: every word and every punctuation mark is one token."""
    return len(_TOKEN.findall(text))


def chat_template(messages: list) -> str:
    """The mock model's chat template (counted toward prompt tokens, as real ones are)."""
    lines = [
        f"{m.get('role', 'user')}: {m.get('content', '')}" for m in messages if isinstance(m, dict)
    ]
    return "\n".join([*lines, "assistant:"])


def prompt_text(payload: dict) -> str:
    """What the model sees: the rendered chat, or the completion prompt."""
    if isinstance(payload.get("messages"), list):
        return chat_template(payload["messages"])
    prompt = payload.get("prompt", "")
    return prompt if isinstance(prompt, str) else json.dumps(prompt)


@dataclasses.dataclass
class MockConfig:
    """What one response looks like. Field names double as ``x-mock`` keys."""

    ttft_ms: float = 50.0
    itl_ms: float = 10.0
    output_tokens: int = 16
    prompt_tokens: int | None = None  # None: count words of the prompt
    usage: bool | None = None  # None: follow stream_options.include_usage
    role_first_chunk: bool = True  # OpenAI chat: an empty role-only chunk at once
    tokens_per_chunk: int = 1  # >1 bundles tokens into one SSE event
    truncate_after: int | None = None  # stop after N tokens without a finish_reason
    truncate_mode: str = "done"  # "done": send [DONE]; "eof": close the connection
    http_status: int = 200  # >=400: answer with this error status
    never_answer: bool = False  # read the request, then send nothing at all
    malformed_after: int | None = None  # send a non-JSON data line after N tokens
    finish_reason: str = "length"
    non_streaming: bool = False  # answer with one complete JSON body (stream ignored)
    tokenize: str = "vllm"  # POST /tokenize speaks "vllm", "llamacpp" or "none" (404)

    def merged(self, override: dict[str, Any]) -> MockConfig:
        known = {f.name for f in dataclasses.fields(self)}
        unknown = set(override) - known
        if unknown:
            raise ValueError(f"unknown x-mock fields: {sorted(unknown)}")
        return dataclasses.replace(self, **override)


def _chunk(payload: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(payload), payload)


def _sse(data: dict | str, event: str | None = None) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    prefix = f"event: {event}\n" if event else ""
    return _chunk(f"{prefix}data: {text}\n\n".encode())


class _Stream:
    """Builds the SSE events of one response for one API."""

    def __init__(
        self, api: str, model: str, cfg: MockConfig, prompt_tokens: int, usage: bool
    ) -> None:
        self.api = api
        self.model = model
        self.cfg = cfg
        self.prompt_tokens = prompt_tokens
        self.usage = usage
        self.id = f"mock-{time.monotonic_ns()}"
        self._content: dict[int, bytes] = {}

    def opening(self) -> list[bytes]:
        if self.api == "chat" and self.cfg.role_first_chunk:
            return [_sse(self._chat_chunk({"role": "assistant", "content": ""}, None))]
        if self.api == "messages":
            start = {
                "type": "message_start",
                "message": {
                    "id": self.id,
                    "type": "message",
                    "role": "assistant",
                    "model": self.model,
                    "content": [],
                    "stop_reason": None,
                    "usage": {"input_tokens": self.prompt_tokens, "output_tokens": 1},
                },
            }
            block = {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            }
            return [_sse(start, "message_start"), _sse(block, "content_block_start")]
        return []

    def _chat_chunk(self, delta: dict, finish: str | None) -> dict:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    def content(self, ntokens: int) -> bytes:
        """One content event; the same bytes for every event of a given size."""
        cached = self._content.get(ntokens)
        if cached is None:
            cached = self._content[ntokens] = self._encode_content(ntokens)
        return cached

    def _encode_content(self, ntokens: int) -> bytes:
        text = WORD * ntokens
        if self.api == "chat":
            return _sse(self._chat_chunk({"content": text}, None))
        if self.api == "completions":
            return _sse(
                {
                    "id": self.id,
                    "object": "text_completion",
                    "model": self.model,
                    "choices": [{"index": 0, "text": text, "finish_reason": None}],
                }
            )
        return _sse(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": text},
            },
            "content_block_delta",
        )

    def closing(self, produced: int) -> list[bytes]:
        finish = self.cfg.finish_reason
        usage = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": produced,
            "total_tokens": self.prompt_tokens + produced,
        }
        if self.api == "messages":
            stop = "max_tokens" if finish == "length" else "end_turn"
            return [
                _sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
                _sse(
                    {
                        "type": "message_delta",
                        "delta": {"stop_reason": stop, "stop_sequence": None},
                        "usage": {"output_tokens": produced},
                    },
                    "message_delta",
                ),
                _sse({"type": "message_stop"}, "message_stop"),
            ]
        if self.api == "chat":
            events = [_sse(self._chat_chunk({}, finish))]
        else:
            events = [
                _sse(
                    {
                        "id": self.id,
                        "object": "text_completion",
                        "model": self.model,
                        "choices": [{"index": 0, "text": "", "finish_reason": finish}],
                    }
                )
            ]
        if self.usage:
            events.append(
                _sse(
                    {
                        "id": self.id,
                        "object": "chat.completion.chunk",
                        "model": self.model,
                        "choices": [],
                        "usage": usage,
                    }
                )
            )
        events.append(_sse("[DONE]"))
        return events


STATIC = {
    "/health": b'{"status":"ok"}',
    "/v1/models": b'{"object":"list","data":[{"id":"mock-model","object":"model",'
    b'"owned_by":"mock"}]}',
}
ROUTES = {
    "/v1/chat/completions": "chat",
    "/v1/completions": "completions",
    "/v1/messages": "messages",
    "/tokenize": "tokenize",
    "/apply-template": "apply-template",
}


def _late_summary(values: list[float]) -> dict:
    """p50/p99/max of how late events left, in milliseconds."""
    if not values:
        return {"count": 0}
    ordered = sorted(values)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e3

    return {"count": len(ordered), "p50_ms": pick(0.5), "p99_ms": pick(0.99), "max_ms": pick(1.0)}


class MockServer:
    """One asyncio server; ``serve_forever`` for a process, ``start`` for tests.

    It also measures itself: how late each event left compared with its schedule
    (``GET /mock/stats``, reset with ``POST /mock/stats/reset``; per process). A
    client's measured error minus this lateness is the client's own share."""

    MAX_SAMPLES = 500_000

    def __init__(self, defaults: MockConfig | None = None) -> None:
        self.defaults = defaults or MockConfig()
        self.temporary = self.defaults  # POST /mock/config: for the next N requests
        self.temporary_left = 0
        self.requests_seen = 0
        self.last_request: dict | None = None
        self._listener: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._conns: set[Conn] = set()
        self._tasks: set[asyncio.Task] = set()
        self.request_clocks = {"kernel": 0, "read": 0}
        self.read_wait: list[float] = []
        self.late_first: list[float] = []
        self.active_streams = 0
        self.late_gap: list[float] = []
        self.timeline = _Timeline(self)
        self.event_loop = "asyncio"

    def _stats(self, method: str) -> bytes:
        if method == "POST":
            self.late_first.clear()
            self.late_gap.clear()
            self.read_wait.clear()
            self.request_clocks = dict.fromkeys(self.request_clocks, 0)
        return json.dumps(
            {
                "pid": os.getpid(),
                "event_loop": self.event_loop,
                # Schedules start when a request arrived: the kernel's receive time when
                # it gives one, else the read time. How long requests waited to be read:
                "request_clock": dict(self.request_clocks),
                "request_read_wait": _late_summary(self.read_wait),
                "first_token_late": _late_summary(self.late_first),
                "later_tokens_late": _late_summary(self.late_gap),
            }
        ).encode()

    async def start(
        self, host: str = "127.0.0.1", port: int = 0, sock: socket.socket | None = None
    ) -> int:
        """Serve on a listening socket (made here unless given); returns its port."""
        if sock is None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(4096)
        sock.setblocking(False)
        self._listener = sock
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(sock.fileno(), self._accept)
        return sock.getsockname()[1]

    async def stop(self) -> None:
        if self._listener is not None:
            self._loop.remove_reader(self._listener.fileno())
            self._listener.close()
            self._listener = None
        for conn in list(self._conns):
            conn.close()

    def _accept(self) -> None:
        # Several processes may share the listening socket: another may win the race.
        for _attempt in range(64):
            try:
                sock, _addr = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            enable_timestamps(sock)  # without them, schedules start at the read time
            conn = Conn(self._loop, sock)
            self._conns.add(conn)
            task = self._loop.create_task(self._handle(conn))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _handle(self, conn: Conn) -> None:
        try:
            while True:
                try:
                    *request, arrived = await conn.read_request()
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                waited = _now() - arrived
                keep_open = await self._respond(conn, arrived, tuple(request), waited)
                if not keep_open:
                    return
        except (ConnectionError, BadRequest):
            return
        finally:
            conn.close()
            self._conns.discard(conn)

    async def _respond(
        self, conn: Conn, received: float, request: tuple[str, str, dict, bytes], waited: float
    ) -> bool:
        method, path, headers, body = request
        api = ROUTES.get(path.split("?", 1)[0])
        if path == "/mock/config":
            status, answer = self._runtime_config(method, body)
            self._send_plain(conn, status, json.dumps(answer).encode())
            return True
        plain = self._plain_answer(method, path)
        if plain is not None:
            self._send_plain(conn, 200, plain)
            return True
        if method != "POST" or api is None:
            self._send_plain(conn, 404, b'{"error":"not found"}')
            return True
        try:
            payload = json.loads(body or b"{}")
            override = headers.get("x-mock")
            cfg = self.defaults
            if self.temporary_left > 0 and api not in ("tokenize", "apply-template"):
                self.temporary_left -= 1
                cfg = self.temporary
            cfg = cfg.merged(json.loads(override)) if override else cfg
        except (ValueError, TypeError) as exc:
            self._send_plain(conn, 400, json.dumps({"error": str(exc)}).encode())
            return True
        self.requests_seen += 1
        if len(self.read_wait) < self.MAX_SAMPLES:
            self.read_wait.append(waited)
        self.request_clocks[conn.arrival_clock] += 1
        self.last_request = {"path": path, "headers": headers, "body": payload}
        return await self._answer(conn, received, api, payload, cfg)

    async def _answer(
        self, conn: Conn, received: float, api: str, payload: dict, cfg: MockConfig
    ) -> bool:
        """Answer one parsed request; False when the connection must close."""
        if cfg.never_answer:
            await asyncio.sleep(3600)
            return False
        if api in ("tokenize", "apply-template"):
            status, answer = self._tokenize(api, payload, cfg)
            self._send_plain(conn, status, json.dumps(answer).encode())
            return True
        if cfg.http_status >= 400:
            self._send_plain(
                conn, cfg.http_status, b'{"error":{"message":"mock error","type":"mock"}}'
            )
            return True
        if cfg.non_streaming:
            await asyncio.sleep(max(received + cfg.ttft_ms / 1000.0 - _now(), 0))
            self._send_plain(conn, 200, self._complete_answer(api, payload, cfg))
            return True
        await self._stream(conn, received, api, payload, cfg)
        return not conn.is_closing()

    @staticmethod
    def _tokenize(api: str, payload: dict, cfg: MockConfig) -> tuple[int, dict]:
        """vLLM: {prompt | messages} -> {count, max_model_len, tokens}; llama.cpp:
        {content} -> {tokens} (no content: no tokens), /apply-template -> {prompt}."""
        if cfg.tokenize == "none" or (api == "apply-template" and cfg.tokenize != "llamacpp"):
            return 404, {"error": "not found"}
        if api == "apply-template":
            return 200, {"prompt": chat_template(payload.get("messages") or [])}
        if cfg.tokenize == "llamacpp":
            text = payload.get("content", "")
            return 200, {"tokens": list(range(count_tokens(text if isinstance(text, str) else "")))}
        if "messages" not in payload and not isinstance(payload.get("prompt"), str):
            return 400, {"error": "give prompt or messages"}
        count = count_tokens(prompt_text(payload))
        return 200, {"count": count, "max_model_len": 4096, "tokens": list(range(count))}

    @staticmethod
    def _complete_answer(api: str, payload: dict, cfg: MockConfig) -> bytes:
        text = WORD * cfg.output_tokens
        usage = {
            "prompt_tokens": count_tokens(prompt_text(payload)),
            "completion_tokens": cfg.output_tokens,
        }
        choice: dict = {"index": 0, "finish_reason": cfg.finish_reason}
        if api == "chat":
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = text
        return json.dumps(
            {
                "id": "mock-complete",
                "object": "chat.completion",
                "choices": [choice],
                "usage": usage,
            }
        ).encode()

    def _runtime_config(self, method: str, body: bytes) -> tuple[int, dict]:
        """``POST /mock/config {"override": {...}, "requests": N}``: the next N answers
        follow the override (e.g. a slow spell for an alert drill), then the defaults
        again. ``GET`` shows the defaults and what is left of an override."""
        if method == "POST":
            try:
                document = json.loads(body or b"{}")
                temporary = self.defaults.merged(document.get("override") or {})
                left = int(document.get("requests", 0))
            except (ValueError, TypeError, AttributeError) as exc:
                return 400, {"error": str(exc)}
            self.temporary, self.temporary_left = temporary, max(left, 0)
        return 200, {
            "defaults": dataclasses.asdict(self.defaults),
            "override": dataclasses.asdict(self.temporary),
            "override_requests_left": self.temporary_left,
        }

    def _plain_answer(self, method: str, path: str) -> bytes | None:
        """Health, the model list clients ask for, and the mock's own statistics."""
        if path in ("/mock/stats", "/mock/stats/reset"):
            return self._stats(method)
        if method == "GET" and path in STATIC:
            return STATIC[path]
        return None

    @staticmethod
    def _send_plain(conn: Conn, status: int, body: bytes) -> None:
        conn.write(
            b"HTTP/1.1 %d Mock\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (status, len(body), body)
        )

    async def _stream(
        self,
        conn: Conn,
        received: float,
        api: str,
        payload: dict,
        cfg: MockConfig,
    ) -> None:
        prompt_tokens = cfg.prompt_tokens
        if prompt_tokens is None:
            prompt_tokens = count_tokens(prompt_text(payload))
        usage = cfg.usage
        if usage is None:
            usage = bool((payload.get("stream_options") or {}).get("include_usage"))
        stream = _Stream(api, str(payload.get("model", "mock")), cfg, prompt_tokens, usage)
        # The head and the opening events (role chunk, message_start) in one write.
        conn.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"".join(stream.opening())
        )
        total = (
            cfg.output_tokens
            if cfg.truncate_after is None
            else min(cfg.truncate_after, cfg.output_tokens)
        )
        events, produced = self._content_events(stream, cfg, total)
        if cfg.truncate_after is None:
            tail = b"".join(stream.closing(produced)) + _chunk(b"")
        elif cfg.truncate_mode == "done" and api != "messages":
            tail = _sse("[DONE]") + _chunk(b"")
        else:
            tail = b""  # cut: the connection closes mid-body
        emitter = _Emitter(self, conn, events, tail)
        emitter.origin = received + cfg.ttft_ms / 1000.0
        emitter.itl = cfg.itl_ms / 1000.0
        if events:
            self.timeline.add(emitter.origin, emitter)
        else:
            emitter.emit(emitter.origin)
        await emitter.done
        if not tail:
            conn.close()

    @staticmethod
    def _content_events(stream: _Stream, cfg: MockConfig, total: int) -> tuple[list[bytes], int]:
        """The content events of a response and the tokens they carry."""
        per = cfg.tokens_per_chunk
        full, rest = divmod(total, per)
        events = [stream.content(per)] * full + ([stream.content(rest)] if rest else [])
        if cfg.malformed_after is not None:  # a non-JSON line before the first event
            position = -(-cfg.malformed_after // per)  # that starts at or after it
            if position < len(events):
                events[position] = _chunk(b"data: {not json\n\n") + events[position]
        return events, total


class _Emitter:
    """The events of one response, written one per due time by the timeline."""

    __slots__ = ("done", "events", "index", "itl", "origin", "server", "tail", "transport")

    def __init__(
        self, server: MockServer, transport: Conn, events: list[bytes], tail: bytes
    ) -> None:
        self.server = server
        self.transport = transport
        # The tail (finish, usage, [DONE], last chunk) leaves with the last event:
        # one write, as a real server flushes them together.
        self.events = [*events[:-1], events[-1] + tail] if events else []
        self.tail = tail
        self.index = 0
        self.origin = 0.0
        self.itl = 0.0
        self.done: asyncio.Future = asyncio.get_running_loop().create_future()
        server.active_streams += 1

    def emit(self, due: float) -> float | None:
        """Write the event due now; returns when the next one is due (None: done)."""
        transport = self.transport
        if transport.is_closing():
            self._finish()
            return None
        if not self.events:  # nothing to stream: the tail at once
            if self.tail:
                transport.write(self.tail)
            else:
                transport.close()
            self._finish()
            return None
        index = self.index
        transport.write(self.events[index])
        late = self.server.late_first if index == 0 else self.server.late_gap
        if len(late) < MockServer.MAX_SAMPLES:
            late.append(_now() - due)
        if index == len(self.events) - 1:
            if not self.tail:
                transport.close()
            self._finish()
            return None
        self.index = index + 1
        return self.origin + self.index * self.itl

    def _finish(self) -> None:
        if not self.done.done():
            self.server.active_streams -= 1
            self.done.set_result(None)


class _Timeline:
    """The next event of every stream on one heap, served by one loop timer.

    A tick writes every event that is due (streams that started together share their
    ticks), then arms the timer for the earliest next one. An event never leaves
    before its time: the timer may fire early (uvloop rounds to whole milliseconds;
    with few streams it is asked _SPIN_S early and the rest is spun on the clock,
    as epoll sleeps round up to whole milliseconds)."""

    def __init__(self, server: MockServer) -> None:
        self.server = server
        self.heap: list[tuple[float, int, _Emitter]] = []
        self.order = itertools.count()
        self.timer: asyncio.TimerHandle | None = None
        self.timer_due = math.inf

    def add(self, due: float, emitter: _Emitter) -> None:
        heapq.heappush(self.heap, (due, next(self.order), emitter))
        if due < self.timer_due:
            self._arm()

    def _spin(self) -> float:
        # With many streams events are dense, and spinning would only take CPU from
        # the client on the same machine.
        return _SPIN_S if self.server.active_streams < _SPIN_MAX_STREAMS else 0.0

    def _arm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if not self.heap:
            self.timer_due = math.inf
            return
        self.timer_due = due = self.heap[0][0]
        delay = max(due - self._spin() - _now(), 0.0)
        self.timer = asyncio.get_running_loop().call_later(delay, self._tick)

    def _tick(self) -> None:
        self.timer = None
        heap = self.heap
        spin = self._spin()
        while heap:
            due = heap[0][0]
            wait = due - _now()
            if wait > 0:
                if wait > spin:
                    break
                while _now() < due:
                    pass
            _unused, _unused2, emitter = heapq.heappop(heap)
            after = emitter.emit(due)
            if after is not None:
                heapq.heappush(heap, (after, next(self.order), emitter))
        self._arm()


def loop_factory(choice: str) -> tuple[str, Callable[[], asyncio.AbstractEventLoop] | None]:
    """The event loop to serve on: uvloop when installed (``auto``) or asked for."""
    if choice == "asyncio" or (choice == "auto" and importlib.util.find_spec("uvloop") is None):
        return "asyncio", None
    import uvloop  # noqa: PLC0415 - optional; the mock runs on the standard library too

    return "uvloop", uvloop.new_event_loop


def serve(
    host: str, port: int, defaults: MockConfig, workers: int = 1, event_loop: str = "asyncio"
) -> None:
    """Run until SIGTERM/SIGINT; with workers > 1, forked processes share the socket."""
    # proto must be IPPROTO_TCP: asyncio sets TCP_NODELAY only on such sockets, and
    # without it Nagle holds small SSE writes back behind delayed ACKs.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(4096)
    sock.setblocking(False)
    children = []
    for _attempt in range(workers - 1):
        pid = os.fork()
        if pid == 0:
            children = []
            break
        children.append(pid)

    async def main() -> None:
        server = MockServer(defaults)
        server.event_loop = loop_name
        await server.start(sock=sock)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await server.stop()

    loop_name, factory = loop_factory(event_loop)
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(main())
    finally:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
