"""The signing key ring on a real directory, and the trusted key set a checker uses."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from recorder import evidence
from recorder.keyring import (
    KeyRing,
    KeyRingError,
    PublicKeyInfo,
    TrustedKeys,
    key_id_of,
    public_pem,
)

T0 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


class Clock:
    """A settable UTC clock."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def at(when: datetime) -> str:
    return evidence.utc_iso(when)


def test_the_first_key_is_generated_on_first_use_with_private_modes(tmp_path: Path) -> None:
    directory = tmp_path / "data" / "keys"
    ring = KeyRing(directory, clock=Clock())
    assert not directory.exists()  # nothing happens until a key is needed

    key_id = ring.current_key_id

    assert mode(directory) == 0o700
    assert mode(directory / f"{key_id}.key") == 0o600
    assert mode(directory / "keys.json") == 0o600
    registry = json.loads((directory / "keys.json").read_text())
    assert registry == [
        {
            "key_id": key_id,
            "public_pem": registry[0]["public_pem"],
            "created_utc": "2026-11-25T10:00:00.000Z",
            "retired_utc": None,
        }
    ]
    private = serialization.load_pem_private_key(
        (directory / f"{key_id}.key").read_bytes(), password=None
    )
    assert isinstance(private, Ed25519PrivateKey)
    raw = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    assert key_id == hashlib.sha256(raw).hexdigest()[:16]
    assert b"BEGIN PRIVATE KEY" in (directory / f"{key_id}.key").read_bytes()  # PKCS8
    assert not [p for p in directory.iterdir() if p.name.endswith(".tmp")]


def test_a_loose_key_directory_and_key_file_are_tightened(tmp_path: Path) -> None:
    directory = tmp_path / "keys"
    key_id = KeyRing(directory).current_key_id
    os.chmod(directory, 0o755)
    os.chmod(directory / f"{key_id}.key", 0o644)
    ring = KeyRing(directory)
    ring.rotate()
    assert mode(directory) == 0o700
    assert mode(directory / f"{key_id}.key") == 0o600


def test_signatures_verify_with_the_published_key(tmp_path: Path) -> None:
    ring = KeyRing(tmp_path / "keys", clock=Clock())
    key_id, signature = ring.sign(b"link bytes")
    assert len(signature) == 64
    (info,) = ring.public_keys()
    assert info.key_id == key_id and info.retired_utc is None
    info.public_key().verify(signature, b"link bytes")  # raises if not
    trusted = ring.trusted()
    assert trusted.check(key_id, b"link bytes", signature, at(T0 + timedelta(hours=1))) is None
    assert "does not verify" in str(
        trusted.check(key_id, b"link bytez", signature, at(T0 + timedelta(hours=1)))
    )


def test_a_reopened_ring_uses_the_same_key(tmp_path: Path) -> None:
    key_id = KeyRing(tmp_path / "keys").current_key_id
    again = KeyRing(tmp_path / "keys")
    assert again.current_key_id == key_id
    assert len(again.public_keys()) == 1


def test_rotation_retires_the_old_key_which_stays_valid_for_its_time(tmp_path: Path) -> None:
    clock = Clock()
    ring = KeyRing(tmp_path / "keys", clock=clock)
    old_id, old_sig = ring.sign(b"early")
    clock.now = T0 + timedelta(hours=2)

    new_id = ring.rotate()

    assert new_id != old_id and ring.current_key_id == new_id
    old, new = ring.public_keys()
    assert (old.key_id, old.retired_utc) == (old_id, "2026-11-25T12:00:00.000Z")
    assert (new.key_id, new.created_utc, new.retired_utc) == (
        new_id,
        "2026-11-25T12:00:00.000Z",
        None,
    )
    assert mode(tmp_path / "keys" / f"{new_id}.key") == 0o600
    trusted = ring.trusted()
    assert trusted.check(old_id, b"early", old_sig, at(T0 + timedelta(hours=1))) is None
    assert trusted.check(old_id, b"early", old_sig, at(T0 + timedelta(hours=2))) is None
    late = trusted.check(old_id, b"early", old_sig, at(T0 + timedelta(hours=2, milliseconds=1)))
    assert late is not None and "retired" in late
    new_sig = ring.sign(b"later")[1]
    before = trusted.check(new_id, b"later", new_sig, at(T0 + timedelta(hours=1)))
    assert before is not None and "before key" in before


def test_a_rotation_by_another_process_is_seen_at_the_next_signature(tmp_path: Path) -> None:
    server = KeyRing(tmp_path / "keys")
    first = server.current_key_id
    command_line = KeyRing(tmp_path / "keys")  # `mediation keys rotate`, elsewhere
    rotated = command_line.rotate()
    assert rotated != first
    assert server.sign(b"x")[0] == rotated
    assert [k.key_id for k in server.public_keys()] == [first, rotated]


def test_two_rings_starting_together_generate_one_key(tmp_path: Path) -> None:
    rings = [KeyRing(tmp_path / "keys") for _ in range(4)]
    barrier = threading.Barrier(len(rings))
    ids: list[str] = []

    def start(ring: KeyRing) -> None:
        barrier.wait(timeout=10)
        ids.append(ring.current_key_id)

    threads = [threading.Thread(target=start, args=(r,)) for r in rings]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert len(ids) == 4 and len(set(ids)) == 1
    assert len(list((tmp_path / "keys").glob("*.key"))) == 1


def test_a_registry_with_two_current_keys_is_refused(tmp_path: Path) -> None:
    ring = KeyRing(tmp_path / "keys")
    ring.rotate()
    path = tmp_path / "keys" / "keys.json"
    registry = json.loads(path.read_text())
    registry[0]["retired_utc"] = None
    path.write_text(json.dumps(registry))
    with pytest.raises(KeyRingError, match="2 current keys"):
        _ = KeyRing(tmp_path / "keys").current_key_id


def test_a_private_key_that_is_not_the_registered_one_is_refused(tmp_path: Path) -> None:
    key_id = KeyRing(tmp_path / "keys").current_key_id
    other = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    (tmp_path / "keys" / f"{key_id}.key").write_bytes(other)
    with pytest.raises(KeyRingError, match="is not the key"):
        KeyRing(tmp_path / "keys").sign(b"x")


def test_a_registry_entry_whose_id_does_not_match_its_key_is_refused() -> None:
    pem = public_pem(Ed25519PrivateKey.generate().public_key())
    with pytest.raises(KeyRingError, match="another id"):
        PublicKeyInfo("0123456789abcdef", pem, at(T0))


def test_trusted_keys_from_pem_files_derive_the_id_and_never_expire(tmp_path: Path) -> None:
    private = Ed25519PrivateKey.generate()
    path = tmp_path / "anything.pem"
    path.write_text(public_pem(private.public_key()))
    trusted = TrustedKeys.from_pem_files([path])
    key_id = key_id_of(private.public_key())
    assert list(trusted) == [key_id]
    assert trusted[key_id].valid_from is None and trusted[key_id].valid_until is None
    signature = private.sign(b"data")
    assert trusted.check(key_id, b"data", signature, "1999-01-01T00:00:00.000Z") is None
    assert trusted.check(key_id, b"data", signature, "2999-01-01T00:00:00.000Z") is None


def test_a_key_outside_the_trusted_set_fails(tmp_path: Path) -> None:
    ring = KeyRing(tmp_path / "keys")
    stranger = Ed25519PrivateKey.generate()
    reason = TrustedKeys.from_registry(ring.public_keys()).check(
        key_id_of(stranger.public_key()), b"data", stranger.sign(b"data"), at(T0)
    )
    assert reason is not None and "not trusted" in reason
    assert TrustedKeys().check(ring.current_key_id, b"d", ring.sign(b"d")[1], at(T0)) is not None


def test_a_non_ed25519_or_garbage_pem_is_refused(tmp_path: Path) -> None:
    ec_pem = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    (tmp_path / "ec.pem").write_bytes(ec_pem)
    (tmp_path / "junk.pem").write_bytes(b"hello")
    with pytest.raises(KeyRingError, match="not an Ed25519"):
        TrustedKeys.from_pem_files([tmp_path / "ec.pem"])
    with pytest.raises(KeyRingError, match="not a PEM"):
        TrustedKeys.from_pem_files([tmp_path / "junk.pem"])
    with pytest.raises(KeyRingError, match="cannot read"):
        TrustedKeys.from_pem_files([tmp_path / "absent.pem"])


def test_merged_trust_lets_the_later_validity_win(tmp_path: Path) -> None:
    ring = KeyRing(tmp_path / "keys", clock=Clock())
    key_id = ring.rotate()
    old = ring.public_keys()[0]
    (tmp_path / "old.pem").write_text(old.public_pem)
    merged = ring.trusted().merged(TrustedKeys.from_pem_files([tmp_path / "old.pem"]))
    assert set(merged) == {old.key_id, key_id}
    assert merged[old.key_id].valid_until is None
