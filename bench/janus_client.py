"""Janus (Debian `janus`, videoroom plugin) for bench/relay.py: its configuration and a client.

- `write_config(folder, address, port)`: copies Debian's /etc/janus/*.jcfg into `folder` and
  edits the copies: media and ICE on `address` only (`interface`, `ice_enforce_list`), no
  STUN/TURN, only the videoroom plugin and the plain-HTTP transport (bound to `address`),
  no loggers or event handlers, no admin API.
- `JanusSession`: one Janus session over the HTTP API (POST requests, long-poll GET for
  events, keepalives every 25 s), with `attach()` for videoroom handles.

Used by `bench/relay_peer.py` (`--backend janus`). All traffic goes to the address given by
the bench (the server end of its veth pair).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
import secrets
import shutil
from pathlib import Path
from typing import Any

import aiohttp

DEBIAN_CONFIGS = Path("/etc/janus")
JANUS_BINARY = "/usr/bin/janus"
READY_MARKER = "HTTP webserver started"
KEEPALIVE_S = 25.0  # Janus drops a session after 60 s without a request
PLUGIN = "janus.plugin.videoroom"
KEEP_PLUGINS = {"libjanus_videoroom.so"}
KEEP_TRANSPORTS = {"libjanus_http.so"}


def _library_names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("libjanus_*.so"))


def _set_section(text: str, section: str, body: str) -> str:
    """Replace `section: { ... }` (top level, no nested braces) with `section: {body}`."""
    pattern = re.compile(rf"^{section}:\s*\{{.*?^\}}", re.S | re.M)
    block = f"{section}: {{\n{body}}}"
    if pattern.search(text):
        return pattern.sub(lambda _: block, text, count=1)
    return text + "\n" + block + "\n"


def _set_item(text: str, section: str, key: str, value: str) -> str:
    """Set `key = value` inside a top-level section (replacing an active line if present)."""
    pattern = re.compile(rf"^({section}:\s*\{{)(.*?)(^\}})", re.S | re.M)
    match = pattern.search(text)
    if match is None:
        return text + f"\n{section}: {{\n\t{key} = {value}\n}}\n"
    body = re.sub(rf"^\s*{key}\s*=.*\n", "", match.group(2), flags=re.M)
    body = body.rstrip("\n") + f"\n\t{key} = {value}\n"
    return text[: match.start(2)] + body + text[match.end(2) :]


def write_config(folder: Path, address: str, port: int, debug_level: int = 4) -> Path:
    """Temp copy of Debian's Janus configuration, edited for the bench. Returns janus.jcfg."""
    folder.mkdir(parents=True, exist_ok=True)
    for source in DEBIAN_CONFIGS.glob("*.jcfg"):
        shutil.copyfile(source, folder / source.name)
    main = folder / "janus.jcfg"
    text = main.read_text()
    folders = {
        key: Path(value)
        for key, value in re.findall(r'^\s*(\w+_folder)\s*=\s*"([^"]*)"', text, re.M)
    }
    plugins = folders.get("plugins_folder", Path("/usr/lib/x86_64-linux-gnu/janus/plugins"))
    transports = folders.get(
        "transports_folder", Path("/usr/lib/x86_64-linux-gnu/janus/transports")
    )
    loggers = folders.get("loggers_folder", Path("/usr/lib/x86_64-linux-gnu/janus/loggers"))
    events = folders.get("events_folder", Path("/usr/lib/x86_64-linux-gnu/janus/events"))

    def disable(folder_: Path, keep: set[str]) -> str:
        names = [n for n in _library_names(folder_) if n not in keep]
        return f'\tdisable = "{",".join(names)}"\n' if names else ""

    text = _set_item(text, "general", "configs_folder", f'"{folder}"')
    text = _set_item(text, "general", "debug_level", str(debug_level))
    text = _set_item(text, "general", "debug_colors", "false")
    text = _set_item(text, "general", "interface", f'"{address}"')
    text = _set_section(text, "media", '\tipv6 = false\n\trtp_port_range = "20000-40000"\n')
    # No stun_server / turn_server: host candidates on the veth address only.
    text = _set_section(
        text,
        "nat",
        f'\tnice_debug = false\n\tice_enforce_list = "{address}"\n'
        "\tignore_unreachable_ice_server = true\n",
    )
    text = _set_section(text, "plugins", disable(plugins, KEEP_PLUGINS))
    text = _set_section(text, "transports", disable(transports, KEEP_TRANSPORTS))
    text = _set_section(text, "loggers", disable(loggers, set()))
    text = _set_section(text, "events", "\tbroadcast = false\n" + disable(events, set()))
    main.write_text(text)

    http = folder / "janus.transport.http.jcfg"
    htext = http.read_text()
    htext = _set_item(htext, "general", "json", '"plain"')
    htext = _set_item(htext, "general", "http", "true")
    htext = _set_item(htext, "general", "port", str(port))
    htext = _set_item(htext, "general", "ip", f'"{address}"')
    htext = _set_item(htext, "general", "https", "false")
    htext = _set_item(htext, "admin", "admin_http", "false")
    htext = _set_item(htext, "admin", "admin_https", "false")
    http.write_text(htext)

    # The demo rooms of Debian's videoroom config are not used; rooms are made per call.
    (folder / "janus.plugin.videoroom.jcfg").write_text("general: {\n}\n")
    return main


def janus_command(folder: Path) -> list[str]:
    return [JANUS_BINARY, "-F", str(folder), "-C", str(folder / "janus.jcfg"), "-o"]


class JanusError(RuntimeError):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"Janus error {code}: {reason}")
        self.code = code
        self.reason = reason


class Handle:
    """One attached videoroom handle: `request()` (synchronous) and `message()` (async)."""

    def __init__(self, session: JanusSession, handle_id: int) -> None:
        self.session = session
        self.id = handle_id
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.webrtcup = asyncio.Event()
        self.media: dict[str, bool] = {}
        self.hangup: str | None = None

    async def request(self, body: dict[str, Any], timeout: float = 10) -> dict[str, Any]:
        """A synchronous plugin request (create, exists, ...): the plugin data of the reply."""
        reply = await self.session.post(
            {"janus": "message", "body": body}, handle=self.id, timeout=timeout
        )
        if reply.get("janus") != "success":
            raise JanusError(reply.get("error", {}).get("code", 0), str(reply))
        data = reply["plugindata"]["data"]
        if "error_code" in data:
            raise JanusError(data["error_code"], data.get("error", ""))
        return data

    async def message(
        self, body: dict[str, Any], jsep: dict[str, Any] | None = None, timeout: float = 15
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """An asynchronous plugin request: (plugin data, jsep) of its event."""
        tx = self.session.transaction()
        waiter = self.session.expect(tx)
        payload: dict[str, Any] = {"janus": "message", "body": body, "transaction": tx}
        if jsep is not None:
            payload["jsep"] = jsep
        try:
            ack = await self.session.post(payload, handle=self.id, timeout=timeout)
            if ack.get("janus") == "error":
                err = ack.get("error", {})
                raise JanusError(err.get("code", 0), err.get("reason", ""))
            event = ack if ack.get("janus") == "event" else await asyncio.wait_for(waiter, timeout)
        finally:
            self.session.forget(tx)
        data = event.get("plugindata", {}).get("data", {})
        if "error_code" in data:
            raise JanusError(data["error_code"], data.get("error", ""))
        return data, event.get("jsep")

    async def detach(self) -> None:
        with contextlib.suppress(Exception):
            await self.session.post({"janus": "detach"}, handle=self.id, timeout=5)


class JanusSession:
    """A Janus session over plain HTTP: requests by POST, events by long-poll GET."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.http: aiohttp.ClientSession | None = None
        self.id: int | None = None
        self.handles: dict[int, Handle] = {}
        self.errors: list[str] = []
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._counter = itertools.count()
        self._prefix = secrets.token_hex(4)
        self._tasks: list[asyncio.Task[None]] = []

    def transaction(self) -> str:
        return f"{self._prefix}-{next(self._counter)}"

    def expect(self, tx: str) -> asyncio.Future[dict[str, Any]]:
        future = asyncio.get_running_loop().create_future()
        self._pending[tx] = future
        return future

    def forget(self, tx: str) -> None:
        future = self._pending.pop(tx, None)
        if future is not None and not future.done():
            future.cancel()

    async def post(
        self, payload: dict[str, Any], handle: int | None = None, timeout: float = 10
    ) -> dict[str, Any]:
        assert self.http is not None
        payload.setdefault("transaction", self.transaction())
        url = self.base_url
        if self.id is not None:
            url += f"/{self.id}"
            if handle is not None:
                url += f"/{handle}"
        async with self.http.post(
            url, json=payload, timeout=aiohttp.ClientTimeout(total=timeout)
        ) as resp:
            return await resp.json(content_type=None)

    async def create(self, timeout: float = 10) -> None:
        # One connection pool per session (like one browser tab): the long poll holds one.
        self.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=8))
        reply = await self.post({"janus": "create"}, timeout=timeout)
        if reply.get("janus") != "success":
            raise RuntimeError(f"Janus create failed: {reply}")
        self.id = int(reply["data"]["id"])
        self._tasks = [
            asyncio.create_task(self._poll()),
            asyncio.create_task(self._keepalive()),
        ]

    async def attach(self, timeout: float = 10) -> Handle:
        reply = await self.post({"janus": "attach", "plugin": PLUGIN}, timeout=timeout)
        if reply.get("janus") != "success":
            raise RuntimeError(f"Janus attach failed: {reply}")
        handle = Handle(self, int(reply["data"]["id"]))
        self.handles[handle.id] = handle
        return handle

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(KEEPALIVE_S)
            try:
                await self.post({"janus": "keepalive"}, timeout=10)
            except Exception as err:  # noqa: BLE001 - recorded, retried
                self.errors.append(f"keepalive: {err!r}")

    async def _poll(self) -> None:
        assert self.http is not None
        url = f"{self.base_url}/{self.id}?maxev=20"
        while True:
            try:
                async with self.http.get(url, timeout=aiohttp.ClientTimeout(total=45)) as resp:
                    body = await resp.json(content_type=None)
            except asyncio.CancelledError:
                raise
            except Exception as err:  # noqa: BLE001 - recorded, retried after a pause
                self.errors.append(f"long poll: {err!r}")
                await asyncio.sleep(0.5)
                continue
            for event in body if isinstance(body, list) else [body]:
                self._dispatch(event)

    def _dispatch(self, event: dict[str, Any]) -> None:
        kind = event.get("janus")
        tx = event.get("transaction")
        handle = self.handles.get(event.get("sender", -1))
        if kind == "event" and tx in self._pending:
            future = self._pending.pop(tx)
            if not future.done():
                future.set_result(event)
            return
        if handle is None:
            return
        if kind == "webrtcup":
            handle.webrtcup.set()
        elif kind == "media":
            handle.media[event.get("type", "?")] = bool(event.get("receiving"))
        elif kind == "hangup":
            handle.hangup = event.get("reason", "hangup")
        handle.events.put_nowait(event)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.http is not None:
            if self.id is not None:
                with contextlib.suppress(Exception):
                    await self.post({"janus": "destroy"}, timeout=5)
            await self.http.close()
