from __future__ import annotations

import enum
import hashlib
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from storage import (
    GENESIS_HASH,
    Account,
    AuditChainBroken,
    CallRecord,
    Conflict,
    InvitationRecord,
    MetadataStore,
    NotFound,
    ParticipantRecord,
    StorageError,
    link_hash,
    new_id,
)
from storage.migrations import MIGRATIONS, Migration, apply_migrations

from .conftest import Clock


def raw(path: Path) -> sqlite3.Connection:
    """A plain connection that bypasses the store."""
    return sqlite3.connect(str(path), isolation_level=None)


# -- migrations and lifecycle -------------------------------------------------------


def test_open_creates_parent_dirs_and_records_schema_version(
    store: MetadataStore, db_path: Path
) -> None:
    """Opening a new file creates its directory, applies every migration and records them."""
    assert db_path.exists()
    assert store.schema_version() == MIGRATIONS[-1].version
    with raw(db_path) as conn:
        rows = conn.execute("SELECT version, name FROM schema_migrations").fetchall()
    assert rows == [(m.version, m.name) for m in MIGRATIONS]
    assert rows[:2] == [(1, "initial schema"), (2, "media statistics per participant")]


def test_reopen_does_not_rerun_migrations(db_path: Path, hasher: PasswordHasher) -> None:
    """Reopening keeps the recorded migration and does not reseed changed data."""
    store = MetadataStore.open(db_path, hasher)
    store.upsert_dispute_type("family", "家庭", "Family", active=False, sort=2)
    store.close()
    with raw(db_path) as conn:
        applied = conn.execute("SELECT * FROM schema_migrations").fetchall()
    store = MetadataStore.open(db_path, hasher)
    try:
        assert store.schema_version() == MIGRATIONS[-1].version
        assert store.get_dispute_type("family").name_zh == "家庭"
        assert not store.get_dispute_type("family").active
    finally:
        store.close()
    with raw(db_path) as conn:
        assert conn.execute("SELECT * FROM schema_migrations").fetchall() == applied


def test_missing_migrations_apply_in_order_once(db_path: Path, hasher: PasswordHasher) -> None:
    """Only migrations newer than the recorded version run, in version order."""
    MetadataStore.open(db_path, hasher).close()
    ran: list[int] = []

    def step(version: int) -> Migration:
        return Migration(version, f"step {version}", lambda conn: ran.append(version))

    conn = raw(db_path)
    try:
        top = MIGRATIONS[-1].version
        assert apply_migrations(conn, (*MIGRATIONS, step(top + 1), step(top + 2))) == top + 2
        more = (*MIGRATIONS, step(top + 1), step(top + 2), step(top + 3))
        assert apply_migrations(conn, more) == top + 3
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations")]
    finally:
        conn.close()
    assert ran == [top + 1, top + 2, top + 3]
    assert versions == list(range(1, top + 4))


def test_failed_migration_rolls_back_the_whole_batch(db_path: Path, hasher: PasswordHasher) -> None:
    """If a migration fails, none of that batch's changes or version rows remain."""
    MetadataStore.open(db_path, hasher).close()

    def create(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE extra (x INTEGER)")

    def fail(conn: sqlite3.Connection) -> None:
        raise RuntimeError("boom")

    conn = raw(db_path)
    try:
        with pytest.raises(RuntimeError):
            top = MIGRATIONS[-1].version
            apply_migrations(
                conn,
                (*MIGRATIONS, Migration(top + 1, "ok", create), Migration(top + 2, "x", fail)),
            )
        assert not conn.in_transaction
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations")]
    finally:
        conn.close()
    assert "extra" not in tables
    assert versions == [m.version for m in MIGRATIONS]


def test_database_from_newer_software_is_refused(db_path: Path, hasher: PasswordHasher) -> None:
    """Opening a database whose schema is newer than this code raises StorageError."""
    MetadataStore.open(db_path, hasher).close()
    conn = raw(db_path)
    try:
        future = Migration(MIGRATIONS[-1].version + 1, "future", lambda c: None)
        apply_migrations(conn, (*MIGRATIONS, future))
    finally:
        conn.close()
    with pytest.raises(StorageError, match="newer"):
        MetadataStore.open(db_path, hasher)


def test_connection_uses_wal_foreign_keys_and_synchronous_normal(store: MetadataStore) -> None:
    """The store's connection runs in WAL mode with foreign keys on and synchronous=NORMAL."""
    conn = store._db()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL


def test_close_is_safe_twice_and_later_use_raises(store: MetadataStore) -> None:
    """close() may be called twice; using a closed store raises StorageError."""
    store.close()
    store.close()
    with pytest.raises(StorageError):
        store.list_accounts()


# -- transactions --------------------------------------------------------------------


def test_transaction_rolls_back_every_write_on_error(store: MetadataStore) -> None:
    """An exception inside transaction() undoes all its writes."""
    with pytest.raises(RuntimeError), store.transaction():
        store.create_case("HD")
        store.append_audit("system", "case.create", None)
        raise RuntimeError("abort")
    assert store.list_audit() == []
    assert store.create_case("HD").case_number.endswith("-00001")


def test_nested_transaction_commits_only_at_the_outermost(
    store: MetadataStore, db_path: Path
) -> None:
    """Writes in a nested transaction become visible to others only when the outer one ends."""
    reader = raw(db_path)
    try:
        with store.transaction():
            with store.transaction():
                store.append_audit("system", "inner", None)
            assert reader.execute("SELECT COUNT(*) FROM audit_log").fetchone()[0] == 0
        assert reader.execute("SELECT COUNT(*) FROM audit_log").fetchone()[0] == 1
    finally:
        reader.close()


def test_failed_inner_transaction_undoes_only_its_own_writes(store: MetadataStore) -> None:
    """A nested block that raises rolls back its writes; the outer block still commits."""
    with store.transaction():
        store.append_audit("system", "outer", None)
        with pytest.raises(RuntimeError), store.transaction():
            store.append_audit("system", "inner", None)
            raise RuntimeError("abort inner")
    assert [e.action for e in store.list_audit()] == ["outer"]


# -- accounts ------------------------------------------------------------------------


def test_create_account_round_trips(store: MetadataStore) -> None:
    """A created account can be read back by id and by username."""
    account = store.create_account("officer1", "王警官", "station_officer", "s3cret")
    assert account.role == "station_officer" and not account.disabled
    assert store.get_account(account.id) == account
    assert store.find_account_by_username("officer1") == account
    assert store.find_account_by_username("nobody") is None
    assert store.list_accounts() == [account]


def test_duplicate_username_conflicts_regardless_of_case(store: MetadataStore) -> None:
    """A second account with the same username (in any ASCII case) raises Conflict."""
    store.create_account("alice", "Alice", "admin", "pw")
    with pytest.raises(Conflict):
        store.create_account("alice", "Alice 2", "admin", "pw")
    with pytest.raises(Conflict):
        store.create_account("ALICE", "Alice 3", "admin", "pw")


def test_unknown_role_and_empty_password_are_refused(store: MetadataStore) -> None:
    """create_account raises ValueError for an unknown role or an empty password."""
    with pytest.raises(ValueError):
        store.create_account("bob", "Bob", "superuser", "pw")
    with pytest.raises(ValueError):
        store.create_account("bob", "Bob", "admin", "")
    assert store.list_accounts() == []


def test_get_unknown_account_raises_not_found(store: MetadataStore) -> None:
    """get_account of an unknown id raises NotFound."""
    with pytest.raises(NotFound):
        store.get_account(new_id())


def test_check_password_accepts_only_the_right_password(store: MetadataStore) -> None:
    """check_password returns the account for the right password, None otherwise."""
    account = store.create_account("alice", "Alice", "trainer", "correct horse")
    assert store.check_password("alice", "correct horse") == account
    assert store.check_password("alice", "wrong") is None
    assert store.check_password("nobody", "correct horse") is None


def test_check_password_refuses_disabled_account(store: MetadataStore) -> None:
    """A disabled account cannot log in even with the right password, and can after enabling."""
    account = store.create_account("alice", "Alice", "trainer", "pw")
    store.set_account_disabled(account.id, True)
    assert store.get_account(account.id).disabled
    assert store.check_password("alice", "pw") is None
    store.set_account_disabled(account.id, False)
    assert store.check_password("alice", "pw") is not None


def test_set_password_replaces_the_old_one(store: MetadataStore) -> None:
    """After set_password only the new password works."""
    account = store.create_account("alice", "Alice", "admin", "old")
    store.set_password(account.id, "new")
    assert store.check_password("alice", "old") is None
    assert store.check_password("alice", "new") == account


def test_password_hash_is_upgraded_when_parameters_change(
    db_path: Path, hasher: PasswordHasher
) -> None:
    """A successful login rehashes a hash made with older hasher parameters."""
    store = MetadataStore.open(db_path, hasher)
    store.create_account("alice", "Alice", "admin", "pw")
    store.close()
    stronger = PasswordHasher(time_cost=2, memory_cost=8192, parallelism=1)
    store = MetadataStore.open(db_path, stronger)
    try:
        assert store.check_password("alice", "pw") is not None
        assert store.check_password("alice", "nope") is None
    finally:
        store.close()
    with raw(db_path) as conn:
        stored = conn.execute("SELECT password_hash FROM accounts").fetchone()[0]
    assert not stronger.check_needs_rehash(stored)
    assert stronger.verify(stored, "pw")


def test_check_password_works_from_another_thread(store: MetadataStore) -> None:
    """The store may be used from an executor thread (e.g. for slow password checks)."""
    store.create_account("alice", "Alice", "admin", "pw")
    result: list[Account | None] = []
    thread = threading.Thread(target=lambda: result.append(store.check_password("alice", "pw")))
    thread.start()
    thread.join()
    assert result and result[0] is not None and result[0].username == "alice"


# -- experts -------------------------------------------------------------------------


def test_new_expert_has_an_away_profile_without_specialties(store: MetadataStore) -> None:
    """An expert account starts with a profile: away, off duty, never busy, no specialties."""
    account = store.create_account("li", "李调解员", "expert", "pw")
    profile = store.get_expert(account.id)
    assert profile.specialties == ()
    assert profile.availability == "away"
    assert not profile.on_duty and profile.last_busy_at == 0 and not profile.disabled


def test_set_expert_profile_keeps_specialty_order_and_replaces_it(store: MetadataStore) -> None:
    """Specialties are stored in the given order without duplicates, and replaced on update."""
    account = store.create_account("li", "Li", "expert", "pw")
    store.set_expert_profile(account.id, ["traffic", "family", "traffic"], on_duty=True)
    profile = store.get_expert(account.id)
    assert profile.specialties == ("traffic", "family") and profile.on_duty
    store.set_expert_profile(account.id, ["labour"])
    profile = store.get_expert(account.id)
    assert profile.specialties == ("labour",) and not profile.on_duty


def test_expert_profile_requires_an_expert_account(store: MetadataStore) -> None:
    """set_expert_profile refuses a non-expert (ValueError) and an unknown account (NotFound)."""
    admin = store.create_account("root", "Root", "admin", "pw")
    with pytest.raises(ValueError):
        store.set_expert_profile(admin.id, ["family"])
    with pytest.raises(NotFound):
        store.get_expert(admin.id)
    with pytest.raises(NotFound):
        store.set_expert_profile(new_id(), ["family"])


def test_list_experts_includes_disabled_ordered_by_display_name(store: MetadataStore) -> None:
    """list_experts returns every expert, disabled ones too, sorted by display name."""
    c = store.create_account("c", "Carol", "expert", "pw")
    a = store.create_account("a", "Alice", "expert", "pw")
    store.create_account("admin", "Aaron", "admin", "pw")
    b = store.create_account("b", "Bob", "expert", "pw")
    store.set_account_disabled(b.id, True)
    store.set_expert_profile(c.id, ["family"])
    experts = store.list_experts()
    assert [e.account_id for e in experts] == [a.id, b.id, c.id]
    assert [e.disabled for e in experts] == [False, True, False]
    assert experts[2].specialties == ("family",)


def test_expert_availability_duty_and_last_busy_are_saved(store: MetadataStore) -> None:
    """Availability, duty flag and last-busy time are stored per expert."""
    account = store.create_account("li", "Li", "expert", "pw")
    store.set_expert_availability(account.id, "available")
    store.set_expert_on_duty(account.id, True)
    store.set_expert_last_busy(account.id, 1_750_000_000_123)
    profile = store.get_expert(account.id)
    assert (profile.availability, profile.on_duty, profile.last_busy_at) == (
        "available",
        True,
        1_750_000_000_123,
    )
    with pytest.raises(ValueError):
        store.set_expert_availability(account.id, "sleeping")
    with pytest.raises(NotFound):
        store.set_expert_on_duty(new_id(), True)


# -- devices -------------------------------------------------------------------------


def test_device_token_finds_its_device(store: MetadataStore) -> None:
    """The token returned by create_device finds that device; other tokens find nothing."""
    device, token = store.create_device("kiosk", "Kiosk 1")
    assert token.startswith("dev_")
    assert device.token_generation == 1 and device.last_seen_at is None
    assert store.find_device_by_token(token) == device
    assert store.find_device_by_token("dev_" + "x" * 43) is None
    assert store.get_device(device.id) == device


def test_rotated_device_token_replaces_the_old_one(store: MetadataStore) -> None:
    """After rotation the old token finds nothing, the new one finds the device."""
    device, old = store.create_device("station", "Station A")
    new = store.rotate_device_token(device.id)
    assert new != old and new.startswith("dev_")
    assert store.find_device_by_token(old) is None
    found = store.find_device_by_token(new)
    assert found is not None and found.id == device.id and found.token_generation == 2


def test_disabled_device_token_finds_nothing(store: MetadataStore) -> None:
    """A disabled device's token is not found; re-enabling makes it work again."""
    device, token = store.create_device("kiosk", "Kiosk 1")
    store.set_device_disabled(device.id, True)
    assert store.find_device_by_token(token) is None
    assert store.get_device(device.id).disabled
    store.set_device_disabled(device.id, False)
    assert store.find_device_by_token(token) is not None


def test_tokens_are_not_stored_in_plain_text(store: MetadataStore, db_path: Path) -> None:
    """Neither device nor session tokens appear in the database files, only their SHA-256."""
    device, token = store.create_device("kiosk", "Kiosk 1")
    account = store.create_account("alice", "Alice", "admin", "hunter2hunter2")
    session = store.create_session(account.id, 3600)
    files = b"".join(p.read_bytes() for p in db_path.parent.iterdir())
    for secret in (token, session, "hunter2hunter2"):
        assert secret.encode() not in files
        assert secret.split("_", 1)[-1].encode() not in files
    assert hashlib.sha256(token.encode()).hexdigest().encode() in files


def test_touch_device_records_last_seen(store: MetadataStore) -> None:
    """touch_device stores the last-seen time; an unknown device raises NotFound."""
    device, _ = store.create_device("kiosk", "Kiosk 1")
    store.touch_device(device.id, 1_750_000_000_999)
    assert store.get_device(device.id).last_seen_at == 1_750_000_000_999
    with pytest.raises(NotFound):
        store.touch_device(new_id(), 1)


def test_list_devices_and_reject_unknown_kind(store: MetadataStore) -> None:
    """list_devices returns every device; an unknown kind raises ValueError."""
    k, _ = store.create_device("kiosk", "K")
    s, _ = store.create_device("station", "S")
    assert {d.id for d in store.list_devices()} == {k.id, s.id}
    with pytest.raises(ValueError):
        store.create_device("phone", "P")


# -- sessions ------------------------------------------------------------------------


def test_session_token_finds_session_and_account(store: MetadataStore) -> None:
    """A session token finds its session and account until deleted."""
    account = store.create_account("alice", "Alice", "trainer", "pw")
    token = store.create_session(account.id, 3600)
    assert token.startswith("ses_")
    found = store.find_session(token)
    assert found is not None
    session, who = found
    assert who == account and session.account_id == account.id
    assert session.expires_at - session.created_at == 3_600_000
    store.delete_session(token)
    assert store.find_session(token) is None


def test_session_with_zero_ttl_is_already_expired(store: MetadataStore) -> None:
    """A session created with ttl 0 is never found."""
    account = store.create_account("alice", "Alice", "trainer", "pw")
    assert store.find_session(store.create_session(account.id, 0)) is None


def test_session_expires_when_its_ttl_passes(clocked_store: MetadataStore, clock: Clock) -> None:
    """A session is found before its expiry time and not from then on; expired ones purge."""
    account = clocked_store.create_account("alice", "Alice", "trainer", "pw")
    token = clocked_store.create_session(account.id, 60)
    clock.now += 59_999
    assert clocked_store.find_session(token) is not None
    clock.now += 1
    assert clocked_store.find_session(token) is None
    assert clocked_store.delete_expired_sessions() == 1


def test_sessions_vanish_when_account_is_disabled(store: MetadataStore) -> None:
    """Disabling an account ends its sessions, and re-enabling does not revive them."""
    account = store.create_account("alice", "Alice", "trainer", "pw")
    token = store.create_session(account.id, 3600)
    store.set_account_disabled(account.id, True)
    assert store.find_session(token) is None
    store.set_account_disabled(account.id, False)
    assert store.find_session(token) is None


def test_delete_sessions_for_account_ends_only_that_accounts_sessions(
    store: MetadataStore,
) -> None:
    """delete_sessions_for_account removes every session of one account and no other."""
    alice = store.create_account("alice", "Alice", "trainer", "pw")
    bob = store.create_account("bob", "Bob", "trainer", "pw")
    a1, a2 = store.create_session(alice.id, 60), store.create_session(alice.id, 60)
    b1 = store.create_session(bob.id, 60)
    store.delete_sessions_for_account(alice.id)
    assert store.find_session(a1) is None and store.find_session(a2) is None
    assert store.find_session(b1) is not None


def test_session_for_unknown_account_raises_not_found(store: MetadataStore) -> None:
    """create_session for an unknown account raises NotFound."""
    with pytest.raises(NotFound):
        store.create_session(new_id(), 60)


# -- dispute types -------------------------------------------------------------------


def test_dispute_types_are_seeded_in_order(store: MetadataStore) -> None:
    """Migration 1 seeds the seven dispute types, active, sorted 1..7."""
    types = store.list_dispute_types()
    assert [(t.code, t.name_zh, t.name_en, t.sort) for t in types] == [
        ("neighbours", "邻里纠纷", "Neighbours", 1),
        ("family", "婚姻家庭", "Marriage and family", 2),
        ("traffic", "交通事故损害赔偿", "Traffic accident damage", 3),
        ("labour", "劳动和工资", "Labour and wages", 4),
        ("consumer", "消费纠纷", "Consumer", 5),
        ("property", "物业和租赁", "Property and tenancy", 6),
        ("other", "其他", "Other", 7),
    ]
    assert all(t.active for t in types)


def test_upsert_dispute_type_adds_and_deactivates(store: MetadataStore) -> None:
    """upsert_dispute_type adds new types and updates existing ones; inactive ones are hidden."""
    store.upsert_dispute_type("loan", "借贷纠纷", "Loans", sort=8)
    store.upsert_dispute_type("other", "其他", "Other", active=False, sort=7)
    active = [t.code for t in store.list_dispute_types()]
    assert "loan" in active and "other" not in active
    assert "other" in [t.code for t in store.list_dispute_types(include_inactive=True)]
    assert store.get_dispute_type("loan").name_en == "Loans"
    with pytest.raises(NotFound):
        store.get_dispute_type("nope")


# -- cases ---------------------------------------------------------------------------


def test_case_numbers_count_per_district(store: MetadataStore) -> None:
    """Case numbers are district-year-n with n counting separately for each district."""
    year = datetime.now(UTC).year
    numbers = [store.create_case(d).case_number for d in ("HD", "HD", "CY", "HD")]
    assert numbers == [
        f"HD-{year}-00001",
        f"HD-{year}-00002",
        f"CY-{year}-00001",
        f"HD-{year}-00003",
    ]


def test_case_numbers_restart_each_year(clocked_store: MetadataStore, clock: Clock) -> None:
    """The per-district counter starts again at 1 in a new (UTC) year."""
    clock.now = int(datetime(2025, 12, 31, 23, 59, tzinfo=UTC).timestamp() * 1000)
    assert clocked_store.create_case("HD").case_number == "HD-2025-00001"
    clock.now = int(datetime(2026, 1, 1, 0, 1, tzinfo=UTC).timestamp() * 1000)
    assert clocked_store.create_case("HD").case_number == "HD-2026-00001"
    assert clocked_store.create_case("HD").case_number == "HD-2026-00002"


def test_case_and_parties_round_trip(store: MetadataStore) -> None:
    """A case can be read back and lists its parties in the order added."""
    case = store.create_case("HD")
    assert store.get_case(case.id) == case
    a = store.add_party(case.id, "甲方")
    b = store.add_party(case.id, "乙方")
    assert store.list_parties(case.id) == [a, b]
    with pytest.raises(NotFound):
        store.get_case(new_id())
    with pytest.raises(NotFound):
        store.add_party(new_id(), "x")


# -- calls ---------------------------------------------------------------------------


@dataclass
class World:
    store: MetadataStore
    kiosk: str
    station: str
    officer: str
    expert_a: str
    expert_b: str

    def call(self, launched_at: int, **overrides: object) -> CallRecord:
        values: dict[str, object] = {
            "id": new_id(),
            "case_id": None,
            "state": "launching",
            "end_reason": None,
            "dispute_type": "family",
            "caller_kind": "kiosk",
            "caller_device_id": self.kiosk,
            "caller_account_id": None,
            "named_expert_id": None,
            "training_consent": False,
            "launched_at": launched_at,
        }
        values.update(overrides)
        record = CallRecord(**values)  # type: ignore[arg-type]
        self.store.insert_call(record)
        return record


@pytest.fixture
def world(store: MetadataStore) -> Iterator[World]:
    kiosk, _ = store.create_device("kiosk", "Kiosk 1")
    station, _ = store.create_device("station", "Station 1")
    officer = store.create_account("officer", "Officer", "station_officer", "pw")
    a = store.create_account("ea", "Expert A", "expert", "pw")
    b = store.create_account("eb", "Expert B", "expert", "pw")
    yield World(store, kiosk.id, station.id, officer.id, a.id, b.id)


def test_insert_call_round_trips(world: World) -> None:
    """An inserted call reads back equal, with a case and named expert attached."""
    case = world.store.create_case("HD")
    call = world.call(1000, case_id=case.id, named_expert_id=world.expert_a, training_consent=True)
    assert world.store.get_call(call.id) == call


def test_insert_call_refuses_duplicates_and_unknown_references(world: World) -> None:
    """A duplicate id raises Conflict; an unknown device or dispute type raises NotFound."""
    call = world.call(1000)
    with pytest.raises(Conflict):
        world.store.insert_call(call)
    with pytest.raises(NotFound):
        world.call(1001, caller_device_id=new_id())
    with pytest.raises(NotFound):
        world.call(1002, dispute_type="piracy")
    with pytest.raises(NotFound):
        world.store.get_call(new_id())


def test_update_call_changes_only_known_fields(world: World) -> None:
    """update_call sets the allowed columns and refuses other names, bad states, unknown ids."""
    call = world.call(1000)
    updated = world.store.update_call(
        call.id, state="active", answered_at=2000, named_expert_id=world.expert_b
    )
    assert (updated.state, updated.answered_at, updated.named_expert_id) == (
        "active",
        2000,
        world.expert_b,
    )
    world.store.update_call(call.id, state="ended", end_reason="hangup", ended_at=3000)
    assert world.store.get_call(call.id).end_reason == "hangup"
    with pytest.raises(ValueError):
        world.store.update_call(call.id, caller_device_id=world.station)
    with pytest.raises(ValueError):
        world.store.update_call(call.id, state="exploded")
    with pytest.raises(NotFound):
        world.store.update_call(new_id(), state="ended")


def test_list_calls_newest_first_with_limit(world: World) -> None:
    """list_calls returns the newest calls first, at most `limit` of them."""
    calls = [world.call(t) for t in (1000, 3000, 2000)]
    assert [c.launched_at for c in world.store.list_calls()] == [3000, 2000, 1000]
    assert [c.id for c in world.store.list_calls(limit=2)] == [calls[1].id, calls[2].id]


def test_list_calls_filters_by_caller_and_training_consent(world: World) -> None:
    """Device, account and training filters each narrow the list and combine with AND."""
    kiosk_call = world.call(1000, training_consent=True)
    station_call = world.call(
        2000, caller_kind="station", caller_device_id=world.station, caller_account_id=world.officer
    )
    station_training = world.call(
        3000,
        caller_kind="station",
        caller_device_id=world.station,
        caller_account_id=world.officer,
        training_consent=True,
    )
    s = world.store
    assert [c.id for c in s.list_calls(caller_device_id=world.kiosk)] == [kiosk_call.id]
    assert [c.id for c in s.list_calls(caller_account_id=world.officer)] == [
        station_training.id,
        station_call.id,
    ]
    assert [c.id for c in s.list_calls(training_only=True)] == [station_training.id, kiosk_call.id]
    assert [c.id for c in s.list_calls(caller_device_id=world.station, training_only=True)] == [
        station_training.id
    ]


def test_list_calls_by_participant_matches_participants_and_invitations(world: World) -> None:
    """The participant filter finds calls the principal joined or was invited to, once each."""
    joined = world.call(1000)
    invited = world.call(2000)
    both = world.call(3000)
    other = world.call(4000)
    s = world.store
    s.upsert_participant(
        ParticipantRecord(new_id(), joined.id, "account", world.expert_a, "expert", "left", 1100)
    )
    s.upsert_invitation(
        InvitationRecord(new_id(), invited.id, world.expert_a, None, "declined", 2100, 2200)
    )
    s.upsert_invitation(
        InvitationRecord(new_id(), both.id, world.expert_a, None, "accepted", 3100, 3200)
    )
    s.upsert_participant(
        ParticipantRecord(new_id(), both.id, "account", world.expert_a, "expert", "connected", 3200)
    )
    s.upsert_invitation(
        InvitationRecord(new_id(), other.id, world.expert_b, world.expert_a, "ringing", 4100)
    )
    found = s.list_calls(participant_principal_id=world.expert_a)
    assert [c.id for c in found] == [both.id, invited.id, joined.id]
    assert [c.id for c in s.list_calls(participant_principal_id=world.kiosk)] == []
    assert [
        c.id for c in s.list_calls(participant_principal_id=world.expert_a, training_only=True)
    ] == []


def test_open_calls_excludes_ended_calls(world: World) -> None:
    """open_calls returns every call not in state ended, oldest first."""
    ringing = world.call(1000, state="ringing")
    queued = world.call(2000, state="queued")
    world.call(500, state="ended", end_reason="cancelled", ended_at=900)
    active = world.call(3000)
    world.store.update_call(active.id, state="active")
    world.store.update_call(queued.id, state="ended", end_reason="timeout", ended_at=2500)
    assert [c.id for c in world.store.open_calls()] == [ringing.id, active.id]


def test_call_events_are_listed_in_append_order(world: World) -> None:
    """Call events keep their order, number from 1 per call and keep their details."""
    first, second = world.call(1000), world.call(2000)
    s = world.store
    e1 = s.add_call_event(first.id, "call", first.id, None, "launching", 1000)
    s.add_call_event(second.id, "call", second.id, None, "launching", 2000)
    e2 = s.add_call_event(first.id, "call", first.id, "launching", "ringing", 1001, {"why": "x"})
    e3 = s.add_call_event(first.id, "invitation", new_id(), None, "ringing", 1001)
    assert [e.seq for e in (e1, e2, e3)] == [1, 2, 3]
    assert s.list_call_events(first.id) == [e1, e2, e3]
    assert s.list_call_events(first.id)[1].detail == {"why": "x"}
    assert [e.seq for e in s.list_call_events(second.id)] == [1]
    with pytest.raises(ValueError):
        s.add_call_event(first.id, "weather", None, None, "sunny", 1002)
    with pytest.raises(NotFound):
        s.add_call_event(new_id(), "call", None, None, "ringing", 1002)


def test_call_event_states_given_as_str_enums_come_back_as_plain_strings(world: World) -> None:
    """StrEnum members passed as old/new are stored and returned as their string values."""

    class State(enum.StrEnum):
        RINGING = "ringing"

    call = world.call(1000)
    event = world.store.add_call_event(call.id, "call", call.id, None, State.RINGING, 1000)
    assert type(event.new) is str and event.new == "ringing"
    assert world.store.list_call_events(call.id) == [event]


def test_upsert_invitation_updates_state_and_end(world: World) -> None:
    """Upserting an invitation again updates its state and end time; lists keep order."""
    call = world.call(1000)
    s = world.store
    first = InvitationRecord(new_id(), call.id, world.expert_a, None, "ringing", 1100)
    second = InvitationRecord(new_id(), call.id, world.expert_b, world.expert_a, "ringing", 1200)
    s.upsert_invitation(first)
    s.upsert_invitation(second)
    declined = InvitationRecord(first.id, call.id, world.expert_a, None, "declined", 1100, 1150)
    s.upsert_invitation(declined)
    assert s.list_invitations(call.id) == [declined, second]
    moved = InvitationRecord(first.id, world.call(5000).id, world.expert_a, None, "ringing", 1)
    with pytest.raises(Conflict):
        s.upsert_invitation(moved)


def test_upsert_participant_updates_state(world: World) -> None:
    """Upserting a participant again updates its state and left_at; lists keep join order."""
    call = world.call(1000)
    s = world.store
    kiosk = ParticipantRecord(new_id(), call.id, "device", world.kiosk, "caller", "joining", 1000)
    guest = ParticipantRecord(new_id(), call.id, "guest", "G-1234", "party", "connected", 1500)
    s.upsert_participant(guest)
    s.upsert_participant(kiosk)
    left = ParticipantRecord(kiosk.id, call.id, "device", world.kiosk, "caller", "left", 1000, 9000)
    s.upsert_participant(left)
    assert s.list_participants(call.id) == [left, guest]


# -- audit log -----------------------------------------------------------------------


def test_audit_entries_form_a_verified_chain(store: MetadataStore) -> None:
    """Each entry links to the previous hash (zeros first) and the whole log verifies."""
    assert store.audit_head() == GENESIS_HASH
    e1 = store.append_audit("account:1", "recording.play", "call:1", {"offset_ms": 0}, at=10)
    e2 = store.append_audit("account:2", "evidence.export", "call:1", at=20)
    e3 = store.append_audit("system", "retention.purge", None, {"count": 3})
    assert [e.seq for e in (e1, e2, e3)] == [1, 2, 3]
    assert e1.prev_hash == GENESIS_HASH and e2.prev_hash == e1.hash and e3.prev_hash == e2.hash
    fields = {"seq": 2, "at": 20, "actor": "account:2", "action": "evidence.export"}
    assert e2.hash == link_hash(e1.hash, {**fields, "target": "call:1", "details": {}})
    assert store.audit_head() == e3.hash
    assert store.list_audit() == [e1, e2, e3]
    assert store.verify_audit() is None
    store.check_audit()


def test_audit_details_are_stored_as_canonical_json(store: MetadataStore) -> None:
    """Details come back as they were hashed (tuples as lists, Chinese kept) and verify."""
    entry = store.append_audit(
        "account:1", "legal_hold.place", "case:9", {"b": (1, 2), "a": "扣押"}
    )
    assert entry.details == {"a": "扣押", "b": [1, 2]}
    assert store.list_audit() == [entry]
    assert store.verify_audit() is None


def test_list_audit_pages_by_seq(store: MetadataStore) -> None:
    """list_audit returns up to `limit` entries after `after_seq`, oldest first."""
    for i in range(5):
        store.append_audit("system", f"a{i}", None)
    assert [e.seq for e in store.list_audit(limit=2)] == [1, 2]
    assert [e.seq for e in store.list_audit(limit=2, after_seq=2)] == [3, 4]
    assert [e.seq for e in store.list_audit(after_seq=4)] == [5]


def test_audit_update_and_delete_are_refused_by_triggers(
    store: MetadataStore, db_path: Path
) -> None:
    """Even a raw SQL connection cannot UPDATE or DELETE audit rows."""
    store.append_audit("system", "boot", None)
    conn = raw(db_path)
    try:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("UPDATE audit_log SET actor = 'mallory'")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("DELETE FROM audit_log")
    finally:
        conn.close()
    assert store.verify_audit() is None and len(store.list_audit()) == 1


def test_tampered_audit_row_is_detected_at_its_seq(store: MetadataStore, db_path: Path) -> None:
    """Editing a row behind the store's back (trigger dropped) is reported at that row's seq."""
    for i in range(5):
        store.append_audit("account:1", "recording.play", f"call:{i}", {"i": i})
    conn = raw(db_path)
    try:
        conn.execute("DROP TRIGGER audit_log_no_update")
        conn.execute("UPDATE audit_log SET details = '{\"i\":99}' WHERE seq = 3")
    finally:
        conn.close()
    assert store.verify_audit() == 3
    with pytest.raises(AuditChainBroken) as info:
        store.check_audit()
    assert info.value.seq == 3


def test_deleted_audit_row_is_detected_at_the_next_seq(store: MetadataStore, db_path: Path) -> None:
    """Deleting a row behind the store's back (trigger dropped) is reported at the next seq."""
    for i in range(4):
        store.append_audit("system", f"a{i}", None)
    conn = raw(db_path)
    try:
        conn.execute("DROP TRIGGER audit_log_no_delete")
        conn.execute("DELETE FROM audit_log WHERE seq = 2")
    finally:
        conn.close()
    assert store.verify_audit() == 3


def test_a_version_1_database_is_migrated_to_version_2_at_open(
    db_path: Path, hasher: PasswordHasher
) -> None:
    """An existing database from the first release gains the media statistics table."""
    import sqlite3

    from storage.migrations import MIGRATIONS, apply_migrations

    db_path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(db_path)
    apply_migrations(conn, MIGRATIONS[:1])
    conn.close()
    store = MetadataStore.open(db_path, hasher)
    try:
        assert store.schema_version() == MIGRATIONS[-1].version
        assert store.media_stats("no-call") == {}
    finally:
        store.close()


def test_notice_texts_are_versioned_per_language(world: World) -> None:
    """The seeded notice exists in both languages; a newer version becomes the newest."""
    store = world.store
    assert store.get_notice("zh-CN").version == "1"
    assert "record" in store.get_notice("en", "1").body
    store.add_notice("2", "en", "Version two.")
    assert store.get_notice("en").body == "Version two."
    assert store.get_notice("en", "1").version == "1"
    with pytest.raises(Conflict):
        store.add_notice("2", "en", "again")
    with pytest.raises(NotFound):
        store.get_notice("fr")


def test_consent_round_trips_and_is_checked(world: World) -> None:
    """Consent keeps both purposes, the notice version and who captured it."""
    from storage import Consent

    call = world.call(1000, caller_kind="station", caller_device_id=world.station)
    consent = Consent(
        new_id(), call.id, True, True, "1", "zh-CN", world.station, world.officer, 2, 1000
    )
    world.store.insert_consent(consent)
    assert world.store.get_consent(call.id) == consent
    assert world.store.get_consent(world.call(1001).id) is None
    with pytest.raises(ValueError, match="parties"):
        Consent(new_id(), call.id, True, False, "1", "en", world.station, None, 0, 1)
    with pytest.raises(ValueError, match="training consent needs"):
        Consent(new_id(), call.id, False, True, "1", "en", world.station, None, 1, 1)


def test_recording_index(world: World) -> None:
    """A recording row tracks status and chain head; its objects are indexed by key."""
    from storage import Recording, RecordingObject

    store = world.store
    call = world.call(1000)
    store.insert_recording(Recording(call.id, f"calls/2026/11/{call.id}/", "recording", 1000))
    with pytest.raises(Conflict):
        store.insert_recording(Recording(call.id, "x/", "recording", 1000))
    assert [r.call_id for r in store.list_recordings("recording")] == [call.id]
    rec = store.update_recording(call.id, chain_count=3, chain_head="ab" * 32, status="complete")
    assert (rec.chain_count, rec.status) == (3, "complete")
    assert store.list_recordings("recording") == []
    with pytest.raises(ValueError):
        store.update_recording(call.id, status="lost")
    with pytest.raises(ValueError):
        store.update_recording(call.id, prefix="y/")
    key = f"calls/2026/11/{call.id}/p/000001.webm"
    store.upsert_recording_object(RecordingObject(key, call.id, "p", "segment", 10, "cd" * 32))
    store.upsert_recording_object(
        RecordingObject(key, call.id, "p", "segment", 11, "ef" * 32, uploaded_at=5)
    )
    (obj,) = store.list_recording_objects(call.id)
    assert (obj.size, obj.sha256, obj.uploaded_at) == (11, "ef" * 32, 5)
