"""Secret rotation: driver tokens name their key and are checked against every accepted secret; webhooks
accept the provider's previous secret during its rotation; the settings and logs treat the extra secrets as
secrets."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest

from base.logs import redact, secret_values
from base.settings import Settings
from base.tokens import TokenError, VerifiedTokens, issue_driver_token, key_id, verify_driver_token
from connectors.whatsapp.signatures import (
    SignatureError,
    meta_signature,
    twilio_signature,
    verify_meta,
    verify_twilio,
)
from streams.rotate import rotation_plan

OLD, NEW, OTHER = "o" * 32, "n" * 32, "x" * 32


def header_of(token: str) -> dict[str, str]:
    part = token.split(".")[0]
    decoded: dict[str, str] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return decoded


def test_a_token_names_the_key_that_signed_it_and_not_the_key() -> None:
    token = issue_driver_token(NEW, "d1", 60)
    assert header_of(token)["kid"] == key_id(NEW) != key_id(OLD)
    assert NEW not in token and len(key_id(NEW)) == 8


def test_during_a_rotation_tokens_of_both_secrets_verify_and_no_other() -> None:
    accepted = (NEW, OLD)
    assert verify_driver_token(accepted, issue_driver_token(OLD, "d-old", 60)) == "d-old"
    assert verify_driver_token(accepted, issue_driver_token(NEW, "d-new", 60)) == "d-new"
    with pytest.raises(TokenError) as refused:
        verify_driver_token(accepted, issue_driver_token(OTHER, "d-x", 60))
    assert refused.value.reason == "bad_signature"
    tokens = VerifiedTokens(accepted)
    assert tokens.driver_of(issue_driver_token(OLD, "d-old", 60)) == "d-old"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signed(secret: str, header: dict[str, str], payload_part: str) -> str:
    """A token with ``header`` and an existing token's payload, signed with ``secret``."""
    signing_input = f"{b64(json.dumps(header).encode())}.{payload_part}"
    return (
        f"{signing_input}.{b64(hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest())}"
    )


def test_a_token_whose_kid_names_another_key_is_refused() -> None:
    token = issue_driver_token(NEW, "d1", 60)
    relabelled = signed(NEW, {**header_of(token), "kid": key_id(OLD)}, token.split(".")[1])
    with pytest.raises(TokenError) as refused:
        verify_driver_token((NEW, OLD), relabelled)
    assert refused.value.reason == "malformed_token"


def test_a_token_issued_before_key_ids_still_verifies() -> None:
    # Tokens issued before key ids have none: the signature alone decides.
    payload = issue_driver_token(OLD, "d1", 60).split(".")[1]
    assert verify_driver_token((NEW, OLD), signed(OLD, {"alg": "HS256", "typ": "JWT"}, payload)) == "d1"


def test_webhooks_accept_the_previous_secret_only_when_it_is_given() -> None:
    body = b'{"entry": []}'
    verify_meta(("current-secret", "previous-secret"), body, meta_signature("previous-secret", body))
    with pytest.raises(SignatureError):
        verify_meta("current-secret", body, meta_signature("previous-secret", body))
    params = [("Body", "oi"), ("From", "whatsapp:+5511999990000")]
    url = "https://intake.example/webhooks/twilio"
    verify_twilio(("tok-new", "tok-old"), url, params, twilio_signature("tok-old", url, params))
    with pytest.raises(SignatureError):
        verify_twilio(("tok-new",), url, params, twilio_signature("tok-old", url, params))


def test_accepted_token_secrets_are_long_and_masked_like_the_rest() -> None:
    settings = Settings.from_env(
        {
            "WHATSUP_TOKEN_SECRET": NEW,
            "WHATSUP_TOKEN_SECRETS_ACCEPTED": f"{OLD}, ",
            "WHATSUP_TWILIO_AUTH_TOKEN_PREVIOUS": "tp",
        }
    )
    assert settings.token_secrets_accepted == (OLD,)
    assert settings.redacted()["token_secrets_accepted"] == "<set>"
    assert redact(f"signed with {OLD}", secret_values(settings)) == "signed with <redacted>"
    with pytest.raises(Exception, match="at least 32 characters"):
        Settings.from_env({"WHATSUP_TOKEN_SECRETS_ACCEPTED": "short"})


def test_whatsup_rotate_names_keys_by_id_and_never_prints_a_secret_in_force() -> None:
    settings = Settings.from_env(
        {
            "WHATSUP_TOKEN_SECRET": NEW,
            "WHATSUP_TOKEN_SECRETS_ACCEPTED": OLD,
            "WHATSUP_WHATSAPP_APP_SECRET": "meta-app-secret",
            "WHATSUP_TWILIO_AUTH_TOKEN": "twilio-token",
        }
    )
    plan = rotation_plan(settings, new_secret=OTHER)
    for secret in (NEW, OLD, "meta-app-secret", "twilio-token"):
        assert secret not in plan
    assert f"signing key id {key_id(NEW)}; also accepted: {key_id(OLD)}" in plan
    assert OTHER in plan and f"key id {key_id(OTHER)}" in plan  # the proposed secret is the one shown
    assert "Rotate every 30 days" in plan
