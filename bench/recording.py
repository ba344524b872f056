#!/usr/bin/env python3
"""Recording benchmark: CPU overhead of recording, hang-up -> verified, upload throughput.

    .venv/bin/python bench/recording.py --calls 5 --duration 20 --reps 3 --long-call-s 600
    .venv/bin/python bench/recording.py --quick        # all three parts, ~70 s

Three parts, in this order (`--parts` picks some):
1. cpu:    for each repetition, the same N 2-party calls (pre-encoded 640x480 VP8 ~1 Mbit/s
           + Opus both ways, the clip of bench/relay.py) relayed by our server twice, each
           on a fresh server and data dir: "relay" (launched without recording consent, the
           server set to kiosk_without_consent=unrecorded) and "recorded" (launched with
           consent). The order alternates per repetition. Server CPU-s (utime+stime, all
           threads, /proc) per feed-second over the same window; overhead = recorded/relay - 1
           per repetition and its median. Then every call hangs up; for the recorded run the
           CPU from hang-up until the last manifest is uploaded is printed too, amortised per
           recorded feed-second, and every recording is verified.
2. long:   one recorded call (kiosk + expert publishing the same clip) for --long-call-s
           seconds; then the kiosk hangs up. Measured: hang-up request -> the manifest's
           signature upload logged by the server (the last object of a call: replay files and
           manifest are spooled in that order, and the uploader keeps commit order) -> an
           in-process `mediation verify <call_id>` (signaling.evidence_cli.verify_target,
           against the server's data dir, keys and database) passes.
3. upload: N MB of segment-like files (random bytes of segment size, each with a ~700-byte
           link and its 64-byte signature) committed to a Spool, then an Uploader (the
           server's: hash, stat, put, stat, full read-back, retention, stat) drains it into
           the local object store and into moto's S3 server (HTTPS, Object Lock bucket,
           GOVERNANCE retention; started here from the venv). MB/s and objects/s.

Our server runs on 127.0.0.1 without network namespaces (media sockets on 127.0.0.1, load
peers with `--loopback-only`), so no root is needed: Janus is not in this bench, and the
figures that matter are ratios between runs over the same path. Figures are printed, never
checked against the targets. Exit status: 1 when a call failed, a kind's delivery was below
90%, a recording did not verify or did not finish, a relay-only run recorded anything, or a
server died or exited badly; 2 on bad usage; 130 when interrupted. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import math
import os
import platform
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiortc
import av
from dispatch import CHEAP_HASHER, free_port, percentile, proc_cpu_s, proc_rss_kib
from procs import ManagedProcess
from relay import (
    STARTED_PIDS,
    LoadProcess,
    Run,
    figures,
    fmt,
    kill_leftovers,
    machine_cpu,
    median,
    proc_threads,
    provision,
)
from relay_peer import write_clips

from recorder.spool import Spool
from recorder.uploader import Uploader
from signaling.config import Settings
from signaling.evidence_cli import verify_target
from storage import LocalObjectStore, MetadataStore, ObjectStore, S3ObjectStore

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
    uvloop = None  # type: ignore[assignment]

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
HOST = "127.0.0.1"
READY_MARKER = "mediation: serving on"
MODES = ("relay", "recorded")
PARTS = ("cpu", "long", "upload")
UPLOAD_TARGETS = ("local", "s3", "s3-http")
MIN_DELIVERY = 90.0  # % per kind (a functional check, as in relay.py)
TARGET_OVERHEAD_PCT = 10.0
TARGET_HANGUP_S = 3.0
TARGET_LONG_CALL_S = 600.0
MB = 1_000_000
SERVER_SETTINGS = {
    "host": HOST,
    "media_interfaces": HOST,  # media sockets on loopback; the load peers offer 127.0.0.1 only
    "rate_limit_per_s": "1000",
    "rate_limit_burst": "2000",
    "rate_limit_close_after": "100000",
    "kiosk_without_consent": "unrecorded",  # both modes run on identically set-up servers
    "demo_accounts": "false",
    "log_format": "json",  # the bench reads the uploader's "uploaded: key=..." lines
    "log_level": "INFO",
}
FULL = {"calls": 5, "duration": 20.0, "warmup": 5.0, "reps": 3, "long_call_s": 600.0,
        "upload_mb": 200.0}  # fmt: skip
QUICK = {"calls": 2, "duration": 8.0, "warmup": 2.0, "reps": 1, "long_call_s": 20.0,
         "upload_mb": 30.0}  # fmt: skip
UPLOADED_RE = re.compile(r"^uploaded: key=(\S+) size=(\d+)")
COMMITTED_RE = re.compile(r"^segment committed: key=(\S+) size=(\d+)")
THREAD_RE = re.compile(r"^recorder thread of call \S+: (\d+) rounds, ([\d.]+) CPU-s")
S3_ACCESS_KEY = "bench-access"
S3_SECRET_KEY = "bench-secret"


def out(line: str = "") -> None:
    print(line, flush=True)


def mb(n: float) -> str:
    return f"{n / MB:.1f} MB"


def call_id_of(key: str) -> str:
    """calls/YYYY/MM/<call_id>/... -> call_id."""
    return key.split("/")[3]


# --- the server and its log ------------------------------------------------------------------


@dataclass(frozen=True)
class LogEvent:
    t: float  # time.monotonic() when the bench read the line (same clock as the load peers)
    msg: str
    key: str = ""
    size: int = 0


class ServerLog:
    """What the bench needs from our server's JSON log lines, stamped on arrival."""

    def __init__(self) -> None:
        self.uploads: list[LogEvent] = []  # "uploaded: key=... size=..."
        self.commits: list[LogEvent] = []  # "segment committed: key=... size=..."
        self.closings: list[LogEvent] = []  # "recording closed: ..." (finalize done)
        self.started: set[str] = set()  # call ids whose recording started
        self.manifests: dict[str, float] = {}  # call id -> manifest.sig uploaded (monotonic)
        self.problems: list[str] = []  # warning and above
        self.thread_rounds = 0  # recorder threads' own count and CPU clock, whole calls
        self.thread_cpu_s = 0.0
        self.lines = 0
        self._changed = asyncio.Event()

    def feed(self, line: str) -> None:
        now = time.monotonic()
        self.lines += 1
        try:
            rec = json.loads(line)
        except ValueError:
            return  # the start-up banner, or a traceback
        if not isinstance(rec, dict):
            return
        msg = str(rec.get("msg", ""))
        if rec.get("level") in ("warning", "error", "critical"):
            self.problems.append(f"{rec.get('level')} {rec.get('logger')}: {msg}")
        if m := UPLOADED_RE.match(msg):
            event = LogEvent(now, msg, m[1], int(m[2]))
            self.uploads.append(event)
            if event.key.endswith("/manifest.sig"):
                self.manifests[call_id_of(event.key)] = now
                self._changed.set()
        elif m := COMMITTED_RE.match(msg):
            self.commits.append(LogEvent(now, msg, m[1], int(m[2])))
        elif m := THREAD_RE.match(msg):
            self.thread_rounds += int(m[1])
            self.thread_cpu_s += float(m[2])
        elif msg.startswith("recording started"):
            self.started.add(str(rec.get("call_id")))
        elif msg.startswith("recording closed"):
            self.closings.append(LogEvent(now, msg))

    async def wait_manifests(self, call_ids: set[str], timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while not call_ids <= self.manifests.keys():
                self._changed.clear()
                await self._changed.wait()


class BenchServer(ManagedProcess):
    """`python -m signaling.cli serve` on 127.0.0.1 with a fresh data dir, log read live."""

    def __init__(self, name: str, data_dir: Path, settings: dict[str, str]) -> None:
        self.log = ServerLog()
        self.data_dir = data_dir
        self.port = free_port()
        self.settings = settings
        env = {k: v for k, v in os.environ.items() if not k.startswith("MEDIATION_")}
        env.update(MEDIATION_DATA_DIR=str(data_dir), MEDIATION_PORT=str(self.port))
        env.update({f"MEDIATION_{k.upper()}": v for k, v in settings.items()})
        command = [
            sys.executable, "-m", "signaling.cli", "serve", "--host", HOST,
            "--port", str(self.port),
        ]  # fmt: skip
        super().__init__(
            name,
            command,
            env,
            READY_MARKER,
            started=STARTED_PIDS.add,
            stopped=STARTED_PIDS.discard,
            on_line=self.log.feed,
        )

    @property
    def ws_url(self) -> str:
        return f"ws://{HOST}:{self.port}/ws"

    @property
    def metrics_url(self) -> str:
        return f"http://{HOST}:{self.port}/metrics"

    def describe(self) -> str:
        shown = {k: v for k, v in self.settings.items() if k not in ("host",)}
        return ", ".join(f"{k}={v}" for k, v in shown.items())


def worker_command(url: str, tmp: Path, index: int, args: argparse.Namespace) -> list[str]:
    return [
        sys.executable, str(BENCH_DIR / "relay_peer.py"), "--backend", "ours", "--url", url,
        "--clips", str(tmp / "clips.pickle"), "--worker", str(index),
        "--setup-timeout", str(args.setup_timeout), "--loopback-only",
    ]  # fmt: skip


async def setup_calls(
    workers: list[LoadProcess],
    fields: list[dict[str, Any]],
    args: argparse.Namespace,
    server: BenchServer,
) -> tuple[dict[int, dict[str, Any]], dict[int, str]]:
    """One call at a time (only expert i is free when kiosk i launches), as in relay.py."""
    setups: dict[int, dict[str, Any]] = {}
    failed: dict[int, str] = {}
    for i, extra in enumerate(fields):
        worker = workers[i % len(workers)]
        try:
            await worker.send(cmd="setup", call=i, **extra)
            ready = await worker.receive("ready", args.setup_timeout + 10)
        except Exception as err:  # noqa: BLE001 - reported below
            ready = {"ok": False, "error": repr(err)}
        if ready.get("ok"):
            timings = ready["timings"]
            # The recording starts when the call becomes active (before media is up).
            ready["t_active"] = time.monotonic() - (timings["media"] - timings["active"])
            setups[i] = ready
        else:
            failed[i] = str(ready.get("error"))
        if not server.running:
            raise RuntimeError("the server died during call set-up")
    totals = sorted(s["timings"]["media"] for s in setups.values())
    out(
        f"setup:      {len(setups)}/{len(fields)} calls up; media both ways after p50"
        f" {fmt(percentile(totals, 50), 2)} s, max {fmt(max(totals, default=math.nan), 2)} s"
    )
    for i, error in sorted(failed.items()):
        out(f"            call {i}: FAILED: {error}")
    return setups, failed


async def hang_up(
    workers: list[LoadProcess], calls: Iterable[int], timeout: float
) -> dict[int, dict[str, Any]]:
    """Every call's kiosk sends `call.leave` (commands sent to all workers at once)."""
    per_worker: dict[int, int] = {}
    for i in calls:
        worker = workers[i % len(workers)]
        await worker.send(cmd="hangup", call=i)
        per_worker[worker.index] = per_worker.get(worker.index, 0) + 1
    replies: dict[int, dict[str, Any]] = {}
    for index, count in per_worker.items():
        for _ in range(count):
            reply = await workers[index].receive("hungup", timeout)
            replies[int(reply["call"])] = reply
    return replies


@dataclass
class Verified:
    call_id: str
    ok: bool
    status: str
    seconds: float  # the verification itself (store, key ring, database, every object)
    started: float  # time.monotonic()
    finished: float
    attempts: int
    text: str
    links: int = 0
    segments: int = 0
    replay: int = 0
    bytes: int = 0


def verify_recording(data_dir: Path, call_id: str, settle_s: float = 5.0) -> Verified:
    """`mediation verify <call_id>` in-process (no audit row, no printing).

    The uploader logs the manifest's upload from its own task; the database learns the
    closed chain from the recording hub right after the manifest is spooled. Should a
    verification see the database a step behind (status still "recording"), it is run
    again for up to `settle_s`; the attempts are counted and the time includes them.
    """
    settings = Settings(data_dir=data_dir)
    started = time.monotonic()
    attempts = 0
    with MetadataStore.open(settings.db_path, password_hasher=CHEAP_HASHER) as store:
        while True:
            attempts += 1
            rec = store.get_recording(call_id)
            report, _ = verify_target(settings, store, call_id, [])
            done = rec.status != "recording" and report.manifest_status is not None
            if (report.ok and done) or time.monotonic() - started > settle_s:
                break
            time.sleep(0.02)
    finished = time.monotonic()
    return Verified(
        call_id,
        report.ok and rec.status == "complete" and report.manifest_status == "complete",
        rec.status,
        finished - started,
        started,
        finished,
        attempts,
        report.format_report().strip(),
        report.links,
        report.segments,
        report.replay,
        report.bytes,
    )


async def stop_all(
    server: BenchServer | None, workers: list[LoadProcess], timeout: float, run: Run
) -> None:
    stopping_at = time.strftime("%H:%M:%S")
    stops = await asyncio.gather(*(w.stop(timeout) for w in workers), return_exceptions=True)
    status, how = (None, "not started") if server is None else await server.stop(timeout=30)
    out(
        f"shutdown:   from {stopping_at}: load processes "
        + ("; ".join(str(s) for s in stops) or "none")
        + f"; server {how}, exit status {status}"
    )
    if status not in (0, None):
        run.errors.append(f"server exit status {status} ({how})")
    if server is not None and server.log.problems:
        out(f"server log: {len(server.log.problems)} warning/error lines, last ones:")
        for line in server.log.problems[-8:]:
            out(f"    {line}")
    if server is not None and server.stderr and server.log.lines == 0:
        out("server log: no JSON lines; last stderr lines:")
        for line in server.stderr[-8:]:
            out(f"    {line}")
    for w in workers:
        if w.stderr:
            out(f"peer log:   process {w.index}: {len(w.stderr)} stderr lines, last ones:")
            for line in w.stderr[-6:]:
                out(f"    {line}")


# --- part 1: CPU overhead -------------------------------------------------------------------


async def cpu_run(mode: str, rep: int, args: argparse.Namespace, tmp: Path) -> Run:
    calls = args.calls
    run = Run(mode, rep, calls)
    cores = os.cpu_count() or 1
    out(f"\n=== rep {rep + 1}/{args.reps}, {mode}: {calls} calls ===")
    data_dir = tmp / f"{mode}-{rep + 1}"
    data_dir.mkdir()
    pairs = provision(data_dir / "metadata.sqlite3", calls)
    server = BenchServer(mode, data_dir, {**SERVER_SETTINGS, **args.settings})
    workers: list[LoadProcess] = []
    failed: dict[int, str] = {}
    try:
        await server.start(args.timeout)
        out(f"server:     pid {server.pid}, {server.ready_line.strip()!r}, data dir {data_dir}")
        out(f"            settings: {server.describe()}")
        processes = min(args.processes or min(5, math.ceil(calls / 2)), calls)
        workers = [
            LoadProcess(i, worker_command(server.ws_url, tmp, i, args)) for i in range(processes)
        ]
        await asyncio.gather(*(w.start(args.timeout) for w in workers))
        out(
            f"load:       {len(workers)} load-peer processes (pids"
            f" {', '.join(str(w.pid) for w in workers)}), 127.0.0.1 only; launch with"
            f" consent_evidence={mode == 'recorded'}"
        )
        fields = [
            {"device_token": d, "expert_token": e, "consent_evidence": mode == "recorded"}
            for d, e in pairs
        ]
        setups, failed = await setup_calls(workers, fields, args, server)
        ok = len(setups)
        if not ok:
            raise RuntimeError("no call could be set up")

        await asyncio.sleep(args.warmup)
        m0 = await workers[0].fetch_metrics(server.metrics_url, 10)
        w0 = {w.pid: proc_cpu_s(w.pid) for w in workers}
        mach0 = machine_cpu()
        spy = await start_py_spy(args, server.pid, f"{mode}-rep{rep + 1}")
        tasks0 = thread_cpu(server.pid)
        switches0 = {tid: ctx_switches(server.pid, tid) for tid in tasks0}
        cpu0 = proc_cpu_s(server.pid)
        t0 = time.monotonic()
        await asyncio.sleep(args.duration)
        cpu1 = proc_cpu_s(server.pid) if server.running else math.nan
        tasks1 = thread_cpu(server.pid)
        switches1 = {tid: ctx_switches(server.pid, tid) for tid in tasks1}
        t1 = time.monotonic()
        mach1 = machine_cpu()
        if spy is not None:
            await finish_py_spy(spy, args)
        w1 = {w.pid: proc_cpu_s(w.pid) if w.running else math.nan for w in workers}
        m1 = await workers[0].fetch_metrics(server.metrics_url, 10)
        rss_kib = proc_rss_kib(server.pid)
        threads = proc_threads(server.pid)
        await asyncio.sleep(args.drain)
        for w in workers:
            await w.send(cmd="report", t0=t0, t1=t1)
        reports = [await w.receive("report", args.timeout) for w in workers]
        run.fig = figures(
            "ours", args, run, reports, ok, t1 - t0, cpu1 - cpu0, m0, m1, rss_kib, threads,
            (mach0, mach1), sum(w1[p] - w0[p] for p in w0), cores,
        )  # fmt: skip
        names = await thread_names(server.pid)
        main_cpu = tasks1.get(server.pid, 0.0) - tasks0.get(server.pid, 0.0)
        run.fig["main_cpu_per_feed_s"] = main_cpu / (2 * ok * (t1 - t0))
        run.fig["other_cpu_per_feed_s"] = (cpu1 - cpu0 - main_cpu) / (2 * ok * (t1 - t0))
        out(threads_line(server.pid, tasks0, tasks1, names, cpu1 - cpu0))
        main0, main1 = (s.get(server.pid, (0, 0)) for s in (switches0, switches1))
        vol, invol = (b - a for a, b in zip(main0, main1, strict=True))
        run.fig["loop_switches_s"] = (vol + invol) / (t1 - t0)
        out(
            f"            event loop thread: {vol / (t1 - t0):.0f} voluntary and"
            f" {invol / (t1 - t0):.0f} involuntary context switches per second"
        )
        for tid, (v1, i1) in switches1.items():
            v0, i0 = switches0.get(tid, (0, 0))
            if tid != server.pid and (v1 - v0 + i1 - i0) / (t1 - t0) >= 5:
                out(
                    f"            thread {names.get(tid, tid)}: {(v1 - v0) / (t1 - t0):.0f}"
                    f" voluntary and {(i1 - i0) / (t1 - t0):.0f} involuntary switches per second"
                )
        log = server.log
        seg = [e for e in log.commits if t0 <= e.t < t1]
        up = [e for e in log.uploads if t0 <= e.t < t1]
        gc_runs = [
            m1.get(f'python_gc_collections_total{{generation="{g}"}}', math.nan)
            - m0.get(f'python_gc_collections_total{{generation="{g}"}}', math.nan)
            for g in range(3)
        ]
        run.fig["gc_full_collections"] = gc_runs[2]
        out(
            f"gc:         collections in the window: generation 0 {gc_runs[0]:.0f}, 1"
            f" {gc_runs[1]:.0f}, 2 (full, the event loop stops for tens of ms) {gc_runs[2]:.0f}"
        )
        gaps = sum(v for k, v in m1.items() if k.startswith("mediation_recording_gaps_total"))
        out(
            f"recorder:   in the window {len(seg)} segments committed"
            f" ({mb(sum(e.size for e in seg))}), {len(up)} objects uploaded"
            f" ({mb(sum(e.size for e in up))}); recordings active"
            f" {m1.get('mediation_recordings_active', 0):.0f}; upload pending at the end"
            f" {m1.get('mediation_upload_pending_files', 0):.0f} files; gaps {gaps:.0f}"
        )

        # Hang up every call; for the recorded run, wait for every manifest and verify.
        cpu_h = proc_cpu_s(server.pid)
        th = time.monotonic()
        hung = await hang_up(workers, setups, args.timeout)
        bad = {i: h["error"] for i, h in hung.items() if not h["ok"]}
        for i, error in sorted(bad.items()):
            run.errors.append(f"call {i}: hang-up failed: {error}")
        feed_s = sum(2 * (hung[i]["t_sent"] - s["t_active"]) for i, s in setups.items())
        run.fig["recorded_feed_s"] = feed_s
        if mode == "recorded":
            call_ids = {str(s["call_id"]) for s in setups.values()}
            try:
                await log.wait_manifests(call_ids, args.close_timeout)
            except TimeoutError:
                missing = sorted(call_ids - log.manifests.keys())
                run.errors.append(f"no manifest upload within {args.close_timeout:g} s: {missing}")
            cpu_c = proc_cpu_s(server.pid)
            tc = time.monotonic()
            close_cpu = cpu_c - cpu_h
            delays = sorted(
                log.manifests[str(s["call_id"])] - hung[i]["t_sent"]
                for i, s in setups.items()
                if str(s["call_id"]) in log.manifests
            )
            run.fig["close_cpu"] = close_cpu
            run.fig["close_cpf"] = close_cpu / feed_s if feed_s > 0 else math.nan
            out(
                f"close:      hang-up -> manifest.sig uploaded p50 {fmt(percentile(delays, 50), 2)}"
                f" s, max {fmt(max(delays, default=math.nan), 2)} s ({len(delays)} calls of"
                f" ~{feed_s / 2 / max(ok, 1):.0f} s); server CPU from the first hang-up to the"
                f" last manifest {close_cpu:.2f} CPU-s in {tc - th:.1f} s ="
                f" {run.fig['close_cpf']:.4f} CPU-s per recorded feed-second"
                f" ({feed_s:.0f} feed-s recorded)"
            )
            out(
                f"            recorder threads by their own clock (whole calls, set-up to close):"
                f" {log.thread_cpu_s:.2f} CPU-s in {log.thread_rounds} rounds ="
                f" {log.thread_cpu_s / feed_s * 1000 if feed_s > 0 else math.nan:.2f} ms per"
                " recorded feed-second"
            )
            results = []
            for call_id in sorted(call_ids):
                results.append(await asyncio.to_thread(verify_recording, data_dir, call_id))
            good = [v for v in results if v.ok]
            out(
                f"verify:     {len(good)}/{len(results)} recordings OK (status complete);"
                f" {sum(v.segments for v in results)} segments,"
                f" {sum(v.replay for v in results)} replay files,"
                f" {sum(v.links for v in results)} links, {mb(sum(v.bytes for v in results))}"
                f" hashed; {max((v.seconds for v in results), default=math.nan):.2f} s at most"
                " per call"
            )
            for v in results:
                if not v.ok:
                    run.errors.append(f"recording {v.call_id} did not verify ({v.status})")
                    out(f"            {v.text}")
        else:
            await asyncio.sleep(0.5)  # a recording that had started would log its closing
            recorded = len(log.started) + len(log.commits) + len(log.uploads)
            out(
                f"close:      relay only: {len(log.started)} recordings started,"
                f" {len(log.commits)} segments committed, {len(log.uploads)} objects uploaded"
                " (all should be 0)"
            )
            if recorded:
                run.errors.append("the relay-only run recorded something")
        if not server.running:
            run.errors.append("the server died")
    except asyncio.CancelledError:
        run.errors.append("interrupted")
        raise
    except Exception as err:  # noqa: BLE001 - reported, then cleaned up
        run.errors.append(f"run aborted: {err!r}")
    finally:
        await stop_all(server, workers, args.timeout, run)
        if failed:
            run.errors.append(f"{len(failed)} call(s) failed to set up")
        out("errors:     " + ("; ".join(run.errors) if run.errors else "none"))
        if run.fig:
            out(result_line(run))
    return run


def thread_cpu(pid: int) -> dict[int, float]:
    """utime + stime of each thread of `pid` (seconds), from /proc/PID/task/TID/stat."""
    ticks = os.sysconf("SC_CLK_TCK")
    found = {}
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                with open(f"/proc/{pid}/task/{tid}/stat") as stat:
                    data = stat.read()
                fields = data[data.rindex(")") + 2 :].split()
                found[int(tid)] = (int(fields[11]) + int(fields[12])) / ticks
    return found


def ctx_switches(pid: int, tid: int) -> tuple[int, int]:
    """(voluntary, involuntary) context switches of one thread so far."""
    found = {"voluntary_ctxt_switches": 0, "nonvoluntary_ctxt_switches": 0}
    with contextlib.suppress(OSError, ValueError), open(f"/proc/{pid}/task/{tid}/status") as f:
        for line in f:
            name, _, value = line.partition(":")
            if name in found:
                found[name] = int(value)
    return found["voluntary_ctxt_switches"], found["nonvoluntary_ctxt_switches"]


async def thread_names(pid: int) -> dict[int, str]:
    """Python thread names by thread id (`py-spy dump`, when py-spy is installed)."""
    exe = Path(sys.executable).with_name("py-spy")
    if not exe.exists():
        return {}
    try:
        proc = await asyncio.create_subprocess_exec(
            str(exe), "dump", "--nonblocking", "--pid", str(pid),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        async with asyncio.timeout(15):
            text, _ = await proc.communicate()
    except (OSError, TimeoutError):
        return {}
    found = re.findall(r'^Thread (\d+) \([^)]*\): "(.*)"', text.decode(errors="replace"), re.M)
    return {int(tid): name for tid, name in found}


def threads_line(
    pid: int,
    before: dict[int, float],
    after: dict[int, float],
    names: dict[int, str],
    total: float,
) -> str:
    """CPU of the event-loop thread and of the other threads over the window, by name."""
    main = after.get(pid, 0.0) - before.get(pid, 0.0)
    groups: dict[str, list[float]] = {}
    for tid, cpu in after.items():
        if tid == pid:
            continue
        name = names.get(tid)
        # recorder-1a2b3c4d_0 -> recorder-*_0: one group per kind of thread
        group = re.sub(r"[0-9a-f]{8}", "*", name) if name else "unnamed"
        groups.setdefault(group, []).append(cpu - before.get(tid, 0.0))
    shown = sorted(groups.items(), key=lambda kv: -sum(kv[1]))
    parts = [
        f"{g} {sum(v):.2f}" + (f" ({len(v)} threads)" if len(v) > 1 else "")
        for g, v in shown
        if sum(v) >= 0.005
    ]
    gone = total - sum(after.get(t, 0.0) - before.get(t, 0.0) for t in after)
    others = max(0.0, total - main)  # clock ticks: the process and its threads round apart
    return (
        f"threads:    event loop (main thread) {main:.2f} CPU-s; {len(after) - 1} other threads"
        f" {others:.2f} CPU-s: {', '.join(parts) or '-'}"
        + (f"; threads that ended in the window {gone:.2f}" if gone >= 0.005 else "")
        + ("" if names else " (thread names need py-spy in the venv)")
    )


async def start_py_spy(
    args: argparse.Namespace, pid: int, name: str
) -> tuple[asyncio.subprocess.Process, Path] | None:
    if args.py_spy is None:
        return None
    args.py_spy.mkdir(parents=True, exist_ok=True)
    path = args.py_spy / f"{name}.txt"
    exe = Path(sys.executable).with_name("py-spy")
    proc = await asyncio.create_subprocess_exec(
        str(exe if exe.exists() else "py-spy"), "record", "--pid", str(pid),
        "--duration", str(math.ceil(args.duration)), "--rate", "100", "--format", "raw",
        "--nolineno", "--threads", "--output", str(path),
        "--gil", "--nonblocking",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    STARTED_PIDS.add(proc.pid)
    return proc, path


async def finish_py_spy(spy: tuple[asyncio.subprocess.Process, Path], args: Any) -> None:
    proc, path = spy
    try:
        async with asyncio.timeout(args.timeout):
            _, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        err = b"timed out"
    STARTED_PIDS.discard(proc.pid)
    if not path.exists():
        out(f"py-spy:     no profile ({err.decode(errors='replace').strip()[-200:]})")
        return
    print_py_spy(path)


OWN_PACKAGES = ("media/", "recorder/", "signaling/", "storage/")
ALWAYS_THERE = (
    "serve (signaling/cli.py)",
    "main (signaling/cli.py)",
    "<module> (signaling/cli.py)",
)


def print_py_spy(path: Path, top: int = 10) -> None:
    """Per kind of thread: samples, own (leaf) frames and inclusive project functions,
    from py-spy's raw (collapsed) stacks. Shares are of that kind of thread's samples."""
    groups: dict[str, dict[str, Any]] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        name = frames[0].split(": ", 1)[-1] if frames[0].startswith("thread") else "?"
        g = groups.setdefault(re.sub(r"[0-9a-f]{8}", "*", name), {"n": 0, "own": {}, "incl": {}})
        g["n"] += count
        leaf = frames[-1]
        g["own"][leaf] = g["own"].get(leaf, 0) + count
        for frame in set(frames[1:]):
            if any(f"({p}" in frame for p in OWN_PACKAGES) and frame not in ALWAYS_THERE:
                g["incl"][frame] = g["incl"].get(frame, 0) + count
    if not total:
        out(f"py-spy:     {path}: no samples")
        return
    out(f"py-spy:     {total} samples (100/s, the thread holding the GIL) in {path}")
    for name, g in sorted(groups.items(), key=lambda kv: -kv[1]["n"]):
        if g["n"] < total * 0.02:
            continue
        out(f"            {name}: {g['n']} samples ({100 * g['n'] / total:.0f}%); own time:")
        for frame, n in sorted(g["own"].items(), key=lambda kv: -kv[1])[:top]:
            out(f"              {100 * n / g['n']:5.1f}%  {frame[:110]}")
        out(f"            {name}: inclusive, project functions:")
        for frame, n in sorted(g["incl"].items(), key=lambda kv: -kv[1])[:top]:
            out(f"              {100 * n / g['n']:5.1f}%  {frame[:110]}")


def result_line(run: Run) -> str:
    f = run.fig
    extra = ""
    if "close_cpf" in f:
        extra = f" close_cpu={f['close_cpu']:.2f}s close_cpu_per_feed_s={f['close_cpf']:.4f}"
    return (
        f"result:     {run.server} rep {run.rep + 1}: calls={f['calls']}"
        f" cpu={f['cpu']:.2f}s ({f['cpu_pct']:.1f}% of {os.cpu_count()} cores)"
        f" cpu_per_feed_s={f['cpu_per_feed_s']:.4f} us_per_packet={fmt(f['us_per_packet'], 1)}"
        f" delivery video={fmt(f['delivery']['video'], 2)}%"
        f" audio={fmt(f['delivery']['audio'], 2)}% rss={f['rss_mib']:.1f}MiB{extra}"
    )


def cpu_summary(runs: list[Run], args: argparse.Namespace) -> dict[str, Any]:
    out(f"\n=== recording CPU overhead: {args.reps} repetition(s), {args.calls} calls ===")
    out(f"{'rep':<5}{'relay CPU-s/feed-s':>20}{'recorded':>12}{'overhead':>11}{'incl. close':>13}")
    per_rep: list[float] = []
    per_rep_close: list[float] = []
    for rep in range(args.reps):
        a = next((r.fig for r in runs if r.rep == rep and r.server == "relay" and r.fig), None)
        b = next((r.fig for r in runs if r.rep == rep and r.server == "recorded" and r.fig), None)
        if not a or not b:
            out(f"{rep + 1:<5}{'(a run failed)':>20}")
            continue
        over = 100 * (b["cpu_per_feed_s"] / a["cpu_per_feed_s"] - 1)
        per_rep.append(over)
        close = math.nan
        if "close_cpf" in b:
            close = 100 * ((b["cpu_per_feed_s"] + b["close_cpf"]) / a["cpu_per_feed_s"] - 1)
            per_rep_close.append(close)
        out(
            f"{rep + 1:<5}{a['cpu_per_feed_s']:>20.4f}{b['cpu_per_feed_s']:>12.4f}"
            f"{over:>+10.1f}%{'n/a' if math.isnan(close) else f'{close:+.1f}':>12}%"
        )
    relay_med = median([r.fig["cpu_per_feed_s"] for r in runs if r.server == "relay" and r.fig])
    rec_med = median([r.fig["cpu_per_feed_s"] for r in runs if r.server == "recorded" and r.fig])
    med = median(per_rep)
    med_close = median(per_rep_close)
    out(
        f"overhead:   per repetition [{', '.join(f'{x:+.1f}%' for x in per_rep)}], median"
        f" {fmt(med, 1)}%; ratio of medians {fmt(100 * (rec_med / relay_med - 1), 1)}%"
        f" (relay {fmt(relay_med, 4)}, recorded {fmt(rec_med, 4)} CPU-s per feed-second)"
    )
    out(
        f"            incl. closing (replay files, manifest, last uploads; amortised per"
        f" recorded feed-second): [{', '.join(f'{x:+.1f}%' for x in per_rep_close)}], median"
        f" {fmt(med_close, 1)}%"
    )
    for part, key in (
        ("event loop", "main_cpu_per_feed_s"),
        ("other threads", "other_cpu_per_feed_s"),
    ):
        shares = []
        for rep in range(args.reps):
            a = next((r.fig for r in runs if r.rep == rep and r.server == "relay" and r.fig), None)
            b = next(
                (r.fig for r in runs if r.rep == rep and r.server == "recorded" and r.fig), None
            )
            if a and b and key in a and key in b:
                shares.append(100 * (b[key] - a[key]) / a["cpu_per_feed_s"])
        out(
            f"split:      {part}: {', '.join(f'{x:+.1f}%' for x in shares)} of relay CPU"
            f" (median {fmt(median(shares), 1)}%)"
        )
    for server in ("relay", "recorded"):
        figs = [r.fig for r in runs if r.server == server and r.fig]
        out(
            f"stalls:     {server}: full GC collections per window"
            f" [{', '.join(fmt(f.get('gc_full_collections', math.nan), 0) for f in figs)}];"
            f" video latency max [{', '.join(fmt(f['latency']['video']['max'], 1) for f in figs)}]"
            " ms"
        )
    return {"per_rep": per_rep, "median": med, "per_rep_close": per_rep_close,
            "median_close": med_close}  # fmt: skip


# --- part 2: hang-up -> verified for a long call ----------------------------------------------


async def long_call(args: argparse.Namespace, tmp: Path) -> tuple[dict[str, Any], list[str]]:
    duration = args.long_call_s
    out(f"\n=== long call: 1 recorded call (kiosk + expert), {duration:g} s ===")
    run = Run("long", 0, 1)
    fig: dict[str, Any] = {}
    data_dir = tmp / "long"
    data_dir.mkdir()
    pairs = provision(data_dir / "metadata.sqlite3", 1)
    server = BenchServer("long", data_dir, {**SERVER_SETTINGS, **args.settings})
    workers: list[LoadProcess] = []
    try:
        await server.start(args.timeout)
        out(f"server:     pid {server.pid}, {server.ready_line.strip()!r}, data dir {data_dir}")
        out(f"            settings: {server.describe()}")
        workers = [LoadProcess(0, worker_command(server.ws_url, tmp, 0, args))]
        await workers[0].start(args.timeout)
        device, expert = pairs[0]
        fields = [{"device_token": device, "expert_token": expert, "consent_evidence": True}]
        setups, failed = await setup_calls(workers, fields, args, server)
        if not setups:
            raise RuntimeError("the call could not be set up")
        call_id = str(setups[0]["call_id"])
        log = server.log
        t_start = time.monotonic()
        last_t, last_cpu = t_start, proc_cpu_s(server.pid)
        step = min(60.0, max(5.0, duration / 10))
        while (left := t_start + duration - time.monotonic()) > 0:
            await asyncio.sleep(min(step, left))
            if not server.running:
                raise RuntimeError("the server died during the call")
            now, cpu = time.monotonic(), proc_cpu_s(server.pid)
            if left > step / 2:
                out(
                    f"progress:   {now - t_start:5.0f} s: {len(log.commits)} segments committed"
                    f" ({mb(sum(e.size for e in log.commits))}), {len(log.uploads)} objects"
                    f" uploaded ({mb(sum(e.size for e in log.uploads))}); server"
                    f" {100 * (cpu - last_cpu) / (now - last_t):.1f}% of one core since the"
                    " last line"
                )
            last_t, last_cpu = now, cpu
        metrics = await workers[0].fetch_metrics(server.metrics_url, 10)
        cpu_h = proc_cpu_s(server.pid)
        hung = (await hang_up(workers, [0], args.timeout))[0]
        if not hung["ok"]:
            raise RuntimeError(f"hang-up failed: {hung['error']}")
        t_h = hung["t_sent"]
        call_s = t_h - t_start
        recorded_s = t_h - setups[0]["t_active"]
        out(
            f"hang-up:    after {call_s:.1f} s of media ({recorded_s:.1f} s recorded, from the"
            f" call going active); call.leave answered in {1000 * (hung['t_reply'] - t_h):.1f}"
            f" ms; at that moment {metrics.get('mediation_upload_pending_files', 0):.0f} files"
            f" ({mb(metrics.get('mediation_upload_pending_bytes', 0))}) waited for upload"
        )
        await log.wait_manifests({call_id}, args.close_timeout)
        t_m = log.manifests[call_id]
        cpu_m = proc_cpu_s(server.pid)
        verified = await asyncio.to_thread(verify_recording, data_dir, call_id)
        t_v = verified.finished
        timeline(log, t_h, t_m, verified)
        manifest = json.loads(
            LocalObjectStore(data_dir / "objects").get(
                next(e.key for e in log.uploads if e.key.endswith("/manifest.sig"))[:-4] + ".json"
            )
        )
        for replay in manifest.get("replay", []):
            out(
                f"replay:     {replay['object'].rsplit('/', 2)[-1]}: {mb(replay['size'])},"
                f" {replay.get('duration_ms', 0) / 1000:.1f} s of media"
            )
        cli_s, cli_status, cli_text = await asyncio.to_thread(cli_verify, data_dir, call_id)
        out(
            f"cli check:  `mediation verify {call_id}` exit status {cli_status} in {cli_s:.2f} s"
            f" (process start and imports included): {cli_text}"
        )
        if cli_status != 0:
            run.errors.append(f"mediation verify exit status {cli_status}")
        if not verified.ok:
            run.errors.append(f"the recording did not verify ({verified.status})")
            out(f"            {verified.text}")
        after_h = [e for e in log.uploads if t_h <= e.t <= t_m]
        span = (after_h[-1].t - after_h[0].t) if len(after_h) > 1 else math.nan
        fig = {
            "call_s": call_s,
            "recorded_s": recorded_s,
            "to_manifest": t_m - t_h,
            "verify": verified.seconds,
            "to_verified": t_v - t_h,
            "close_cpu": cpu_m - cpu_h,
            "uploaded_after": sum(e.size for e in after_h),
            "upload_span": span,
            "ok": verified.ok,
        }
        out(
            f"result:     long call {call_s:.0f} s: hang-up -> manifest uploaded"
            f" {fig['to_manifest']:.2f} s; verify {verified.seconds:.2f} s ({verified.attempts}"
            f" attempt(s)); hang-up -> replay stored and verified {fig['to_verified']:.2f} s;"
            f" server CPU hang-up -> manifest {fig['close_cpu']:.2f} CPU-s; uploaded after"
            f" the hang-up {mb(fig['uploaded_after'])}"
        )
    except asyncio.CancelledError:
        run.errors.append("interrupted")
        raise
    except Exception as err:  # noqa: BLE001 - reported, then cleaned up
        run.errors.append(f"run aborted: {err!r}")
    finally:
        await stop_all(server, workers, args.timeout, run)
        out("errors:     " + ("; ".join(run.errors) if run.errors else "none"))
    return fig, run.errors


def timeline(log: ServerLog, t_h: float, t_m: float, verified: Verified) -> None:
    """What happened between the hang-up and the verification, from the server's log."""
    out("timeline:   +0.000 s  hang-up request sent (kiosk call.leave)")
    commits = [e for e in log.commits if e.t >= t_h]
    if commits:
        out(
            f"            +{commits[-1].t - t_h:.3f} s  last of {len(commits)} closing"
            f" segments committed ({mb(sum(e.size for e in commits))})"
        )
    events = [e for e in log.uploads if t_h <= e.t <= t_m]
    events += [e for e in log.closings if t_h <= e.t <= t_m]
    events.sort(key=lambda e: e.t)
    batch: list[LogEvent] = []
    for e in events:
        name = e.key.rsplit("/", 2)
        if e.key and "/replay/" not in e.key and not name[-1].startswith("manifest."):
            batch.append(e)  # segments and chain files: summarised
            continue
        if batch:
            summarize_uploads(batch, t_h)
            batch = []
        if e.key:
            out(f"            +{e.t - t_h:.3f} s  uploaded {name[-2]}/{name[-1]} ({mb(e.size)})")
        else:
            out(f"            +{e.t - t_h:.3f} s  {e.msg[:110]}")
    if batch:
        summarize_uploads(batch, t_h)
    out(
        f"            +{verified.started - t_h:.3f} s  verify started;"
        f" +{verified.finished - t_h:.3f} s  {verified.text.splitlines()[0][:160]}"
    )


def summarize_uploads(events: list[LogEvent], t_h: float) -> None:
    out(
        f"            +{events[0].t - t_h:.3f}..+{events[-1].t - t_h:.3f} s  uploaded"
        f" {len(events)} segments and chain files ({mb(sum(e.size for e in events))})"
    )


def cli_verify(data_dir: Path, call_id: str) -> tuple[float, int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDIATION_")}
    env["MEDIATION_DATA_DIR"] = str(data_dir)
    env["MEDIATION_LOG_LEVEL"] = "WARNING"
    t = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "signaling.cli", "verify", call_id],
        capture_output=True, text=True, timeout=300, env=env, cwd=REPO,
    )  # fmt: skip
    text = (done.stdout.strip() or done.stderr.strip()).splitlines()
    return time.monotonic() - t, done.returncode, (text[0][:120] if text else "")


# --- part 3: upload throughput ------------------------------------------------------------------


def make_cert(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (its own CA), as tests/s3util.py makes."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "moto bench server 127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(HOST))]),
                       False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


class Moto(ManagedProcess):
    """moto_server from the venv on 127.0.0.1 (HTTPS with a self-signed certificate, or HTTP)."""

    def __init__(self, directory: Path, tls: bool) -> None:
        self.port = free_port()
        exe = Path(sys.executable).with_name("moto_server")
        command = [str(exe if exe.exists() else "moto_server"), "-H", HOST, "-p", str(self.port)]
        self.ca_file: Path | None = None
        if tls:
            self.ca_file, key = make_cert(directory)
            command += ["-c", str(self.ca_file), "-k", str(key)]
        super().__init__(
            "moto-https" if tls else "moto-http",
            command,
            dict(os.environ),
            "Running on",
            started=STARTED_PIDS.add,
            stopped=STARTED_PIDS.discard,
        )

    @property
    def endpoint(self) -> str:
        return f"{HOST}:{self.port}"


def segment_like(n: int, size: int) -> list[tuple[str, bytes]]:
    """n (segment, link, signature) triples as (key, bytes), keyed like a real call's."""
    call_id = uuid.uuid4().hex
    participant = uuid.uuid4().hex
    prefix = f"calls/2026/11/{call_id}/"
    items = []
    for i in range(1, n + 1):
        link = json.dumps(
            {"v": 1, "call_id": call_id, "index": i, "prev": "0" * 64, "kind": "segment",
             "participant": participant, "object": f"{prefix}{participant}/{i:06d}.webm",
             "size": size, "sha256": "f" * 64, "start_utc": "2026-11-25T21:30:00.000Z",
             "end_utc": "2026-11-25T21:30:10.000Z", "first_pts_ms": 0, "last_pts_ms": 10000,
             "gaps": [], "key_id": "0" * 16, "utc": "2026-11-25T21:30:10.100Z"},
            sort_keys=True, separators=(",", ":"),
        ).encode()  # fmt: skip
        items.append((f"{prefix}{participant}/{i:06d}.webm", os.urandom(size)))
        items.append((f"{prefix}chain/{i:06d}.json", link))
        items.append((f"{prefix}chain/{i:06d}.sig", os.urandom(64)))
    return items


async def upload_target(
    target: str, args: argparse.Namespace, tmp: Path, moto: dict[str, Moto]
) -> dict[str, Any]:
    folder = tmp / f"upload-{target}"
    size = int(args.upload_segment_kb * 1000)
    n = max(1, math.ceil(args.upload_mb * MB / size))
    items = segment_like(n, size)
    total = sum(len(data) for _, data in items)
    spool = Spool(folder / "spool")
    t = time.monotonic()
    for key, data in items:
        spool.commit_bytes(key, data)
    commit_s = time.monotonic() - t
    del items
    store: ObjectStore
    retention = True
    server_pid = None
    if target == "local":
        store = LocalObjectStore(folder / "objects")
        what = f"local store in {folder / 'objects'}"
    else:
        tls = target == "s3"
        if target not in moto:
            moto[target] = Moto(tmp / f"moto-{target}", tls)
            await moto[target].start(args.timeout)
        m = moto[target]
        server_pid = m.pid
        retention = tls  # Object Lock needs Content-MD5, which the SDK sends over HTTPS only
        store = await asyncio.to_thread(
            lambda: S3ObjectStore(
                m.endpoint, S3_ACCESS_KEY, S3_SECRET_KEY, f"bench-{uuid.uuid4().hex[:12]}",
                region="us-east-1", secure=tls, ca_file=str(m.ca_file) if tls else None,
                object_lock=tls,
            )
        )  # fmt: skip
        what = (
            f"moto {'HTTPS, Object Lock bucket' if tls else 'plain HTTP, no lock'}"
            f" at {m.endpoint} (pid {m.pid})"
        )

    def policy(key: str) -> tuple[dt.datetime | None, str]:
        return dt.datetime.now(dt.UTC) + dt.timedelta(days=365), "GOVERNANCE"

    uploader = Uploader(spool, store, retention=policy if retention else None)
    own0 = proc_cpu_s(os.getpid())
    srv0 = proc_cpu_s(server_pid) if server_pid else 0.0
    t0 = time.monotonic()
    uploader.start()
    try:
        await uploader.wait_idle(args.upload_timeout)
    finally:
        t1 = time.monotonic()
        stats = uploader.stats
        await uploader.close()
    own = proc_cpu_s(os.getpid()) - own0
    srv = (proc_cpu_s(server_pid) - srv0) if server_pid else math.nan
    seconds = t1 - t0
    fig = {
        "target": target,
        "objects": stats.uploaded_count,
        "bytes": stats.uploaded_bytes,
        "seconds": seconds,
        "mb_s": stats.uploaded_bytes / MB / seconds,
        "objects_s": stats.uploaded_count / seconds,
        "segments_s": n / seconds,
        "own_cpu": own,
        "server_cpu": srv,
        "failures": stats.failures,
        "reuploads": stats.reuploads,
        "pending": stats.pending_count,
    }
    feed_mb_s = 1.1e6 / 8 / MB  # one participant's recording, ~1.1 Mbit/s
    out(
        f"upload:     {target}: {what};"
        f" {'GOVERNANCE retention 365 d' if retention else 'no retention'}"
    )
    out(
        f"            {n} segments of {mb(size)} + {2 * n} chain files = {3 * n} objects,"
        f" {mb(total)}; committed to the spool in"
        f" {commit_s:.2f} s ({total / MB / commit_s:.0f} MB/s, fsync each)"
    )
    out(
        f"            uploaded and verified {stats.uploaded_count} objects"
        f" ({mb(stats.uploaded_bytes)}) in {seconds:.2f} s = {fig['mb_s']:.1f} MB/s,"
        f" {fig['objects_s']:.0f} objects/s,"
        f" {fig['segments_s']:.1f} segments/s (~{fig['mb_s'] / feed_mb_s:.0f} participants'"
        f" recording at ~1.1 Mbit/s); failures {stats.failures}, re-uploads"
        f" {stats.reuploads}, left pending {stats.pending_count}"
    )
    out(
        f"            CPU: bench process (uploader thread + loop) {own:.2f} CPU-s"
        + (f", moto {srv:.2f} CPU-s" if server_pid else "")
    )
    shutil.rmtree(folder, ignore_errors=True)
    return fig


async def upload_part(
    args: argparse.Namespace, tmp: Path
) -> tuple[list[dict[str, Any]], list[str]]:
    out(
        f"\n=== upload throughput: {args.upload_mb:g} MB of {args.upload_segment_kb:g} kB"
        f" segments per target ({', '.join(args.upload_targets)}) ==="
    )
    moto: dict[str, Moto] = {}
    figs: list[dict[str, Any]] = []
    errors: list[str] = []
    try:
        for target in args.upload_targets:
            try:
                fig = await upload_target(target, args, tmp, moto)
                figs.append(fig)
                if fig["pending"]:
                    errors.append(f"upload {target}: {fig['pending']} objects left pending")
            except Exception as err:  # noqa: BLE001 - reported
                errors.append(f"upload {target}: {err!r}")
                out(f"upload:     {target}: FAILED: {err!r}")
    finally:
        for m in moto.values():
            await m.stop(timeout=10)
    return figs, errors


# --- the whole run ------------------------------------------------------------------------------


async def run_all(args: argparse.Namespace, tmp: Path) -> int:
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    runs: list[Run] = []
    errors: list[str] = []
    overhead: dict[str, Any] = {}
    long_fig: dict[str, Any] = {}
    uploads: list[dict[str, Any]] = []
    try:
        if "cpu" in args.parts:
            for rep in range(args.reps):
                order = MODES if rep % 2 == 0 else tuple(reversed(MODES))
                for mode in order:
                    runs.append(await cpu_run(mode, rep, args, tmp))
            overhead = cpu_summary(runs, args)
            errors += [
                f"{r.server} rep {r.rep + 1}: {'; '.join(r.errors)}" for r in runs if r.errors
            ]
        if "long" in args.parts:
            long_fig, long_errors = await long_call(args, tmp)
            errors += [f"long call: {e}" for e in long_errors]
        if "upload" in args.parts:
            uploads, upload_errors = await upload_part(args, tmp)
            errors += upload_errors
    except asyncio.CancelledError:
        print("bench: interrupted; processes stopped", file=sys.stderr)
        return 130
    summary(args, overhead, long_fig, uploads)
    out("errors:     " + (" | ".join(errors) if errors else "none"))
    return 1 if errors else 0


def summary(
    args: argparse.Namespace,
    overhead: dict[str, Any],
    long_fig: dict[str, Any],
    uploads: list[dict[str, Any]],
) -> None:
    out("\n=== summary ===")
    if overhead:
        out(
            f"overhead:   recording CPU per feed-second, % of relay CPU ({args.calls} calls,"
            f" {args.duration:g} s window): per repetition"
            f" [{', '.join(f'{x:+.1f}%' for x in overhead['per_rep'])}], median"
            f" {fmt(overhead['median'], 1)}%; incl. closing, median"
            f" {fmt(overhead['median_close'], 1)}%"
        )
    if long_fig:
        out(
            f"hang-up:    {long_fig['call_s']:.0f} s call: hang-up -> manifest uploaded"
            f" {long_fig['to_manifest']:.2f} s, verify {long_fig['verify']:.2f} s, hang-up ->"
            f" replay stored and verified {long_fig['to_verified']:.2f} s"
        )
    for f in uploads:
        out(
            f"upload:     {f['target']}: {f['mb_s']:.1f} MB/s, {f['objects_s']:.0f} objects/s"
            f" ({mb(f['bytes'])} in {f['seconds']:.2f} s, every object verified: read back"
            " on S3, the spooled file checked before the local store links it)"
        )
    shown_overhead = fmt(overhead.get("median", math.nan), 1)
    shown_long = (
        f"{long_fig['to_verified']:.2f} s for a {long_fig['call_s']:.0f} s call"
        if long_fig
        else "not measured"
    )
    out(
        f"target:     recording overhead <= {TARGET_OVERHEAD_PCT:g}% of relay CPU (this run:"
        f" median {shown_overhead}%); hang-up -> replay stored and verified <="
        f" {TARGET_HANGUP_S:g} s for a {TARGET_LONG_CALL_S / 60:.0f}-minute call (this run:"
        f" {shown_long}). Informational, not enforced."
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Recording: CPU overhead, hang-up -> verified, upload throughput."
    )
    parser.add_argument("--quick", action="store_true", help="small figures, all parts, ~70 s")
    parser.add_argument("--parts", default=",".join(PARTS), help="comma-separated: cpu,long,upload")
    parser.add_argument("--calls", type=int, help="cpu: concurrent 2-party calls (5; quick 2)")
    parser.add_argument("--duration", type=float, help="cpu: measurement window, s (20; quick 8)")
    parser.add_argument("--warmup", type=float, help="cpu: after set-up, before the window (5; 2)")
    parser.add_argument("--reps", type=int, help="cpu: repetitions, relay and recorded (3; 1)")
    parser.add_argument(
        "--processes", type=int, default=0, help="cpu: load-peer processes (0: one per 2 calls)"
    )
    parser.add_argument("--drain", type=float, default=1.5, help="cpu: wait after the window")
    parser.add_argument(
        "--long-call-s", type=float, help="long: call length in s (600; quick 20; 0 skips)"
    )
    parser.add_argument(
        "--close-timeout", type=float, default=120.0, help="limit from hang-up to manifest, s"
    )
    parser.add_argument("--upload-mb", type=float, help="upload: MB per target (200; quick 30)")
    parser.add_argument(
        "--upload-segment-kb", type=float, default=1400.0, help="upload: segment size, kB"
    )
    parser.add_argument(
        "--upload-targets", default="local,s3", help="upload: local, s3 (HTTPS+lock), s3-http"
    )
    parser.add_argument("--upload-timeout", type=float, default=600.0, help="upload: limit, s")
    parser.add_argument("--timeout", type=float, default=30.0, help="start-up, reports, stops")
    parser.add_argument("--setup-timeout", type=float, default=60.0, help="limit for one call")
    parser.add_argument("--fps", type=int, default=30, help="frame rate of the video clip")
    parser.add_argument("--clip-frames", type=int, default=30, help="frames in the looped clip")
    parser.add_argument("--verbose", action="store_true", help="per-call delivery lines")
    parser.add_argument(
        "--server-setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra setting for our server, passed as MEDIATION_NAME (repeat)",
    )
    parser.add_argument(
        "--py-spy",
        type=Path,
        metavar="DIR",
        help="cpu: sample the server with py-spy during each window (raw stacks saved in DIR,"
        " a summary printed); the CPU figures of such runs are perturbed",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    for name, value in (QUICK if args.quick else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    if not args.parts or any(p not in PARTS for p in args.parts):
        parser.error(f"--parts: a list from {', '.join(PARTS)}")
    if args.long_call_s <= 0 and "long" in args.parts:
        args.parts.remove("long")
    args.upload_targets = [t.strip() for t in args.upload_targets.split(",") if t.strip()]
    if any(t not in UPLOAD_TARGETS for t in args.upload_targets):
        parser.error(f"--upload-targets: a list from {', '.join(UPLOAD_TARGETS)}")
    if args.calls < 1 or args.duration <= 0 or args.warmup < 0 or args.reps < 1:
        parser.error("--calls, --duration and --reps must be positive, --warmup >= 0")
    if args.upload_mb <= 0 or args.upload_segment_kb <= 0:
        parser.error("--upload-mb and --upload-segment-kb must be positive")
    settings: dict[str, str] = {}
    for item in args.server_setting:
        name, sep, value = item.partition("=")
        if not sep or not name:
            parser.error(f"--server-setting {item!r}: expected NAME=VALUE")
        settings[name.strip().lower()] = value
    args.settings = settings
    return args


def fs_of(path: Path) -> str:
    """File system type and device of `path` (from /proc/mounts)."""
    best = ("", "?", "?")
    with contextlib.suppress(OSError), open("/proc/mounts") as mounts:
        for line in mounts:
            dev, mnt, kind = line.split()[:3]
            if str(path).startswith(mnt) and len(mnt) >= len(best[0]):
                best = (mnt, kind, dev)
    return f"{best[1]} on {best[2]}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out(f"command:    {shlex.join([sys.executable, *sys.argv])}")
    load1, load5, _ = os.getloadavg()
    out(
        f"machine:    {os.cpu_count()} CPUs, {platform.system()} {platform.release()},"
        f" Python {platform.python_version()}, event loop"
        f" {'uvloop ' + uvloop.__version__ if uvloop else 'asyncio'}, aiortc"
        f" {aiortc.__version__}, PyAV {av.__version__}; load average {load1:.2f} (1 min),"
        f" {load5:.2f} (5 min)"
    )
    tmp = Path(tempfile.mkdtemp(prefix="mediation-recording-bench-"))
    plan = []
    if "cpu" in args.parts:
        plan.append(
            f"cpu: {args.reps} repetition(s) x (relay, recorded; order alternating), {args.calls}"
            f" calls, {args.warmup:g} s warm-up, {args.duration:g} s window"
        )
    if "long" in args.parts:
        plan.append(f"long: one {args.long_call_s:g} s recorded call")
    if "upload" in args.parts:
        plan.append(f"upload: {args.upload_mb:g} MB to {', '.join(args.upload_targets)}")
    out(f"plan:       {'; '.join(plan)}")
    out(
        f"network:    loopback only (server and media on {HOST}, load peers --loopback-only);"
        f" temp dir {tmp} ({fs_of(tmp)}){' kept' if args.keep else ', removed at the end'}"
    )
    previous = signal.getsignal(signal.SIGTERM)
    try:
        if "cpu" in args.parts or "long" in args.parts:
            t = time.perf_counter()
            info = write_clips(tmp / "clips.pickle", fps=args.fps, frames=args.clip_frames)
            out(
                f"clip:       640x480 VP8 {args.fps} fps, {args.clip_frames}-frame loop"
                f" ({info['keyframes']} key frame), {info['video_kbps']:.0f} kbit/s (largest"
                f" frame {info['largest_frame']} B), sha256 {info['sha256'][:16]}; Opus"
                f" {info['audio_kbps']:.0f} kbit/s; encoded in {time.perf_counter() - t:.1f} s"
            )
        if uvloop is not None:
            return uvloop.run(run_all(args, tmp))
        return asyncio.run(run_all(args, tmp))
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # finish the clean-up
        killed = kill_leftovers()
        signal.signal(signal.SIGTERM, previous)
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        out(
            "cleanup:    "
            + (f"killed leftover pids {killed}" if killed else "no leftover processes")
            + ("" if args.keep else "; temp dir removed")
        )


if __name__ == "__main__":
    sys.exit(main())
