from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from storage.audit_chain import GENESIS_HASH, link_hash, verify_chain
from storage.records import AuditEntry


def make_chain(n: int) -> list[AuditEntry]:
    entries: list[AuditEntry] = []
    prev = GENESIS_HASH
    for seq in range(1, n + 1):
        fields: dict[str, Any] = {
            "seq": seq,
            "at": 1_700_000_000_000 + seq,
            "actor": f"account:{seq}",
            "action": "recording.play",
            "target": f"call:{seq}",
            "details": {"n": seq, "note": "回放"},
        }
        entry = AuditEntry(**fields, prev_hash=prev, hash=link_hash(prev, fields))
        entries.append(entry)
        prev = entry.hash
    return entries


def test_link_hash_is_sha256_of_prev_hash_newline_canonical_json() -> None:
    """link_hash is sha256 hex of prev_hash, a newline and the sorted, compact, UTF-8 JSON."""
    fields = {
        "seq": 1,
        "at": 5,
        "actor": "a",
        "action": "x",
        "target": None,
        "details": {"k": "中"},
    }
    text = '{"action":"x","actor":"a","at":5,"details":{"k":"中"},"seq":1,"target":null}'
    expected = hashlib.sha256((GENESIS_HASH + "\n" + text).encode("utf-8")).hexdigest()
    assert link_hash(GENESIS_HASH, fields) == expected


def test_link_hash_covers_only_the_six_entry_fields() -> None:
    """Extra keys (such as the stored hashes) do not change an entry's hash."""
    fields = {"seq": 1, "at": 5, "actor": "a", "action": "x", "target": "t", "details": {}}
    assert link_hash("ab", {**fields, "hash": "zz", "prev_hash": "yy"}) == link_hash("ab", fields)


def test_link_hash_depends_on_prev_hash() -> None:
    """The same fields after a different previous hash give a different hash."""
    fields = {"seq": 2, "at": 5, "actor": "a", "action": "x", "target": "t", "details": {}}
    assert link_hash("a" * 64, fields) != link_hash("b" * 64, fields)


def test_verify_chain_accepts_intact_and_empty_chains() -> None:
    """An untouched chain, and an empty one, verify (None)."""
    assert verify_chain(make_chain(5)) is None
    assert verify_chain([]) is None


def test_verify_chain_reports_edited_entry() -> None:
    """An entry whose contents changed is reported by its seq."""
    chain = make_chain(5)
    chain[2] = dataclasses.replace(chain[2], details={"n": 999})
    assert verify_chain(chain) == 3


def test_verify_chain_reports_entry_after_rehashed_edit() -> None:
    """An edit with a recomputed hash breaks the link of the next entry."""
    chain = make_chain(5)
    edited = dataclasses.replace(chain[1], actor="someone-else")
    fields = json.loads(json.dumps(dataclasses.asdict(edited)))
    chain[1] = dataclasses.replace(edited, hash=link_hash(edited.prev_hash, fields))
    assert verify_chain(chain) == 3


def test_verify_chain_reports_gap_after_deleted_entry() -> None:
    """A removed entry is reported at the entry that follows it."""
    chain = make_chain(5)
    del chain[1]
    assert verify_chain(chain) == 3


def test_verify_chain_reports_bad_first_prev_hash() -> None:
    """The first entry must link to 64 zeros."""
    chain = make_chain(2)
    first = chain[0]
    fields = {k: getattr(first, k) for k in ("seq", "at", "actor", "action", "target", "details")}
    chain[0] = dataclasses.replace(first, prev_hash="1" * 64, hash=link_hash("1" * 64, fields))
    assert verify_chain(chain) == 1


def test_verify_chain_continues_from_a_known_head() -> None:
    """A tail of the chain verifies when given the hash and seq it follows."""
    chain = make_chain(6)
    assert verify_chain(chain[3:], prev_hash=chain[2].hash, prev_seq=3) is None
    assert verify_chain(chain[3:]) == 4
