"""Waiting on conditions without polling sleeps."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def until(condition: Callable[[], bool], changed: asyncio.Event, timeout: float = 10) -> None:
    """Wait until `condition()` holds, re-checking whenever `changed` is set."""
    async with asyncio.timeout(timeout):
        while True:
            changed.clear()
            if condition():
                return
            await changed.wait()
