"""The pipeline's processes as a fleet run starts them: real ``whatsup`` commands, their CPU counted."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx

from base.settings import PROJECT_ROOT

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str]:
    """Return the fields of ``/proc/PID/stat`` after the command name (the state first)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    """Return the user + system CPU seconds a process has used so far (all its threads)."""
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def process_state(pid: int) -> str | None:
    """Return a process's state letter (``Z``: exited, waiting to be reaped), or None if it is gone."""
    try:
        return _stat(pid)[0]
    except (OSError, IndexError):
        return None


def free_port() -> int:
    """Return a loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Process:
    """One ``whatsup <role>`` process, its log in a file, healthy once ``health_url`` answers 200."""

    def __init__(
        self,
        name: str,
        role: str,
        env: dict[str, str],
        health_url: str,
        log_dir: Path,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self.name, self.role, self.env, self.health_url = name, role, env, health_url
        self.verify = verify  # what an https health URL's certificate is checked against
        self.log_path = log_dir / f"{name}.log"
        self.popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.popen is not None, f"{self.name} was never started"
        return self.popen.pid

    def start(self) -> None:
        """Start the process (without waiting for it)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "streams", self.role],
                env=self.env,
                cwd=PROJECT_ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_healthy(self, timeout_s: float = 120.0, restarts: int = 1) -> None:
        """Wait until the process answers its health check; raise with its log's tail if it does not.

        A process killed by a signal before it became healthy is started again, ``restarts`` times at most,
        as a supervisor would (seen once: the embedded ClickHouse of a sink died of SIGSEGV before its first
        log line); one that exits with a status is an error at once.
        """
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.popen is not None and self.popen.poll() is not None:
                code = self.popen.returncode
                if code < 0 and restarts > 0:
                    print(
                        f"{self.name} died of signal {-code} at start-up; starting it again", file=sys.stderr
                    )
                    self.start()
                    restarts -= 1
                    continue
                raise RuntimeError(f"{self.name} exited with {code}:\n{self.log_tail()}")
            try:
                if httpx.get(self.health_url, timeout=1.0, verify=self.verify).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"{self.name} not healthy within {timeout_s:.0f} s:\n{self.log_tail()}")

    def cpu_seconds(self) -> float:
        """CPU seconds used so far by the current process (0 when it is not running)."""
        try:
            return cpu_seconds(self.pid)
        except (OSError, AssertionError):
            return 0.0

    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.popen is not None and self.popen.poll() is None

    def kill(self) -> None:
        """Kill the process with SIGKILL, as a crash would, and reap it."""
        if self.popen is not None and self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()

    def stop(self, timeout_s: float = 40.0) -> int | None:
        """Stop gracefully (SIGTERM), kill if it hangs; return the exit status."""
        if self.popen is None or self.popen.poll() is not None:
            return None if self.popen is None else self.popen.returncode
        self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            return self.popen.wait(10)

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the process's log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
