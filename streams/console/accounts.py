"""Dispatchers' sign-in: a password and a TOTP code (RFC 6238), then a session with an idle timeout.

Everything lives in Redis, shared by every console process:
- ``{prefix}console:dispatcher:{name}``: the password's scrypt hash and salt, the TOTP secret, and the last
  time step a code was accepted at (a code works once: a replayed one is refused);
- ``{prefix}console:session:{sha256(token)}``: the dispatcher's name, expiring after the idle timeout and
  renewed by each request (the token itself is only in the HttpOnly cookie);
- ``{prefix}console:failures:{name|address}``: failed sign-ins in the current quarter of an hour; past the
  limit, that name or address is refused until the quarter ends, right password or not.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

import pyotp

NAME = re.compile(r"[a-z][a-z0-9._-]{1,31}")
MIN_PASSWORD = 12
FAILURE_WINDOW_S = 900
ISSUER = "WhatsUp Logistics"
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}


class SignInError(Exception):
    """A sign-in was refused; ``reason`` is the code the API answers with (never which factor failed)."""

    def __init__(self, reason: str, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.reason, self.status = reason, status


def hash_password(password: str, salt: bytes) -> bytes:
    """Return the scrypt hash of a password."""
    return hashlib.scrypt(password.encode(), salt=salt, **_SCRYPT)


@dataclass(frozen=True)
class NewDispatcher:
    """What ``whatsup dispatcher add`` prints once: the TOTP secret, as an authenticator app's URL."""

    name: str
    otpauth_url: str


class Accounts:
    """Dispatchers, their sessions and failed attempts, on a Redis client given by the caller."""

    def __init__(self, redis: Any, prefix: str, idle_s: float, max_failures: int) -> None:
        self.redis, self.prefix = redis, prefix
        self.idle_s, self.max_failures = int(idle_s), max_failures

    def _key(self, kind: str, name: str) -> str:
        return f"{self.prefix}console:{kind}:{name}"

    async def add(self, name: str, password: str) -> NewDispatcher:
        """Create a dispatcher (refusing a taken name, a bad name or a short password)."""
        if not NAME.fullmatch(name):
            message = "a name is 2-32 of a-z, 0-9, '.', '_', '-', starting with a letter"
            raise SignInError("bad_name", message, 400)
        if len(password) < MIN_PASSWORD:
            raise SignInError("weak_password", f"a password has at least {MIN_PASSWORD} characters", 400)
        salt, secret = secrets.token_bytes(16), pyotp.random_base32()
        fields = {
            "salt": salt.hex(),
            "password": hash_password(password, salt).hex(),
            "totp": secret,
            "last_step": "-1",
            "created_at": str(int(time.time() * 1000)),
        }
        key = self._key("dispatcher", name)
        if not await self.redis.hsetnx(key, "salt", fields["salt"]):
            raise SignInError("name_taken", f"a dispatcher named {name!r} exists", 409)
        await self.redis.hset(key, mapping=fields)
        url = pyotp.TOTP(secret).provisioning_uri(name=name, issuer_name=ISSUER)
        return NewDispatcher(name, url)

    async def _count_failure(self, *keys: str) -> None:
        for key in keys:
            await self.redis.incr(key)
            await self.redis.expire(key, FAILURE_WINDOW_S, nx=True)

    async def sign_in(self, name: str, password: str, code: str, address: str, now_s: float) -> str:
        """Check both factors; return a new session token, or raise SignInError."""
        by_name, by_address = self._key("failures", name), self._key("failures", address)
        counts = [int(v or 0) for v in await self.redis.mget(by_name, by_address)]
        if max(counts) >= self.max_failures:
            raise SignInError("too_many_attempts", "too many failed sign-ins; try again later", 429)
        stored = await self.redis.hgetall(self._key("dispatcher", name)) if NAME.fullmatch(name) else {}
        record = {k.decode(): v.decode() for k, v in stored.items()}
        step = int(now_s // 30)
        # Both factors are always checked, so the answer's time does not tell which one failed.
        salt = bytes.fromhex(record.get("salt", "00" * 16))
        password_ok = hmac.compare_digest(hash_password(password, salt).hex(), record.get("password", ""))
        matched = _matching_step(record.get("totp"), code, step)
        fresh = matched is not None and matched > int(record.get("last_step", "-1"))
        if not (record and password_ok and fresh):
            await self._count_failure(by_name, by_address)
            raise SignInError("bad_credentials", "the name, the password or the code is wrong")
        await self.redis.hset(self._key("dispatcher", name), "last_step", str(matched))
        token = secrets.token_urlsafe(32)
        await self.redis.set(self._key("session", _digest(token)), name, ex=self.idle_s)
        return token

    async def session(self, token: str | None) -> str | None:
        """Return the dispatcher of a live session and renew its idle timeout; None if there is none."""
        if not token:
            return None
        key = self._key("session", _digest(token))
        name = await self.redis.get(key)
        if name is None:
            return None
        await self.redis.expire(key, self.idle_s)
        return str(name.decode())

    async def sign_out(self, token: str | None) -> None:
        """End a session."""
        if token:
            await self.redis.delete(self._key("session", _digest(token)))


def _digest(token: str) -> str:
    # A cookie's bytes that are not UTF-8 arrive as surrogates: hashed all the same (matching no session).
    return hashlib.sha256(token.encode(errors="surrogatepass")).hexdigest()


def _matching_step(secret: str | None, code: str, step: int) -> int | None:
    """Return the time step (this one or either neighbour, for clock drift) whose code is ``code``."""
    if not secret or not re.fullmatch(r"[0-9]{6}", code):  # \d would take other scripts' digits
        return None
    totp = pyotp.TOTP(secret)
    for candidate in (step - 1, step, step + 1):
        if hmac.compare_digest(totp.at(candidate * 30), code):
            return candidate
    return None
