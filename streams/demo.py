"""``whatsup demo``: what the pipeline does, shown on a running worker.

1. The ingest API refuses bad requests with precise answers.
2. A simulated fleet of phones, with real-world faults, posts its pings through the API.
3. Every ping's verdict is read back from Kafka and checked against the simulator's ground truth.
4. The same verdicts are read from ClickHouse, where the sink process wrote them.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from base.settings import Settings
from base.tokens import issue_driver_token
from connectors.simulator.model import SimConfig, simulate
from connectors.simulator.run import post_through_api, write_truth
from connectors.simulator.verify import collect_verdicts, compare
from connectors.whatsapp import sender_demo as whatsapp_demo
from connectors.whatsapp.fallback_demo import show as show_twilio_fallback
from connectors.whatsapp.inbound_demo import show as show_whatsapp
from sinks.demo import show as show_sink
from streams.deliveries.demo import show as show_deliveries
from streams.telemetry import demo as telemetry_demo


def _show_refusals(url: str, secret: str) -> bool:
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


def run_demo(settings: Settings, *, drivers: int, minutes: float, timeout_s: float) -> int:
    """Show the API's refusals, post a simulated fleet through it, and check every verdict; 0 if all match."""
    if settings.token_secret is None:
        print("WHATSUP_TOKEN_SECRET must be set (deploy/demo.sh sets a random one)")
        return 2
    url = f"http://127.0.0.1:{settings.web_port}"
    refusals_ok = _show_refusals(url, settings.token_secret)

    prefix = f"demo{uuid.uuid4().hex[:4]}"
    runs = simulate(
        SimConfig(drivers=drivers, minutes=minutes, end_ms=int(time.time() * 1000), driver_prefix=prefix)
    )
    truth = write_truth(runs, settings.data_dir / "demo" / prefix)
    expected: Counter[str] = Counter(truth["expected"])
    print(f"\n{drivers} simulated phones post {minutes:.0f} minutes of pings through the ingest API ...")
    report = asyncio.run(post_through_api(runs, url, settings.token_secret))
    print(
        f"  {report.pings} pings in {report.requests} requests ({report.seconds:.1f} s, "
        f"{report.retried} rate-limited and retried), {report.flagged_by_api} flagged at once by the API"
    )

    verdicts = collect_verdicts(settings, f"{prefix}-", sum(expected.values()), timeout_s=timeout_s)
    got = verdicts.overall()
    print("\nverdicts on gps.pings.clean / gps.pings.rejected, against the simulator's ground truth:")
    print(f"  {'verdict':<20} {'expected':>9} {'pipeline':>9}")
    for verdict in sorted(set(expected) | set(got), key=lambda v: (v != "clean", v)):
        print(f"  {verdict:<20} {expected[verdict]:>9} {got[verdict]:>9}")
    problems = compare(truth["per_driver"], verdicts)
    deliveries_ok = show_deliveries(settings)
    print(f"  ground truth: {Path(settings.data_dir / 'demo' / prefix / 'truth.jsonl')}")
    if problems:
        print(f"\n{len(problems)} driver/verdict counts differ, first: {problems[:3]}")
        return 1
    print(f"\nevery one of the {drivers} drivers got exactly its expected verdicts")
    checks = [
        refusals_ok,
        deliveries_ok,
        show_whatsapp(settings),
        whatsapp_demo.show(settings),
        telemetry_demo.show(settings),
        show_sink(settings, f"{prefix}-", got),
        # Last: it leaves the sender's Meta breaker open for WHATSUP_SENDER_BREAKER_RESET_S.
        show_twilio_fallback(settings),
    ]
    return 0 if all(checks) else 1
