"""The metadata store: accounts, experts, devices, sessions, cases, calls, audit log.

`MetadataStore` is the repository interface the rest of the service uses. This is
the SQLite implementation (the embedded default); a PostgreSQL one can follow with
the same methods. No SQL exists outside this package, and database row ids never
leave it: every id is a UUIDv7 string from `ids.new_id()`.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
import threading
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from . import audit_chain
from .errors import AuditChainBroken, Conflict, EnrolmentRefused, NotFound, StorageError
from .ids import new_id, now_ms
from .migrations import apply_migrations, current_version
from .records import (
    AVAILABILITIES,
    CALL_EVENT_KINDS,
    CALL_STATES,
    DEVICE_KINDS,
    RECORDING_STATUSES,
    ROLES,
    Account,
    AuditEntry,
    Bookmark,
    CallEvent,
    CallRecord,
    Case,
    Consent,
    Device,
    DeviceHealth,
    DisputeType,
    ExpertProfile,
    InvitationRecord,
    NoticeText,
    Outcome,
    ParticipantRecord,
    Party,
    Rating,
    Recording,
    RecordingObject,
    Session,
)

DEVICE_TOKEN_PREFIX = "dev_"
SESSION_TOKEN_PREFIX = "ses_"
ENROLMENT_CODE_DIGITS = 8
_IN_CHUNK = 500  # ids per "IN (...)" query

_RECORDING_UPDATABLE = frozenset(
    {"status", "ended_at", "chain_count", "chain_head", "manifest_key", "legal_hold"}
)
_CALL_UPDATABLE = frozenset(
    {
        "state",
        "end_reason",
        "answered_at",
        "ended_at",
        "case_id",
        "named_expert_id",
        "training_consent",
    }
)
_CALL_COLUMNS = (
    "id, case_id, state, end_reason, dispute_type, caller_kind, caller_device_id,"
    " caller_account_id, named_expert_id, training_consent, launched_at, answered_at, ended_at"
)
_EXPERT_SELECT = (
    "SELECT a.id, a.username, a.display_name, a.disabled, p.availability, p.on_duty,"
    " p.last_busy_at FROM expert_profiles p JOIN accounts a ON a.id = p.account_id"
)


def hash_token(token: str) -> str:
    """SHA-256 hex of a bearer token; only this is stored."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _json(obj: dict[str, Any] | None) -> str:
    return audit_chain.canonical_json(obj or {})


def _text(name: str, value: str) -> str:
    if not isinstance(value, str) or not value.strip() or value != value.strip():
        raise ValueError(f"{name} must be a non-empty string without surrounding spaces")
    return value


def _integrity(err: sqlite3.IntegrityError, kind: str, key: str) -> StorageError:
    message = str(err)
    if "FOREIGN KEY" in message:
        return NotFound(f"object referenced by {kind}", key)
    if "UNIQUE" in message or "PRIMARY KEY" in message:
        return Conflict(kind, key)
    return StorageError(f"{kind} {key}: {message}")


class MetadataStore:
    """Repository of the service's metadata over one SQLite connection.

    Thread-safe (one lock around the connection), so callers on an asyncio loop
    may push slow calls such as `check_password` to an executor. Writes of one
    method are atomic; group several with `transaction()`.
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        password_hasher: PasswordHasher,
        clock: Callable[[], int],
    ) -> None:
        self._conn: sqlite3.Connection | None = conn
        self._hasher = password_hasher
        self._clock = clock
        self._lock = threading.RLock()
        self._depth = 0
        self._dummy_hash: str | None = None

    # -- lifecycle ---------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: str | Path,
        password_hasher: PasswordHasher | None = None,
        *,
        clock: Callable[[], int] = now_ms,
    ) -> MetadataStore:
        """Open (creating if needed) the database at `path` and apply migrations."""
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        try:
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA busy_timeout = 5000")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            apply_migrations(conn)
        except BaseException:
            conn.close()
            raise
        return cls(conn, password_hasher or PasswordHasher(), clock)

    def close(self) -> None:
        """Close the connection; safe to call twice."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> MetadataStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def schema_version(self) -> int:
        """The highest applied migration version."""
        with self._lock:
            return current_version(self._db())

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StorageError("metadata store is closed")
        return self._conn

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes atomically; nested use is a savepoint, only the outermost commits.

        Holds the store's lock until the block ends: never `await` inside it.
        """
        with self._lock:
            conn = self._db()
            if self._depth == 0:
                conn.execute("BEGIN IMMEDIATE")
                self._depth = 1
                try:
                    yield
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                finally:
                    self._depth = 0
            else:
                name = f"sp{self._depth}"
                conn.execute(f"SAVEPOINT {name}")
                self._depth += 1
                try:
                    yield
                except BaseException:
                    conn.execute(f"ROLLBACK TO {name}")
                    conn.execute(f"RELEASE {name}")
                    raise
                else:
                    conn.execute(f"RELEASE {name}")
                finally:
                    self._depth -= 1

    def _all(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db().execute(sql, params).fetchall()

    def _one(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> sqlite3.Row | None:
        with self._lock:
            row: sqlite3.Row | None = self._db().execute(sql, params).fetchone()
            return row

    def _write(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> int:
        with self.transaction():
            return self._db().execute(sql, params).rowcount

    # -- accounts ----------------------------------------------------------------

    def create_account(self, username: str, display_name: str, role: str, password: str) -> Account:
        """Create an account (and an empty expert profile for role expert).

        Usernames are unique regardless of ASCII case. Raises Conflict, ValueError.
        """
        _text("username", username)
        _text("display_name", display_name)
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}")
        password_hash = self._hash_password(password)
        account = Account(new_id(), username, display_name, role, False, self._clock())
        with self.transaction():
            conn = self._db()
            try:
                conn.execute(
                    "INSERT INTO accounts (id, username, display_name, role, password_hash,"
                    " disabled, created_at) VALUES (?, ?, ?, ?, ?, 0, ?)",
                    (account.id, username, display_name, role, password_hash, account.created_at),
                )
            except sqlite3.IntegrityError as err:
                raise _integrity(err, "account", username) from err
            if role == "expert":
                conn.execute("INSERT INTO expert_profiles (account_id) VALUES (?)", (account.id,))
        return account

    def get_account(self, account_id: str) -> Account:
        """The account with this id; raises NotFound."""
        row = self._one("SELECT * FROM accounts WHERE id = ?", (account_id,))
        if row is None:
            raise NotFound("account", account_id)
        return _account(row)

    def find_account_by_username(self, username: str) -> Account | None:
        """The account with this username (ASCII case-insensitive), or None."""
        row = self._one("SELECT * FROM accounts WHERE username = ?", (username,))
        return None if row is None else _account(row)

    def list_accounts(self) -> list[Account]:
        """All accounts, by username."""
        return [_account(r) for r in self._all("SELECT * FROM accounts ORDER BY username, id")]

    def set_account_disabled(self, account_id: str, disabled: bool) -> None:
        """Disable or re-enable an account; disabling also ends its sessions."""
        with self.transaction():
            if not self._write(
                "UPDATE accounts SET disabled = ? WHERE id = ?", (int(disabled), account_id)
            ):
                raise NotFound("account", account_id)
            if disabled:
                self._write("DELETE FROM sessions WHERE account_id = ?", (account_id,))

    def set_password(self, account_id: str, password: str) -> None:
        """Replace an account's password (existing sessions are kept)."""
        password_hash = self._hash_password(password)
        if not self._write(
            "UPDATE accounts SET password_hash = ? WHERE id = ?", (password_hash, account_id)
        ):
            raise NotFound("account", account_id)

    def check_password(self, username: str, password: str) -> Account | None:
        """The account if the password is right and it is enabled, else None.

        Costs one hash verification whether or not the username exists; rehashes
        the stored hash when the hasher's parameters have changed.
        """
        row = self._one("SELECT * FROM accounts WHERE username = ?", (username,))
        stored = row["password_hash"] if row is not None else self._dummy()
        try:
            self._hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return None
        if row is None or row["disabled"]:
            return None
        if self._hasher.check_needs_rehash(stored):
            new_hash = self._hasher.hash(password)
            self._write(
                "UPDATE accounts SET password_hash = ? WHERE id = ? AND password_hash = ?",
                (new_hash, row["id"], stored),
            )
        return _account(row)

    def _hash_password(self, password: str) -> str:
        if not isinstance(password, str) or not password:
            raise ValueError("password must be a non-empty string")
        return self._hasher.hash(password)

    def _dummy(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = self._hasher.hash(secrets.token_urlsafe(16))
        return self._dummy_hash

    # -- experts -----------------------------------------------------------------

    def set_expert_profile(
        self, account_id: str, specialties: list[str], on_duty: bool = False
    ) -> None:
        """Set an expert's specialties (order kept, duplicates dropped) and duty flag."""
        cleaned = list(dict.fromkeys(_text("specialty", s) for s in specialties))
        with self.transaction():
            account = self.get_account(account_id)
            if account.role != "expert":
                raise ValueError(f"account {account_id} has role {account.role!r}, not expert")
            conn = self._db()
            conn.execute(
                "INSERT INTO expert_profiles (account_id, on_duty) VALUES (?, ?)"
                " ON CONFLICT (account_id) DO UPDATE SET on_duty = excluded.on_duty",
                (account_id, int(on_duty)),
            )
            conn.execute("DELETE FROM expert_specialties WHERE account_id = ?", (account_id,))
            conn.executemany(
                "INSERT INTO expert_specialties (account_id, specialty, position) VALUES (?, ?, ?)",
                [(account_id, s, i) for i, s in enumerate(cleaned)],
            )

    def list_experts(self) -> list[ExpertProfile]:
        """All experts, disabled ones included, by display name."""
        with self._lock:
            rows = self._all(_EXPERT_SELECT + " ORDER BY a.display_name, a.id")
            specialties = self._specialties(None)
        return [_expert(r, specialties.get(r["id"], ())) for r in rows]

    def get_expert(self, account_id: str) -> ExpertProfile:
        """The expert profile of this account; raises NotFound."""
        with self._lock:
            row = self._one(_EXPERT_SELECT + " WHERE a.id = ?", (account_id,))
            if row is None:
                raise NotFound("expert", account_id)
            specialties = self._specialties(account_id)
        return _expert(row, specialties.get(account_id, ()))

    def _specialties(self, account_id: str | None) -> dict[str, tuple[str, ...]]:
        where, params = ("", ()) if account_id is None else (" WHERE account_id = ?", (account_id,))
        grouped: dict[str, list[str]] = {}
        for r in self._all(
            f"SELECT account_id, specialty FROM expert_specialties{where}"
            " ORDER BY account_id, position",
            params,
        ):
            grouped.setdefault(r["account_id"], []).append(r["specialty"])
        return {k: tuple(v) for k, v in grouped.items()}

    def set_expert_availability(self, account_id: str, availability: str) -> None:
        """Set "available" or "away"."""
        if availability not in AVAILABILITIES:
            raise ValueError(f"unknown availability {availability!r}")
        self._update_expert(account_id, "availability", availability)

    def set_expert_on_duty(self, account_id: str, on_duty: bool) -> None:
        """Put an expert in or out of the duty (overflow) pool."""
        self._update_expert(account_id, "on_duty", int(on_duty))

    def set_expert_last_busy(self, account_id: str, at_ms: int) -> None:
        """Record when the expert was last busy (dispatch picks least recently busy)."""
        self._update_expert(account_id, "last_busy_at", int(at_ms))

    def _update_expert(self, account_id: str, column: str, value: object) -> None:
        if not self._write(
            f"UPDATE expert_profiles SET {column} = ? WHERE account_id = ?", (value, account_id)
        ):
            raise NotFound("expert", account_id)

    # -- devices -----------------------------------------------------------------

    def create_device(self, kind: str, name: str) -> tuple[Device, str]:
        """Provision a device; returns it and its plaintext token (shown only once)."""
        if kind not in DEVICE_KINDS:
            raise ValueError(f"unknown device kind {kind!r}")
        _text("name", name)
        token = DEVICE_TOKEN_PREFIX + secrets.token_urlsafe(32)
        device = Device(new_id(), kind, name, False, 1, self._clock(), None)
        self._write(
            "INSERT INTO devices (id, kind, name, token_hash, token_generation, disabled,"
            " created_at) VALUES (?, ?, ?, ?, 1, 0, ?)",
            (device.id, kind, name, hash_token(token), device.created_at),
        )
        return device, token

    def find_device_by_token(self, token: str) -> Device | None:
        """The enabled device holding this token, or None."""
        row = self._one(
            "SELECT * FROM devices WHERE token_hash = ? AND disabled = 0", (hash_token(token),)
        )
        return None if row is None else _device(row)

    def get_device(self, device_id: str) -> Device:
        """The device with this id; raises NotFound."""
        row = self._one("SELECT * FROM devices WHERE id = ?", (device_id,))
        if row is None:
            raise NotFound("device", device_id)
        return _device(row)

    def list_devices(self) -> list[Device]:
        """All devices, by kind then name."""
        return [_device(r) for r in self._all("SELECT * FROM devices ORDER BY kind, name, id")]

    def set_device_disabled(self, device_id: str, disabled: bool) -> None:
        """Disable or re-enable a device; a disabled device's token is not found."""
        if not self._write(
            "UPDATE devices SET disabled = ? WHERE id = ?", (int(disabled), device_id)
        ):
            raise NotFound("device", device_id)

    def rotate_device_token(self, device_id: str) -> str:
        """Issue a new token for the device; the old one stops working."""
        token = DEVICE_TOKEN_PREFIX + secrets.token_urlsafe(32)
        if not self._write(
            "UPDATE devices SET token_hash = ?, token_generation = token_generation + 1"
            " WHERE id = ?",
            (hash_token(token), device_id),
        ):
            raise NotFound("device", device_id)
        return token

    def touch_device(self, device_id: str, at_ms: int) -> None:
        """Record when the device was last seen."""
        if not self._write(
            "UPDATE devices SET last_seen_at = ? WHERE id = ?", (int(at_ms), device_id)
        ):
            raise NotFound("device", device_id)

    def create_enrolment_code(self, device_id: str, ttl_s: float) -> tuple[str, int]:
        """A one-time 8-digit code that enrols the device, valid for `ttl_s`.

        Replaces the device's unused code, if any. Returns the code (shown only now; only
        its SHA-256 is stored) and when it expires. Raises NotFound for an unknown device.
        """
        if ttl_s <= 0:
            raise ValueError("ttl_s must be positive")
        now = self._clock()
        expires_at = now + round(ttl_s * 1000)
        with self.transaction():
            self.get_device(device_id)
            conn = self._db()
            conn.execute(
                "DELETE FROM enrolment_codes WHERE device_id = ? OR expires_at <= ?",
                (device_id, now),
            )
            for _ in range(16):
                code = f"{secrets.randbelow(10**ENROLMENT_CODE_DIGITS):0{ENROLMENT_CODE_DIGITS}d}"
                try:
                    conn.execute(
                        "INSERT INTO enrolment_codes (device_id, code_hash, created_at,"
                        " expires_at) VALUES (?, ?, ?, ?)",
                        (device_id, hash_token(code), now, expires_at),
                    )
                except sqlite3.IntegrityError:
                    continue  # another device holds this code right now: draw again
                return code, expires_at
        raise StorageError("no free enrolment code found")

    def redeem_enrolment_code(self, code: str, kind: str) -> tuple[Device, str]:
        """Use a code once: the device gets a fresh token (the old one stops working).

        Returns the device and its new plaintext token. Raises EnrolmentRefused with the
        reason for an unknown, used, replaced or expired code, or a disabled device; the
        code is spent either way. `kind` is the kind of device enrolling: a valid code of a
        device of another kind is refused as ``wrong_kind`` and stays usable.
        """
        now = self._clock()
        with self.transaction():
            row = self._one(
                "SELECT device_id, expires_at FROM enrolment_codes WHERE code_hash = ?",
                (hash_token(code),),
            )
            device = None if row is None else self.get_device(row["device_id"])
            if row is None or device is None:
                reason = "unknown"
            elif device.kind != kind and row["expires_at"] > now and not device.disabled:
                reason = "wrong_kind"  # nothing spent: the code still enrols its own device
            else:
                self._db().execute(
                    "DELETE FROM enrolment_codes WHERE device_id = ?", (row["device_id"],)
                )
                if row["expires_at"] <= now:
                    reason = "expired"
                elif device.disabled:
                    reason = "device_disabled"
                else:
                    token = self.rotate_device_token(device.id)
                    return self.get_device(device.id), token
        raise EnrolmentRefused(reason)

    def pending_enrolments(self) -> dict[str, int]:
        """Devices with an unused, unexpired enrolment code: device id -> expires_at."""
        rows = self._all(
            "SELECT device_id, expires_at FROM enrolment_codes WHERE expires_at > ?",
            (self._clock(),),
        )
        return {r["device_id"]: r["expires_at"] for r in rows}

    def save_device_health(self, health: DeviceHealth) -> DeviceHealth | None:
        """Keep the device's latest self-test; returns the report it replaces, if any."""
        with self.transaction():
            previous = self.get_device_health(health.device_id)
            try:
                self._write(
                    "INSERT INTO device_health (device_id, camera, microphone, app_build, at)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (device_id) DO UPDATE SET"
                    " camera = excluded.camera, microphone = excluded.microphone,"
                    " app_build = excluded.app_build, at = excluded.at",
                    (
                        health.device_id,
                        health.camera,
                        health.microphone,
                        health.app_build,
                        health.at,
                    ),
                )
            except sqlite3.IntegrityError as err:
                raise _integrity(err, "device health", health.device_id) from err
        return previous

    def get_device_health(self, device_id: str) -> DeviceHealth | None:
        """The device's latest self-test report, or None if it never sent one."""
        row = self._one("SELECT * FROM device_health WHERE device_id = ?", (device_id,))
        return None if row is None else _record(DeviceHealth, row)

    def list_device_health(self) -> dict[str, DeviceHealth]:
        """Every device's latest self-test report, by device id."""
        return {
            r["device_id"]: _record(DeviceHealth, r)
            for r in self._all("SELECT * FROM device_health")
        }

    # -- sessions ----------------------------------------------------------------

    def create_session(self, account_id: str, ttl_s: float) -> str:
        """Start a login session; returns its plaintext token."""
        if ttl_s < 0:
            raise ValueError("ttl_s must not be negative")
        token = SESSION_TOKEN_PREFIX + secrets.token_urlsafe(32)
        created = self._clock()
        try:
            self._write(
                "INSERT INTO sessions (token_hash, account_id, created_at, expires_at)"
                " VALUES (?, ?, ?, ?)",
                (hash_token(token), account_id, created, created + round(ttl_s * 1000)),
            )
        except sqlite3.IntegrityError as err:
            raise NotFound("account", account_id) from err
        return token

    def find_session(self, token: str) -> tuple[Session, Account] | None:
        """The live session and its account, or None if unknown, expired or disabled."""
        row = self._one(
            "SELECT s.token_hash, s.account_id, s.created_at AS s_created_at, s.expires_at,"
            " a.* FROM sessions s JOIN accounts a ON a.id = s.account_id"
            " WHERE s.token_hash = ? AND s.expires_at > ? AND a.disabled = 0",
            (hash_token(token), self._clock()),
        )
        if row is None:
            return None
        session = Session(
            row["token_hash"], row["account_id"], row["s_created_at"], row["expires_at"]
        )
        return session, _account(row)

    def delete_session(self, token: str) -> None:
        """End a session (logout); unknown tokens are ignored."""
        self._write("DELETE FROM sessions WHERE token_hash = ?", (hash_token(token),))

    def delete_sessions_for_account(self, account_id: str) -> None:
        """End every session of an account."""
        self._write("DELETE FROM sessions WHERE account_id = ?", (account_id,))

    def delete_other_sessions(self, account_id: str, keep_token: str | None) -> None:
        """End every session of an account but the one `keep_token` opened (a password
        change keeps the session that made it)."""
        keep = hash_token(keep_token) if keep_token else ""
        self._write(
            "DELETE FROM sessions WHERE account_id = ? AND token_hash != ?", (account_id, keep)
        )

    def delete_expired_sessions(self) -> int:
        """Remove expired sessions; returns how many."""
        return self._write("DELETE FROM sessions WHERE expires_at <= ?", (self._clock(),))

    # -- dispute types -----------------------------------------------------------

    def list_dispute_types(self, include_inactive: bool = False) -> list[DisputeType]:
        """Dispute types by sort order (active ones only unless asked)."""
        where = "" if include_inactive else " WHERE active = 1"
        rows = self._all(f"SELECT * FROM dispute_types{where} ORDER BY sort, code")
        return [_dispute_type(r) for r in rows]

    def get_dispute_type(self, code: str) -> DisputeType:
        """The dispute type with this code; raises NotFound."""
        row = self._one("SELECT * FROM dispute_types WHERE code = ?", (code,))
        if row is None:
            raise NotFound("dispute type", code)
        return _dispute_type(row)

    def upsert_dispute_type(
        self, code: str, name_zh: str, name_en: str, active: bool = True, sort: int = 100
    ) -> DisputeType:
        """Create or replace a dispute type (types are deactivated, never deleted)."""
        record = DisputeType(
            _text("code", code),
            _text("name_zh", name_zh),
            _text("name_en", name_en),
            bool(active),
            int(sort),
        )
        self._write(
            "INSERT INTO dispute_types (code, name_zh, name_en, active, sort)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (code) DO UPDATE SET"
            " name_zh = excluded.name_zh, name_en = excluded.name_en,"
            " active = excluded.active, sort = excluded.sort",
            (code, name_zh, name_en, int(active), record.sort),
        )
        return record

    # -- cases -------------------------------------------------------------------

    def create_case(self, district: str) -> Case:
        """A new case numbered `{district}-{year}-{n:05d}`, n counting per district and year."""
        _text("district", district)
        created = self._clock()
        year = datetime.fromtimestamp(created / 1000, UTC).year
        with self.transaction():
            conn = self._db()
            n = conn.execute(
                "INSERT INTO case_counters (district, year, last) VALUES (?, ?, 1)"
                " ON CONFLICT (district, year) DO UPDATE SET last = last + 1 RETURNING last",
                (district, year),
            ).fetchone()[0]
            case = Case(new_id(), f"{district}-{year}-{n:05d}", district, created)
            conn.execute(
                "INSERT INTO cases (id, case_number, district, created_at) VALUES (?, ?, ?, ?)",
                (case.id, case.case_number, district, created),
            )
        return case

    def cases_for(self, case_ids: Collection[str]) -> dict[str, Case]:
        """These cases by id (unknown ids left out)."""
        ids_ = list(dict.fromkeys(case_ids))
        found: dict[str, Case] = {}
        for start in range(0, len(ids_), _IN_CHUNK):
            chunk = ids_[start : start + _IN_CHUNK]
            for row in self._all(
                f"SELECT * FROM cases WHERE id IN ({', '.join('?' * len(chunk))})", chunk
            ):
                found[row["id"]] = _record(Case, row)
        return found

    def get_case(self, case_id: str) -> Case:
        """The case with this id; raises NotFound."""
        row = self._one("SELECT * FROM cases WHERE id = ?", (case_id,))
        if row is None:
            raise NotFound("case", case_id)
        return _record(Case, row)

    def find_case_by_number(self, case_number: str) -> Case | None:
        """The case with exactly this number (numbers are unique), or None."""
        row = self._one("SELECT * FROM cases WHERE case_number = ?", (case_number,))
        return None if row is None else _record(Case, row)

    def add_party(self, case_id: str, label: str) -> Party:
        """Add a party to a case; raises NotFound for an unknown case."""
        party = Party(new_id(), case_id, _text("label", label), self._clock())
        try:
            self._write(
                "INSERT INTO parties (id, case_id, label, created_at) VALUES (?, ?, ?, ?)",
                (party.id, case_id, label, party.created_at),
            )
        except sqlite3.IntegrityError as err:
            raise NotFound("case", case_id) from err
        return party

    def list_parties(self, case_id: str) -> list[Party]:
        """A case's parties in the order they were added."""
        rows = self._all(
            "SELECT * FROM parties WHERE case_id = ? ORDER BY created_at, id", (case_id,)
        )
        return [_record(Party, r) for r in rows]

    # -- calls -------------------------------------------------------------------

    def insert_call(self, call: CallRecord) -> None:
        """Store a new call; Conflict on a duplicate id, NotFound on a bad reference."""
        try:
            self._write(
                f"INSERT INTO calls ({_CALL_COLUMNS}) VALUES ({', '.join('?' * 13)})",
                (
                    call.id,
                    call.case_id,
                    call.state,
                    call.end_reason,
                    call.dispute_type,
                    call.caller_kind,
                    call.caller_device_id,
                    call.caller_account_id,
                    call.named_expert_id,
                    int(call.training_consent),
                    call.launched_at,
                    call.answered_at,
                    call.ended_at,
                ),
            )
        except sqlite3.IntegrityError as err:
            raise _integrity(err, "call", call.id) from err

    def update_call(self, call_id: str, **fields: Any) -> CallRecord:
        """Update some of: state, end_reason, answered_at, ended_at, case_id,
        named_expert_id, training_consent. Returns the updated call."""
        unknown = set(fields) - _CALL_UPDATABLE
        if unknown:
            raise ValueError(f"cannot update call fields {sorted(unknown)}")
        if "state" in fields and fields["state"] not in CALL_STATES:
            raise ValueError(f"unknown call state {fields['state']!r}")
        if "training_consent" in fields:
            fields["training_consent"] = int(bool(fields["training_consent"]))
        with self.transaction():
            if fields:
                columns = sorted(fields)
                assignments = ", ".join(f"{c} = ?" for c in columns)
                try:
                    changed = self._write(
                        f"UPDATE calls SET {assignments} WHERE id = ?",
                        [fields[c] for c in columns] + [call_id],
                    )
                except sqlite3.IntegrityError as err:
                    raise _integrity(err, "call", call_id) from err
                if not changed:
                    raise NotFound("call", call_id)
            return self.get_call(call_id)

    def get_call(self, call_id: str) -> CallRecord:
        """The call with this id; raises NotFound."""
        row = self._one(f"SELECT {_CALL_COLUMNS} FROM calls WHERE id = ?", (call_id,))
        if row is None:
            raise NotFound("call", call_id)
        return _call(row)

    def list_calls(
        self,
        *,
        caller_device_id: str | None = None,
        caller_account_id: str | None = None,
        participant_principal_id: str | None = None,
        training_only: bool = False,
        states: Collection[str] | None = None,
        case_id: str | None = None,
        limit: int = 200,
    ) -> list[CallRecord]:
        """Calls newest first; the filters given combine with AND.

        `participant_principal_id` matches calls where that principal has a
        participant row or was invited (as the expert); `states` keeps calls in one of
        those states.
        """
        if limit < 1:
            raise ValueError("limit must be at least 1")
        where: list[str] = []
        params: list[Any] = []
        if states is not None:
            unknown = set(states) - CALL_STATES
            if unknown:
                raise ValueError(f"unknown call states {sorted(unknown)}")
            where.append(f"c.state IN ({', '.join('?' * len(states))})" if states else "0")
            params += list(states)
        if case_id is not None:
            where.append("c.case_id = ?")
            params.append(case_id)
        if caller_device_id is not None:
            where.append("c.caller_device_id = ?")
            params.append(caller_device_id)
        if caller_account_id is not None:
            where.append("c.caller_account_id = ?")
            params.append(caller_account_id)
        if participant_principal_id is not None:
            where.append(
                "(EXISTS (SELECT 1 FROM participants p"
                "  WHERE p.call_id = c.id AND p.principal_id = ?)"
                " OR EXISTS (SELECT 1 FROM invitations i"
                "  WHERE i.call_id = c.id AND i.expert_id = ?))"
            )
            params += [participant_principal_id, participant_principal_id]
        if training_only:
            where.append("c.training_consent = 1")
        clause = (" WHERE " + " AND ".join(where)) if where else ""
        rows = self._all(
            f"SELECT {_CALL_COLUMNS} FROM calls c{clause}"
            " ORDER BY c.launched_at DESC, c.id DESC LIMIT ?",
            params + [int(limit)],
        )
        return [_call(r) for r in rows]

    def recent_handle_times_ms(self, limit: int = 20) -> list[int]:
        """How long the last `limit` answered calls lasted from answer to end, newest first.

        Calls a restart interrupted are left out (their end is the restart, not the call's).
        """
        rows = self._all(
            "SELECT ended_at - answered_at AS handled FROM calls"
            " WHERE answered_at IS NOT NULL AND ended_at IS NOT NULL AND state = 'ended'"
            " AND COALESCE(end_reason, '') <> 'interrupted'"
            " ORDER BY ended_at DESC LIMIT ?",
            (int(limit),),
        )
        return [max(0, int(r["handled"])) for r in rows]

    def open_calls(self) -> list[CallRecord]:
        """Calls not yet ended, oldest first (for recovery after a restart)."""
        rows = self._all(
            f"SELECT {_CALL_COLUMNS} FROM calls WHERE state <> 'ended' ORDER BY launched_at, id"
        )
        return [_call(r) for r in rows]

    def add_call_event(
        self,
        call_id: str,
        kind: str,
        subject_id: str | None,
        old: str | None,
        new: str | None,
        at: int,
        detail: dict[str, Any] | None = None,
    ) -> CallEvent:
        """Append one state change (`old -> new`) to a call's history."""
        if kind not in CALL_EVENT_KINDS:
            raise ValueError(f"unknown call event kind {kind!r}")
        detail_json = _json(detail)
        old = None if old is None else str(old)  # plain str, also for StrEnum members
        new = None if new is None else str(new)
        with self.transaction():
            conn = self._db()
            seq = conn.execute(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM call_events WHERE call_id = ?", (call_id,)
            ).fetchone()[0]
            try:
                conn.execute(
                    "INSERT INTO call_events (call_id, seq, at, kind, subject_id, old, new,"
                    " detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (call_id, seq, int(at), kind, subject_id, old, new, detail_json),
                )
            except sqlite3.IntegrityError as err:
                raise NotFound("call", call_id) from err
        return CallEvent(seq, call_id, int(at), kind, subject_id, old, new, json.loads(detail_json))

    def list_call_events(self, call_id: str) -> list[CallEvent]:
        """A call's history in order."""
        rows = self._all("SELECT * FROM call_events WHERE call_id = ? ORDER BY seq", (call_id,))
        return [_record(CallEvent, r, detail=json.loads(r["detail"])) for r in rows]

    def save_media_stats(self, participant_id: str, call_id: str, stats: dict[str, Any]) -> None:
        """Keep a participant's last media figures (bitrate, loss, RTT, packets) with the call."""
        self._write(
            "INSERT INTO participant_media_stats (participant_id, call_id, stats, updated_at)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (participant_id) DO UPDATE SET"
            " stats = excluded.stats, updated_at = excluded.updated_at",
            (participant_id, call_id, json.dumps(stats, sort_keys=True), self._clock()),
        )

    def media_stats(self, call_id: str) -> dict[str, dict[str, Any]]:
        """The stored media statistics of a call's participants, by participant id."""
        rows = self._all(
            "SELECT participant_id, stats FROM participant_media_stats WHERE call_id = ?",
            (call_id,),
        )
        return {r["participant_id"]: json.loads(r["stats"]) for r in rows}

    def upsert_invitation(self, rec: InvitationRecord) -> None:
        """Store an invitation or update its state and ended_at."""
        try:
            changed = self._write(
                "INSERT INTO invitations (id, call_id, expert_id, inviter_id, state, created_at,"
                " ended_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET state = excluded.state,"
                " ended_at = excluded.ended_at"
                " WHERE call_id = excluded.call_id AND expert_id = excluded.expert_id",
                (
                    rec.id,
                    rec.call_id,
                    rec.expert_id,
                    rec.inviter_id,
                    rec.state,
                    rec.created_at,
                    rec.ended_at,
                ),
            )
        except sqlite3.IntegrityError as err:
            raise _integrity(err, "invitation", rec.id) from err
        if not changed:
            raise Conflict("invitation", rec.id, "belongs to another call or expert")

    def list_invitations(self, call_id: str) -> list[InvitationRecord]:
        """A call's invitations in the order they were made."""
        rows = self._all(
            "SELECT * FROM invitations WHERE call_id = ? ORDER BY created_at, id", (call_id,)
        )
        return [_record(InvitationRecord, r) for r in rows]

    def upsert_participant(self, rec: ParticipantRecord) -> None:
        """Store a participant or update its role, state, joined_at and left_at."""
        try:
            changed = self._write(
                "INSERT INTO participants (id, call_id, principal_kind, principal_id, role,"
                " state, joined_at, left_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET role = excluded.role, state = excluded.state,"
                " joined_at = excluded.joined_at, left_at = excluded.left_at"
                " WHERE call_id = excluded.call_id AND principal_id = excluded.principal_id",
                (
                    rec.id,
                    rec.call_id,
                    rec.principal_kind,
                    rec.principal_id,
                    rec.role,
                    rec.state,
                    rec.joined_at,
                    rec.left_at,
                ),
            )
        except sqlite3.IntegrityError as err:
            raise _integrity(err, "participant", rec.id) from err
        if not changed:
            raise Conflict("participant", rec.id, "belongs to another call or principal")

    def list_participants(self, call_id: str) -> list[ParticipantRecord]:
        """A call's participants in the order they joined."""
        rows = self._all(
            "SELECT * FROM participants WHERE call_id = ? ORDER BY joined_at, id", (call_id,)
        )
        return [_record(ParticipantRecord, r) for r in rows]

    # -- ratings, outcomes, bookmarks ---------------------------------------------

    def _by_call(self, table: str, call_ids: Collection[str]) -> list[sqlite3.Row]:
        ids_ = list(dict.fromkeys(call_ids))
        rows: list[sqlite3.Row] = []
        for start in range(0, len(ids_), _IN_CHUNK):
            chunk = ids_[start : start + _IN_CHUNK]
            rows += self._all(
                f"SELECT * FROM {table} WHERE call_id IN ({', '.join('?' * len(chunk))})", chunk
            )
        return rows

    def add_rating(self, rating: Rating) -> None:
        """Store the call's rating; Conflict if it was rated already, NotFound for a bad call."""
        try:
            self._write(
                "INSERT INTO call_ratings (call_id, stars, comment, device_id, account_id, at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    rating.call_id,
                    rating.stars,
                    rating.comment,
                    rating.device_id,
                    rating.account_id,
                    rating.at,
                ),
            )
        except sqlite3.IntegrityError as err:
            raise _integrity(err, "rating", rating.call_id) from err

    def get_rating(self, call_id: str) -> Rating | None:
        return self.ratings_for([call_id]).get(call_id)

    def ratings_for(self, call_ids: Collection[str]) -> dict[str, Rating]:
        """The ratings of these calls, by call id (unrated calls left out)."""
        return {r["call_id"]: _record(Rating, r) for r in self._by_call("call_ratings", call_ids)}

    def set_outcome(self, outcome: Outcome) -> Outcome | None:
        """Record the outcome on the call and, if it has one, on its case (latest wins).

        Returns the call's previous outcome, if any.
        """
        values = (
            outcome.call_id,
            outcome.case_id,
            outcome.outcome,
            outcome.summary,
            outcome.expert_id,
            outcome.at,
        )
        with self.transaction():
            previous = self.get_outcome(outcome.call_id)
            try:
                self._write(
                    "INSERT INTO call_outcomes (call_id, case_id, outcome, summary, expert_id, at)"
                    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (call_id) DO UPDATE SET"
                    " case_id = excluded.case_id, outcome = excluded.outcome,"
                    " summary = excluded.summary, expert_id = excluded.expert_id,"
                    " at = excluded.at",
                    values,
                )
                if outcome.case_id is not None:
                    self._write(
                        "INSERT INTO case_outcomes (call_id, case_id, outcome, summary,"
                        " expert_id, at) VALUES (?, ?, ?, ?, ?, ?)"
                        " ON CONFLICT (case_id) DO UPDATE SET call_id = excluded.call_id,"
                        " outcome = excluded.outcome, summary = excluded.summary,"
                        " expert_id = excluded.expert_id, at = excluded.at",
                        values,
                    )
            except sqlite3.IntegrityError as err:
                raise _integrity(err, "outcome", outcome.call_id) from err
        return previous

    def get_outcome(self, call_id: str) -> Outcome | None:
        """The call's latest outcome, or None."""
        return self.outcomes_for([call_id]).get(call_id)

    def outcomes_for(self, call_ids: Collection[str]) -> dict[str, Outcome]:
        """The latest outcomes of these calls, by call id."""
        return {r["call_id"]: _record(Outcome, r) for r in self._by_call("call_outcomes", call_ids)}

    def get_case_outcome(self, case_id: str) -> Outcome | None:
        """The latest outcome recorded on any call of the case, or None."""
        row = self._one("SELECT * FROM case_outcomes WHERE case_id = ?", (case_id,))
        return None if row is None else _record(Outcome, row)

    def add_bookmark(self, bookmark: Bookmark) -> None:
        """Store a bookmark; NotFound for an unknown call or expert."""
        try:
            self._write(
                "INSERT INTO call_bookmarks (id, call_id, expert_id, at, offset_ms, note)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    bookmark.id,
                    bookmark.call_id,
                    bookmark.expert_id,
                    bookmark.at,
                    bookmark.offset_ms,
                    bookmark.note,
                ),
            )
        except sqlite3.IntegrityError as err:
            raise _integrity(err, "bookmark", bookmark.id) from err

    def list_bookmarks(self, call_id: str) -> list[Bookmark]:
        """A call's bookmarks in time order."""
        rows = self._all(
            "SELECT * FROM call_bookmarks WHERE call_id = ? ORDER BY at, id", (call_id,)
        )
        return [_record(Bookmark, r) for r in rows]

    # -- consent and recordings --------------------------------------------------

    def get_notice(self, language: str, version: str | None = None) -> NoticeText:
        """The recording notice in `language`: a given version, or the newest one."""
        if version is None:
            row = self._one(
                "SELECT * FROM notice_texts WHERE language = ?"
                " ORDER BY created_at DESC, version DESC LIMIT 1",
                (language,),
            )
        else:
            row = self._one(
                "SELECT * FROM notice_texts WHERE language = ? AND version = ?",
                (language, version),
            )
        if row is None:
            raise NotFound("notice", f"{version or 'newest'}/{language}")
        return _record(NoticeText, row)

    def add_notice(self, version: str, language: str, body: str) -> NoticeText:
        """A new notice text version; Conflict if that version exists in that language."""
        text = NoticeText(
            _text("version", version), _text("language", language), body, self._clock()
        )
        try:
            self._write(
                "INSERT INTO notice_texts (version, language, body, created_at)"
                " VALUES (?, ?, ?, ?)",
                (text.version, text.language, text.body, text.created_at),
            )
        except sqlite3.IntegrityError as err:
            raise _integrity(err, "notice", f"{version}/{language}") from err
        return text

    def insert_consent(self, consent: Consent) -> None:
        try:
            self._write(
                "INSERT INTO consents (id, call_id, evidence, training, notice_version, language,"
                " device_id, account_id, parties, captured_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    consent.id,
                    consent.call_id,
                    int(consent.evidence),
                    int(consent.training),
                    consent.notice_version,
                    consent.language,
                    consent.device_id,
                    consent.account_id,
                    consent.parties,
                    consent.captured_at,
                ),
            )
        except sqlite3.IntegrityError as err:
            raise _integrity(err, "consent", consent.id) from err

    def get_consent(self, call_id: str) -> Consent | None:
        """The call's consent (the latest if several were captured), or None."""
        row = self._one(
            "SELECT * FROM consents WHERE call_id = ? ORDER BY captured_at DESC, id DESC LIMIT 1",
            (call_id,),
        )
        return None if row is None else _record(Consent, row)

    def insert_recording(self, rec: Recording) -> None:
        try:
            self._write(
                "INSERT INTO recordings (call_id, prefix, status, started_at, ended_at,"
                " chain_count, chain_head, manifest_key, legal_hold)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    rec.call_id,
                    rec.prefix,
                    rec.status,
                    rec.started_at,
                    rec.ended_at,
                    rec.chain_count,
                    rec.chain_head,
                    rec.manifest_key,
                    int(rec.legal_hold),
                ),
            )
        except sqlite3.IntegrityError as err:
            raise _integrity(err, "recording", rec.call_id) from err

    def update_recording(self, call_id: str, **fields: Any) -> Recording:
        """Update some of: status, ended_at, chain_count, chain_head, manifest_key, legal_hold."""
        unknown = set(fields) - _RECORDING_UPDATABLE
        if unknown or not fields:
            raise ValueError(f"cannot update recording fields {sorted(unknown) or 'none'}")
        if "status" in fields and fields["status"] not in RECORDING_STATUSES:
            raise ValueError(f"unknown recording status {fields['status']!r}")
        if "legal_hold" in fields:
            fields["legal_hold"] = int(bool(fields["legal_hold"]))
        with self.transaction():
            columns = sorted(fields)
            changed = self._write(
                f"UPDATE recordings SET {', '.join(f'{c} = ?' for c in columns)} WHERE call_id = ?",
                [fields[c] for c in columns] + [call_id],
            )
            if not changed:
                raise NotFound("recording", call_id)
            return self.get_recording(call_id)

    def get_recording(self, call_id: str) -> Recording:
        row = self._one("SELECT * FROM recordings WHERE call_id = ?", (call_id,))
        if row is None:
            raise NotFound("recording", call_id)
        return _record(Recording, row)

    def list_recordings(self, status: str | None = None) -> list[Recording]:
        if status is None:
            rows = self._all("SELECT * FROM recordings ORDER BY started_at, call_id")
        else:
            rows = self._all(
                "SELECT * FROM recordings WHERE status = ? ORDER BY started_at, call_id", (status,)
            )
        return [_record(Recording, r) for r in rows]

    def upsert_recording_object(self, obj: RecordingObject) -> None:
        """Index an object of a recording (again after a re-upload or a reindex)."""
        try:
            self._write(
                "INSERT INTO recording_objects (key, call_id, participant_id, kind, size, sha256,"
                " retain_until, uploaded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (key) DO UPDATE SET size = excluded.size,"
                " sha256 = excluded.sha256, retain_until = excluded.retain_until,"
                " uploaded_at = excluded.uploaded_at",
                (
                    obj.key,
                    obj.call_id,
                    obj.participant_id,
                    obj.kind,
                    obj.size,
                    obj.sha256,
                    obj.retain_until,
                    obj.uploaded_at,
                ),
            )
        except sqlite3.IntegrityError as err:
            raise _integrity(err, "recording object", obj.key) from err

    def get_recording_object(self, key: str) -> RecordingObject | None:
        row = self._one("SELECT * FROM recording_objects WHERE key = ?", (key,))
        return None if row is None else _record(RecordingObject, row)

    def list_recording_objects(self, call_id: str) -> list[RecordingObject]:
        rows = self._all(
            "SELECT * FROM recording_objects WHERE call_id = ? ORDER BY key", (call_id,)
        )
        return [_record(RecordingObject, r) for r in rows]

    # -- audit log ---------------------------------------------------------------

    def append_audit(
        self,
        actor: str,
        action: str,
        target: str | None,
        details: dict[str, Any] | None = None,
        at: int | None = None,
    ) -> AuditEntry:
        """Append a hash-chained entry: who (`actor`) did what (`action`) to what."""
        _text("actor", actor)
        _text("action", action)
        details_json = _json(details)
        normalised = json.loads(details_json)  # what verification will read back
        at = self._clock() if at is None else int(at)
        with self.transaction():
            conn = self._db()
            head = conn.execute(
                "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1"
            ).fetchone()
            seq, prev_hash = (
                (1, audit_chain.GENESIS_HASH) if head is None else (head["seq"] + 1, head["hash"])
            )
            fields = {
                "seq": seq,
                "at": at,
                "actor": actor,
                "action": action,
                "target": target,
                "details": normalised,
            }
            entry = AuditEntry(
                seq,
                at,
                actor,
                action,
                target,
                normalised,
                prev_hash,
                audit_chain.link_hash(prev_hash, fields),
            )
            conn.execute(
                "INSERT INTO audit_log (seq, at, actor, action, target, details, prev_hash,"
                " hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (seq, at, actor, action, target, details_json, prev_hash, entry.hash),
            )
        return entry

    def list_audit(self, limit: int = 100, after_seq: int = 0) -> list[AuditEntry]:
        """Up to `limit` entries with seq > after_seq, oldest first."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        rows = self._all(
            "SELECT * FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?",
            (int(after_seq), int(limit)),
        )
        return [_audit(r) for r in rows]

    def verify_audit(self) -> int | None:
        """None if the whole chain verifies, else the seq of the first bad entry."""
        with self._lock:
            cursor = self._db().execute("SELECT * FROM audit_log ORDER BY seq")
            return audit_chain.verify_chain(_audit(r) for r in cursor)

    def check_audit(self) -> None:
        """Raise AuditChainBroken unless the whole chain verifies."""
        bad = self.verify_audit()
        if bad is not None:
            raise AuditChainBroken(bad)

    def audit_head(self) -> str:
        """The hash of the last entry (64 zeros for an empty log)."""
        row = self._one("SELECT hash FROM audit_log ORDER BY seq DESC LIMIT 1")
        return audit_chain.GENESIS_HASH if row is None else str(row["hash"])


_R = TypeVar("_R")


def _record(cls: type[_R], row: sqlite3.Row, **overrides: Any) -> _R:
    """Build a record from the row's columns of the same names (0/1 become bools)."""
    values = {}
    for f in fields(cls):  # type: ignore[arg-type]
        if f.name in overrides:
            values[f.name] = overrides[f.name]
        else:
            value = row[f.name]
            values[f.name] = bool(value) if f.type == "bool" else value
    return cls(**values)


def _account(row: sqlite3.Row) -> Account:
    return _record(Account, row)


def _expert(row: sqlite3.Row, specialties: tuple[str, ...]) -> ExpertProfile:
    return _record(ExpertProfile, row, account_id=row["id"], specialties=specialties)


def _device(row: sqlite3.Row) -> Device:
    return _record(Device, row)


def _dispute_type(row: sqlite3.Row) -> DisputeType:
    return _record(DisputeType, row)


def _call(row: sqlite3.Row) -> CallRecord:
    return _record(CallRecord, row)


def _audit(row: sqlite3.Row) -> AuditEntry:
    return _record(AuditEntry, row, details=json.loads(row["details"]))
