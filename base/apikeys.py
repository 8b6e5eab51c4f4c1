"""API keys with roles (``WHATSUP_API_KEYS=key:role|role,...``): who may post delivery events or read state.

A key is identified in logs and the audit trail by its fingerprint, never by itself.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from base.exceptions import WhatsUpError

POST_EVENTS = frozenset({"ingest", "partner", "internal"})
READ_DRIVERS = frozenset({"dispatcher", "internal"})
READ_DELIVERIES = frozenset({"dispatcher", "partner", "internal"})
ANONYMOUS = "anonymous"


class ApiKeyError(WhatsUpError):
    """A request's API key is missing, unknown, or lacks the role; ``status`` is 401, 403 or 503."""

    def __init__(self, status: int, reason: str, message: str, principal: str = ANONYMOUS) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.principal = principal


@dataclass(frozen=True)
class Principal:
    """Who a request comes from: a key fingerprint and the roles the key carries."""

    fingerprint: str
    roles: frozenset[str]

    def role(self, allowed: frozenset[str]) -> str:
        """Return the role this request acts in (the first allowed one, alphabetically)."""
        return min(self.roles & allowed)


def fingerprint(key: str) -> str:
    """Return a short stable fingerprint of an API key (SHA-256, 16 hex digits)."""
    return "key:" + hashlib.sha256(key.encode()).hexdigest()[:16]


def partner_keys(keys: Mapping[str, frozenset[str]]) -> frozenset[str]:
    """Return the fingerprints of the keys that post events only as a partner (scoped to their own)."""
    return frozenset(fingerprint(k) for k, roles in keys.items() if roles & POST_EVENTS == {"partner"})


def authenticate(
    keys: Mapping[str, frozenset[str]], presented: str | None, allowed: frozenset[str]
) -> Principal:
    """Return the principal of a presented key that holds one of ``allowed``; raise ApiKeyError otherwise."""
    if not keys:
        raise ApiKeyError(503, "api_keys_disabled", "WHATSUP_API_KEYS is not set on this worker")
    if not presented:
        raise ApiKeyError(401, "missing_api_key", "send X-API-Key: <key>")
    roles: frozenset[str] | None = None
    for key, key_roles in keys.items():  # compare with every key, in constant time each
        if hmac.compare_digest(key.encode(), presented.encode(errors="replace")):
            roles = key_roles
    if roles is None:
        raise ApiKeyError(401, "bad_api_key", "unknown API key")
    principal = Principal(fingerprint(presented), roles)
    if not roles & allowed:
        raise ApiKeyError(
            403,
            "forbidden_role",
            f"this key's roles ({', '.join(sorted(roles))}) do not allow this; needs one of "
            f"{', '.join(sorted(allowed))}",
            principal.fingerprint,
        )
    return principal
