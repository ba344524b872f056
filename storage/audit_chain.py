"""Hash chain of the audit log; pure functions, no I/O."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from .records import AuditEntry

GENESIS_HASH = "0" * 64
"""The prev_hash of the first entry."""

LINKED_FIELDS = ("seq", "at", "actor", "action", "target", "details")
"""The entry fields covered by its hash."""


def canonical_json(obj: Any) -> str:
    """Canonical JSON text: sorted keys, no spaces, UTF-8 characters kept."""
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def link_hash(prev_hash: str, entry_fields: Mapping[str, Any]) -> str:
    """sha256 hex of prev_hash + "\\n" + canonical JSON of the linked fields."""
    fields = {name: entry_fields[name] for name in LINKED_FIELDS}
    data = prev_hash + "\n" + canonical_json(fields)
    return hashlib.sha256(data.encode("utf-8")).hexdigest()


def entry_fields(entry: AuditEntry) -> dict[str, Any]:
    """The linked fields of an entry as a dict."""
    return {name: getattr(entry, name) for name in LINKED_FIELDS}


def verify_chain(
    entries: Iterable[AuditEntry], *, prev_hash: str = GENESIS_HASH, prev_seq: int = 0
) -> int | None:
    """Return the seq of the first entry that does not verify, or None if all do.

    An entry fails if its seq is not the previous seq + 1, its prev_hash is not
    the previous entry's hash, or its hash does not match its contents.
    """
    for entry in entries:
        if (
            entry.seq != prev_seq + 1
            or entry.prev_hash != prev_hash
            or link_hash(prev_hash, entry_fields(entry)) != entry.hash
        ):
            return entry.seq
        prev_seq, prev_hash = entry.seq, entry.hash
    return None
