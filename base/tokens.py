"""Driver tokens: HS256 JSON Web Tokens signed with WHATSUP_TOKEN_SECRET, naming the driver and an expiry.

The header's ``kid`` names the signing secret (the first 8 hex digits of its SHA-256, never the secret).
Tokens are checked against the current secret and every one of WHATSUP_TOKEN_SECRETS_ACCEPTED, so a
rotation refuses no valid token: the new secret is accepted everywhere before anything signs with it, and
the old one after (docs/RUNBOOK.md, Rotating secrets). A token whose ``kid`` does not name the secret that
verified it is refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Sequence

from base.exceptions import WhatsUpError


class TokenError(WhatsUpError):
    """A token is missing, malformed, mis-signed or expired; ``reason`` says which."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (ValueError, UnicodeEncodeError) as exc:
        raise ValueError(str(exc)) from None


MAX_DRIVER_ID = 128


def valid_driver_id(driver_id: str) -> bool:
    """Tell whether a driver id can name a driver everywhere it goes: 1 to 128 characters of valid UTF-8
    (a lone surrogate cannot be encoded, by Avro or by anything else)."""
    if not 0 < len(driver_id) <= MAX_DRIVER_ID:
        return False
    try:
        driver_id.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def key_id(secret: str) -> str:
    """Return the key id a secret signs with: the first 8 hex digits of its SHA-256."""
    return hashlib.sha256(secret.encode()).hexdigest()[:8]


def issue_driver_token(secret: str, driver_id: str, ttl_s: int, now_s: float | None = None) -> str:
    """Return a token for ``driver_id`` valid for ``ttl_s`` seconds; a driver id ``valid_driver_id`` refuses
    raises TokenError."""
    if not valid_driver_id(driver_id):
        raise TokenError("bad_driver_id", f"a driver id is 1 to {MAX_DRIVER_ID} characters of valid UTF-8")
    now = int(time.time() if now_s is None else now_s)
    payload = {"sub": driver_id, "role": "driver", "iat": now, "exp": now + ttl_s}
    header = {"alg": "HS256", "typ": "JWT", "kid": key_id(secret)}
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def _signer(secrets: Sequence[str], signing_input: str, signature: bytes) -> str:
    """Return the secret whose HMAC is ``signature``; raise TokenError if none is."""
    for secret in secrets:
        expected = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
        if hmac.compare_digest(signature, expected):
            return secret
    raise TokenError("bad_signature", "token signature does not match")


def _claims(secrets: str | Sequence[str], token: str) -> tuple[str, int]:
    """Return (driver id, expiry) of a token whose signature holds under one of ``secrets``; raise
    TokenError otherwise."""
    if not token.isascii():  # header bytes that are not UTF-8 arrive as surrogates, which HMAC cannot take
        raise TokenError("malformed_token", "token is not base64url text")
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenError("malformed_token", "token is not three dot-separated parts")
    signing_input = f"{parts[0]}.{parts[1]}"
    try:
        signature = _unb64(parts[2])
    except ValueError:
        raise TokenError("malformed_token", "token signature is not base64url") from None
    # Nothing of a token is parsed before its signature holds.
    secret = _signer((secrets,) if isinstance(secrets, str) else secrets, signing_input, signature)
    try:
        header, payload = json.loads(_unb64(parts[0])), json.loads(_unb64(parts[1]))
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise TokenError("malformed_token", "token parts are not base64url JSON") from None
    if not isinstance(header, dict) or header.get("alg") != "HS256":
        raise TokenError("malformed_token", "token algorithm must be HS256")
    if "kid" in header and header["kid"] != key_id(secret):
        raise TokenError("malformed_token", "token key id does not name the key that signed it")
    if (
        not isinstance(payload, dict)
        or payload.get("role") != "driver"
        or not isinstance(payload.get("sub"), str)
        or not valid_driver_id(payload["sub"])
    ):
        raise TokenError("malformed_token", "token does not name a driver")
    exp = payload.get("exp")
    if not isinstance(exp, int):
        raise TokenError("expired_token", "token has expired")
    return str(payload["sub"]), exp


def verify_driver_token(secrets: str | Sequence[str], token: str, now_s: float | None = None) -> str:
    """Return the driver id a token valid under one of ``secrets`` carries; raise TokenError otherwise."""
    driver_id, exp = _claims(secrets, token)
    if exp <= (time.time() if now_s is None else now_s):
        raise TokenError("expired_token", "token has expired")
    return driver_id


class VerifiedTokens:
    """Check driver tokens, remembering those whose signature held (a phone sends the same one every upload).

    Only the exact token string that was verified is remembered, with its claims: a token that differs in
    any character is verified afresh. The expiry is checked at every use. At most ``size`` tokens are kept,
    the oldest forgotten first.
    """

    def __init__(self, secrets: str | Sequence[str], size: int = 200_000) -> None:
        self.secrets = (secrets,) if isinstance(secrets, str) else tuple(secrets)
        self.size = size
        self._claims: dict[str, tuple[str, int]] = {}

    def driver_of(self, token: str, now_s: float | None = None) -> str:
        """Return the driver id a valid token carries; raise TokenError otherwise."""
        claims = self._claims.get(token)
        if claims is None:
            claims = _claims(self.secrets, token)
            if len(self._claims) >= self.size:
                del self._claims[next(iter(self._claims))]
            self._claims[token] = claims
        driver_id, exp = claims
        if exp <= (time.time() if now_s is None else now_s):
            raise TokenError("expired_token", "token has expired")
        return driver_id
