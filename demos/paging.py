"""Demo step: a crashed process pages the on-call through Prometheus, Alertmanager and PagerDuty, once, and
the page resolves when the process is back.

Debian's Prometheus scrapes the demo's processes and a second sender replica started here, with the
project's rules (WhatsUpWorkerDown's ``for`` shortened from a minute to 2 s); Debian's Alertmanager routes
with the project's config to a PagerDuty Events API sandbox in this process. The replica is killed with
SIGKILL, as a crash would, and started again.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from base.settings import Settings
from connectors.sandbox.run import pagerduty_in_thread
from loadtest.monitoring import Alertmanager, Prometheus, rules_with_for
from loadtest.processes import Process, free_port

RULE = "WhatsUpWorkerDown"
ROUTING_KEY = "demo" + "0" * 28  # a routing key has 32 characters


def _wait(condition: Callable[[], Any], timeout_s: float) -> float | None:
    """Poll ``condition`` until true; return the seconds it took, or None on timeout."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if condition():
            return time.monotonic() - start
        time.sleep(0.25)
    return None


def show(settings: Settings, workdir: Path | None = None) -> bool:
    """Crash a sender replica and show the page arrive once and resolve; True if it did."""
    workdir = workdir or settings.data_dir / "demo-paging"
    shutil.rmtree(workdir, ignore_errors=True)  # a Prometheus of an earlier run would remember its alerts
    print("\npaging: Prometheus -> Alertmanager -> PagerDuty (Events API v2 sandbox)")
    port = free_port()
    env = {**os.environ, "WHATSUP_SENDER_METRICS_PORT": str(port)}
    replica = Process("sender-2", "sender", env, f"http://127.0.0.1:{port}/health", workdir)
    targets = {
        "whatsup-worker": [f"127.0.0.1:{settings.web_port}"],
        "whatsup-sink": [f"127.0.0.1:{settings.sink_port}"],
        "whatsup-sender": [f"127.0.0.1:{settings.sender_metrics_port}", f"127.0.0.1:{port}"],
        "whatsup-console": [f"127.0.0.1:{settings.console_port}"],
    }
    with pagerduty_in_thread() as (box, url):
        manager = Alertmanager(workdir / "alertmanager", url, ROUTING_KEY)
        rules = rules_with_for(workdir / "rules", {RULE: "2s"})
        prometheus = Prometheus(
            workdir / "prometheus", targets, alertmanager=manager.address, rules_dir=rules
        )
        try:
            replica.start()
            replica.wait_healthy()
            manager.start()
            prometheus.start()
            scraped = sum(len(addresses) for addresses in targets.values())
            prometheus.wait_for(f'count(up{{job=~"whatsup-.*"}} == 1) == {scraped}', timeout_s=60)
            print(f"  Prometheus scrapes {scraped} processes, all up (a second sender among them); no page")
            replica.kill()
            print(f"  kill -9 the second sender (pid {replica.pid}), as a crash would")
            paged = _wait(lambda: box.incidents, 60)
            if paged is None:
                print("  no page within 60 s")
                return False
            payload = box.events[0]["payload"]
            print(f"  paged {paged:.1f} s later: [{payload['severity']}] {payload['summary']}")
            replica.start()
            replica.wait_healthy()
            [incident] = box.incidents.values()
            resolved = _wait(lambda: incident.status == "resolved", 60)
            actions = [event["event_action"] for event in box.events]
            print(f"  the replica is back; the incident {'resolved' if resolved else 'is still open'}")
            print(f"  PagerDuty received {actions} for one incident (dedup key {incident.dedup_key[:12]}...)")
            return resolved is not None and actions == ["trigger", "resolve"] and len(box.incidents) == 1
        except (AssertionError, RuntimeError) as exc:  # a server or the replica did not come up
            print(f"  failed: {exc}")
            return False
        finally:
            replica.stop()
            prometheus.stop()
            manager.stop()
