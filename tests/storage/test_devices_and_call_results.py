"""Migration 4 in the metadata store: enrolment codes, device health, ratings, outcomes,
bookmarks, handle times and the new call filters."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from storage import (
    Bookmark,
    CallRecord,
    Conflict,
    DeviceHealth,
    EnrolmentRefused,
    MetadataStore,
    NotFound,
    Outcome,
    Rating,
    new_id,
)
from storage.metadata import hash_token
from storage.migrations import MIGRATIONS, apply_migrations

from .conftest import Clock


def make_call(store: MetadataStore, device_id: str, **fields: object) -> CallRecord:
    values: dict[str, object] = {
        "id": new_id(),
        "case_id": store.create_case("000000").id,
        "state": "ended",
        "end_reason": "completed",
        "dispute_type": "family",
        "caller_kind": "kiosk",
        "caller_device_id": device_id,
        "caller_account_id": None,
        "named_expert_id": None,
        "training_consent": False,
        "launched_at": 1_000,
        "answered_at": 2_000,
        "ended_at": 5_000,
    }
    values.update(fields)
    call = CallRecord(**values)  # type: ignore[arg-type]
    store.insert_call(call)
    return call


# -- migration ---------------------------------------------------------------------


def test_migration_4_upgrades_a_version_3_database_and_keeps_its_data(
    db_path: Path, hasher: PasswordHasher
) -> None:
    """A database made by the previous release gains the new tables; its rows survive."""
    db_path.parent.mkdir(parents=True)
    conn = sqlite3.connect(str(db_path), isolation_level=None)
    conn.execute("PRAGMA foreign_keys = ON")
    assert apply_migrations(conn, MIGRATIONS[:3]) == 3
    conn.execute(
        "INSERT INTO devices (id, kind, name, token_hash, created_at)"
        " VALUES ('d1', 'kiosk', 'Hall', 'h', 1)"
    )
    conn.close()
    store = MetadataStore.open(db_path, hasher)
    try:
        assert store.schema_version() == 4
        assert store.get_device("d1").name == "Hall"
        code, _ = store.create_enrolment_code("d1", 600)
        assert store.redeem_enrolment_code(code, "kiosk")[0].id == "d1"
    finally:
        store.close()


# -- enrolment codes ---------------------------------------------------------------


def test_an_enrolment_code_is_8_digits_stored_hashed_and_issues_a_fresh_token(
    clocked_store: MetadataStore, clock: Clock, db_path: Path
) -> None:
    """The code works once, only its hash is stored, and the device's old token stops."""
    store = clocked_store
    device, old_token = store.create_device("kiosk", "Hall A")
    code, expires_at = store.create_enrolment_code(device.id, 600)
    assert len(code) == 8 and code.isdigit()
    assert expires_at == clock.now + 600_000
    assert store.pending_enrolments() == {device.id: expires_at}
    with sqlite3.connect(str(db_path)) as conn:
        stored = conn.execute("SELECT code_hash FROM enrolment_codes").fetchall()
    assert stored == [(hash_token(code),)] and code not in stored[0][0]

    enrolled, token = store.redeem_enrolment_code(code, "kiosk")
    assert enrolled.id == device.id and enrolled.token_generation == 2
    assert store.find_device_by_token(token) == enrolled
    assert store.find_device_by_token(old_token) is None
    assert store.pending_enrolments() == {}
    with pytest.raises(EnrolmentRefused) as err:
        store.redeem_enrolment_code(code, "kiosk")
    assert err.value.reason == "unknown"


def test_a_new_code_replaces_the_unused_one(clocked_store: MetadataStore) -> None:
    device, _ = clocked_store.create_device("station", "Room 1")
    first, _ = clocked_store.create_enrolment_code(device.id, 600)
    second, _ = clocked_store.create_enrolment_code(device.id, 600)
    with pytest.raises(EnrolmentRefused) as err:
        clocked_store.redeem_enrolment_code(first, "station")
    assert err.value.reason == "unknown"
    assert clocked_store.redeem_enrolment_code(second, "station")[0].id == device.id


def test_an_expired_code_is_refused_and_spent(clocked_store: MetadataStore, clock: Clock) -> None:
    device, token = clocked_store.create_device("kiosk", "Hall A")
    code, expires_at = clocked_store.create_enrolment_code(device.id, 600)
    clock.now = expires_at
    with pytest.raises(EnrolmentRefused) as err:
        clocked_store.redeem_enrolment_code(code, "kiosk")
    assert err.value.reason == "expired"
    assert clocked_store.find_device_by_token(token) is not None  # nothing rotated
    clock.now = expires_at - 1  # even back in time, the expired code is gone
    with pytest.raises(EnrolmentRefused) as err:
        clocked_store.redeem_enrolment_code(code, "kiosk")
    assert err.value.reason == "unknown"


def test_a_code_for_another_kind_of_device_is_refused_and_stays_usable(
    clocked_store: MetadataStore,
) -> None:
    """A station's code typed at a kiosk enrols nothing and is not spent."""
    device, token = clocked_store.create_device("station", "Room 1")
    code, _ = clocked_store.create_enrolment_code(device.id, 600)
    with pytest.raises(EnrolmentRefused) as err:
        clocked_store.redeem_enrolment_code(code, "kiosk")
    assert err.value.reason == "wrong_kind"
    assert clocked_store.find_device_by_token(token) is not None  # nothing rotated
    assert clocked_store.redeem_enrolment_code(code, "station")[0].id == device.id


def test_a_disabled_device_cannot_enrol(clocked_store: MetadataStore) -> None:
    device, _ = clocked_store.create_device("kiosk", "Hall A")
    code, _ = clocked_store.create_enrolment_code(device.id, 600)
    clocked_store.set_device_disabled(device.id, True)
    with pytest.raises(EnrolmentRefused) as err:
        clocked_store.redeem_enrolment_code(code, "kiosk")
    assert err.value.reason == "device_disabled"
    assert clocked_store.get_device(device.id).token_generation == 1


def test_codes_for_unknown_devices_and_bad_lifetimes_are_refused(store: MetadataStore) -> None:
    with pytest.raises(NotFound):
        store.create_enrolment_code("no-such-device", 600)
    device, _ = store.create_device("kiosk", "Hall A")
    with pytest.raises(ValueError):
        store.create_enrolment_code(device.id, 0)


# -- device health -----------------------------------------------------------------


def test_device_health_keeps_the_latest_report_and_returns_the_previous(
    store: MetadataStore,
) -> None:
    device, _ = store.create_device("kiosk", "Hall A")
    assert store.get_device_health(device.id) is None
    first = DeviceHealth(device.id, "ok", "ok", "web-1", 100)
    assert store.save_device_health(first) is None
    second = DeviceHealth(device.id, "denied", "ok", "web-2", 200)
    assert store.save_device_health(second) == first
    assert store.get_device_health(device.id) == second
    assert store.list_device_health() == {device.id: second}
    with pytest.raises(ValueError):
        DeviceHealth(device.id, "broken", "ok", "web-1", 1)
    with pytest.raises(NotFound):
        store.save_device_health(DeviceHealth("nope", "ok", "ok", "web-1", 1))


# -- ratings, outcomes, bookmarks -----------------------------------------------------


def test_one_rating_per_call(store: MetadataStore) -> None:
    device, _ = store.create_device("kiosk", "Hall A")
    call = make_call(store, device.id)
    other = make_call(store, device.id)
    rating = Rating(call.id, 4, "helpful", device.id, None, 9_000)
    store.add_rating(rating)
    assert store.get_rating(call.id) == rating
    assert store.ratings_for([call.id, other.id]) == {call.id: rating}
    with pytest.raises(Conflict):
        store.add_rating(Rating(call.id, 1, None, device.id, None, 9_500))
    with pytest.raises(ValueError):
        Rating(other.id, 6, None, device.id, None, 1)
    with pytest.raises(ValueError):
        Rating(other.id, 0, None, device.id, None, 1)
    with pytest.raises(NotFound):
        store.add_rating(Rating("no-such-call", 3, None, device.id, None, 1))


def test_the_latest_outcome_wins_on_the_call_and_on_its_case(store: MetadataStore) -> None:
    device, _ = store.create_device("kiosk", "Hall A")
    expert = store.create_account("amy", "Amy", "expert", "pw-123456").id
    first_call = make_call(store, device.id)
    second_call = make_call(store, device.id, case_id=first_call.case_id)
    settled = Outcome(first_call.id, first_call.case_id, "settled", "Agreed.", expert, 10)
    assert store.set_outcome(settled) is None
    referred = Outcome(first_call.id, first_call.case_id, "referred", "To court.", expert, 20)
    assert store.set_outcome(referred) == settled
    assert store.get_outcome(first_call.id) == referred
    assert first_call.case_id is not None
    assert store.get_case_outcome(first_call.case_id) == referred
    later = Outcome(second_call.id, second_call.case_id, "partly_settled", "", expert, 30)
    store.set_outcome(later)
    assert store.get_case_outcome(first_call.case_id) == later
    assert store.outcomes_for([first_call.id, second_call.id]) == {
        first_call.id: referred,
        second_call.id: later,
    }
    with pytest.raises(ValueError):
        Outcome(first_call.id, None, "won", "", expert, 1)


def test_an_outcome_without_a_case_stays_on_the_call(store: MetadataStore) -> None:
    device, _ = store.create_device("kiosk", "Hall A")
    expert = store.create_account("amy", "Amy", "expert", "pw-123456").id
    call = make_call(store, device.id, case_id=None)
    outcome = Outcome(call.id, None, "not_settled", "", expert, 10)
    store.set_outcome(outcome)
    assert store.get_outcome(call.id) == outcome


def test_bookmarks_are_listed_in_time_order(store: MetadataStore) -> None:
    device, _ = store.create_device("kiosk", "Hall A")
    expert = store.create_account("amy", "Amy", "expert", "pw-123456").id
    call = make_call(store, device.id)
    late = Bookmark(new_id(), call.id, expert, 3_000, 1_000, "agreement reached")
    early = Bookmark(new_id(), call.id, expert, 2_500, 500, "")
    store.add_bookmark(late)
    store.add_bookmark(early)
    assert store.list_bookmarks(call.id) == [early, late]
    with pytest.raises(NotFound):
        store.add_bookmark(Bookmark(new_id(), "no-such-call", expert, 1, 0, ""))
    with pytest.raises(ValueError):
        Bookmark(new_id(), call.id, expert, 1, -1, "")


# -- calls: handle times and filters ----------------------------------------------------


def test_handle_times_come_from_the_last_answered_calls(store: MetadataStore) -> None:
    device, _ = store.create_device("kiosk", "Hall A")
    for n in range(25):
        make_call(store, device.id, answered_at=10_000 * n, ended_at=10_000 * n + 1_000 * n)
    make_call(store, device.id, answered_at=None, ended_at=999_999, end_reason="cancelled")
    make_call(store, device.id, state="active", end_reason=None, ended_at=None)
    times = store.recent_handle_times_ms(20)
    assert times == [1_000 * n for n in range(24, 4, -1)]


def test_calls_filter_by_state_and_case(store: MetadataStore) -> None:
    device, _ = store.create_device("kiosk", "Hall A")
    ended = make_call(store, device.id)
    queued = make_call(
        store, device.id, state="queued", end_reason=None, answered_at=None, ended_at=None
    )
    active = make_call(
        store, device.id, state="active", end_reason=None, ended_at=None, case_id=ended.case_id
    )
    live = {c.id for c in store.list_calls(states=["launching", "ringing", "queued", "active"])}
    assert live == {queued.id, active.id}
    assert [c.id for c in store.list_calls(states=["ended"])] == [ended.id]
    assert store.list_calls(states=[]) == []
    assert {c.id for c in store.list_calls(case_id=ended.case_id)} == {ended.id, active.id}
    with pytest.raises(ValueError):
        store.list_calls(states=["lost"])
