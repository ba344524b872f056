"""The aiohttp application factory: routes, middlewares, and ordered start-up/clean-up."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web

from signaling.config import Settings
from signaling.http_api import add_routes, error_middleware, origin_middleware
from signaling.hub import Hub
from signaling.keys import HUB, METRICS, SETTINGS, STORE
from signaling.metrics import Metrics
from signaling.ws import websocket_handler
from storage import MetadataStore

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent.parent / "web"


def create_app(settings: Settings, *, password_hasher: Any = None) -> web.Application:
    """Build the service. The store opens and the hub starts when the app starts."""
    app = web.Application(
        middlewares=[error_middleware, origin_middleware],
        client_max_size=settings.max_message_bytes,
    )
    app[SETTINGS] = settings
    app[METRICS] = Metrics()

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        store = MetadataStore.open(settings.db_path, password_hasher=password_hasher)
        hub = Hub(settings, store, app[METRICS])
        app[STORE] = store
        app[HUB] = hub
        await hub.start()
        log.info("service ready on %s:%s", settings.host, settings.port)
        try:
            yield
        finally:
            await hub.close()
            store.close()

    async def on_shutdown(app: web.Application) -> None:
        # Runs after the listening sockets stopped accepting: tell clients to
        # reconnect later, then close their WebSockets.
        await app[HUB].shutdown()

    async def ws(request: web.Request) -> web.StreamResponse:
        return await websocket_handler(request, request.app[HUB])

    app.cleanup_ctx.append(lifecycle)
    app.on_shutdown.append(on_shutdown)
    app.router.add_get("/ws", ws)
    add_routes(app)
    if WEB_DIR.is_dir():

        async def index(request: web.Request) -> web.FileResponse:
            return web.FileResponse(WEB_DIR / "index.html")

        app.router.add_get("/", index)
        app.router.add_static("/web/", WEB_DIR)
    return app
