"""Demo step: the intake on HTTPS. An ingest process started here serves TLS with a certificate from a
throw-away CA (``loadtest.certs``); a phone that trusts the CA posts a ping (202), and plain HTTP and a
client that does not trust the CA get nowhere. Kafka SSL/SASL_SSL and Redis over TLS are proven by
tests/integration/test_tls.py; docs/RUNBOOK.md says how to run it all encrypted."""

from __future__ import annotations

import os
import time

import httpx

from base.settings import Settings
from base.tokens import issue_driver_token
from loadtest.certs import make_authority
from loadtest.processes import Process, free_port


def show(settings: Settings) -> bool:
    """Post a ping over HTTPS to an intake with a throw-away certificate; True if only that got through."""
    assert settings.token_secret is not None
    print("\nencryption in transit: an intake on HTTPS (WHATSUP_TLS_CERT_FILE, WHATSUP_TLS_KEY_FILE):")
    where = settings.data_dir / "demo"
    authority = make_authority(where / "tls")
    port = free_port()
    env = {
        **os.environ,
        "WHATSUP_INGEST_PORT": str(port),
        "WHATSUP_TLS_CERT_FILE": str(authority.cert),
        "WHATSUP_TLS_KEY_FILE": str(authority.key),
    }
    url = f"https://127.0.0.1:{port}"
    ingest = Process("ingest-https", "ingest", env, f"{url}/health", where, verify=authority.context())
    token = issue_driver_token(settings.token_secret, "demo-https", 600)
    body = {"pings": [{"ping_id": "https-1", "ts": int(time.time() * 1000), "lat": -23.55, "lon": -46.63}]}
    headers = {"Authorization": f"Bearer {token}"}
    outcomes: list[str] = []
    try:
        ingest.start()
        ingest.wait_healthy(60)
        for label, target, verify in (
            ("over HTTPS, trusting the CA", url, authority.context()),
            ("over HTTPS, not trusting it", url, True),
            ("over plain HTTP", f"http://127.0.0.1:{port}", True),
        ):
            try:
                answer = httpx.post(
                    f"{target}/v1/pings", json=body, headers=headers, verify=verify, timeout=10
                )
                outcomes.append(str(answer.status_code))
            except httpx.HTTPError as exc:
                outcomes.append(f"refused ({type(exc).__name__})")
            print(f"  a ping {label:<30} -> {outcomes[-1]}")
    except RuntimeError as exc:
        print(f"  failed: {exc}")
        return False
    finally:
        ingest.stop()
    trusted, *others = outcomes or ["none"]
    return trusted == "202" and len(others) == 2 and all(o.startswith("refused") for o in others)
