"""The demo's first step: the ingest API refuses bad requests with precise answers."""

from __future__ import annotations

import time
from typing import Any

import httpx

from base.tokens import issue_driver_token


def show_refusals(url: str, secret: str) -> bool:
    """Post five bad requests to ``/v1/pings`` and print each answer; True if each got its status."""
    token = issue_driver_token(secret, "demo-driver", ttl_s=600)
    auth = {"Authorization": f"Bearer {token}"}
    ping = {"ping_id": "x1", "ts": int(time.time() * 1000), "lat": -23.55, "lon": -46.63}
    cases: list[tuple[str, dict[str, Any], int]] = [
        ("no token", {"json": {"pings": [ping]}}, 401),
        (
            "posting as another driver",
            {"json": {"driver_id": "someone-else", "pings": [ping]}, "headers": auth},
            400,
        ),
        ("501 pings", {"json": {"pings": [ping] * 501}, "headers": auth}, 413),
        ("malformed JSON", {"content": b'{"pings": [', "headers": auth}, 400),
        ("lat as a string", {"json": {"pings": [{**ping, "lat": "-23.5"}]}, "headers": auth}, 400),
    ]
    ok = True
    print("POST /v1/pings refuses bad requests:")
    for label, kwargs, status in cases:
        answer = httpx.post(f"{url}/v1/pings", timeout=10, **kwargs)
        ok &= answer.status_code == status
        print(f"  {label:<28} -> {answer.status_code} {answer.json().get('message', '')}")
    return ok
