"""A benchmark's child process: started, ready when its output shows a marker, stopped."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


class ManagedProcess:
    """Runs `command`; ready when a line of its stdout or stderr contains `ready_marker`.

    Output lines are kept (the first 5,000 of each stream) for the report. `started`
    and `stopped` are called with the pid, e.g. to track processes for clean-up;
    `on_line` with every output line (both streams, all of them) as it is read.
    """

    def __init__(
        self,
        name: str,
        command: list[str],
        env: dict[str, str],
        ready_marker: str,
        *,
        started: Callable[[int], None] | None = None,
        stopped: Callable[[int], None] | None = None,
        on_line: Callable[[str], None] | None = None,
    ) -> None:
        self.name = name
        self.command = command
        self.env = env
        self.ready_marker = ready_marker
        self._started = started
        self._stopped = stopped
        self._on_line = on_line
        self.proc: asyncio.subprocess.Process | None = None
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self.ready_line = ""
        self._ready: asyncio.Future[str] | None = None
        self._readers: list[asyncio.Task[None]] = []

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self, timeout: float) -> None:
        self._ready = asyncio.get_running_loop().create_future()
        self.proc = await asyncio.create_subprocess_exec(
            *self.command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.env,
            cwd=REPO,
        )
        if self._started is not None:
            self._started(self.proc.pid)
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._readers = [
            asyncio.create_task(self._read(self.proc.stdout, self.stdout)),
            asyncio.create_task(self._read(self.proc.stderr, self.stderr)),
        ]
        exited = asyncio.create_task(self.proc.wait())
        try:
            done, _ = await asyncio.wait(
                {self._ready, exited}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            exited.cancel()
        if self._ready in done:
            self.ready_line = self._ready.result()
            return
        if not done:
            raise RuntimeError(f"{self.name}: no {self.ready_marker!r} line within {timeout:.0f} s")
        await asyncio.wait(self._readers, timeout=2)
        raise RuntimeError(f"{self.name} exited with status {self.proc.returncode} before serving")

    async def _read(self, stream: asyncio.StreamReader, lines: list[str]) -> None:
        while raw := await stream.readline():
            line = raw.decode(errors="replace").rstrip("\n")
            if len(lines) < 5000:
                lines.append(line)
            if self.ready_marker in line and self._ready and not self._ready.done():
                self._ready.set_result(line)
            if self._on_line is not None:
                self._on_line(line)

    async def stop(self, timeout: float) -> tuple[int | None, str]:
        """SIGTERM and wait; SIGKILL if it has not exited in `timeout` seconds."""
        if self.proc is None:
            return None, "not started"
        how = "exited by itself"
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            how = "SIGTERM"
            try:
                async with asyncio.timeout(timeout):
                    await self.proc.wait()
            except TimeoutError:
                self.proc.kill()
                how = f"SIGKILL (no exit {timeout:.0f} s after SIGTERM)"
                await self.proc.wait()
        if self._stopped is not None:
            self._stopped(self.proc.pid)
        await asyncio.wait(self._readers, timeout=2)
        for reader in self._readers:
            reader.cancel()
        return self.proc.returncode, how
