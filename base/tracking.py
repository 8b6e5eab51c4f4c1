"""Tracking links: a signed, expiring token naming one delivery, for the customer's messages. Pure.

A token is ``<delivery id and expiry, base64url>.<HMAC-SHA256, base64url, 16 bytes>``, keyed with a key
derived from WHATSUP_TOKEN_SECRET for this purpose alone (a tracking token is never a driver token, nor the
other way round). Every secret of WHATSUP_TOKEN_SECRETS_ACCEPTED verifies too, so a rotation breaks no
link. The expiry comes from the message's cause (its event time plus the link's lifetime), so a replayed
cause renders the same link. Verification says only whether the token is good: a wrong, tampered or expired
token is refused without saying which.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from typing import Any

SIGNATURE_BYTES = 16
MAX_TOKEN = 400


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)


def _key(secret: str) -> bytes:
    return hmac.new(secret.encode(), b"whatsup tracking links", hashlib.sha256).digest()


def _sign(secret: str, payload: bytes) -> bytes:
    return hmac.new(_key(secret), payload, hashlib.sha256).digest()[:SIGNATURE_BYTES]


def make_token(secret: str, delivery_id: str, expires_ms: int) -> str:
    """Return the tracking token of ``delivery_id``, good until ``expires_ms`` (epoch milliseconds)."""
    payload = f"{expires_ms // 1000:x}|{delivery_id}".encode()
    return f"{_b64(payload)}.{_b64(_sign(secret, payload))}"


def read_token(secrets: Sequence[str], token: str, now_ms: int) -> str | None:
    """Return the delivery id a good, unexpired token names; None for anything else, whatever the flaw."""
    if not 0 < len(token) <= MAX_TOKEN or token.count(".") != 1:
        return None
    body, signature = token.split(".")
    try:
        payload, given = _unb64(body), _unb64(signature)
    except (ValueError, UnicodeEncodeError):
        return None
    if not any(hmac.compare_digest(_sign(secret, payload), given) for secret in secrets if secret):
        return None
    try:
        expiry, delivery_id = payload.decode().split("|", 1)
        expires_s = int(expiry, 16)
    except (UnicodeDecodeError, ValueError):
        return None
    return delivery_id if delivery_id and now_ms < expires_s * 1000 else None


def tracking_url(base_url: str, secret: str, delivery_id: str, expires_ms: int) -> str:
    """Return the customer's link: ``{base_url}/t/{token}``."""
    return f"{base_url.rstrip('/')}/t/{make_token(secret, delivery_id, expires_ms)}"


def base_url(settings: Any) -> str:
    """The public base URL of tracking links: WHATSUP_TRACKING_BASE_URL, else this host's ingest port."""
    if settings.tracking_base_url:
        return str(settings.tracking_base_url)
    scheme = "https" if settings.tls_cert_file else "http"
    return f"{scheme}://127.0.0.1:{settings.ingest_port}"
