"""Recordings of live calls: starts and stops the recorder as calls change, keeps the
index (chain head, objects) in the metadata store, owns the spool's uploader, and closes
calls a crash left open.

The order of durability, per segment: the file is closed and fsynced, its chain link is
written and signed (temp + rename + fsync) in the call's work dir, the link and then the
segment enter the spool, and the uploader sends them and reads them back before the spool
lets them go. The database learns the chain head after the link is durable; a crash in
between leaves the database one link behind the work dir, never ahead of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import time
from collections import deque
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recorder.call_recorder import CallRecorder, Committed, RecorderSettings, RecorderThread
from recorder.chain_writer import ChainWriter
from recorder.evidence import (
    call_prefix,
    link_key,
    parse_replay_key,
    parse_segment_key,
    utc_iso,
)
from recorder.finalize import finalize, recommit_closed, recorded_files, respool
from recorder.keyring import KeyRing
from recorder.spool import Spool
from recorder.timeline import CallTimeline, monotonic_ms
from recorder.uploader import Uploader
from signaling.dispatch import CallChanged, CallState, ParticipantChanged, ParticipantState
from signaling.logs import log_context
from storage import LocalObjectStore, ObjectInfo, ObjectStore, S3ObjectStore
from storage import errors as storage_errors
from storage.errors import ObjectStoreError
from storage.records import Recording, RecordingObject

if TYPE_CHECKING:
    from media.router import CallMedia
    from signaling.config import Settings
    from signaling.dispatch import Call, Effect
    from signaling.hub import Hub

log = logging.getLogger(__name__)

SOFTWARE = "mediation"
GAP_WARNING_S = 600.0  # a recording gap stays on the admin's warning list this long


def software_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mediation")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0+unknown"


def make_object_store(settings: Settings) -> ObjectStore:
    """S3/MinIO when s3_endpoint is set (bucket made with Object Lock), else the local store.

    The service starts even while S3 is unreachable: recordings wait in the spool and the
    uploader retries (and warns) until it answers; the bucket is then expected to exist.
    """
    if not settings.s3_endpoint:
        return LocalObjectStore(settings.objects_dir)

    def store(create_bucket: bool) -> S3ObjectStore:
        return S3ObjectStore(
            settings.s3_endpoint,
            settings.s3_access_key,
            settings.s3_secret_key.reveal(),
            settings.s3_bucket,
            region=settings.s3_region,
            secure=settings.s3_secure,
            ca_file=str(settings.s3_ca_file) if settings.s3_ca_file else None,
            object_lock=True,
            create_bucket=create_bucket,
            connect_timeout_s=settings.s3_connect_timeout_s,
            timeout_s=settings.s3_read_timeout_s,
        )

    try:
        return store(create_bucket=True)
    except ObjectStoreError as err:
        log.error(
            "object store %s unreachable at start (%s); uploads wait", settings.s3_endpoint, err
        )
        return store(create_bucket=False)


def object_kind(key: str) -> str:
    name = key.rsplit("/", 1)[-1]
    if "/chain/" in key:
        return "signature" if name.endswith(".sig") else "link"
    if name.startswith("manifest."):
        return "manifest" if name.endswith(".json") else "signature"
    if "/replay/" in key:
        return "replay"
    return "segment"


def participant_of(prefix: str, key: str) -> str | None:
    """The participant whose segment or replay file `key` (under `prefix`) is, else None."""
    parsed = parse_segment_key(prefix, key)
    return parsed[0] if parsed else parse_replay_key(prefix, key)


def call_id_of(key: str) -> str | None:
    """calls/YYYY/MM/<call_id>/… → call_id."""
    parts = key.split("/")
    return parts[3] if len(parts) > 4 and parts[0] == "calls" else None


class CallRecordingHub:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        s = hub.settings
        self.settings = RecorderSettings(
            segment_s=s.recording_segment_s, tap_packets=s.recorder_tap_packets
        )
        # One thread for every call's file work (recorder/call_recorder.py, RecorderThread).
        self.worker = RecorderThread(self.settings.batch_s)
        self.keyring = KeyRing(s.keys_dir)
        self.spool = Spool(s.spool_dir)
        self._object_store: ObjectStore | None = None
        self.uploader: Uploader | None = None
        self.recorders: dict[str, CallRecorder] = {}
        self.chains: dict[str, ChainWriter] = {}
        self.finishing: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.gap_count = 0
        self.recent_gaps: deque[tuple[float, dict[str, Any]]] = deque(maxlen=50)
        self.changed = asyncio.Event()  # set whenever a link lands or a recording closes
        # Whole video frames each participant's recorder assembled from its tap, by
        # (call id, participant id): what a replay file must hold, less recorded gaps.
        self.frames_recorded: dict[tuple[str, str], int] = {}

    @property
    def object_store(self) -> ObjectStore:
        if self._object_store is None:
            self._object_store = make_object_store(self.hub.settings)
        return self._object_store

    # --- life cycle -----------------------------------------------------------------------

    async def start(self) -> None:
        s = self.hub.settings
        await asyncio.to_thread(lambda: self.keyring.current_key_id)  # generate on first start
        store = await asyncio.to_thread(lambda: self.object_store)
        self.uploader = Uploader(
            self.spool,
            store,
            retention=self._retention,
            on_uploaded=self._on_uploaded,
            lag_warn_s=s.upload_lag_warn_s,
            gather_s=s.upload_gather_s,
            min_free_bytes=s.spool_min_free_mb * 1024 * 1024,
        )
        self.uploader.start()
        with self._hurry_uploads():
            for rec in self.hub.store.list_recordings("recording"):
                if rec.call_id not in self.recorders:
                    await self._close_recording(rec.call_id, "interrupted", recovered=True)

    async def close(self) -> None:
        """Stop recording (calls cut by a shutdown are interrupted); the spool stays."""
        for call_id in list(self.recorders):
            self._finish(call_id, "interrupted")
        await asyncio.gather(*self.finishing.values(), return_exceptions=True)
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.to_thread(self.worker.close)
        if self.uploader is not None:
            await self.uploader.close()

    def is_recording(self, call_id: str) -> bool:
        """Recording now: started and not stopping (a stopping call's segments are closing)."""
        return call_id in self.recorders and call_id not in self.finishing

    def warnings(self) -> list[dict[str, Any]]:
        """Storage warnings now, and the recording gaps of the last GAP_WARNING_S.

        Each is `{"code", "params", "message"}`: a stable code (`upload_lag`, `disk_low`,
        `store_failing`, `upload_held`, `recording_gap`), its figures for a page to word in
        its own language, and the English text for logs and API readers.
        """
        out: list[dict[str, Any]] = []
        if self.uploader is not None:
            out += [
                {"code": w.code, "params": w.params, "message": w.message}
                for w in self.uploader.warnings()
            ]
        horizon = time.monotonic() - GAP_WARNING_S
        while self.recent_gaps and self.recent_gaps[0][0] < horizon:
            self.recent_gaps.popleft()
        out += [warning for _, warning in self.recent_gaps]
        return out

    # --- calls ----------------------------------------------------------------------------

    def on_effect(self, effect: Effect) -> None:
        if isinstance(effect, CallChanged):
            call = effect.call
            if effect.new == CallState.ACTIVE and call.recorded and call.id not in self.recorders:
                self._start(call)
            elif effect.new == CallState.ENDED and call.id in self.recorders:
                self._finish(call.id, "complete")
        elif isinstance(effect, ParticipantChanged):
            recorder = self.recorders.get(effect.call.id)
            if recorder is None:
                return
            p = effect.participant
            kind = participant_event(effect.old, effect.new, effect.reason)
            if kind == "participant_dropped":
                at = self._media_stopped_ms(effect.call.id, p.id)
                self._spawn(recorder.participant_dropped(p.id, at))
            elif kind == "participant_joined":
                self._event(recorder, kind, p.id, role=p.role)
            elif kind == "participant_left":
                self._event(recorder, kind, p.id, reason=effect.reason or p.reason)
            elif kind is not None:
                self._event(recorder, kind, p.id)

    def _media_stopped_ms(self, call_id: str, participant_id: str) -> int:
        """When a dropped participant's peer last showed life (monotonic ms, like packet
        arrivals): its last RTP or RTCP packet, or its connection's set-up if nothing came
        since. The drop is noticed only `media_inactivity_s` later. Now, without a peer."""
        media = self.hub.media.calls.get(call_id)
        peer = media.peers.get(participant_id) if media is not None else None
        if peer is None:
            return monotonic_ms()
        return int(peer.last_media_at * 1000)

    def on_bookmark(self, call_id: str, bookmark: dict[str, Any]) -> None:
        """An expert's bookmark goes into the chain too, in order with the segments. Its
        `offset_ms` counts from the answer (the protocol's); the event adds its `utc` and
        `media_ms`, the media time to seek to (counted from the call's launch, like pts)."""
        recorder = self.recorders.get(call_id)
        if recorder is not None and self.is_recording(call_id):
            now = recorder.timeline.monotonic()
            self._event(
                recorder,
                "bookmark",
                None,
                bookmark=dict(bookmark),
                utc=utc_iso(recorder.timeline.unix_ms(now)),
                media_ms=recorder.timeline.media_ms(now),
            )

    def on_media(self, call_id: str, participant_id: str, media: CallMedia) -> None:
        """A participant's media joined or rejoined: record what it publishes."""
        recorder = self.recorders.get(call_id)
        peer = media.peers.get(participant_id)
        if recorder is not None and peer is not None:
            recorder.attach(participant_id, media, list(peer.published))

    def _start(self, call: Call) -> None:
        if self.worker.closed:  # shutting down: a call activated now is not recorded
            with log_context(call_id=call.id):
                log.warning("recording not started: the server is shutting down")
            return
        prefix = call_prefix(call.id, call.launched_at)
        workdir = self.hub.settings.recording_dir / call.id
        # Media, gap and bookmark times and the call's end count from the launch on the
        # monotonic clock (the dispatcher took both readings at the launch). Link `utc`s
        # stay signing times on the wall clock, the clock the keys' validity is on.
        timeline = CallTimeline(call.launched_at, int(call.launched_mono * 1000))
        chain = ChainWriter(workdir / "objects", call.id, prefix, self.keyring)
        recorder = CallRecorder(
            call_id=call.id,
            prefix=prefix,
            timeline=timeline,
            video_codec=self.hub.settings.video_codec,
            workdir=workdir,
            chain=chain,
            spool=self.spool,
            settings=self.settings,
            on_batch=self._on_batch,
            worker=self.worker,
        )
        self.recorders[call.id] = recorder
        self.chains[call.id] = chain
        now = self.hub.clock.wall_ms()
        self.hub.store.insert_recording(Recording(call.id, prefix, "recording", now))
        self.hub.store.append_audit("system", "recording.started", call.id, {"prefix": prefix})
        with log_context(call_id=call.id):
            log.info("recording started: %s", prefix)
        consent = self.hub.store.get_consent(call.id)
        self._event(recorder, "recording_started", None, prefix=prefix)
        if consent is not None:
            self._event(recorder, "consent", None, consent=_consent_view(consent))
        for p in call.participants.values():
            if p.present:
                self._event(recorder, "participant_joined", p.id, role=p.role)

    def _event(
        self, recorder: CallRecorder, kind: str, participant_id: str | None, **detail: Any
    ) -> None:
        event: dict[str, Any] = {"type": kind, **detail}
        if participant_id is not None:
            event["participant"] = participant_id
        self._spawn(recorder.event(event))

    def _finish(self, call_id: str, status: str) -> None:
        recorder = self.recorders.get(call_id)
        if recorder is None or call_id in self.finishing:
            return
        task = asyncio.ensure_future(self._stop_and_close(recorder, status))
        task.add_done_callback(self._done)  # a failure is logged, never lost
        self.finishing[call_id] = task

    async def _stop_and_close(self, recorder: CallRecorder, status: str) -> None:
        call_id = recorder.call_id
        # The call ends now on its timeline; how far the wall clock moved meanwhile goes
        # into the manifest (recorder/timeline.py).
        ended = (recorder.timeline.now_ms(), recorder.timeline.step_ms(self.hub.clock.wall_ms()))
        try:
            with self._hurry_uploads():
                await recorder.stop()
                for participant_id, part in recorder.participants.items():
                    self.frames_recorded[(call_id, participant_id)] = part.frames["video"]
                # Event links spawned before the stop are in the thread's queue: let them land.
                pending = [t for t in self._tasks if not t.done()]
                await asyncio.gather(*pending, return_exceptions=True)
                recorder.close_executor()
                await self._close_recording(call_id, status, recovered=False, ended=ended)
        finally:
            self.recorders.pop(call_id, None)
            self.finishing.pop(call_id, None)
            self.hub.tell_recording(call_id)

    def _hurry_uploads(self) -> contextlib.AbstractContextManager[None]:
        """A closing call's files go to the store as they come (no gathering wait)."""
        return contextlib.nullcontext() if self.uploader is None else self.uploader.hurry()

    async def _close_recording(
        self,
        call_id: str,
        status: str,
        *,
        recovered: bool,
        ended: tuple[int, int] | None = None,
    ) -> None:
        """Replay files and the manifest, from the work dir; then the work dir goes.
        `ended`: the call's end on its timeline and the wall clock's step by then (ms)."""
        store = self.hub.store
        rec = store.get_recording(call_id)
        workdir = self.hub.settings.recording_dir / call_id
        chain = self.chains.pop(call_id, None)
        if chain is None:
            if not workdir.exists():
                log.error(
                    "recording %s: work dir lost; marked %s without manifest", call_id, status
                )
                store.update_recording(call_id, status=status, ended_at=self.hub.clock.wall_ms())
                return
            chain = ChainWriter(workdir / "objects", call_id, rec.prefix, self.keyring)
        # A recording cut short (the server stopped mid-call) is last known to have run at
        # its last link: the call's end recorded at the restart may be hours later.
        last_alive = _last_alive_utc(chain, rec.prefix) if status == "interrupted" else None
        if recovered and not chain.closed:
            await self._respool_unsent(call_id, workdir, rec.prefix)
        if chain.closed:  # finalized before a crash: the index and the spool catch up
            committed, manifest = await asyncio.to_thread(
                recommit_closed, workdir, rec.prefix, self.spool
            )
            status = manifest["status"]
        else:
            fields = self._manifest_fields(call_id, last_alive, ended)
            committed, manifest = await asyncio.to_thread(
                lambda: finalize(
                    workdir=workdir,
                    prefix=rec.prefix,
                    chain=chain,
                    spool=self.spool,
                    status=status,
                    fields=fields,
                )
            )
        count, head, last_key = chain.head
        with store.transaction():
            for key, size, digest in committed:
                self._index(call_id, key, None, size, digest)
            for replay in manifest["replay"]:
                self._index(
                    call_id,
                    replay["object"],
                    replay["participant"],
                    replay["size"],
                    replay["sha256"],
                )
            store.update_recording(
                call_id,
                status=status,
                ended_at=self.hub.clock.wall_ms(),
                chain_count=count,
                chain_head=head,
                manifest_key=f"{rec.prefix}manifest.json",
            )
            store.append_audit(
                "system",
                "recording.closed",
                call_id,
                {"status": status, "chain_count": count, "chain_head": head, "last": last_key,
                 "recovered": recovered},
            )  # fmt: skip
        await asyncio.to_thread(shutil.rmtree, workdir, True)
        self.changed.set()
        if self.uploader is not None:
            self.uploader.flush()  # the call's last files: no gathering
        with log_context(call_id=call_id):
            log.info("recording %s: %d links, head %s", status, count, head[:16])

    async def _respool_unsent(self, call_id: str, workdir: Path, prefix: str) -> None:
        """A kill between a link's (or its segment's) durable write and its spool commit
        left the only copy in the work dir: spool what is neither pending nor uploaded."""
        store = self.hub.store
        files = await asyncio.to_thread(recorded_files, workdir, prefix)
        unsent = []
        for key, path in files:
            obj = store.get_recording_object(key)
            if not self.spool.is_pending(key) and (obj is None or obj.uploaded_at is None):
                unsent.append((key, path))
        if not unsent:
            return
        with log_context(call_id=call_id):
            log.warning(
                "recording: %d files had not reached the spool when the server stopped;"
                " spooled now: %s",
                len(unsent),
                ", ".join(
                    key.rsplit("/", 2)[-2] + "/" + key.rsplit("/", 1)[1] for key, _ in unsent
                ),
            )
        committed = await asyncio.to_thread(respool, workdir, self.spool, unsent)
        with store.transaction():
            for key, size, digest in committed:
                segment = parse_segment_key(prefix, key)
                self._index(call_id, key, segment[0] if segment else None, size, digest)

    def _manifest_fields(
        self,
        call_id: str,
        last_alive: str | None = None,
        ended: tuple[int, int] | None = None,
    ) -> dict[str, Any]:
        """The manifest's fields from the database. With `last_alive` (an interrupted
        recording's last link time), the call ends then, and participants who had not left
        by then have no `left_utc`: when they left is not known. With `ended` (the call's
        end on the recording's timeline, and the wall clock's step by then), the call ends
        then, on the clock its media times count on."""
        store = self.hub.store
        call = store.get_call(call_id)
        consent = store.get_consent(call_id)
        case_number = None
        if call.case_id is not None:
            case_number = store.get_case(call.case_id).case_number
        participants = [
            {
                "id": p.id,
                "role": p.role,
                "principal_kind": p.principal_kind,
                "principal_id": p.principal_id,
                "joined_utc": utc_iso(p.joined_at),
                "left_utc": utc_iso(p.left_at) if p.left_at is not None else None,
            }
            for p in store.list_participants(call_id)
        ]
        if last_alive is not None:
            for p in participants:
                if p["left_utc"] is not None and str(p["left_utc"]) > last_alive:
                    p["left_utc"] = None  # ISO texts of one format: compared as text
        devices = sorted(
            {call.caller_device_id}
            | {str(p["principal_id"]) for p in participants if p["principal_kind"] == "device"}
        )
        return {
            "call_id": call_id,
            "case_id": call.case_id,
            "case_number": case_number,
            "dispute_type": call.dispute_type,
            "launched_utc": utc_iso(call.launched_at),
            "answered_utc": utc_iso(call.answered_at) if call.answered_at else None,
            "ended_utc": last_alive
            or utc_iso(ended[0] if ended else call.ended_at or self.hub.clock.wall_ms()),
            "participants": participants,
            "devices": devices,
            "consent": _consent_view(consent) if consent is not None else None,
            "software": {"name": SOFTWARE, "version": software_version()},
            "clock": {**clock_state(), "step_ms": ended[1] if ended else None},
            "timestamp_token": None,
        }

    # --- recorder and uploader callbacks --------------------------------------------------

    def _on_batch(
        self, recorder: CallRecorder, committed: list[Committed], gaps: list[dict[str, Any]]
    ) -> None:
        store = self.hub.store
        call_id = recorder.call_id
        self.changed.set()
        if committed:
            with store.transaction():
                for c in committed:
                    for obj in c.objects:
                        self._index(call_id, obj.key, obj.participant_id, obj.size, obj.sha256)
                        if obj.kind == "segment":
                            with log_context(call_id=call_id, participant_id=obj.participant_id):
                                log.info("segment committed: key=%s size=%d", obj.key, obj.size)
                last = committed[-1]
                store.update_recording(call_id, chain_count=last.index, chain_head=last.link_hash)
            if self.uploader is not None:
                self.uploader.kick()
        for gap in gaps:
            self.gap_count += 1
            self.recent_gaps.append(
                (
                    time.monotonic(),
                    {
                        "code": "recording_gap",
                        "params": {
                            "call_id": call_id,
                            "participant_id": gap["participant"],
                            "track": gap["track"],
                            "reason": gap["reason"],
                            "packets": gap["packets"],
                            "at": gap["utc"],
                        },
                        "message": f"recording gap in call {call_id}: participant "
                        f"{gap['participant']} {gap['track']} {gap['reason']} "
                        f"({gap['packets']} packets) at {gap['utc']}",
                    },
                )
            )
            self.hub.metrics.recording_gaps.labels(reason=gap["reason"]).inc()
            with log_context(call_id=call_id, participant_id=gap["participant"]):
                log.warning(
                    "recording gap: %s %s packets %s (%s..%s)",
                    gap["track"],
                    gap["reason"],
                    gap["packets"],
                    gap["seq_from"],
                    gap["seq_to"],
                )

    def _index(
        self, call_id: str, key: str, participant_id: str | None, size: int, sha256: str
    ) -> None:
        """Index a committed object, keeping what the uploader already recorded of the same
        bytes: the spool takes a file before it is indexed (finalize spools the replay files
        while it still works), so its upload may be indexed first."""
        store = self.hub.store
        retain_until = uploaded_at = None
        old = store.get_recording_object(key)
        if old is not None and (old.size, old.sha256) == (size, sha256):
            retain_until, uploaded_at = old.retain_until, old.uploaded_at
        store.upsert_recording_object(
            RecordingObject(
                key,
                call_id,
                participant_id,
                object_kind(key),
                size,
                sha256,
                retain_until,
                uploaded_at,
            )
        )

    def _retention(self, key: str) -> tuple[datetime | None, str]:
        s = self.hub.settings
        return datetime.now(UTC) + timedelta(days=s.retention_days), s.retention_mode

    def _on_uploaded(self, key: str, info: ObjectInfo) -> None:
        call_id = call_id_of(key)
        if call_id is None:
            return
        store = self.hub.store
        obj = store.get_recording_object(key)
        prefix = "/".join(key.split("/")[:4]) + "/"  # calls/YYYY/MM/<call_id>/
        retain = int(info.retain_until.timestamp() * 1000) if info.retain_until else None
        try:
            store.upsert_recording_object(
                RecordingObject(
                    key,
                    call_id,
                    obj.participant_id if obj else participant_of(prefix, key),
                    object_kind(key),
                    info.size,
                    info.sha256 or (obj.sha256 if obj else ""),
                    retain,
                    self.hub.clock.wall_ms(),
                )
            )
        except storage_errors.StorageError as err:
            log.error("indexing uploaded %s: %s", key, err)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("recording task failed", exc_info=task.exception())


def _consent_view(consent: Any) -> dict[str, Any]:
    return {
        "id": consent.id,
        "evidence": consent.evidence,
        "training": consent.training,
        "notice_version": consent.notice_version,
        "language": consent.language,
        "device_id": consent.device_id,
        "account_id": consent.account_id,
        "parties": consent.parties,
        "captured_utc": utc_iso(consent.captured_at),
    }


def clock_state() -> dict[str, Any]:
    """Where the server's wall clock comes from and whether it is synchronised (adjtimex)."""
    synchronized = False
    source = "system (synchronisation unknown)"
    try:
        import ctypes
        import ctypes.util

        class Timex(ctypes.Structure):
            _fields_ = [("modes", ctypes.c_uint), ("rest", ctypes.c_long * 40)]

        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        state = libc.adjtimex(ctypes.byref(Timex()))
        if state >= 0:  # -1: the call failed (a sandbox may refuse it): unknown, as above
            synchronized = state != 5  # TIME_ERROR: the kernel's clock is not synchronised
            source = "system (kernel NTP discipline)" if synchronized else "system (unsynchronised)"
    except (OSError, AttributeError):
        pass
    return {"source": source, "synchronized": synchronized}


def _last_alive_utc(chain: ChainWriter, prefix: str) -> str | None:
    """When an interrupted recording is last known to have run: its last link's `utc`,
    leaving out a closing `recording_stopped` (a recovery cut short by another crash wrote
    that one at the restart), or its last segment's `end_utc` if later (link times are the
    wall clock's, media times the call's timeline: after a clock step they part). None
    without such a link; unreadable links are left out."""
    last_link: str | None = None
    media_end: str | None = None
    for index in range(1, chain.head.links + 1):
        try:
            link = json.loads(chain.path(link_key(prefix, index)).read_bytes())
        except (OSError, ValueError):
            continue
        event = link.get("event")
        if isinstance(event, dict) and event.get("type") == "recording_stopped":
            continue
        utc = link.get("utc")
        last_link = utc if isinstance(utc, str) else last_link
        end = link.get("end_utc") if link.get("kind") == "segment" else None
        if isinstance(end, str) and (media_end is None or end > media_end):
            media_end = end  # ISO texts of one format: compared as text
    if last_link is None:
        return None
    return max(last_link, media_end or last_link)


def participant_event(old: str | None, new: str, reason: str | None) -> str | None:
    """The chain event a participant's change makes; None for changes the recording does
    not follow (the signaling connection lost and back: media goes on meanwhile)."""
    if reason == "grace_expired":
        return "participant_left"  # dropped or reconnecting, and its time to come back ran out
    if new == ParticipantState.DROPPED:
        return "participant_dropped"
    if new == ParticipantState.LEFT:
        return "participant_left"
    if new == ParticipantState.CONNECTED:
        if old == ParticipantState.DROPPED:
            return "participant_rejoined"
        if old in (None, ParticipantState.JOINING):
            return "participant_joined"
    return None
