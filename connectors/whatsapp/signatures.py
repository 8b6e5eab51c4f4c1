"""Webhook signatures: Meta's X-Hub-Signature-256 and Twilio's X-Twilio-Signature, compared in constant time.

Meta signs the raw request body, exactly as sent (non-ASCII text arrives as ``\\uXXXX`` escapes in that body),
with HMAC-SHA256 keyed by the app secret: ``sha256=<lowercase hex>``. Twilio signs the full request URL
followed by every POST parameter, sorted by name, each as name then value, with HMAC-SHA1 keyed by the
auth token: base64.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Sequence


class SignatureError(Exception):
    """A webhook whose signature is missing or wrong; ``reason`` is the short code answered and counted."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def meta_signature(app_secret: str, body: bytes) -> str:
    """Return the X-Hub-Signature-256 header value Meta sends with ``body``."""
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def _keys(secrets: str | Sequence[str]) -> Sequence[str]:
    return (secrets,) if isinstance(secrets, str) else secrets


def verify_meta(app_secrets: str | Sequence[str], body: bytes, header: str | None) -> None:
    """Raise SignatureError unless ``header`` is Meta's signature of exactly ``body`` under one of
    ``app_secrets`` (the current app secret, and the previous one during a rotation)."""
    if not header:
        raise SignatureError("missing_signature", "X-Hub-Signature-256 header is missing")
    scheme, sep, digest = header.strip().partition("=")
    if scheme != "sha256" or not sep or not digest:
        raise SignatureError("malformed_signature", "X-Hub-Signature-256 must read sha256=<hex>")
    # Header bytes that are not UTF-8 reach us as surrogates: replaced (so never matching), not an exception.
    given = f"sha256={digest.lower()}".encode(errors="replace")
    if not any(hmac.compare_digest(meta_signature(s, body).encode(), given) for s in _keys(app_secrets)):
        raise SignatureError("bad_signature", "X-Hub-Signature-256 does not match the body")


def twilio_signature(auth_token: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    """Return the X-Twilio-Signature Twilio sends for a form POST of ``params`` to ``url``."""
    # As Twilio's own validator: distinct (name, value) pairs, sorted by name then value.
    data = url + "".join(name + value for name, value in sorted(set(params)))
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def verify_twilio(
    auth_tokens: str | Sequence[str], url: str, params: Iterable[tuple[str, str]], header: str | None
) -> None:
    """Raise SignatureError unless ``header`` is Twilio's signature of ``url`` and ``params`` under one of
    ``auth_tokens`` (the current auth token, and the previous one during a rotation)."""
    if not header:
        raise SignatureError("missing_signature", "X-Twilio-Signature header is missing")
    pairs, given = list(params), header.strip().encode(errors="replace")
    if not any(
        hmac.compare_digest(twilio_signature(t, url, pairs).encode(), given) for t in _keys(auth_tokens)
    ):
        raise SignatureError("bad_signature", "X-Twilio-Signature does not match the URL and parameters")
