"""A small signaling client (websockets + aiohttp) for tests, benchmarks and test peers.

    client = await SignalingClient.connect(url, device_token=token)
    call = (await client.request("call.launch", dispute_type="family"))["call"]
    ring = await expert.next_event("call.ring")

Replies resolve the request's future; events queue up in order and are read with
`next_event`. Imports only the wire schema of ours.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable
from typing import Any

import aiohttp
import websockets
from websockets.asyncio.client import ClientConnection

from signaling import messages as m

CLIENT_BUILD = "pyclient-1"


class ClientError(Exception):
    """The server answered a request with an error."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


async def login(base_url: str, username: str, password: str) -> str:
    """Log a person in over HTTP; returns the session token (also usable as a cookie)."""
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{base_url}/api/login", json={"username": username, "password": password}
        ) as resp:
            body = await resp.json()
            if resp.status != 200:
                raise ClientError(body["error"]["code"], body["error"]["message"])
            return str(body["token"])


class SignalingClient:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[int | str, asyncio.Future[dict[str, Any]]] = {}
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.last_seq = 0
        self.auth: dict[str, Any] = {}
        self.closed = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        self._handlers: dict[str, list[Callable[[dict[str, Any]], None]]] = {}

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        device_token: str | None = None,
        session_token: str | None = None,
        rejoin_token: str | None = None,
        cookie: str | None = None,
        origin: str | None = None,
        protocol_version: int = m.PROTOCOL_VERSION,
        client_build: str = CLIENT_BUILD,
        authenticate: bool = True,
    ) -> SignalingClient:
        """Open the WebSocket and (by default) authenticate; raises ClientError if refused."""
        headers = {"Cookie": f"mediation_session={cookie}"} if cookie else None
        ws = await websockets.connect(
            url,
            additional_headers=headers,
            origin=origin,  # type: ignore[arg-type]
            max_size=2**20,
            max_queue=None,
            ping_interval=None,
        )
        client = cls(ws)
        client._reader = asyncio.create_task(client._read_loop(), name="signaling-client-reader")
        if authenticate:
            payload: dict[str, Any] = {
                "protocol_version": protocol_version,
                "client_build": client_build,
            }
            for name, value in (
                ("device_token", device_token),
                ("session_token", session_token),
                ("rejoin_token", rejoin_token),
            ):
                if value is not None:
                    payload[name] = value
            try:
                client.auth = await client.request("auth", **payload)
            except (ClientError, ConnectionError):
                await client.close()
                raise
        return client

    async def _read_loop(self) -> None:
        try:
            async for raw in self.ws:
                frame = json.loads(raw)
                if frame.get("type") in ("result", "error") and frame.get("id") in self._pending:
                    future = self._pending.pop(frame["id"])
                    if not future.done():
                        future.set_result(frame)
                else:
                    if "seq" in frame:
                        self.last_seq = frame["seq"]
                    for handler in self._handlers.get(frame.get("type", ""), ()):
                        handler(frame)
                    self.events.put_nowait(frame)
        except websockets.ConnectionClosed:
            pass
        finally:
            self.closed.set()
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(ConnectionError("connection closed"))
            self._pending.clear()

    def on(self, event_type: str, handler: Callable[[dict[str, Any]], None]) -> None:
        """Call `handler` with every frame of that type as it arrives (it is queued too)."""
        self._handlers.setdefault(event_type, []).append(handler)

    @property
    def close_code(self) -> int | None:
        return self.ws.close_code

    async def send_raw(self, text: str | bytes) -> None:
        await self.ws.send(text)

    async def request(
        self, request_type: str, timeout: float = 5.0, **payload: Any
    ) -> dict[str, Any]:
        """Send a request and wait for its reply; returns the result payload."""
        rid = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[rid] = future
        try:
            await self.ws.send(m.encode_request(request_type, rid, payload))
        except BaseException:
            self._pending.pop(rid, None)
            future.cancel()
            raise
        async with asyncio.timeout(timeout):
            frame = await future
        if frame["type"] == "error":
            raise ClientError(frame["payload"]["code"], frame["payload"]["message"])
        return dict(frame["payload"])

    async def next_event(
        self,
        event_type: str | None = None,
        *,
        where: Callable[[dict[str, Any]], bool] | None = None,
        timeout: float = 5.0,
    ) -> dict[str, Any]:
        """The next queued frame of that type (others before it are discarded)."""
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.events.get()
                if event_type is not None and frame["type"] != event_type:
                    continue
                if where is not None and not where(frame["payload"]):
                    continue
                return frame

    async def pending_events(self) -> list[dict[str, Any]]:
        """Every event the server sent before now (a ping round trip marks "now")."""
        await self.request("ping")
        frames = []
        while not self.events.empty():
            frames.append(self.events.get_nowait())
        return frames

    async def wait_call_state(
        self, call_id: str, state: str, timeout: float = 5.0
    ) -> dict[str, Any]:
        frame = await self.next_event(
            "call.updated",
            where=lambda p: p["call"]["id"] == call_id and p["call"]["state"] == state,
            timeout=timeout,
        )
        return dict(frame["payload"]["call"])

    async def wait_closed(self, timeout: float = 5.0) -> int | None:
        async with asyncio.timeout(timeout):
            await self.closed.wait()
        return self.ws.close_code

    async def close(self) -> None:
        await self.ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
