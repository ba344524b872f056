"""Typed keys for what the aiohttp application holds (no module globals)."""

from __future__ import annotations

from aiohttp import web

from signaling.config import Settings
from signaling.enrolment import FailureThrottle
from signaling.hub import Hub
from signaling.metrics import Metrics
from storage import MetadataStore

SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", MetadataStore)
HUB = web.AppKey("hub", Hub)
METRICS = web.AppKey("metrics", Metrics)
# Failed `POST /api/enrol` attempts per client IP (set up with the routes).
ENROLMENT_THROTTLE = web.AppKey("enrolment_throttle", FailureThrottle)
# Failed `POST /api/login` attempts per client IP, and per username (set up with the routes).
LOGIN_THROTTLE_BY_IP = web.AppKey("login_throttle_by_ip", FailureThrottle)
LOGIN_THROTTLE_BY_ACCOUNT = web.AppKey("login_throttle_by_account", FailureThrottle)
