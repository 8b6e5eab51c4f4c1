"""The demo's story, on a running stack: each step prints what it shows and says whether it held.

1. The ingest API refuses bad requests with precise answers.
2. A simulated fleet of phones, with real-world faults, posts its pings through the API.
3. Every ping's verdict is read back from Kafka and checked against the simulator's ground truth.
4. Deliveries, WhatsApp in and out, one delivery run from the chat by its driver and followed by its
   customer, telemetry, the same verdicts read from ClickHouse, where the sink
   process wrote them, the dispatcher console with the fleet on its map, the Twilio fallback, one driver
   erased under the LGPD, the token secret mid-rotation, the intake on HTTPS; last, a crashed process
   paging the on-call through Prometheus, Alertmanager and PagerDuty.
"""

from __future__ import annotations

from base.settings import Settings
from demos import (
    chat,
    console,
    deliveries,
    encryption,
    erasure,
    paging,
    rotation,
    sender,
    sink,
    telemetry,
    twilio_fallback,
    whatsapp_inbound,
)
from demos.ingest import show_refusals
from demos.pings import show_fleet


def run_demo(settings: Settings, *, drivers: int, minutes: float, timeout_s: float) -> int:
    """Show the API's refusals, post a simulated fleet through it, and check every verdict; 0 if all match."""
    if settings.token_secret is None:
        print("WHATSUP_TOKEN_SECRET must be set (deploy/demo.sh sets a random one)")
        return 2
    url = f"http://127.0.0.1:{settings.web_port}"
    refusals_ok = show_refusals(url, settings.token_secret)
    fleet = show_fleet(
        settings, url, settings.token_secret, drivers=drivers, minutes=minutes, timeout_s=timeout_s
    )
    deliveries_ok = deliveries.show(settings)
    print(f"  ground truth: {fleet.truth}")
    if fleet.problems:
        print(f"\n{len(fleet.problems)} driver/verdict counts differ, first: {fleet.problems[:3]}")
        return 1
    print(f"\nevery one of the {drivers} drivers got exactly its expected verdicts")
    checks = [
        refusals_ok,
        deliveries_ok,
        whatsapp_inbound.show(settings),
        chat.show(settings),
        sender.show(settings),
        telemetry.show(settings),
        sink.show(settings, f"{fleet.prefix}-", fleet.verdicts),
        console.show(settings),
        # It leaves the sender's Meta breaker open for WHATSUP_SENDER_BREAKER_RESET_S.
        twilio_fallback.show(settings),
        erasure.show(settings, f"{fleet.prefix}-"),
        rotation.show(settings),
        encryption.show(settings),
        paging.show(settings),
    ]
    return 0 if all(checks) else 1
