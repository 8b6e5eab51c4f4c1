"""Webhook signatures: Meta's HMAC-SHA256 of the raw body, Twilio's HMAC-SHA1 of URL and sorted params."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from connectors.whatsapp.signatures import (
    SignatureError,
    meta_signature,
    twilio_signature,
    verify_meta,
    verify_twilio,
)
from tests.whatsapp_payloads import body_of, meta_notification, text_message

SECRET = "app-secret-0123456789"


def test_meta_signature_is_hmac_sha256_hex_of_the_raw_body() -> None:
    body = b'{"object":"whatsapp_business_account"}'
    expected = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert meta_signature(SECRET, body) == f"sha256={expected}"
    verify_meta(SECRET, body, f"sha256={expected}")
    verify_meta(SECRET, body, f"sha256={expected.upper()}")  # hex case is not part of the secret


@pytest.mark.parametrize("ascii_only", [True, False])
def test_non_ascii_bodies_verify_over_their_exact_bytes(ascii_only: bool) -> None:
    body = body_of(
        meta_notification([text_message("Não consigo, trânsito 🚦 ¿dónde?")]), ascii_only=ascii_only
    )
    verify_meta(SECRET, body, meta_signature(SECRET, body))


def test_a_signature_over_the_escaped_body_does_not_verify_the_unescaped_one() -> None:
    doc = meta_notification([text_message("entregue ✅")])
    escaped, raw = body_of(doc, ascii_only=True), body_of(doc)
    assert escaped != raw
    with pytest.raises(SignatureError) as info:
        verify_meta(SECRET, raw, meta_signature(SECRET, escaped))
    assert info.value.reason == "bad_signature"


def test_a_valid_signature_over_a_modified_body_is_refused() -> None:
    body = body_of(meta_notification([text_message("cheguei")]))
    signature = meta_signature(SECRET, body)
    tampered = body.replace(b"cheguei", b"entregue")
    with pytest.raises(SignatureError) as info:
        verify_meta(SECRET, tampered, signature)
    assert info.value.reason == "bad_signature"
    with pytest.raises(SignatureError):
        verify_meta(SECRET, body + b" ", signature)


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "missing_signature"),
        ("", "missing_signature"),
        ("sha1=abcd", "malformed_signature"),
        ("sha256=", "malformed_signature"),
        ("abcdef", "malformed_signature"),
        ("sha256=" + "0" * 64, "bad_signature"),
    ],
)
def test_missing_or_malformed_meta_signatures_are_refused_with_a_reason(
    header: str | None, reason: str
) -> None:
    with pytest.raises(SignatureError) as info:
        verify_meta(SECRET, b"{}", header)
    assert info.value.reason == reason


def test_a_signature_made_with_another_secret_is_refused() -> None:
    with pytest.raises(SignatureError):
        verify_meta(SECRET, b"{}", meta_signature("another-secret", b"{}"))


URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
PARAMS = [("CallSid", "CA1234567890ABCDE"), ("Caller", "+14158675309"), ("Digits", "1234"),
          ("From", "+14158675309"), ("To", "+18005551212")]  # fmt: skip
SIGNED = "RSOYDt4T1cUTdK1PDd93/VVr8B8="


def test_twilio_signature_matches_twilios_documented_example() -> None:
    # The vector of Twilio's request-validation docs and SDK tests: token 12345, this URL and parameters.
    assert twilio_signature("12345", URL, PARAMS) == SIGNED
    verify_twilio("12345", URL, list(reversed(PARAMS)), SIGNED)


def test_repeated_twilio_params_are_signed_as_the_sdk_does() -> None:
    # The SDK's vector for a repeated parameter: distinct values of a name, sorted.
    params = [
        ("Sid", "CA123"),
        ("SidAccount", "AC123"),
        ("Digits", "5678"),
        ("Digits", "1234"),
        ("Digits", "1234"),
    ]
    assert twilio_signature("12345", URL, params) == "IK+Dwps556ElfBT0I3Rgjkr1wJU="


def test_twilio_signature_is_hmac_sha1_base64_of_url_and_sorted_params() -> None:
    params = [("Body", "olá, cheguei"), ("From", "whatsapp:+5511987654321"), ("B", "x")]
    data = (
        "https://h/webhooks/twilio" + "B" + "x" + "Body" + "olá, cheguei" + "From" + "whatsapp:+5511987654321"
    )
    expected = base64.b64encode(hmac.new(b"tok", data.encode(), hashlib.sha1).digest()).decode()
    assert twilio_signature("tok", "https://h/webhooks/twilio", params) == expected


@pytest.mark.parametrize(
    ("url", "params", "header", "reason"),
    [
        (URL, PARAMS, None, "missing_signature"),
        (URL, [*PARAMS[:-1], ("To", "+18005551213")], SIGNED, "bad_signature"),
        (URL.replace("foo=1", "foo=2"), PARAMS, SIGNED, "bad_signature"),
        (URL, PARAMS, SIGNED[:-2] + "A=", "bad_signature"),
    ],
)
def test_twilio_refuses_missing_signatures_and_any_change(
    url: str, params: list[tuple[str, str]], header: str | None, reason: str
) -> None:
    with pytest.raises(SignatureError) as info:
        verify_twilio("12345", url, params, header)
    assert info.value.reason == reason
