"""``whatsup rotate``: what this deployment's secrets are now (by key id, never by value) and the steps that
rotate each with no valid request refused. Due every 30 days (docs/RUNBOOK.md, Rotating secrets)."""

from __future__ import annotations

import secrets

from base.settings import Settings
from base.tokens import key_id


def _ids(values: tuple[str | None, ...]) -> str:
    shown = [key_id(value) for value in values if value]
    return ", ".join(shown) if shown else "none"


def token_plan(settings: Settings, new_secret: str) -> list[str]:
    """Return the steps that rotate the driver-token secret to ``new_secret``."""
    current = settings.token_secret
    return [
        f"Driver tokens (WHATSUP_TOKEN_SECRET): signing key id {_ids((current,))}; "
        f"also accepted: {_ids(settings.token_secrets_accepted)}",
        f"  a new secret, made now (key id {key_id(new_secret)}): {new_secret}",
        "  1. Where tokens are checked (every ingest and worker): WHATSUP_TOKEN_SECRETS_ACCEPTED=<new>;",
        "     restart them one at a time. Nothing signs with the new secret yet, so nothing is refused.",
        "  2. Everywhere, the token issuer included: WHATSUP_TOKEN_SECRET=<new> and",
        "     WHATSUP_TOKEN_SECRETS_ACCEPTED=<the current secret>; restart one at a time. New tokens carry",
        f"     key id {key_id(new_secret)}; the phones' current tokens still verify.",
        "  3. Once the longest-lived token signed with the old secret has expired (whatsup driver-token",
        "     --ttl-hours, 24 by default): WHATSUP_TOKEN_SECRETS_ACCEPTED= (empty); restart one at a time.",
    ]


def provider_plans(settings: Settings) -> list[str]:
    """Return the steps that rotate Meta's app secret and Twilio's auth token."""
    meta = (settings.whatsapp_app_secret, settings.whatsapp_app_secret_previous)
    twilio = (settings.twilio_auth_token, settings.twilio_auth_token_previous)
    return [
        f"WhatsApp app secret (WHATSUP_WHATSAPP_APP_SECRET): key id {_ids(meta[:1])}; "
        f"previous accepted: {_ids(meta[1:])}",
        "  1. Meta's App Dashboard, Settings > Basic > App secret > Reset: Meta signs webhooks with the new",
        "     secret from then on.",
        "  2. At once, everywhere webhooks arrive (ingest, worker) and in the sandbox if you run one:",
        "     WHATSUP_WHATSAPP_APP_SECRET=<new>, WHATSUP_WHATSAPP_APP_SECRET_PREVIOUS=<old>;",
        "     restart one at a time. A webhook refused in between (401) is delivered again by Meta.",
        "  3. A day later: WHATSUP_WHATSAPP_APP_SECRET_PREVIOUS= (empty); restart one at a time.",
        f"Twilio auth token (WHATSUP_TWILIO_AUTH_TOKEN): key id {_ids(twilio[:1])}; "
        f"previous accepted: {_ids(twilio[1:])}",
        "  1. Twilio Console, API keys & tokens: create a secondary auth token.",
        "  2. Where webhooks arrive (ingest, worker): WHATSUP_TWILIO_AUTH_TOKEN_PREVIOUS=<secondary>;",
        "     restart one at a time (it is accepted before Twilio signs with it).",
        "  3. Promote the secondary token in the console; then everywhere, the sender included:",
        "     WHATSUP_TWILIO_AUTH_TOKEN=<promoted>, WHATSUP_TWILIO_AUTH_TOKEN_PREVIOUS=<old>; restart.",
        "  4. A day later: WHATSUP_TWILIO_AUTH_TOKEN_PREVIOUS= (empty); restart one at a time.",
    ]


def rotation_plan(settings: Settings, new_secret: str | None = None) -> str:
    """Return what ``whatsup rotate`` prints."""
    lines = token_plan(settings, new_secret or secrets.token_urlsafe(48))
    lines += provider_plans(settings)
    lines.append(
        "Rotate every 30 days; each step is safe to repeat. Key ids are SHA-256 prefixes, not secrets."
    )
    return "\n".join(lines)
