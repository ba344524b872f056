"""Server-generated ids (UUIDv7, RFC 9562) and the server clock in UTC milliseconds."""

from __future__ import annotations

import secrets
import threading
import time
import uuid

_RAND_BITS = 74  # rand_a (12 bits) + rand_b (62 bits)
_RAND_MASK = (1 << _RAND_BITS) - 1
_MAX_STEP = 1 << 32

_lock = threading.Lock()
_last_ms = -1
_last_rand = 0


def now_ms() -> int:
    """Current UTC time in milliseconds since the Unix epoch."""
    return int(time.time() * 1000)


def new_id() -> str:
    """A new UUIDv7 string; strictly increasing within this process.

    Within one millisecond (or if the clock steps back) the 74 random bits are
    advanced by a random step instead of redrawn (RFC 9562 section 6.2, method 3).
    """
    global _last_ms, _last_rand
    ms = now_ms()
    with _lock:
        if ms > _last_ms:
            rand = secrets.randbits(_RAND_BITS)
        else:
            ms = _last_ms
            rand = _last_rand + 1 + secrets.randbelow(_MAX_STEP)
            if rand > _RAND_MASK:
                ms += 1
                rand = secrets.randbits(_RAND_BITS)
        _last_ms, _last_rand = ms, rand
    value = (
        (ms & 0xFFFF_FFFF_FFFF) << 80
        | 0x7 << 76
        | (rand >> 62) << 64
        | 0b10 << 62
        | (rand & ((1 << 62) - 1))
    )
    return str(uuid.UUID(int=value))


def id_time_ms(id_: str) -> int:
    """The millisecond timestamp embedded in a UUIDv7 string."""
    return uuid.UUID(id_).int >> 80
