"""Structured logging: call, participant and connection ids on every line.

The ids travel in context variables, so a log line written anywhere while a
request for a call is handled carries that call's id without passing it around.
`configure_logging` is called once, by the entry point.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

call_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("call_id", default=None)
participant_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "participant_id", default=None
)
conn_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("conn_id", default=None)

_CONTEXT = (
    ("call_id", call_id_var),
    ("participant_id", participant_id_var),
    ("conn_id", conn_id_var),
)


@contextmanager
def log_context(
    *, call_id: str | None = None, participant_id: str | None = None, conn_id: str | None = None
) -> Iterator[None]:
    """Set the given ids for the log lines written inside the block."""
    tokens = []
    for value, var in (
        (call_id, call_id_var),
        (participant_id, participant_id_var),
        (conn_id, conn_id_var),
    ):
        if value is not None:
            tokens.append((var, var.set(value)))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


class ContextFilter(logging.Filter):
    """Copies the context ids onto each record (explicit `extra=` values win)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in _CONTEXT:
            if getattr(record, name, None) is None:
                setattr(record, name, var.get())
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": round(record.created * 1000),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name, _ in _CONTEXT:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        ids = " ".join(
            f"{name}={getattr(record, name)}"
            for name, _ in _CONTEXT
            if getattr(record, name, None) is not None
        )
        return f"{text} [{ids}]" if ids else text


def configure_logging(log_format: str, level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
