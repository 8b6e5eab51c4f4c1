"""Phones: E.164 normalization, keyed hashing, masking for display, redaction in free text."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from connectors.whatsapp.phones import (
    PhoneError,
    hash_phone,
    language_for_phone,
    mask_phone,
    normalize_phone,
    redact_phones,
)


@pytest.mark.parametrize(
    "raw",
    [
        "+5511987654321",
        "5511987654321",
        "whatsapp:+5511987654321",
        "+55 (11) 98765-4321",
        " 55.11.98765.4321 ",
    ],
)
def test_every_spelling_of_a_number_normalizes_and_hashes_alike(raw: str) -> None:
    assert normalize_phone(raw) == "+5511987654321"
    assert hash_phone("k", raw) == hash_phone("k", "+5511987654321")


def test_hash_is_keyed_hmac_sha256_hex_first_32_chars() -> None:
    expected = hmac.new(b"key", b"+5511987654321", hashlib.sha256).hexdigest()[:32]
    assert hash_phone("key", "5511987654321") == expected
    assert hash_phone("other", "5511987654321") != expected
    assert "987654321" not in expected


@pytest.mark.parametrize("raw", ["", "1234", "+0011987654321", "abc", "+1234567890123456"])
def test_non_numbers_are_refused(raw: str) -> None:
    with pytest.raises(PhoneError):
        normalize_phone(raw)


def test_mask_shows_country_area_and_last_four_only() -> None:
    assert mask_phone("+5511987654321") == "+55 11 *****-4321"
    assert mask_phone("+14155550123") == "+1 41 ****-0123"
    assert mask_phone("nonsense") == "***"


def test_phone_like_runs_in_free_text_are_masked_and_short_numbers_kept() -> None:
    text = redact_phones("liga pro cliente +55 11 98765-4321, pedido 2, código 1234")
    assert "98765" not in text
    assert "+55 11 *****-4321" in text
    assert "pedido 2" in text and "1234" in text


@pytest.mark.parametrize(
    ("phone", "language"), [("+5511987654321", "pt-BR"), ("+5491123456789", "es"), ("+14155550123", "en")]
)
def test_language_is_guessed_from_the_country_code(phone: str, language: str) -> None:
    assert language_for_phone(phone) == language
