"""The `mediation` command as a separate process, for tests that need one (CLI, crashes)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path

MEDIATION = [sys.executable, "-m", "signaling.cli"]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDIATION_")}
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        MEDIATION + args, cwd=cwd, env=clean_env(**env), capture_output=True, text=True, timeout=60
    )


class Server:
    def __init__(self, proc: asyncio.subprocess.Process, port: int, banner: str) -> None:
        self.proc = proc
        self.port = port
        self.banner = banner

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


async def start_server(cwd: Path, port: int, **env: str) -> Server:
    proc = await asyncio.create_subprocess_exec(
        *MEDIATION,
        "serve",
        "--port",
        str(port),
        cwd=cwd,
        env=clean_env(**env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    lines = []
    assert proc.stdout is not None
    async with asyncio.timeout(30):
        while True:
            line = (await proc.stdout.readline()).decode()
            if not line:
                raise AssertionError("server exited:\n" + "".join(lines))
            lines.append(line)
            if line.startswith("mediation: serving on"):
                return Server(proc, port, "".join(lines))
