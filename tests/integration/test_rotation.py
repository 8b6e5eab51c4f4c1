"""The driver-token secret rotated under load, as the runbook says, with no valid request refused.

Two ``whatsup ingest`` processes on ports of their own take a steady stream of pings; a client sends each
batch to one of them and, when that one is restarting, to the other (as the load balancer does). Three rolling
restarts: the new secret accepted beside the current one; the new secret signing, the old one accepted; the
old one dropped. The client's tokens come from the issuer's secret of the moment. Every answer must be 202;
after the last step a token of the old secret is refused.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path

import httpx

from base.settings import Settings
from base.tokens import issue_driver_token
from loadtest.processes import Process, free_port
from tests.integration.stack import Background

OLD, NEW = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
SAO_PAULO = {"lat": -23.55, "lon": -46.63}


class Load(Background):
    """Pings every 20 ms from 10 drivers, alternating between the ingest ports, tokens from ``secret``."""

    def __init__(self, ports: list[int]) -> None:
        super().__init__()
        self.ports = ports
        self.secret = OLD
        self.answers: dict[int, int] = {}
        self.unreachable = 0

    def _run(self) -> None:
        sent = 0
        with httpx.Client(timeout=5) as client:
            while not self._stop.wait(0.02):
                sent += 1
                driver = f"rot-{sent % 10}"
                token = issue_driver_token(self.secret, driver, 600)
                ping = {
                    "ping_id": f"{driver}-{sent}",
                    "ts": int(time.time() * 1000),
                    "lat": -23.55,
                    "lon": -46.63,
                }
                for port in (self.ports[sent % 2], self.ports[(sent + 1) % 2]):
                    try:
                        answer = client.post(
                            f"http://127.0.0.1:{port}/v1/pings",
                            json={"pings": [ping]},
                            headers={"Authorization": f"Bearer {token}"},
                        )
                    except httpx.TransportError:
                        self.unreachable += 1  # restarting: the balancer tries the other one
                        continue
                    self.answers[answer.status_code] = self.answers.get(answer.status_code, 0) + 1
                    break


def test_rotating_the_token_secret_under_load_refuses_no_valid_request(
    stack_env: dict[str, str], stack_settings: Settings, tmp_path: Path
) -> None:
    ports = [free_port(), free_port()]
    base = {k: v for k, v in stack_env.items() if k != "WHATSUP_TOKEN_SECRET"}
    base.update(WHATSUP_INGEST_RATE_PER_S="1000", WHATSUP_INGEST_BURST="2000", WHATSUP_LOG_LEVEL="WARNING")

    def ingest(n: int, secret: str, accepted: str = "") -> Process:
        env = {
            **base,
            "WHATSUP_INGEST_PORT": str(ports[n]),
            "WHATSUP_TOKEN_SECRET": secret,
            "WHATSUP_TOKEN_SECRETS_ACCEPTED": accepted,
        }
        process = Process(f"ingest-{n}", "ingest", env, f"http://127.0.0.1:{ports[n]}/health", tmp_path)
        process.start()
        process.wait_healthy(60)
        return process

    running = [ingest(0, OLD), ingest(1, OLD)]
    try:
        with Load(ports) as load:

            def roll(secret: str, accepted: str) -> None:
                for n in (0, 1):
                    running[n].stop()
                    running[n] = ingest(n, secret, accepted)
                    time.sleep(1.0)

            time.sleep(1.0)
            roll(OLD, NEW)  # 1. the new secret accepted everywhere, nothing signs with it yet
            load.secret = NEW  # the issuer signs with the new secret
            time.sleep(1.0)
            roll(NEW, OLD)  # 2. the new secret is current; tokens of the old one still verify
            roll(NEW, "")  # 3. after the tokens' lifetime, the old secret goes
            time.sleep(1.0)
        assert set(load.answers) == {202}, load.answers
        assert load.answers[202] > 200
        old = issue_driver_token(OLD, "rot-old", 600)
        ping = {"ping_id": "rot-old-1", "ts": int(time.time() * 1000), "lat": -23.55, "lon": -46.63}
        refused = httpx.post(
            f"http://127.0.0.1:{ports[0]}/v1/pings",
            json={"pings": [ping]},
            headers={"Authorization": f"Bearer {old}"},
            timeout=5,
        )
        assert refused.status_code == 401 and refused.json()["error"] == "bad_signature", refused.text
    finally:
        for process in running:
            process.stop()
