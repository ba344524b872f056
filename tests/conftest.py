"""Shared fixtures: a real service on a loopback port, real WebSocket clients."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import aioice.ice
import pytest
from aiohttp.test_utils import TestServer
from argon2 import PasswordHasher

from signaling.app import create_app
from signaling.client import SignalingClient, login
from signaling.config import Settings
from signaling.hub import Hub
from signaling.keys import HUB, STORE
from storage import MetadataStore
from tests.serverproc import Server


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch):
    """aioice never offers 127.0.0.1; in tests it offers only that (RECIPES.md, "ICE on
    loopback"), so no media packet leaves the loopback interface."""
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])


CHEAP_HASHER = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)
PASSWORD = "correct horse battery"


def fast_settings(tmp_path: Path, **changes: Any) -> Settings:
    """Short timers so tests drive time-outs without waiting long."""
    base = Settings(
        data_dir=tmp_path / "data",
        port=0,
        ring_timeout_s=30,
        overflow_timeout_s=120,
        max_wait_s=900,
        rejoin_grace_s=60,
        auth_timeout_s=5,
        heartbeat_s=5,
        principal_recheck_s=60,
        demo_accounts=False,
    )
    return dataclasses.replace(base, **changes)


@dataclasses.dataclass
class Service:
    server: TestServer
    settings: Settings

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.server.port}/ws"

    @property
    def store(self) -> MetadataStore:
        return self.server.app[STORE]

    @property
    def hub(self) -> Hub:
        return self.server.app[HUB]

    def add_person(self, username: str, role: str, **expert: Any) -> str:
        account = self.store.create_account(username, username.title(), role, PASSWORD)
        if role == "expert":
            self.store.set_expert_profile(
                account.id, expert.get("specialties", ["neighbours"]), expert.get("on_duty", False)
            )
            self.store.set_expert_last_busy(account.id, expert.get("last_busy_at", 0))
            self.hub.load_expert(account.id)
            self.hub.apply_effects()
        return account.id

    def add_device(self, kind: str, name: str | None = None) -> tuple[str, str]:
        device, token = self.store.create_device(kind, name or f"{kind} device")
        return device.id, token

    async def login(self, username: str) -> str:
        return await login(self.base_url, username, PASSWORD)

    async def connect(self, **kwargs: Any) -> SignalingClient:
        return await SignalingClient.connect(self.ws_url, **kwargs)

    async def connect_person(self, username: str) -> SignalingClient:
        return await self.connect(session_token=await self.login(username))

    async def expert(
        self, username: str, *, available: bool = True, **profile: Any
    ) -> SignalingClient:
        """A connected expert (created on first use), marked available by default."""
        if self.store.find_account_by_username(username) is None:
            self.add_person(username, "expert", **profile)
        client = await self.connect_person(username)
        if available:
            await client.request("presence.set", availability="available")
        return client

    async def kiosk(self, name: str = "kiosk") -> SignalingClient:
        _, token = self.add_device("kiosk", name)
        return await self.connect(device_token=token)

    async def http(
        self, method: str, path: str, *, token: str | None = None, **kwargs: Any
    ) -> tuple[int, Any]:
        headers = dict(kwargs.pop("headers", {}))
        if token:
            headers["Authorization"] = f"Bearer {token}"
        async with aiohttp.ClientSession() as http:
            async with http.request(
                method, self.base_url + path, headers=headers, **kwargs
            ) as resp:
                if resp.content_type == "application/json":
                    return resp.status, await resp.json()
                return resp.status, await resp.text()


ServiceFactory = Callable[..., Awaitable[Service]]


@pytest.fixture
async def make_service(tmp_path: Path) -> AsyncIterator[ServiceFactory]:
    """Start a real service on 127.0.0.1 with the given setting changes."""
    servers: list[TestServer] = []

    async def start(**changes: Any) -> Service:
        settings = fast_settings(tmp_path, **changes)
        server = TestServer(create_app(settings, password_hasher=CHEAP_HASHER), host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return Service(server, settings)

    yield start
    for server in servers:
        await server.close()


@pytest.fixture
async def service(make_service: ServiceFactory) -> Service:
    return await make_service()


@pytest.fixture
async def servers() -> AsyncIterator[list[Server]]:
    """`mediation serve` processes a test starts; killed at the end if still running."""
    started: list[Server] = []
    yield started
    for server in started:
        if server.proc.returncode is None:
            server.proc.kill()
            await server.proc.wait()
