"""Helpers for the console's tests: its process, and dispatchers created through the CLI."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.integration.stack import ROOT, WorkerProcess, _child_env

DISPATCH_KEY, PARTNER_KEY = "dispatch-" + "d" * 24, "partner-" + "p" * 24
PASSWORD = "correct horse battery staple"


class ConsoleProcess(WorkerProcess):
    """A ``whatsup console`` process; healthy once it has read the fleet."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        super().__init__(env, log_path, command=("console",))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.env['WHATSUP_CONSOLE_PORT']}"


def add_dispatcher(env: dict[str, str], name: str, password: str = PASSWORD) -> str:
    """Create a dispatcher through ``whatsup dispatcher add``; return the TOTP secret it printed."""
    out = subprocess.run(
        [sys.executable, "-m", "streams", "dispatcher", "add", name, "--password-stdin"],
        input=password + "\n",
        env=_child_env(env),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    url = next(line for line in out.stdout.splitlines() if line.startswith("otpauth://"))
    assert f"totp/WhatsUp%20Logistics:{name}" in url
    secret = re.search(r"secret=([A-Z2-7]+)", url)
    assert secret is not None
    return secret.group(1)
