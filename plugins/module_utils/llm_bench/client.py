"""A lean HTTP/1.1 streaming client on asyncio transports.

Why not a library: the bench hosts have only the standard library, and the usual
clients cap their connection pools (100 in httpx/aiohttp) which silently turns a
256-way benchmark into a 100-way one. Here each in-flight request has its own
keep-alive connection, idle ones are reused, and nothing caps them.

Timestamps are taken with ``time.perf_counter_ns`` in ``data_received``, the first
moment Python sees the bytes, before any parsing.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import socket
import ssl
import time
import urllib.request
from urllib.parse import unquote, urlsplit

from .prompts import approx_tokens
from .sse import INTERPRETERS, SSEDecoder, StreamError, StreamState

_MAX_HEAD = 64 * 1024
_MAX_ERROR_BODY = 4096


class _Response(asyncio.Protocol):
    """One connection; parses the response of the request currently on it."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._reset(None, None)

    def _reset(self, exchange: Exchange | None, loop: asyncio.AbstractEventLoop | None) -> None:
        self.exchange = exchange
        self.finished = loop.create_future() if loop else None
        self._buf = bytearray()
        self._state = "head"
        self._remaining = 0
        self.status = 0
        self.keep_alive = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:  # no Nagle delay on the request write, whatever asyncio did
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._state == "eof" and self.exchange is not None:
            self._finish(None)
        else:
            self._finish(
                StreamError(
                    "connection" if self._state == "head" else "incomplete_stream",
                    "connection closed by the server" + (f": {exc}" if exc else ""),
                )
            )

    def data_received(self, data: bytes) -> None:
        ts = time.perf_counter_ns()
        if self.exchange is None or self.finished is None or self.finished.done():
            self.keep_alive = False  # bytes nobody asked for: never reuse
            return
        try:
            if self._state == "chunk-size" and not self._buf:
                data = self._whole_chunks(data, ts)
            if data:
                self._buf += data
                self._parse(ts)
        except StreamError as exc:
            self.keep_alive = False
            self._finish(exc)

    def _whole_chunks(self, data: bytes, ts: int) -> bytes:
        """The usual case, straight from the bytes read: whole chunks, each holding one
        complete SSE event. Returns what is left for the general parser (from the
        first chunk that is incomplete, empty or has more than one event)."""
        exchange = self.exchange
        pos = 0
        while True:
            end = data.find(b"\r\n", pos)
            if end < 0:
                break
            try:
                size = int(data[pos:end], 16)
            except ValueError:
                break  # chunk extensions or garbage: the general parser decides
            start = end + 2
            stop = start + size
            if size == 0 or data[stop : stop + 2] != b"\r\n":
                break
            if not exchange.whole_event(data[start:stop], ts):
                break
            pos = stop + 2
            if self.finished.done():
                return b""
        return data[pos:] if pos else data

    def _finish(self, error: StreamError | None) -> None:
        if self.finished is not None and not self.finished.done():
            self.finished.set_result(error)

    def _parse(self, ts: int) -> None:
        while self._buf and not self.finished.done():
            if self._state == "head":
                if not self._parse_head():
                    return
            elif self._state in ("chunk-size", "chunk-data", "trailer"):
                if not self._parse_chunked(ts):
                    return
            elif self._state == "length":
                payload = bytes(self._buf[: self._remaining])
                del self._buf[: len(payload)]
                self._remaining -= len(payload)
                self.exchange.body(payload, ts)
                if self._remaining == 0:
                    self._finish(None)
            else:  # "eof": body runs until the server closes
                payload = bytes(self._buf)
                self._buf.clear()
                self.exchange.body(payload, ts)

    def _parse_chunked(self, ts: int) -> bool:
        """One step of chunked transfer decoding; False when more bytes are needed."""
        if self._state == "chunk-data":
            if len(self._buf) < self._remaining + 2:
                return False
            payload = bytes(self._buf[: self._remaining])
            del self._buf[: self._remaining + 2]
            self._state = "chunk-size"
            self.exchange.body(payload, ts)
            return True
        end = self._buf.find(b"\r\n")
        if end < 0:
            return False
        line = bytes(self._buf[:end])
        del self._buf[: end + 2]
        if self._state == "trailer":
            if not line:
                self._finish(None)
            return True
        try:
            self._remaining = int(line.split(b";")[0], 16)
        except ValueError as exc:
            raise StreamError("malformed_response", "bad chunk size") from exc
        self._state = "chunk-data" if self._remaining else "trailer"
        return True

    def _parse_head(self) -> bool:
        end = self._buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buf) > _MAX_HEAD:
                raise StreamError("malformed_response", "response head too large")
            return False
        lines = bytes(self._buf[:end]).decode("latin-1").split("\r\n")
        del self._buf[: end + 4]
        try:
            self.status = int(lines[0].split(" ", 2)[1])
        except (IndexError, ValueError) as exc:
            raise StreamError("malformed_response", f"bad status line {lines[0]!r}") from exc
        headers = {}
        for line in lines[1:]:
            name, _unused, value = line.partition(":")
            headers[name.strip().lower()] = value.strip().lower()
        if self.status == 100:
            return True
        self.keep_alive = headers.get("connection") != "close"
        if "chunked" in headers.get("transfer-encoding", ""):
            self._state = "chunk-size"
        elif "content-length" in headers:
            self._remaining = int(headers["content-length"])
            self._state = "length"
            if self._remaining == 0:
                self._finish(None)
        else:
            self._state = "eof"
            self.keep_alive = False
        self.exchange.head(self.status, headers.get("content-type", ""))
        return True


class Pool:
    """Unbounded keep-alive connections to one endpoint."""

    def __init__(
        self, base_url: str, validate_certs: bool = True, ca_file: str | None = None
    ) -> None:
        parts = urlsplit(base_url)
        self.host = parts.hostname or ""
        self.tls = parts.scheme == "https"
        self.port = parts.port or (443 if self.tls else 80)
        self.prefix = parts.path.rstrip("/")
        default_port = (self.tls and self.port == 443) or (not self.tls and self.port == 80)
        self.host_header = self.host if default_port else f"{self.host}:{self.port}"
        self.ssl: ssl.SSLContext | None = None
        if self.tls:
            self.ssl = ssl.create_default_context(cafile=ca_file)
            if not validate_certs:
                self.ssl.check_hostname = False
                self.ssl.verify_mode = ssl.CERT_NONE
        self._idle: list[_Response] = []
        self.opened = 0
        # HTTP(S)_PROXY / NO_PROXY as every HTTP client reads them: plain http goes to
        # the proxy with absolute URLs, https through a CONNECT tunnel.
        self.proxy = proxy_for(self.tls, self.host, self.port)
        self.target_prefix = ""
        self.proxy_headers: dict[str, str] = {}
        if self.proxy is not None:
            auth = self.proxy.get("auth")
            if auth:
                self.proxy_headers["Proxy-Authorization"] = auth
            if not self.tls:
                self.target_prefix = f"http://{self.host_header}"

    @property
    def where(self) -> str:
        via = f" via proxy {self.proxy['host']}:{self.proxy['port']}" if self.proxy else ""
        return f"{self.host}:{self.port}{via}"

    async def _open(self) -> _Response:
        loop = asyncio.get_running_loop()
        if self.proxy is None:
            _unused, conn = await loop.create_connection(
                _Response, self.host, self.port, ssl=self.ssl
            )
        elif not self.tls:
            _unused, conn = await loop.create_connection(
                _Response, self.proxy["host"], self.proxy["port"]
            )
        else:
            sock = await self._tunnel(loop)
            _unused, conn = await loop.create_connection(
                _Response, sock=sock, ssl=self.ssl, server_hostname=self.host
            )
        return conn

    async def _tunnel(self, loop: asyncio.AbstractEventLoop) -> socket.socket:
        """A socket to the target through the proxy's CONNECT method."""
        infos = await loop.getaddrinfo(
            self.proxy["host"], self.proxy["port"], type=socket.SOCK_STREAM
        )
        family, kind, proto, _unused_name, address = infos[0]
        sock = socket.socket(family, kind, proto)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, address)
            target = f"{self.host}:{self.port}"
            head = f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n" + "".join(
                f"{k}: {v}\r\n" for k, v in self.proxy_headers.items()
            )
            await loop.sock_sendall(sock, head.encode() + b"\r\n")
            answer = b""
            while b"\r\n\r\n" not in answer:
                data = await loop.sock_recv(sock, 4096)
                if not data or len(answer) > _MAX_HEAD:
                    raise ConnectionError(f"proxy closed the CONNECT to {target}")
                answer += data
            status_line = answer.split(b"\r\n", 1)[0].decode("latin-1")
            parts = status_line.split(" ", 2)
            if len(parts) < 2 or parts[1] != "200":
                raise ConnectionError(f"proxy refused CONNECT to {target}: {status_line!r}")
        except BaseException:
            sock.close()
            raise
        return sock

    def idle(self) -> _Response | None:
        """An open idle connection, or None; without a trip through the event loop
        (at high concurrency that trip is what makes requests leave late)."""
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed:
                return conn
        return None

    async def acquire(self) -> tuple[_Response, bool]:
        conn = self.idle()
        if conn is not None:
            return conn, False
        conn = await self._open()
        self.opened += 1
        return conn, True

    async def preconnect(self, count: int, timeout_s: float) -> int:
        """Open idle connections up to ``count`` before the clock starts, so the first
        wave of a high-concurrency run is not a burst of handshakes. Failures are left
        to the measured requests, which report them per request; returns how many
        opened."""
        missing = count - sum(1 for conn in self._idle if not conn.closed)
        if missing <= 0:
            return 0
        opened = await asyncio.gather(
            *(asyncio.wait_for(self._open(), timeout_s) for _attempt in range(missing)),
            return_exceptions=True,
        )
        fresh = [conn for conn in opened if isinstance(conn, _Response)]
        self._idle.extend(fresh)
        self.opened += len(fresh)
        return len(fresh)

    def release(self, conn: _Response, reusable: bool) -> None:
        if reusable and conn.keep_alive and not conn.closed:
            conn.exchange = None
            self._idle.append(conn)
        elif conn.transport is not None:
            conn.transport.close()

    def close(self) -> None:
        for conn in self._idle:
            if conn.transport is not None:
                conn.transport.close()
        self._idle.clear()


def proxy_for(tls: bool, host: str, port: int) -> dict | None:
    """The proxy for this target from HTTPS_PROXY/HTTP_PROXY unless NO_PROXY names it."""
    proxies = urllib.request.getproxies_environment()
    url = proxies.get("https" if tls else "http")
    if not url or urllib.request.proxy_bypass_environment(f"{host}:{port}", proxies):
        return None
    if "://" not in url:
        url = "http://" + url
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"proxy {url!r}: only http:// proxies are supported")
    proxy = {"host": parts.hostname, "port": parts.port or 80, "auth": None}
    if parts.username is not None:
        user = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        proxy["auth"] = "Basic " + base64.b64encode(user.encode()).decode()
    return proxy


class Exchange:
    """One request and what came back; ``result()`` is the per-request record."""

    def __init__(self, api: str) -> None:
        self.interpret = INTERPRETERS[api]
        self.decoder = SSEDecoder()
        self.state = StreamState()
        self.status = 0
        self.content_type = ""
        self.error_body = b""

    def head(self, status: int, content_type: str = "") -> None:
        self.status = status
        self.content_type = content_type

    def whole_event(self, payload: bytes, ts: int) -> bool:
        """Take a chunk that is exactly one ``data: ...`` event; False (nothing done)
        for anything else, which then goes through ``body``."""
        if self.status >= 300 or not self.decoder.idle() or not payload.startswith(b"data: "):
            return False
        if not payload.endswith(b"\n\n") or payload.count(b"\n") != 2 or b"\r" in payload:
            return False
        self.interpret(self.state, "", payload[6:-2].decode("utf-8", "replace"), ts)
        return True

    def body(self, payload: bytes, ts: int) -> None:
        if self.status >= 300:
            self.error_body = (self.error_body + payload)[:_MAX_ERROR_BODY]
            return
        for event, data in self.decoder.feed(payload):
            self.interpret(self.state, event, data, ts)


def build_request(cfg: dict, pool: Pool, prompt: str) -> bytes:
    """The HTTP request bytes for one prompt."""
    api = cfg["api"]
    body: dict = {"model": cfg["model"], "max_tokens": cfg["max_tokens"], "stream": True}
    if api == "openai_completions":
        body["prompt"] = prompt
    else:
        body["messages"] = [{"role": "user", "content": prompt}]
    if api.startswith("openai") and cfg["include_usage"]:
        body["stream_options"] = {"include_usage": True}
    body.update(cfg["extra_body"])
    payload = json.dumps(body).encode()
    headers = {
        "Host": pool.host_header,
        "Content-Type": "application/json",
        "Accept": "text/event-stream",
        "Content-Length": str(len(payload)),
    }
    if api == "anthropic_messages":
        headers["anthropic-version"] = "2023-06-01"
        if cfg["api_key"]:
            headers["x-api-key"] = cfg["api_key"]
    elif cfg["api_key"]:
        headers["Authorization"] = f"Bearer {cfg['api_key']}"
    headers.update(cfg["headers"])
    headers.update(pool.proxy_headers if not pool.tls else {})
    path = pool.target_prefix + pool.prefix + cfg["endpoint_path"]
    head = f"POST {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return head.encode() + b"\r\n" + payload


def _error_type(exc: BaseException) -> str:
    if isinstance(exc, StreamError):
        return exc.kind
    if isinstance(exc, ssl.SSLError):
        return "tls"
    if isinstance(exc, TimeoutError):
        return "timeout"
    return "connection"


def describe_error(exc: BaseException, where: str) -> str:
    """A message that says what went wrong and what to do about it."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"TLS: the certificate of {where} is not trusted ({exc.verify_message}); "
            "give ca_file (the CA that signed it), or validate_certs: false for a test server"
        )
    if isinstance(exc, ssl.SSLError):
        if getattr(exc, "reason", None) in ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE"):
            return (
                f"TLS: {where} does not speak TLS on this port "
                "(a plain http:// server behind an https:// base_url?)"
            )
        return f"TLS handshake with {where} failed: {exc}"
    if isinstance(exc, ConnectionRefusedError):
        return f"connection refused by {where} (nothing listens there)"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve {where}: {exc.strerror}"
    return str(exc)


async def send(
    cfg: dict, pool: Pool, request: bytes, *, prompt: str, planned_ns: int, timeout_s: float
) -> dict:
    """Send one request and measure it. Never raises for server behaviour; returns
    a record with ``error_type`` set instead. Cancellation (the run deadline) is
    turned into error type ``deadline``."""
    started_ns = time.perf_counter_ns()
    wall = time.time()  # display only (TTFT over time across hosts); never a duration
    exchange = Exchange(cfg["api"])
    conn: _Response | None = None
    sent_ns = started_ns
    connect_ns = 0
    error: tuple[str, str] | None = None
    clean = False
    deadline = started_ns / 1e9 + timeout_s
    try:
        conn, fresh = pool.idle(), False
        if conn is None:
            conn, fresh = await asyncio.wait_for(pool.acquire(), timeout_s)
        if fresh:
            connect_ns = time.perf_counter_ns() - started_ns
        conn._reset(exchange, asyncio.get_running_loop())
        sent_ns = time.perf_counter_ns()
        conn.transport.write(request)
        remaining = deadline - sent_ns / 1e9
        outcome = await asyncio.wait_for(asyncio.shield(conn.finished), max(remaining, 0))
        if outcome is not None:
            raise outcome
        clean = True
    except asyncio.CancelledError:
        error = ("deadline", "run deadline reached before the request finished")
    except (StreamError, OSError, TimeoutError, ssl.SSLError) as exc:
        kind = _error_type(exc)
        if kind == "timeout":
            text = f"no complete answer within {timeout_s:g}s"
        else:
            text = describe_error(exc, pool.where)
        error = (kind, text[:300])
    finally:
        if conn is not None:
            pool.release(conn, clean)
    timing = {"planned_ns": planned_ns, "sent_ns": sent_ns, "connect_ns": connect_ns, "wall": wall}
    return _record(exchange, prompt, timing, error)


def _record(exchange: Exchange, prompt: str, timing: dict, error: tuple[str, str] | None) -> dict:
    planned_ns, sent_ns = timing["planned_ns"], timing["sent_ns"]
    state = exchange.state
    status = exchange.status
    if error is None and status >= 300:
        snippet = exchange.error_body.decode("utf-8", "replace")[:200]
        error = (f"http_{status}", f"HTTP {status}: {snippet}")
    if (
        error is None
        and state.finish_reason is None
        and not exchange.content_type.startswith("text/event-stream")
    ):
        error = (
            "not_event_stream",
            "the server answered the streaming request with a complete "
            f"{exchange.content_type or 'untyped'} body, not an event stream "
            "(it ignored stream: true)",
        )
    if error is None and state.finish_reason is None:
        error = ("incomplete_stream", "stream ended without a finish reason")
    ts = state.content_ns
    ttft = (ts[0] - sent_ns) / 1e9 if ts else None
    e2e = (ts[-1] - sent_ns) / 1e9 if ts else None
    itl = [(b - a) / 1e9 for a, b in itertools.pairwise(ts)]
    # Without usage: an estimate here; tokens.finalize replaces it with an exact count
    # (tokenizer, tokenize endpoint) after the run when one exists.
    if state.usage_out is not None:
        out_tokens, out_source = state.usage_out, "usage"
    else:
        out_tokens, out_source = approx_tokens("x" * state.output_chars), "estimate"
    if state.usage_in is not None:
        in_tokens, in_source = state.usage_in, "usage"
    else:
        in_tokens, in_source = approx_tokens(prompt), "estimate"
    tpot = None
    if ttft is not None and out_tokens > 1:
        tpot = (e2e - ttft) / (out_tokens - 1)
    return {
        "planned_ns": planned_ns,
        "sent_ns": sent_ns,
        "wall_time": timing["wall"],
        "lag_s": max(sent_ns - planned_ns, 0) / 1e9,
        "connect_s": timing["connect_ns"] / 1e9,
        "ttft_s": ttft,
        "itl_s": itl,
        "e2e_s": e2e,
        "tpot_s": tpot,
        "content_chunks": len(ts),
        "input_tokens": in_tokens,
        "input_tokens_source": in_source,
        "output_tokens": out_tokens,
        "output_tokens_source": out_source,
        "finish_reason": state.finish_reason,
        "http_status": status or None,
        "error_type": error[0] if error else None,
        "error": error[1] if error else None,
        # Texts for exact counting after the run (removed by tokens.finalize).
        "_prompt": prompt if in_source != "usage" else "",
        "_output": "".join(state.texts) if out_source != "usage" else "",
    }
