"""The spool: files at their object keys, durable commits in order, deletion only when told."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from recorder.spool import Spool, SpoolEntry, SpoolError

P = "calls/2026/11/c1/"


def files_under(root: Path) -> list[str]:
    """Every file below `root` (hidden ones included), as relative paths."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_commit_places_files_at_their_keys_in_commit_order(tmp_path: Path) -> None:
    """pending() lists committed files oldest first (not by name), each at directory/key."""
    spool = Spool(tmp_path / "spool")
    src = tmp_path / "work" / "seg.webm"
    src.parent.mkdir()
    src.write_bytes(b"segment-bytes")
    keys = [f"{P}chain/000001.json", f"{P}p2/000001.webm", f"{P}chain/000001.sig"]
    spool.commit_bytes(keys[0], b'{"index":1}')
    entry = spool.commit_file(keys[1], src)
    spool.commit_bytes(keys[2], b"s" * 64)
    assert not src.exists()
    assert entry == SpoolEntry(keys[1], tmp_path / "spool" / keys[1], 13, entry.mtime)
    assert (tmp_path / "spool" / keys[1]).read_bytes() == b"segment-bytes"
    pending = spool.pending()
    assert [e.key for e in pending] == keys
    assert [e.size for e in pending] == [11, 13, 64]
    assert pending[0].mtime < pending[1].mtime < pending[2].mtime
    backlog = spool.backlog()
    assert (backlog.count, backlog.bytes, backlog.oldest_mtime) == (3, 88, pending[0].mtime)


def test_restart_finds_pending_files_in_the_same_order(tmp_path: Path) -> None:
    """A new Spool on the same directory (a restart) sees the same entries in the same order,
    ignoring temp files, torn files and leftovers of half-written commits."""
    spool = Spool(tmp_path)
    keys = [f"{P}p1/{i:06d}.webm" for i in (3, 1, 2)] + [f"{P}a.json", "z/first.bin"]
    for i, key in enumerate(keys):
        spool.commit_bytes(key, bytes([i]) * (i + 1))
    (tmp_path / P / "p1" / "000004.webm.torn").write_bytes(b"half a segment")
    (tmp_path / P / "p1" / ".000004.webm.x1y2.tmp").write_bytes(b"temp")
    (tmp_path / ".tmp" / "abandoned.tmp").write_bytes(b"crashed commit")
    again = Spool(tmp_path)
    assert again.pending() == spool.pending()
    assert [e.key for e in again.pending()] == keys
    assert not (tmp_path / ".tmp" / "abandoned.tmp").exists()
    # New commits after the restart still come after the old ones.
    again.commit_bytes("a/new.bin", b"n")
    assert [e.key for e in again.pending()][-1] == "a/new.bin"


def test_commit_of_an_existing_key(tmp_path: Path) -> None:
    """The same key with the same bytes is a no-op (crash recovery may commit again); other
    bytes are refused and the spooled file is untouched."""
    spool = Spool(tmp_path / "spool")
    key = f"{P}p1/000001.webm"
    first = spool.commit_bytes(key, b"original")
    assert spool.commit_bytes(key, b"original") == first
    with pytest.raises(SpoolError, match="other content"):
        spool.commit_bytes(key, b"tampered")
    src = tmp_path / "again.webm"
    src.write_bytes(b"original")
    assert spool.commit_file(key, src) == first
    assert not src.exists()
    src.write_bytes(b"different")
    with pytest.raises(SpoolError):
        spool.commit_file(key, src)
    assert src.exists()
    assert [e.key for e in spool.pending()] == [key]
    assert spool.path(key).read_bytes() == b"original"


@pytest.mark.parametrize(
    "key", ["", "/abs", "calls/../x", "calls/.hidden", "calls/x.torn", "calls/x.meta.json"]
)
def test_bad_keys_are_refused(tmp_path: Path, key: str) -> None:
    """Keys that are not object keys, or that the spool would not find again, are refused."""
    spool = Spool(tmp_path)
    with pytest.raises(ValueError):
        spool.commit_bytes(key, b"x")
    assert files_under(tmp_path) == []


def test_done_deletes_the_file_and_prunes_empty_directories(tmp_path: Path) -> None:
    """done(key) deletes that file only, and directories it leaves empty (not the root)."""
    root = tmp_path / "spool"
    spool = Spool(root)
    spool.commit_bytes(f"{P}p1/000001.webm", b"1")
    spool.commit_bytes(f"{P}p2/000001.webm", b"2")
    spool.done(f"{P}p1/000001.webm")
    assert files_under(root) == [f"{P}p2/000001.webm"]
    assert not (root / P / "p1").exists()
    spool.done(f"{P}p2/000001.webm")
    assert files_under(root) == [] and spool.pending() == []
    assert sorted(p.name for p in root.iterdir()) == [".tmp"]
    with pytest.raises(SpoolError, match="not pending"):
        spool.done(f"{P}p2/000001.webm")


def test_pinned_prefix_keeps_uploaded_files_until_released(tmp_path: Path) -> None:
    """Under a pinned prefix, done() marks the file uploaded but keeps it (also across a
    restart); release() after unpin deletes those files and nothing still pending."""
    root = tmp_path / "spool"
    spool = Spool(root)
    spool.pin(P)
    seg1, seg2, other = f"{P}p1/000001.webm", f"{P}p1/000002.webm", "calls/2026/11/c2/x.webm"
    for key in (seg1, seg2, other):
        spool.commit_bytes(key, key.encode())
    spool.done(seg1)
    spool.done(other)
    assert spool.is_uploaded(seg1) and not spool.is_pending(seg1)
    assert spool.path(seg1).read_bytes() == seg1.encode()
    assert [e.key for e in spool.pending()] == [seg2]
    assert not spool.path(other).exists()
    assert spool.release(P) == 0  # still pinned

    again = Spool(root)  # restart: the pin and the "uploaded" mark survive
    assert again.pinned() == frozenset({P})
    assert again.is_uploaded(seg1) and [e.key for e in again.pending()] == [seg2]
    assert [e.key for e in again.kept(P)] == [seg1]
    again.unpin(P)
    assert again.release(P) == 1
    assert not again.path(seg1).exists()
    assert again.path(seg2).exists() and [e.key for e in again.pending()] == [seg2]
    again.done(seg2)  # no pin any more: deleted at once
    assert files_under(root) == [".pins.json"]


def test_listeners_hear_each_commit(tmp_path: Path) -> None:
    """A listener is called with each committed entry (the uploader's wake-up)."""
    spool = Spool(tmp_path)
    heard: list[str] = []
    spool.add_listener(lambda e: heard.append(e.key))
    spool.commit_bytes("a/1", b"1")
    spool.commit_bytes("a/1", b"1")  # no-op: no new commit
    spool.commit_bytes("a/2", b"2")
    assert heard == ["a/1", "a/2"]


def test_commit_file_from_another_file_system(tmp_path: Path) -> None:
    """A source on another file system is copied in (fsynced), then removed."""
    other = Path("/dev/shm")
    # Debian (and CI's fresh Debian) mounts /dev/shm as its own tmpfs: the test needs it.
    assert other.is_dir() and os.stat(other).st_dev != os.stat(tmp_path).st_dev, (
        "this test needs /dev/shm on another file system than the temp dir"
    )
    src = other / f"spool-test-{os.getpid()}.webm"
    src.write_bytes(b"across devices")
    try:
        spool = Spool(tmp_path / "spool")
        spool.commit_file("calls/x/1.webm", src)
        assert not src.exists()
        assert spool.path("calls/x/1.webm").read_bytes() == b"across devices"
        assert files_under(tmp_path / "spool" / ".tmp") == []
    finally:
        src.unlink(missing_ok=True)


def test_free_bytes_is_the_file_systems(tmp_path: Path) -> None:
    """free_bytes() reports the space left on the spool's file system (other writers may
    change it a little between the two readings)."""
    spool = Spool(tmp_path)
    st = os.statvfs(tmp_path)
    assert abs(spool.free_bytes() - st.f_bavail * st.f_frsize) < 64 * 1024 * 1024
