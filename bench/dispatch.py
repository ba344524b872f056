#!/usr/bin/env python3
"""Dispatch benchmark: idle connections per server process and launch -> ring latency.

    .venv/bin/python bench/dispatch.py --devices 2000 --experts 50 --rate 20 --duration 30

Provisions N kiosks and M experts straight into a fresh metadata store, starts the real
service as a separate process (`python -m signaling.cli serve`) on 127.0.0.1, connects
every client through the real WebSocket from this one process, then launches calls at a
fixed rate. Each call: a free kiosk sends `call.launch`, the rung expert accepts at once,
the kiosk sends `call.leave`, so experts free up and the system stays in a steady state.

Prints the server's RSS before/after the idle kiosks connect (memory per idle connection),
launch -> ring-delivered latency percentiles, and the server's CPU time in the launch phase.
Figures are printed, never enforced: the exit status is 1 only when something failed (a
connection refused, a launch failed, a ring missing, the server died), 2 on bad usage.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import itertools
import math
import os
import platform
import resource
import shlex
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from argon2 import PasswordHasher
from procs import ManagedProcess

from signaling.client import SignalingClient
from storage import MetadataStore

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
    uvloop = None

HOST = "127.0.0.1"
READY_PREFIX = "mediation: serving on"
CHEAP_HASHER = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)
FD_MARGIN = 128  # descriptors besides the sockets: files, pipes, the event loop
MAX_ERRORS_SHOWN = 15


# --- small helpers --------------------------------------------------------------------


def proc_rss_kib(pid: int | str) -> int:
    """Resident set size (VmRSS) of a process, in KiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used so far."""
    with open(f"/proc/{pid}/stat") as stat:
        data = stat.read()
    fields = data[data.rindex(")") + 2 :].split()  # fields from 3 (state) on
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def mib(kib: int) -> str:
    return f"{kib / 1024:.1f} MiB"


def raise_fd_limit(needed: int) -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard limit; the server process inherits it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, needed)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def specialty_sets(codes: list[str], count: int) -> list[list[str]]:
    """`count` distinct specialty sets (largest first), each covering most dispute types.

    Sets have at least half of the types (rounded up), so every dispute type is served by
    many experts and any launch finds a free match; the first set has them all. Past the
    number of such sets they repeat.
    """
    smallest = max(1, math.ceil(len(codes) / 2))
    pool = [
        list(combo)
        for size in range(len(codes), smallest - 1, -1)
        for combo in itertools.combinations(codes, size)
    ]
    return [pool[i % len(pool)] for i in range(count)]


class StampedQueue(asyncio.Queue):  # type: ignore[type-arg]
    """The client's event queue, stamping each frame with its arrival time (perf_counter)."""

    def put_nowait(self, item: dict[str, Any]) -> None:
        item["_rx"] = time.perf_counter()
        super().put_nowait(item)


# --- the server process ---------------------------------------------------------------


class Server(ManagedProcess):
    """`python -m signaling.cli serve` on 127.0.0.1, its output collected line by line."""

    def __init__(self, data_dir: Path, port: int, settings: dict[str, str]) -> None:
        self.data_dir = data_dir
        self.port = port
        self.settings = settings
        command = [
            sys.executable, "-m", "signaling.cli", "serve",
            "--host", HOST, "--port", str(port),
        ]  # fmt: skip
        super().__init__("server", command, self._environment(), READY_PREFIX)

    @property
    def ws_url(self) -> str:
        return f"ws://{HOST}:{self.port}/ws"

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def _environment(self) -> dict[str, str]:
        # Inherited MEDIATION_* variables (and MEDIATION_CONFIG) would change the run.
        env = {k: v for k, v in os.environ.items() if not k.startswith("MEDIATION_")}
        env.update(
            MEDIATION_DATA_DIR=str(self.data_dir),
            MEDIATION_DEMO_ACCOUNTS="false",
            MEDIATION_LOG_LEVEL="WARNING",
        )
        env.update({f"MEDIATION_{k.upper()}": v for k, v in self.settings.items()})
        return env

    async def metrics(self) -> dict[str, float]:
        """The server's Prometheus metrics, as {"name{labels}": value}."""
        values: dict[str, float] = {}
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            async with http.get(f"{self.base_url}/metrics") as resp:
                text = await resp.text()
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                with contextlib.suppress(ValueError):
                    values[name] = float(value)
        return values


# --- provisioning ----------------------------------------------------------------------


@dataclass
class Provisioned:
    device_tokens: list[str]
    expert_tokens: list[str]
    expert_specialties: list[list[str]]
    dispute_types: list[str]


def provision(db_path: Path, devices: int, experts: int) -> Provisioned:
    """Kiosks, experts (with a session each) straight into the store, before the server."""
    with MetadataStore.open(db_path, password_hasher=CHEAP_HASHER) as store:
        codes = [d.code for d in store.list_dispute_types()]
        sets = specialty_sets(codes, experts)
        device_tokens: list[str] = []
        expert_tokens: list[str] = []
        with store.transaction():
            for i in range(devices):
                _, token = store.create_device("kiosk", f"bench-kiosk-{i:05d}")
                device_tokens.append(token)
            for i in range(experts):
                account = store.create_account(
                    f"bench-expert-{i:03d}", f"Bench Expert {i:03d}", "expert", "bench-password"
                )
                store.set_expert_profile(account.id, sets[i], on_duty=False)
                expert_tokens.append(store.create_session(account.id, 86400.0))
    return Provisioned(device_tokens, expert_tokens, sets, codes)


# --- the load ---------------------------------------------------------------------------


@dataclass
class CallRecord:
    """One launched call, filled from both sides (the ring can beat the launch result)."""

    accepted: asyncio.Future[None]
    t0: float | None = None  # perf_counter just before call.launch was sent
    ring_rx: float | None = None  # perf_counter when call.ring reached the expert client
    waited_ms: int | None = None  # the server's own launch -> ring figure (wall ms)
    state_at_launch: str | None = None
    rings: int = 0


@dataclass
class Stats:
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    samples: list[str] = field(default_factory=list)
    launches_sent: int = 0
    launch_failed: int = 0
    no_idle_kiosk: int = 0
    queued: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    server_waited_ms: list[int] = field(default_factory=list)
    schedule_lag_ms: list[float] = field(default_factory=list)
    foreign_rings: int = 0
    extra_rings: int = 0

    def error(self, kind: str, detail: str) -> None:
        self.errors[kind] += 1
        sample = f"{kind}: {detail}"
        if len(self.samples) < MAX_ERRORS_SHOWN and sample not in self.samples:
            self.samples.append(sample)


class Bench:
    def __init__(self, args: argparse.Namespace, server: Server, prov: Provisioned) -> None:
        self.args = args
        self.server = server
        self.prov = prov
        self.stats = Stats()
        self.kiosks: list[SignalingClient] = []
        self.experts: list[SignalingClient] = []
        self.calls: dict[str, CallRecord] = {}
        self.launched: list[str] = []  # call ids whose launch succeeded
        self.expert_tasks: list[asyncio.Task[None]] = []
        self.side_tasks: set[asyncio.Task[None]] = set()

    def record(self, call_id: str) -> CallRecord:
        rec = self.calls.get(call_id)
        if rec is None:
            rec = CallRecord(accepted=asyncio.get_running_loop().create_future())
            self.calls[call_id] = rec
        return rec

    # -- connecting --

    async def connect_many(
        self, tokens: Iterable[str], kind: str, *, person: bool
    ) -> list[SignalingClient]:
        sem = asyncio.Semaphore(self.args.connect_concurrency)

        async def one(token: str) -> SignalingClient | None:
            async with sem:
                try:
                    async with asyncio.timeout(self.args.timeout):
                        if person:
                            return await SignalingClient.connect(
                                self.server.ws_url, session_token=token
                            )
                        return await SignalingClient.connect(self.server.ws_url, device_token=token)
                except Exception as err:  # noqa: BLE001 - every failure is reported
                    self.stats.error(f"{kind} connect failed", repr(err))
                    return None

        results = await asyncio.gather(*(one(t) for t in tokens))
        return [c for c in results if c is not None]

    async def start_experts(self) -> None:
        self.experts = await self.connect_many(self.prov.expert_tokens, "expert", person=True)
        for index, client in enumerate(self.experts):
            client.events = StampedQueue()
            try:
                await client.request("presence.set", availability="available", timeout=10)
            except Exception as err:  # noqa: BLE001
                self.stats.error("presence.set failed", repr(err))
            self.expert_tasks.append(asyncio.create_task(self.expert_loop(index, client)))

    # -- the expert side --

    async def expert_loop(self, index: int, client: SignalingClient) -> None:
        while True:
            frame = await client.events.get()
            if frame.get("type") != "call.ring":
                continue
            payload = frame["payload"]
            rec = self.record(payload["call_id"])
            rec.rings += 1
            if rec.ring_rx is None:
                rec.ring_rx = frame["_rx"]
                rec.waited_ms = payload.get("waited_ms")
            task = asyncio.create_task(self.accept(client, payload["invitation_id"], rec))
            self.side_tasks.add(task)
            task.add_done_callback(self.side_tasks.discard)

    async def accept(self, client: SignalingClient, invitation_id: str, rec: CallRecord) -> None:
        try:
            await client.request("call.accept", invitation_id=invitation_id, timeout=10)
        except Exception as err:  # noqa: BLE001
            self.stats.error("call.accept failed", repr(err))
            if not rec.accepted.done():
                rec.accepted.set_exception(err)
            return
        if not rec.accepted.done():
            rec.accepted.set_result(None)

    # -- the caller side --

    async def call(self, index: int, kiosk_index: int, idle: collections.deque[int]) -> None:
        kiosk = self.kiosks[kiosk_index]
        dispute = self.prov.dispute_types[index % len(self.prov.dispute_types)]
        t0 = time.perf_counter()
        try:
            result = await kiosk.request(
                "call.launch", consent_evidence=True, dispute_type=dispute, timeout=10
            )
        except Exception as err:  # noqa: BLE001
            self.stats.launch_failed += 1
            self.stats.error("call.launch failed", repr(err))
            return  # this kiosk is not reused: its state is unknown
        call = result["call"]
        rec = self.record(call["id"])
        rec.t0 = t0
        rec.state_at_launch = call["state"]
        self.launched.append(call["id"])
        if call["state"] == "queued":
            self.stats.queued += 1
        try:
            async with asyncio.timeout(self.args.call_timeout):
                await asyncio.shield(rec.accepted)
        except TimeoutError:
            self.stats.error("no accepted ring", f"call {call['id']} ({call['state']} at launch)")
        except Exception:  # noqa: BLE001 - already counted by accept()
            pass
        try:
            await kiosk.request("call.leave", call_id=call["id"], timeout=10)
        except Exception as err:  # noqa: BLE001
            self.stats.error("call.leave failed", repr(err))
            return
        while not kiosk.events.empty():  # call.updated etc.; nothing to check
            kiosk.events.get_nowait()
        idle.append(kiosk_index)

    async def launch_phase(self) -> float:
        """Launch at `rate` on an absolute schedule; returns the phase's wall time."""
        args = self.args
        total = round(args.rate * args.duration)
        idle = collections.deque(range(len(self.kiosks)))
        tasks: list[asyncio.Task[None]] = []
        start = time.perf_counter() + 0.05
        for i in range(total):
            due = start + i / args.rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            self.stats.schedule_lag_ms.append(max(0.0, time.perf_counter() - due) * 1000)
            if not self.server.running:
                self.stats.error("server died", f"before launch {i}")
                break
            if not idle:
                self.stats.no_idle_kiosk += 1
                self.stats.error("no idle kiosk", f"launch {i} skipped")
                continue
            self.stats.launches_sent += 1
            tasks.append(asyncio.create_task(self.call(i, idle.popleft(), idle)))
        if tasks:
            done, pending = await asyncio.wait(tasks, timeout=args.call_timeout + 30)
            for task in pending:
                task.cancel()
                self.stats.error("call task stuck", "cancelled after the launch phase")
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    self.stats.error("call task crashed", repr(task.exception()))
        if self.side_tasks:
            await asyncio.wait(self.side_tasks, timeout=15)
        return time.perf_counter() - start

    def collect(self) -> None:
        for call_id, rec in self.calls.items():
            if rec.t0 is None:
                self.stats.foreign_rings += 1  # a ring for a call we did not launch
                continue
            if rec.rings > 1:
                self.stats.extra_rings += rec.rings - 1
            if rec.ring_rx is None:
                self.stats.error("ring missing", f"call {call_id} ({rec.state_at_launch})")
                continue
            self.stats.latencies_ms.append((rec.ring_rx - rec.t0) * 1000)
            if rec.waited_ms is not None:
                self.stats.server_waited_ms.append(rec.waited_ms)

    async def close_all(self) -> None:
        for task in self.expert_tasks:
            task.cancel()
        await asyncio.gather(*self.expert_tasks, return_exceptions=True)
        sem = asyncio.Semaphore(200)

        async def close(client: SignalingClient) -> None:
            async with sem:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(5):
                        await client.close()

        await asyncio.gather(*(close(c) for c in self.kiosks + self.experts))


# --- the run ------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Idle connections and launch -> ring latency of the signaling service."
    )
    parser.add_argument("--devices", type=int, default=2000, help="idle kiosks (N)")
    parser.add_argument("--experts", type=int, default=50, help="experts (M)")
    parser.add_argument("--rate", type=float, default=20.0, help="launches per second")
    parser.add_argument("--duration", type=float, default=30.0, help="launch phase, seconds")
    parser.add_argument("--port", type=int, default=0, help="server port (0: a free one)")
    parser.add_argument(
        "--data-dir", type=Path, help="data folder to use and keep (must be new or empty)"
    )
    parser.add_argument(
        "--connect-concurrency", type=int, default=100, help="connections opened at a time"
    )
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="limit for one connect, start-up, etc."
    )
    parser.add_argument(
        "--call-timeout", type=float, default=30.0, help="longest a kiosk waits for an accept"
    )
    parser.add_argument(
        "--server-setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra server setting, passed as MEDIATION_NAME (repeat)",
    )
    args = parser.parse_args(argv)
    if args.devices < 1 or args.experts < 1 or args.rate <= 0 or args.duration <= 0:
        parser.error("--devices, --experts, --rate and --duration must be positive")
    if args.connect_concurrency < 1:
        parser.error("--connect-concurrency must be at least 1")
    settings: dict[str, str] = {}
    for item in args.server_setting:
        name, sep, value = item.partition("=")
        if not sep or not name:
            parser.error(f"--server-setting {item!r}: expected NAME=VALUE")
        settings[name.strip().lower()] = value
    args.settings = settings
    return args


def command_line() -> str:
    return shlex.join([sys.executable, *sys.argv])


async def run(args: argparse.Namespace, data_dir: Path) -> int:
    out = print
    stats_exit = 0
    t = time.perf_counter()
    prov = provision(data_dir / "metadata.sqlite3", args.devices, args.experts)
    provision_s = time.perf_counter() - t
    distinct = len({tuple(s) for s in prov.expert_specialties})
    out(
        f"provision:  {args.devices} kiosks + {args.experts} experts in {provision_s:.2f} s"
        f" ({distinct} distinct specialty sets over {len(prov.dispute_types)} dispute types)"
    )

    server = Server(data_dir, args.port or free_port(), args.settings)
    bench = Bench(args, server, prov)
    try:
        await server.start(args.timeout)
        out(f"server:     pid {server.pid}, {server.ready_line!r}")
        if args.settings:
            out(f"            settings: {args.settings}")

        t = time.perf_counter()
        await bench.start_experts()
        experts_s = time.perf_counter() - t
        before_metrics = await server.metrics()
        rss_before = proc_rss_kib(server.pid)

        t = time.perf_counter()
        bench.kiosks = await bench.connect_many(prov.device_tokens, "kiosk", person=False)
        connect_s = time.perf_counter() - t
        rss_after = proc_rss_kib(server.pid)
        bench_rss = proc_rss_kib("self")
        after_metrics = await server.metrics()

        n = len(bench.kiosks)
        out(
            f"connect:    {len(bench.experts)}/{args.experts} experts in {experts_s:.2f} s;"
            f" {n}/{args.devices} kiosks in {connect_s:.2f} s"
            f" ({n / connect_s:.0f}/s, {args.connect_concurrency} at a time)"
        )
        out(
            f"            server counts {before_metrics.get('mediation_connections', 0):.0f}"
            f" -> {after_metrics.get('mediation_connections', 0):.0f} authenticated connections;"
            f" bench process RSS {mib(bench_rss)}"
        )
        per_conn = (rss_after - rss_before) / n if n else math.nan
        out(
            f"memory:     server RSS {mib(rss_before)} before, {mib(rss_after)} after"
            f" {n} idle kiosks -> {per_conn:.1f} KiB per idle connection"
        )

        cpu0 = proc_cpu_s(server.pid)
        wall = await bench.launch_phase()
        cpu1 = proc_cpu_s(server.pid) if server.running else math.nan
        rss_end = proc_rss_kib(server.pid) if server.running else 0
        bench.collect()
        s = bench.stats
        lags = sorted(s.schedule_lag_ms)
        out(
            f"launches:   {s.launches_sent} sent at {args.rate:g}/s over {args.duration:g} s"
            f" (schedule lag p99 {percentile(lags, 99):.1f} ms, max {max(lags, default=0):.1f});"
            f" {s.launch_failed} failed, {s.queued} queued instead of ringing"
            + (f", {s.no_idle_kiosk} skipped (no idle kiosk)" if s.no_idle_kiosk else "")
        )
        missing = s.errors["ring missing"]
        out(
            f"rings:      {len(s.latencies_ms)} received for {len(bench.launched)} launched"
            f" calls, {missing} missing"
            + (f", {s.extra_rings} extra" if s.extra_rings else "")
            + (f", {s.foreign_rings} for unknown calls" if s.foreign_rings else "")
        )
        lat = sorted(s.latencies_ms)
        out(
            f"latency:    launch -> ring delivered (ms): p50 {percentile(lat, 50):.2f},"
            f" p95 {percentile(lat, 95):.2f}, p99 {percentile(lat, 99):.2f},"
            f" max {max(lat, default=math.nan):.2f} (n={len(lat)})"
        )
        waited = sorted(float(w) for w in s.server_waited_ms)
        out(
            f"            server's own waited_ms (wall-clock ms, launch -> ring queued):"
            f" p50 {percentile(waited, 50):.0f}, p99 {percentile(waited, 99):.0f},"
            f" max {max(waited, default=math.nan):.0f}"
        )
        cpu = cpu1 - cpu0
        out(
            f"server CPU: {cpu:.2f} s during the launch phase ({wall:.1f} s wall,"
            f" {100 * cpu / wall:.0f}% of one core); RSS at the end {mib(rss_end)}"
        )
        if server.running:
            final = await server.metrics()
            refused = {
                k.split('"')[1]: int(v)
                for k, v in final.items()
                if k.startswith("mediation_requests_refused_total{")
            }
            ended = {
                k.split('"')[1]: int(v)
                for k, v in final.items()
                if k.startswith("mediation_calls_ended_total{")
            }
            out(f"            server metrics: calls ended {ended}, requests refused {refused}")
        if not server.running:
            s.error("server died", f"exit status {server.proc.returncode if server.proc else '?'}")
    except Exception as err:  # noqa: BLE001 - reported, then cleaned up
        bench.stats.error("bench aborted", repr(err))
    finally:
        t = time.perf_counter()
        await bench.close_all()
        close_s = time.perf_counter() - t
        warnings_during = len(server.stderr)
        status, how = await server.stop(timeout=30)
        if status not in (0, None):
            bench.stats.error("server exit status", f"{status} ({how})")
        out(f"shutdown:   clients closed in {close_s:.1f} s; server {how}, exit status {status}")
    s = bench.stats
    if server.stderr:
        out(
            f"server log: {len(server.stderr)} stderr lines"
            f" ({warnings_during} before shutdown), last ones:"
        )
        for line in server.stderr[-20:]:
            out(f"    {line}")
    if s.errors:
        stats_exit = 1
        out("errors:     " + ", ".join(f"{k} x{v}" for k, v in sorted(s.errors.items())))
        for sample in s.samples:
            out(f"    {sample}")
    else:
        out("errors:     none")
    lat = sorted(s.latencies_ms)
    p99 = percentile(lat, 99)
    out(
        f"target:     2,000 idle connections in one process and p99 < 50 ms at 20 launches/s"
        f" (this run: {len(bench.kiosks)} idle, p99 {p99:.2f} ms at {args.rate:g}/s;"
        " informational, not enforced)"
    )
    return stats_exit


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    needed = args.devices + args.experts + FD_MARGIN
    soft, hard = raise_fd_limit(needed)
    print(f"command:    {command_line()}")
    print(
        f"machine:    {os.cpu_count()} CPUs, {platform.system()} {platform.release()},"
        f" Python {platform.python_version()}, event loop"
        f" {'uvloop ' + uvloop.__version__ if uvloop else 'asyncio'} (bench and server);"
        f" RLIMIT_NOFILE {soft}/{hard}; load average {os.getloadavg()[0]:.2f}"
    )
    if soft != resource.RLIM_INFINITY and soft < needed:
        print(
            f"bench: RLIMIT_NOFILE is {soft} (hard {hard}) but {needed} descriptors are needed"
            " in each process; raise the hard limit (ulimit -Hn) or use fewer --devices",
            file=sys.stderr,
        )
        return 2

    per_expert = args.rate / args.experts
    if per_expert > 5:
        print(
            f"note:       {per_expert:.1f} launches/s per expert; an expert's connection may send"
            " 20 messages/s by default (rate_limit_per_s), so accepts may be refused or calls queue"
        )
    keep = args.data_dir is not None
    if keep:
        data_dir = args.data_dir.resolve()
        if data_dir.exists() and any(data_dir.iterdir()):
            print(f"bench: --data-dir {data_dir} is not empty", file=sys.stderr)
            return 2
        data_dir.mkdir(parents=True, exist_ok=True)
    else:
        data_dir = Path(tempfile.mkdtemp(prefix="mediation-bench-"))
    print(f"data dir:   {data_dir} ({'kept' if keep else 'temporary, removed at the end'})")
    try:
        if uvloop is not None:
            return uvloop.run(run(args, data_dir))
        return asyncio.run(run(args, data_dir))
    except KeyboardInterrupt:
        print("bench: interrupted (clients closed, server stopped)", file=sys.stderr)
        return 130
    finally:
        if not keep:
            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
