"""The mock's connections: plain non-blocking sockets driven by the event loop, read
with recvmsg so every request carries the kernel's receive time.

Why not asyncio streams: a response's schedule must start when its request arrived.
With hundreds of requests arriving at once, this single process reads them one after
the other, tens of milliseconds apart; counting from the read would add that wait to
every timing a client measures, and the mock's own lateness figures would not show
it. The kernel stamps each segment on arrival (SO_TIMESTAMPNS); that stamp is the
origin, and the wait for the read is reported as the mock's ``request_read_wait``.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import sys
import time

# SO_TIMESTAMPNS (Python has no name for it): 35 in Linux's generic socket ABI
# (x86, arm, arm64, riscv); other kernels/architectures use the read time instead.
SO_TIMESTAMPNS = 35 if sys.platform.startswith("linux") else None
_CMSG_SPACE = socket.CMSG_SPACE(16)
_MAX_HEAD = 64 * 1024
_READ_SIZE = 65536
_now = time.perf_counter  # CLOCK_MONOTONIC, as the schedule and the client use


class BadRequest(Exception):
    """The client sent something this server cannot parse."""


def enable_timestamps(sock: socket.socket) -> bool:
    if SO_TIMESTAMPNS is None:
        return False
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    except OSError:
        return False
    return True


def kernel_arrival(ancdata: list, read_at: float) -> float | None:
    """The kernel's receive time of the newest bytes read, on our monotonic clock.

    The kernel stamps in CLOCK_REALTIME; the offset to CLOCK_MONOTONIC is taken right
    now. A stamp that is not in the last second before the read (a stepped clock) is
    not used. TCP gives the stamp of the last segment read, so for earlier bytes in
    the same read it is late, never early."""
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
            sec, nsec = struct.unpack("qq", data[:16])
            offset_ns = time.time_ns() - time.perf_counter_ns()
            arrival = (sec * 1_000_000_000 + nsec - offset_ns) / 1e9
            if read_at - 1.0 < arrival <= read_at:
                return arrival
    return None


class Conn:
    """One accepted connection: request reading, transport-like writing."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
        self.loop = loop
        self.sock = sock
        self.fd = sock.fileno()
        self.buf = bytearray()
        self.arrival = 0.0  # when the newest bytes in buf arrived (kernel or read time)
        self.arrival_clock = "read"  # which of the two
        self.eof = False
        self.closing = False
        self._closed = False
        self._waiter: asyncio.Future | None = None
        self._pending = bytearray()
        loop.add_reader(self.fd, self._readable)

    # reading

    def _readable(self) -> None:
        try:
            data, ancdata, _flags, _addr = self.sock.recvmsg(_READ_SIZE, _CMSG_SPACE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data, ancdata = b"", []
        read_at = _now()
        if data:
            self.buf += data
            kernel = kernel_arrival(ancdata, read_at)
            self.arrival = kernel or read_at
            self.arrival_clock = "read" if kernel is None else "kernel"
        else:
            self.eof = True
            self.loop.remove_reader(self.fd)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def _more(self) -> None:
        if self.eof or self._closed:
            raise asyncio.IncompleteReadError(bytes(self.buf), None)
        self._waiter = self.loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    async def read_request(self) -> tuple[str, str, dict, bytes, float]:
        """Method, path, headers (lower-case names), body, and when the request's last
        bytes arrived (``arrival_clock`` says by which clock); raises
        IncompleteReadError at the end of the connection."""
        while (end := self.buf.find(b"\r\n\r\n")) < 0:
            if len(self.buf) > _MAX_HEAD:
                raise BadRequest("request head too large")
            await self._more()
        lines = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
        try:
            method, path, _version = lines[0].split(" ", 2)
        except ValueError as exc:
            raise BadRequest("bad request line") from exc
        headers = {}
        for line in lines[1:]:
            if line:
                name, _unused, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError as exc:
            raise BadRequest("bad content-length") from exc
        start = end + 4
        while len(self.buf) < start + length:
            await self._more()
        body = bytes(self.buf[start : start + length])
        del self.buf[: start + length]
        return method, path, headers, body, self.arrival

    # writing, as much of asyncio.Transport as the server uses

    def write(self, data: bytes) -> None:
        if self.closing:
            return
        if self._pending:
            self._pending += data
            return
        try:
            sent = self.sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._close_now()
            return
        if sent < len(data):
            self._pending += data[sent:]
            self.loop.add_writer(self.fd, self._writable)

    def _writable(self) -> None:
        try:
            sent = self.sock.send(self._pending)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close_now()
            return
        del self._pending[:sent]
        if not self._pending:
            self.loop.remove_writer(self.fd)
            if self.closing:
                self._close_now()

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        """Close once everything written so far has left."""
        self.closing = True
        if not self._pending:
            self._close_now()

    def _close_now(self) -> None:
        self.closing = True
        if self._closed:
            return
        self._closed = True
        self.loop.remove_reader(self.fd)
        self.loop.remove_writer(self.fd)
        self.sock.close()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
