"""Demo step: the driver-token secret mid-rotation. An ingest process started here holds a new secret and
accepts the demo's current one: a phone's token of either is taken, one of neither is refused; then what
``whatsup rotate`` prints about this deployment."""

from __future__ import annotations

import os
import secrets
import time

import httpx

from base.settings import Settings
from base.tokens import issue_driver_token, key_id
from loadtest.processes import Process, free_port
from streams.rotate import token_plan


def _post(port: int, token: str, n: int) -> httpx.Response:
    ping = {"ping_id": f"rotation-{n}", "ts": int(time.time() * 1000), "lat": -23.55, "lon": -46.63}
    return httpx.post(
        f"http://127.0.0.1:{port}/v1/pings",
        json={"pings": [ping]},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )


def show(settings: Settings) -> bool:
    """Show tokens of the old and the new secret taken mid-rotation, another refused; True if so."""
    assert settings.token_secret is not None
    print("\nsecret rotation, step 2 of 3 (`whatsup rotate` prints the steps):")
    new = secrets.token_urlsafe(48)
    port = free_port()
    env = {
        **os.environ,
        "WHATSUP_INGEST_PORT": str(port),
        "WHATSUP_TOKEN_SECRET": new,
        "WHATSUP_TOKEN_SECRETS_ACCEPTED": settings.token_secret,
    }
    ingest = Process(
        "ingest-rotated", "ingest", env, f"http://127.0.0.1:{port}/health", settings.data_dir / "demo"
    )
    try:
        ingest.start()
        ingest.wait_healthy(60)
        cases = [
            (f"old secret (key id {key_id(settings.token_secret)})", settings.token_secret, 202),
            (f"new secret (key id {key_id(new)})", new, 202),
            ("a secret of neither", secrets.token_urlsafe(48), 401),
        ]
        ok = True
        for n, (label, secret, expected) in enumerate(cases):
            answer = _post(port, issue_driver_token(secret, "demo-rotation", 600), n)
            ok &= answer.status_code == expected
            print(f"  a token signed with the {label:<32} -> {answer.status_code}")
    except (RuntimeError, httpx.HTTPError) as exc:
        print(f"  failed: {exc}")
        return False
    finally:
        ingest.stop()
    print("  " + token_plan(settings, new)[0])
    return ok
