"""Device enrolment: the link and QR code an admin shows, and the failure throttle.

Pure apart from drawing the QR code (segno, in memory). The codes themselves are made,
hashed and redeemed by the metadata store (which refuses a code of another device kind
without spending it); the HTTP handlers are in `signaling.http_api`.
"""

from __future__ import annotations

import io
import re
from collections import OrderedDict, deque

import segno

from signaling.errors import BadRequest, SignalingError

# The page a device of each kind opens to enrol (the app serves web/ under /web/); the code
# travels in the fragment, so it never reaches a server log or a Referer header.
ENROLMENT_PAGES = {"kiosk": "/web/kiosk.html", "station": "/web/station.html"}

_CODE = re.compile(r"[0-9]{8}")
_SEPARATORS = re.compile(r"[\s-]")


class InvalidDeviceKind(BadRequest):
    """`POST /api/enrol` without a `kind`, or with one that is not a device kind (`kiosk`,
    `station`): the page enrolling must say what it is. Nothing is looked up or spent."""

    code = "invalid_device_kind"

    def __init__(self) -> None:
        kinds = " or ".join(sorted(ENROLMENT_PAGES))
        super().__init__(f"kind is required: the kind of device enrolling, {kinds}")


class WrongDeviceKind(SignalingError):
    """`POST /api/enrol`: the code is valid but made for a device of another kind (a
    kiosk's code typed on a station). Nothing is spent; the code still enrols its own
    device."""

    code = "wrong_device_kind"
    http_status = 409

    def __init__(self, kind: str) -> None:
        super().__init__(
            f"this code is not for a {kind}; enrol this device with a code made for it"
        )
        self.kind = kind


def enrolment_link(origin: str, kind: str, code: str) -> str:
    """`<origin>/web/kiosk.html#enrol=<code>` (or station.html for a station)."""
    return f"{origin.rstrip('/')}{ENROLMENT_PAGES[kind]}#enrol={code}"


def qr_svg(text: str) -> str:
    """A standalone SVG of the QR code of `text` (scales with its viewBox, no fixed size)."""
    buffer = io.BytesIO()
    segno.make(text, error="m", micro=False).save(
        buffer,
        kind="svg",
        xmldecl=False,
        svgns=True,
        nl=False,
        omitsize=True,
        border=4,
        dark="#000",
        light="#fff",  # a quiet zone that scans on a dark page too
        title="QR",
        svgclass="enrolment-qr",
        lineclass=None,
    )
    return buffer.getvalue().decode("utf-8")


def normalise_code(text: str) -> str | None:
    """The 8 digits of a code as typed ("1234 5678" and "1234-5678" are fine), or None."""
    digits = _SEPARATORS.sub("", text)
    return digits if _CODE.fullmatch(digits) else None


class FailureThrottle:
    """At most `limit` failures per client in a sliding `window_s`; pure (time passed in).

    Memory is bounded: at most `max_clients` clients are tracked, the least recently
    failing one is forgotten first.
    """

    def __init__(self, limit: int, window_s: float = 60.0, max_clients: int = 10_000) -> None:
        if limit < 1 or window_s <= 0 or max_clients < 1:
            raise ValueError("limit and max_clients must be >= 1, window_s > 0")
        self.limit = limit
        self.window_s = window_s
        self.max_clients = max_clients
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, client: str, now: float) -> deque[float]:
        failures = self._failures.get(client)
        if failures is None:
            return deque()
        while failures and failures[0] <= now - self.window_s:
            failures.popleft()
        if not failures:
            del self._failures[client]
        return failures

    def retry_after_s(self, client: str, now: float) -> float:
        """0 if the client may try now, else the seconds until it may."""
        failures = self._recent(client, now)
        if len(failures) < self.limit:
            return 0.0
        return max(0.0, failures[-self.limit] + self.window_s - now)

    def record_failure(self, client: str, now: float) -> None:
        failures = self._recent(client, now)
        if client not in self._failures:
            self._failures[client] = failures
        failures.append(now)
        self._failures.move_to_end(client)
        while len(self._failures) > self.max_clients:
            self._failures.popitem(last=False)
