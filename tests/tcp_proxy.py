"""A TCP proxy on 127.0.0.1 for tests: put it between a client and a server, then switch it
at run time to make the server look down, silent or dishonest.

Modes:
- "pass": bytes flow both ways.
- "refuse": every connection (new and open) is reset at once, as a stopped server would.
- "blackhole": new connections are accepted and whatever they send is read and dropped;
  open connections stall the same way. Nothing ever comes back, so clients hit their
  timeouts. Connections that were stalled are reset when the mode changes again (their
  byte streams have holes).
- "corrupt_once": like "pass", but one byte is flipped in the body of the next client→server
  HTTP request whose Content-Length exceeds `corrupt_min_bytes`; then the mode goes back to
  "pass". Plain HTTP only: a flipped TLS byte only breaks the connection.

Counters (`connections`, `refused`, `blackholed`, `corruptions`) change with events that
`wait_until` waits on, so tests never sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Callable
from typing import Literal

Mode = Literal["pass", "refuse", "blackhole", "corrupt_once"]
MODES: tuple[Mode, ...] = ("pass", "refuse", "blackhole", "corrupt_once")


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST (SO_LINGER 0), the way a refusing host answers."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class _RequestCorrupter:
    """Follows HTTP/1.1 requests on one client→server stream (Content-Length bodies) and
    flips one byte in the middle of the body of a request its proxy picks."""

    def __init__(self, proxy: TcpProxy) -> None:
        self._proxy = proxy
        self._head = b""
        self._body_left = 0
        self._body_seen = 0
        self._flip_at: int | None = None
        self._opaque = False  # chunked or unparsable: pass the rest through untouched

    def feed(self, data: bytes) -> bytes:
        out = bytearray()
        while data and not self._opaque:
            if self._body_left == 0:
                # Header bytes go out at once (never held back); a copy is kept to parse.
                seen = len(self._head)
                self._head += data
                end = self._head.find(b"\r\n\r\n")
                if end < 0:
                    out += data
                    data = b""
                    if len(self._head) > 65536:  # not HTTP (TLS, say)
                        self._opaque = True
                    continue
                used = end + 4 - seen
                out += data[:used]
                data = data[used:]
                head, self._head = self._head[: end + 4], b""
                self._start_body(head)
            else:
                take = data[: self._body_left]
                data = data[len(take) :]
                chunk = bytearray(take)
                if self._flip_at is not None and self._body_seen <= self._flip_at:
                    offset = self._flip_at - self._body_seen
                    if offset < len(chunk):
                        chunk[offset] ^= 0xFF
                        self._flip_at = None
                        self._proxy._corrupted()
                self._body_seen += len(chunk)
                self._body_left -= len(chunk)
                out += chunk
        if self._opaque:
            out += data
        return bytes(out)

    def _start_body(self, head: bytes) -> None:
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"transfer-encoding":
                self._opaque = True
                return
            if name == b"content-length":
                try:
                    length = int(value.strip())
                except ValueError:
                    self._opaque = True
                    return
        self._body_left = length
        self._body_seen = 0
        self._flip_at = None
        if length > self._proxy.corrupt_min_bytes and self._proxy._claim_corruption():
            self._flip_at = length // 2


class _Link:
    """One proxied connection: the client side, the server side (if any), its pumps."""

    def __init__(self, client: asyncio.StreamWriter) -> None:
        self.client = client
        self.server: asyncio.StreamWriter | None = None
        self.stalled = False
        self.tasks: set[asyncio.Task[None]] = set()

    def reset(self) -> None:
        """Both sides get a TCP reset (refuse, leaving a blackhole, closing the proxy)."""
        _reset(self.client)
        if self.server is not None:
            _reset(self.server)
        for task in self.tasks:
            task.cancel()

    def close(self) -> None:
        """Both sides are closed normally (whatever was written still goes out)."""
        self.client.close()
        if self.server is not None:
            self.server.close()


class TcpProxy:
    """Listens on 127.0.0.1:<port> and forwards to `upstream_host:upstream_port`."""

    def __init__(
        self, upstream_host: str, upstream_port: int, *, corrupt_min_bytes: int = 1024
    ) -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.corrupt_min_bytes = corrupt_min_bytes
        self.connections = 0  # accepted and forwarded
        self.refused = 0
        self.blackholed = 0  # connections (new or open) that saw the blackhole
        self.corruptions = 0
        self._mode: Mode = "pass"
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Event()

    @property
    def port(self) -> int:
        assert self._server is not None, "proxy not started"
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def mode(self) -> Mode:
        return self._mode

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            link.reset()
        if self._handlers:
            # Handlers end once their sockets are reset; cancel only what does not.
            _, stuck = await asyncio.wait(set(self._handlers), timeout=5)
            for task in stuck:
                task.cancel()
            await asyncio.gather(*stuck, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> TcpProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def set_mode(self, mode: Mode) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown proxy mode {mode!r}")
        old, self._mode = self._mode, mode
        if mode == "refuse":
            for link in list(self._links):
                link.reset()
        elif mode == "blackhole":
            for link in self._links:
                if not link.stalled:
                    link.stalled = True
                    self.blackholed += 1
        elif old == "blackhole":
            for link in [link for link in self._links if link.stalled]:
                link.reset()
        self._bump()

    async def wait_until(self, predicate: Callable[[TcpProxy], bool], timeout_s: float) -> None:
        """Wait until `predicate(proxy)` holds, re-checked on every proxy event."""
        async with asyncio.timeout(timeout_s):
            while True:
                changed = self._changed
                if predicate(self):
                    return
                await changed.wait()

    # --- internals ------------------------------------------------------------------------

    def _bump(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _claim_corruption(self) -> bool:
        if self._mode != "corrupt_once":
            return False
        self._mode = "pass"
        return True

    def _corrupted(self) -> None:
        self.corruptions += 1
        self._bump()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        link = _Link(writer)
        self._links.add(link)
        try:
            await self._serve(link, reader, writer)
        except OSError:
            link.reset()
        except asyncio.CancelledError:
            # The top of a handler task: asyncio 3.11's stream server logs a cancelled
            # handler as an error, so a cancelled one ends quietly.
            link.reset()
        finally:
            self._links.discard(link)
            self._handlers.discard(task)
            if self._mode == "refuse" or link.stalled:
                link.reset()
            else:
                link.close()

    async def _serve(
        self, link: _Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if self._mode == "refuse":
            self.refused += 1
            self._bump()
            return
        if self._mode == "blackhole":
            link.stalled = True
            self.blackholed += 1
            self._bump()
            while await reader.read(65536):
                pass
            return
        up_reader, up_writer = await asyncio.open_connection(self.upstream_host, self.upstream_port)
        link.server = up_writer
        self.connections += 1
        self._bump()
        corrupter = _RequestCorrupter(self)
        pumps = [
            asyncio.ensure_future(self._pump(link, reader, up_writer, corrupter.feed)),
            asyncio.ensure_future(self._pump(link, up_reader, writer, None)),
        ]
        link.tasks.update(pumps)
        try:
            await asyncio.gather(*pumps, return_exceptions=True)
        finally:
            for pump in pumps:
                pump.cancel()

    async def _pump(
        self,
        link: _Link,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        transform: Callable[[bytes], bytes] | None,
    ) -> None:
        try:
            while data := await reader.read(65536):
                if link.stalled:
                    continue  # blackhole: read and drop
                writer.write(transform(data) if transform is not None else data)
                await writer.drain()
        except OSError:
            link.reset()  # one side failed: the other must not wait for it
            return
        if not link.stalled:
            with contextlib.suppress(OSError):
                writer.write_eof()
