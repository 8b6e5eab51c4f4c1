"""The processes bad input is sent to, on one run's topics: a sink, a worker, an ingest process, a console.

Every secret the routes check is set (driver tokens, API keys of each role, the Meta app secret and verify
token, the Twilio auth token and public URL, the phone hash key), so a request that gets them right reaches
the parsing behind them. Rate limits and the console's failed sign-in limit are lifted, or after a few
hundred inputs every answer would be a 429. One driver is in the WhatsApp registry and one dispatcher can
sign in, so correct senders and names occur among the inputs.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import time
from pathlib import Path

import httpx

from base.settings import PROJECT_ROOT, Settings
from loadtest.fuzzing.requests import Credentials
from loadtest.processes import Process, free_port

TWILIO_URL = "https://fuzz.example/webhooks/twilio"


def credentials() -> Credentials:
    """Return fresh secrets for one run."""
    return Credentials(
        token_secret=secrets.token_hex(16),
        ingest_key="ingest-" + secrets.token_hex(12),
        dispatcher_key="dispatch-" + secrets.token_hex(12),
        partner_key="partner-" + secrets.token_hex(12),
        internal_key="internal-" + secrets.token_hex(12),
        app_secret=secrets.token_hex(16),
        verify_token=secrets.token_hex(8),
        twilio_token=secrets.token_hex(16),
        twilio_url=TWILIO_URL,
        driver_phone="+5511987650000",
    )


def environment(settings: Settings, data_dir: Path, c: Credentials) -> dict[str, str]:
    """Return the environment every process of the run shares."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WHATSUP_")}
    env.update(
        {
            "WHATSUP_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
            "WHATSUP_REDIS_URL": settings.redis_url,
            "WHATSUP_TOPIC_PREFIX": settings.topic_prefix,
            "WHATSUP_APP_ID": settings.app_id,
            "WHATSUP_PARTITIONS": str(settings.partitions),
            "WHATSUP_DATA_DIR": str(data_dir),
            "WHATSUP_CLICKHOUSE_URL": f"chdb://{data_dir / 'clickhouse'}",
            "WHATSUP_SINK_PORT": str(free_port()),
            "WHATSUP_WEB_PORT": str(free_port()),
            "WHATSUP_INGEST_PORT": str(free_port()),
            "WHATSUP_CONSOLE_PORT": str(free_port()),
            "WHATSUP_TOKEN_SECRET": c.token_secret,
            "WHATSUP_API_KEYS": c.api_keys(),
            "WHATSUP_PHONE_HASH_KEY": secrets.token_hex(16),
            "WHATSUP_WHATSAPP_APP_SECRET": c.app_secret,
            "WHATSUP_WHATSAPP_VERIFY_TOKEN": c.verify_token,
            "WHATSUP_TWILIO_AUTH_TOKEN": c.twilio_token,
            "WHATSUP_TWILIO_WEBHOOK_URL": c.twilio_url,
            "WHATSUP_INGEST_RATE_PER_S": "1000000",
            "WHATSUP_INGEST_BURST": "1000000",
            "WHATSUP_CONSOLE_LOGIN_FAILURES": "1000000000",
            "WHATSUP_LOG_LEVEL": "WARNING",
        }
    )
    return env


def _command(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "streams", *args],
        env=env, cwd=PROJECT_ROOT, input=stdin, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError(f"whatsup {' '.join(args)} failed ({out.returncode}): {out.stderr[-2000:]}")
    return out.stdout


class FuzzStack:
    """A sink, a worker, an ingest process and a console on one run's topics, and the run's secrets."""

    def __init__(self, settings: Settings, data_dir: Path) -> None:
        self.settings, self.data_dir = settings, data_dir
        self.run_id = secrets.token_hex(3)
        self.credentials = credentials()
        self.env = environment(settings, data_dir, self.credentials)
        ports = {
            role: self.env[f"WHATSUP_{role.upper()}_PORT"] for role in ("sink", "web", "ingest", "console")
        }
        self.urls = {
            "sink": f"http://127.0.0.1:{ports['sink']}",
            "worker": f"http://127.0.0.1:{ports['web']}",
            "ingest": f"http://127.0.0.1:{ports['ingest']}",
            "console": f"http://127.0.0.1:{ports['console']}",
        }
        self.processes = {
            name: Process(name, name, self.env, f"{url}/health", data_dir) for name, url in self.urls.items()
        }

    def start(self) -> None:
        """Register the driver and the dispatcher, start every process, wait until each is ready."""
        c = self.credentials
        registry = self.data_dir / "drivers.csv"
        registry.parent.mkdir(parents=True, exist_ok=True)
        registry.write_text(f"driver_id,phone,status,language\n{c.driver_id},{c.driver_phone},active,pt-BR\n")
        _command(self.env, "registry", "load", str(registry))
        printed = _command(self.env, "dispatcher", "add", c.dispatcher, "--password-stdin",
                           stdin=c.dispatcher_password + "\n")  # fmt: skip
        found = re.search(r"secret=([A-Z2-7]+)", printed)
        self.totp_secret = found.group(1) if found else ""
        for process in self.processes.values():
            process.start()
        try:
            for process in self.processes.values():
                process.wait_healthy(180.0)
            self.wait_settled()
        except BaseException:
            self.stop()
            raise

    def wait_settled(self, timeout_s: float = 120.0) -> None:
        """Wait until the worker's tables are recovered (its dispatcher routes stop answering 503)."""
        url = f"{self.urls['worker']}/v1/drivers/nobody"
        headers = {"X-API-Key": self.credentials.dispatcher_key}
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if httpx.get(url, headers=headers, timeout=5.0).status_code != 503:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"the worker's state not settled within {timeout_s:.0f} s")

    def sentinel_id(self, case: str) -> str:
        """Return the id of the valid record sent after a case's bad ones (stable within the run)."""
        return f"sentinel-{self.run_id}-" + re.sub(r"[^a-z]+", "-", case).strip("-")

    def alive(self, name: str) -> bool:
        """Tell whether process ``name`` still runs."""
        return self.processes[name].alive()

    def stop(self) -> dict[str, int | None]:
        """Stop every process (SIGTERM, then SIGKILL); return their exit statuses."""
        return {name: process.stop() for name, process in self.processes.items()}
