"""Demo step: what the worker's metrics say about the run, checked for consistency; a log line redacted."""

from __future__ import annotations

import time
from collections import defaultdict

import httpx
from prometheus_client.parser import text_string_to_metric_families

from base.logs import redact
from base.settings import Settings


def scrape(url: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Return the samples of a /metrics page by sample name."""
    samples: dict[str, list[tuple[dict[str, str], float]]] = defaultdict(list)
    for family in text_string_to_metric_families(httpx.get(url, timeout=10).text):
        for sample in family.samples:
            samples[sample.name].append((sample.labels, sample.value))
    return samples


def total(samples: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    """Sum the samples of ``name`` whose labels include ``labels``."""
    return sum(v for got, v in samples.get(name, []) if labels.items() <= got.items())


def quantile(
    samples: dict[str, list[tuple[dict[str, str], float]]], name: str, q: float, stage: str
) -> float:
    """Estimate a quantile of a histogram from its cumulative buckets (the upper bound of its bucket)."""
    buckets = sorted(
        (float(labels["le"]), value)
        for labels, value in samples.get(f"{name}_bucket", [])
        if labels["stage"] == stage
    )
    count = buckets[-1][1] if buckets else 0.0
    return next((bound for bound, value in buckets if value >= q * count), float("nan"))


def show(settings: Settings, timeout_s: float = 30.0) -> bool:
    """Print the worker's own account of the run; True if every ping is judged and counted once, lag 0."""
    url = f"http://127.0.0.1:{settings.web_port}/metrics"
    deadline = time.monotonic() + timeout_s
    samples = scrape(url)
    while total(samples, "whatsup_consumer_lag_messages") > 0 and time.monotonic() < deadline:
        time.sleep(settings.metrics_sample_s / 2)
        samples = scrape(url)
    edge = total(samples, "whatsup_pings_received_total", stage="edge")
    judged = total(samples, "whatsup_pings_received_total", stage="clean")
    accepted = total(samples, "whatsup_pings_accepted_total")
    rejected = total(samples, "whatsup_pings_rejected_total")
    lag = total(samples, "whatsup_consumer_lag_messages")
    print(f"\nthe worker's metrics ({url}, scraped by Prometheus in production):")
    print(f"  pings received by the API {edge:>8.0f}   judged by clean_pings {judged:>8.0f}")
    print(f"  accepted {accepted:>8.0f}   rejected {rejected:>8.0f}   consumer lag now {lag:.0f}")
    for stage in ("clean",):
        p50 = quantile(samples, "whatsup_processing_latency_seconds", 0.5, stage)
        p99 = quantile(samples, "whatsup_processing_latency_seconds", 0.99, stage)
        print(f"  processing latency of stage {stage}: p50 <= {p50:g} s, p99 <= {p99:g} s (promise: 2 s)")
    tables = {labels["table"]: value for labels, value in samples.get("whatsup_table_keys", [])}
    print(f"  table keys: {', '.join(f'{t}={v:.0f}' for t, v in sorted(tables.items()))}")
    line = "sending to whatsapp:+5511912345678 with Authorization: Bearer eyJhbGciOi.eyJzdWIi.c2ln"
    print(f"  a log line as written: {redact(line)}")
    # The clean stage also judges pings that did not come through the API (WhatsApp location shares).
    consistent = judged == accepted + rejected and judged >= edge and lag == 0
    print(f"  every ping the API took was judged, each counted once: {'yes' if consistent else 'NO'}")
    return consistent
