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
        app.router.add_get("/", web_index)
        app.router.add_get("/web/{path:.+}", web_file)
    return app


# The pages are ES modules: browsers refuse a module served with another type, so the type
# comes from this table, not from the host's mime database.
WEB_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".wav": "audio/wav",
}


def _web_response(path: Path) -> web.FileResponse:
    # no-cache: kiosks revalidate (ETag/Last-Modified) and pick up a new release at reload.
    return web.FileResponse(
        path,
        headers={
            "Content-Type": WEB_TYPES[path.suffix],
            "Cache-Control": "no-cache",
            "X-Content-Type-Options": "nosniff",
        },
    )


async def web_index(request: web.Request) -> web.FileResponse:
    return _web_response(WEB_DIR / "index.html")


async def web_file(request: web.Request) -> web.FileResponse:
    """A file under web/ with a known type; anything else (or outside web/) is 404."""
    path = (WEB_DIR / request.match_info["path"]).resolve()
    if (
        not path.is_relative_to(WEB_DIR)
        or path.suffix not in WEB_TYPES
        or not path.is_file()
        or any(part.startswith(".") for part in path.relative_to(WEB_DIR).parts)
    ):
        raise web.HTTPNotFound()
    return _web_response(path)
