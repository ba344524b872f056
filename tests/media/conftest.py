"""Media fixtures: every ICE candidate on loopback (RECIPES.md, "ICE on loopback")."""

from __future__ import annotations

import aioice.ice
import pytest


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch):
    """aioice never offers 127.0.0.1; here it offers only that, so no traffic leaves lo."""
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])
