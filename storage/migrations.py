"""Schema migrations of the SQLite metadata store.

Each migration has a version; at open, the missing ones are applied in order in
one transaction and recorded in ``schema_migrations``. Never edit a released
migration: append a new one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .errors import StorageError
from .ids import now_ms


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema step; `apply` runs inside the migration transaction."""

    version: int
    name: str
    apply: Callable[[sqlite3.Connection], None]


def _run(conn: sqlite3.Connection, statements: Sequence[str]) -> None:
    # executescript() would COMMIT first; run statements one by one instead.
    for statement in statements:
        conn.execute(statement)


_V1_SCHEMA = (
    """
    CREATE TABLE accounts (
        id TEXT NOT NULL PRIMARY KEY,
        username TEXT NOT NULL COLLATE NOCASE UNIQUE,
        display_name TEXT NOT NULL,
        role TEXT NOT NULL,
        password_hash TEXT NOT NULL,
        disabled INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL
    )
    """,
    """
    CREATE TABLE expert_profiles (
        account_id TEXT NOT NULL PRIMARY KEY REFERENCES accounts (id),
        availability TEXT NOT NULL DEFAULT 'away',
        on_duty INTEGER NOT NULL DEFAULT 0,
        last_busy_at INTEGER NOT NULL DEFAULT 0
    )
    """,
    """
    CREATE TABLE expert_specialties (
        account_id TEXT NOT NULL REFERENCES expert_profiles (account_id),
        specialty TEXT NOT NULL,
        position INTEGER NOT NULL,
        PRIMARY KEY (account_id, specialty)
    )
    """,
    "CREATE INDEX expert_specialties_by_specialty ON expert_specialties (specialty)",
    """
    CREATE TABLE devices (
        id TEXT NOT NULL PRIMARY KEY,
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        token_hash TEXT NOT NULL UNIQUE,
        token_generation INTEGER NOT NULL DEFAULT 1,
        disabled INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL,
        last_seen_at INTEGER
    )
    """,
    """
    CREATE TABLE sessions (
        token_hash TEXT NOT NULL PRIMARY KEY,
        account_id TEXT NOT NULL REFERENCES accounts (id),
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
    )
    """,
    "CREATE INDEX sessions_by_account ON sessions (account_id)",
    """
    CREATE TABLE dispute_types (
        code TEXT NOT NULL PRIMARY KEY,
        name_zh TEXT NOT NULL,
        name_en TEXT NOT NULL,
        active INTEGER NOT NULL DEFAULT 1,
        sort INTEGER NOT NULL DEFAULT 100
    )
    """,
    """
    CREATE TABLE case_counters (
        district TEXT NOT NULL,
        year INTEGER NOT NULL,
        last INTEGER NOT NULL,
        PRIMARY KEY (district, year)
    )
    """,
    """
    CREATE TABLE cases (
        id TEXT NOT NULL PRIMARY KEY,
        case_number TEXT NOT NULL UNIQUE,
        district TEXT NOT NULL,
        created_at INTEGER NOT NULL
    )
    """,
    """
    CREATE TABLE parties (
        id TEXT NOT NULL PRIMARY KEY,
        case_id TEXT NOT NULL REFERENCES cases (id),
        label TEXT NOT NULL,
        created_at INTEGER NOT NULL
    )
    """,
    "CREATE INDEX parties_by_case ON parties (case_id)",
    """
    CREATE TABLE calls (
        id TEXT NOT NULL PRIMARY KEY,
        case_id TEXT REFERENCES cases (id),
        state TEXT NOT NULL,
        end_reason TEXT,
        dispute_type TEXT NOT NULL REFERENCES dispute_types (code),
        caller_kind TEXT NOT NULL,
        caller_device_id TEXT NOT NULL REFERENCES devices (id),
        caller_account_id TEXT REFERENCES accounts (id),
        named_expert_id TEXT REFERENCES accounts (id),
        training_consent INTEGER NOT NULL DEFAULT 0,
        launched_at INTEGER NOT NULL,
        answered_at INTEGER,
        ended_at INTEGER
    )
    """,
    "CREATE INDEX calls_by_launch ON calls (launched_at)",
    "CREATE INDEX calls_by_device ON calls (caller_device_id, launched_at)",
    "CREATE INDEX calls_by_account ON calls (caller_account_id, launched_at)",
    "CREATE INDEX calls_by_case ON calls (case_id)",
    "CREATE INDEX calls_open ON calls (launched_at) WHERE state <> 'ended'",
    """
    CREATE TABLE call_events (
        call_id TEXT NOT NULL REFERENCES calls (id),
        seq INTEGER NOT NULL,
        at INTEGER NOT NULL,
        kind TEXT NOT NULL,
        subject_id TEXT,
        old TEXT,
        new TEXT,
        detail TEXT NOT NULL DEFAULT '{}',
        PRIMARY KEY (call_id, seq)
    )
    """,
    """
    CREATE TABLE invitations (
        id TEXT NOT NULL PRIMARY KEY,
        call_id TEXT NOT NULL REFERENCES calls (id),
        expert_id TEXT NOT NULL REFERENCES accounts (id),
        inviter_id TEXT,
        state TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        ended_at INTEGER
    )
    """,
    "CREATE INDEX invitations_by_call ON invitations (call_id, created_at)",
    "CREATE INDEX invitations_by_expert ON invitations (expert_id)",
    """
    CREATE TABLE participants (
        id TEXT NOT NULL PRIMARY KEY,
        call_id TEXT NOT NULL REFERENCES calls (id),
        principal_kind TEXT NOT NULL,
        principal_id TEXT NOT NULL,
        role TEXT NOT NULL,
        state TEXT NOT NULL,
        joined_at INTEGER NOT NULL,
        left_at INTEGER
    )
    """,
    "CREATE INDEX participants_by_call ON participants (call_id, joined_at)",
    "CREATE INDEX participants_by_principal ON participants (principal_id)",
    """
    CREATE TABLE audit_log (
        seq INTEGER NOT NULL PRIMARY KEY,
        at INTEGER NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT,
        details TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
    )
    """,
    """
    CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
    BEGIN
        SELECT RAISE(ABORT, 'audit_log is append-only');
    END
    """,
    """
    CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
    BEGIN
        SELECT RAISE(ABORT, 'audit_log is append-only');
    END
    """,
)

SEED_DISPUTE_TYPES = (
    ("neighbours", "邻里纠纷", "Neighbours"),
    ("family", "婚姻家庭", "Marriage and family"),
    ("traffic", "交通事故损害赔偿", "Traffic accident damage"),
    ("labour", "劳动和工资", "Labour and wages"),
    ("consumer", "消费纠纷", "Consumer"),
    ("property", "物业和租赁", "Property and tenancy"),
    ("other", "其他", "Other"),
)


def _v1_initial(conn: sqlite3.Connection) -> None:
    _run(conn, _V1_SCHEMA)
    conn.executemany(
        "INSERT INTO dispute_types (code, name_zh, name_en, active, sort) VALUES (?, ?, ?, 1, ?)",
        [(code, zh, en, sort) for sort, (code, zh, en) in enumerate(SEED_DISPUTE_TYPES, 1)],
    )


def _v2_media_stats(conn: sqlite3.Connection) -> None:
    _run(
        conn,
        [
            """
            CREATE TABLE participant_media_stats (
                participant_id TEXT NOT NULL PRIMARY KEY REFERENCES participants (id),
                call_id TEXT NOT NULL REFERENCES calls (id),
                stats TEXT NOT NULL,
                updated_at INTEGER NOT NULL
            )
            """,
            "CREATE INDEX media_stats_by_call ON participant_media_stats (call_id)",
        ],
    )


NOTICE_V1 = (
    (
        "zh-CN",
        "本次调解将全程录音录像。录像作为证据保存，仅在法律允许的范围内使用；"
        "如您另行同意，也可在去除身份信息前提下用于调解员培训。您可以拒绝录像。",
    ),
    (
        "en",
        "This mediation is recorded in sound and video from start to end. The recording is kept as "
        "evidence and used only as the law allows; if you also agree, it may be used to train "
        "mediators. You may refuse to be recorded.",
    ),
)


def _v3_recordings(conn: sqlite3.Connection) -> None:
    # The recordings index references no other table: `mediation reindex` rebuilds it from
    # the object store alone, also into a database that has lost the calls.
    _run(
        conn,
        [
            """
            CREATE TABLE notice_texts (
                version TEXT NOT NULL,
                language TEXT NOT NULL,
                body TEXT NOT NULL,
                created_at INTEGER NOT NULL,
                PRIMARY KEY (version, language)
            )
            """,
            """
            CREATE TABLE consents (
                id TEXT NOT NULL PRIMARY KEY,
                call_id TEXT NOT NULL REFERENCES calls (id),
                evidence INTEGER NOT NULL,
                training INTEGER NOT NULL,
                notice_version TEXT NOT NULL,
                language TEXT NOT NULL,
                device_id TEXT NOT NULL REFERENCES devices (id),
                account_id TEXT REFERENCES accounts (id),
                parties INTEGER NOT NULL,
                captured_at INTEGER NOT NULL
            )
            """,
            "CREATE INDEX consents_by_call ON consents (call_id)",
            """
            CREATE TABLE recordings (
                call_id TEXT NOT NULL PRIMARY KEY,
                prefix TEXT NOT NULL,
                status TEXT NOT NULL,
                started_at INTEGER NOT NULL,
                ended_at INTEGER,
                chain_count INTEGER NOT NULL DEFAULT 0,
                chain_head TEXT NOT NULL DEFAULT '',
                manifest_key TEXT,
                legal_hold INTEGER NOT NULL DEFAULT 0
            )
            """,
            "CREATE INDEX recordings_open ON recordings (started_at) WHERE status = 'recording'",
            """
            CREATE TABLE recording_objects (
                key TEXT NOT NULL PRIMARY KEY,
                call_id TEXT NOT NULL,
                participant_id TEXT,
                kind TEXT NOT NULL,
                size INTEGER NOT NULL,
                sha256 TEXT NOT NULL,
                retain_until INTEGER,
                uploaded_at INTEGER
            )
            """,
            "CREATE INDEX recording_objects_by_call ON recording_objects (call_id, key)",
        ],
    )
    for language, body in NOTICE_V1:
        conn.execute(
            "INSERT INTO notice_texts (version, language, body, created_at) VALUES (?, ?, ?, 0)",
            ("1", language, body),
        )


def _v4_devices_and_call_results(conn: sqlite3.Connection) -> None:
    # Enrolment codes are one per device (a new one replaces the unused old one) and stored
    # as SHA-256 only; a redeemed code is deleted. Outcomes keep the latest per call and per
    # case here; their history is in call_events (kind 'outcome').
    _run(
        conn,
        [
            """
            CREATE TABLE enrolment_codes (
                device_id TEXT NOT NULL PRIMARY KEY REFERENCES devices (id),
                code_hash TEXT NOT NULL UNIQUE,
                created_at INTEGER NOT NULL,
                expires_at INTEGER NOT NULL
            )
            """,
            """
            CREATE TABLE device_health (
                device_id TEXT NOT NULL PRIMARY KEY REFERENCES devices (id),
                camera TEXT NOT NULL,
                microphone TEXT NOT NULL,
                app_build TEXT NOT NULL,
                at INTEGER NOT NULL
            )
            """,
            """
            CREATE TABLE call_ratings (
                call_id TEXT NOT NULL PRIMARY KEY REFERENCES calls (id),
                stars INTEGER NOT NULL CHECK (stars BETWEEN 1 AND 5),
                comment TEXT,
                device_id TEXT NOT NULL REFERENCES devices (id),
                account_id TEXT REFERENCES accounts (id),
                at INTEGER NOT NULL
            )
            """,
            """
            CREATE TABLE call_outcomes (
                call_id TEXT NOT NULL PRIMARY KEY REFERENCES calls (id),
                case_id TEXT REFERENCES cases (id),
                outcome TEXT NOT NULL,
                summary TEXT NOT NULL,
                expert_id TEXT NOT NULL REFERENCES accounts (id),
                at INTEGER NOT NULL
            )
            """,
            """
            CREATE TABLE case_outcomes (
                case_id TEXT NOT NULL PRIMARY KEY REFERENCES cases (id),
                call_id TEXT NOT NULL REFERENCES calls (id),
                outcome TEXT NOT NULL,
                summary TEXT NOT NULL,
                expert_id TEXT NOT NULL REFERENCES accounts (id),
                at INTEGER NOT NULL
            )
            """,
            """
            CREATE TABLE call_bookmarks (
                id TEXT NOT NULL PRIMARY KEY,
                call_id TEXT NOT NULL REFERENCES calls (id),
                expert_id TEXT NOT NULL REFERENCES accounts (id),
                at INTEGER NOT NULL,
                offset_ms INTEGER NOT NULL,
                note TEXT NOT NULL
            )
            """,
            "CREATE INDEX call_bookmarks_by_call ON call_bookmarks (call_id, at)",
            # The queue's wait estimate reads the handle times of the last answered calls.
            "CREATE INDEX calls_answered_by_end ON calls (ended_at) WHERE answered_at IS NOT NULL",
        ],
    )


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "initial schema", _v1_initial),
    Migration(2, "media statistics per participant", _v2_media_stats),
    Migration(3, "consent, notice texts and the recordings index", _v3_recordings),
    Migration(
        4,
        "device enrolment and health, call ratings, outcomes and bookmarks",
        _v4_devices_and_call_results,
    ),
)


def current_version(conn: sqlite3.Connection) -> int:
    """The highest applied migration version (0 for an empty database)."""
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
    ).fetchone()
    if exists is None:
        return 0
    row = conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
    return int(row[0] or 0)


def apply_migrations(conn: sqlite3.Connection, migrations: Sequence[Migration] = MIGRATIONS) -> int:
    """Apply the missing migrations in order in one transaction; return the new version.

    `conn` must be in autocommit mode (isolation_level=None) and not in a transaction.
    """
    versions = [m.version for m in migrations]
    if versions != sorted(set(versions)) or (versions and versions[0] < 1):
        raise ValueError("migration versions must be positive, unique and ascending")
    latest = versions[-1] if versions else 0
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version INTEGER NOT NULL PRIMARY KEY,"
            " name TEXT NOT NULL,"
            " applied_at INTEGER NOT NULL)"
        )
        version = current_version(conn)
        if version > latest:
            raise StorageError(
                f"database schema version {version} is newer than this software ({latest})"
            )
        for migration in migrations:
            if migration.version <= version:
                continue
            migration.apply(conn)
            conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.name, now_ms()),
            )
            version = migration.version
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return version
