from __future__ import annotations

import time
import uuid

import pytest

from storage import ids


def test_new_id_is_uuid_version_7_with_rfc_variant() -> None:
    """A new id parses as a UUID with version 7 and the RFC 9562 variant."""
    u = uuid.UUID(ids.new_id())
    assert u.version == 7
    assert u.variant == uuid.RFC_4122


def test_new_id_embeds_current_unix_milliseconds() -> None:
    """The top 48 bits of an id are the current Unix time in milliseconds."""
    before = ids.now_ms()
    id_ = ids.new_id()
    after = ids.now_ms()
    assert before <= ids.id_time_ms(id_) <= after


def test_ids_sort_in_creation_order() -> None:
    """Ids created one after another are unique and sort (as strings) in creation order."""
    made = [ids.new_id() for _ in range(2000)]
    assert len(set(made)) == len(made)
    assert sorted(made) == made


def test_ids_keep_increasing_within_one_millisecond(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ids created in the same millisecond still increase and keep that timestamp."""
    monkeypatch.setattr(ids, "now_ms", lambda: 1_800_000_000_000)
    made = [ids.new_id() for _ in range(500)]
    assert sorted(made) == made and len(set(made)) == 500
    assert {ids.id_time_ms(i) for i in made} == {1_800_000_000_000}
    assert all(uuid.UUID(i).version == 7 for i in made)


def test_ids_keep_increasing_when_clock_steps_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """If the clock goes backwards, new ids still sort after earlier ones."""
    monkeypatch.setattr(ids, "now_ms", lambda: 1_900_000_000_000)
    first = ids.new_id()
    monkeypatch.setattr(ids, "now_ms", lambda: 1_899_999_999_000)
    assert ids.new_id() > first


def test_random_part_overflow_moves_to_next_millisecond(monkeypatch: pytest.MonkeyPatch) -> None:
    """When the random bits of a millisecond are used up, the id moves to the next one."""
    monkeypatch.setattr(ids, "now_ms", lambda: 1_950_000_000_000)
    first = ids.new_id()
    monkeypatch.setattr(ids, "_last_rand", ids._RAND_MASK)
    second = ids.new_id()
    assert second > first
    assert ids.id_time_ms(second) == 1_950_000_000_001


def test_now_ms_is_unix_time_in_milliseconds() -> None:
    """now_ms() is time.time() in whole milliseconds."""
    before = int(time.time() * 1000)
    value = ids.now_ms()
    after = int(time.time() * 1000)
    assert isinstance(value, int) and before <= value <= after
