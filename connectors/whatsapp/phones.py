"""Phone numbers: normalized to E.164, pseudonymized with a keyed HMAC, masked for display.

Only ``whatsapp.outbound`` carries a clear number (the sender needs it); every other topic and table holds
``hash_phone`` of it, so a leaked topic or table reveals no number and cannot be reversed without the key.
"""

from __future__ import annotations

import hashlib
import hmac
import re

_NON_DIGITS = re.compile(r"\D")
HASH_CHARS = 32


class PhoneError(ValueError):
    """A string that is not a phone number."""


def normalize_phone(raw: str) -> str:
    """Return ``raw`` as E.164 (``+`` and 8 to 15 digits); accept ``whatsapp:`` prefixes and punctuation."""
    text = raw.strip().removeprefix("whatsapp:").strip()
    digits = _NON_DIGITS.sub("", text)
    if not 8 <= len(digits) <= 15 or digits.startswith("0"):
        raise PhoneError("not an E.164 phone number")
    return "+" + digits


def hash_phone(key: str, phone: str) -> str:
    """Return the keyed HMAC-SHA256 of the E.164 form of ``phone`` (hex, first 32 characters)."""
    digest = hmac.new(key.encode(), normalize_phone(phone).encode(), hashlib.sha256).hexdigest()
    return digest[:HASH_CHARS]


def mask_phone(phone: str) -> str:
    """Return ``phone`` for display with all but its last four digits hidden: ``+55 11 *****-1234``."""
    try:
        digits = normalize_phone(phone)[1:]
    except PhoneError:
        return "***"
    country = 2 if len(digits) > 11 else 1
    area = digits[country : country + 2]
    hidden = "*" * max(len(digits) - country - 2 - 4, 1)
    return f"+{digits[:country]} {area} {hidden}-{digits[-4:]}"


def language_for_phone(phone: str) -> str:
    """Guess a language from the country code, for numbers nobody registered: pt-BR, es or en."""
    digits = normalize_phone(phone)[1:]
    if digits.startswith(("55", "351", "244", "258")):
        return "pt-BR"
    spanish = ("34", "52", "54", "56", "57", "51", "58", "593", "591", "595", "598", "502", "503", "504")
    if digits.startswith(spanish):
        return "es"
    return "en"


# Eight or more digits, optionally led by + and broken by spaces, dots, dashes or brackets.
_PHONE_LIKE = re.compile(r"\+?\d(?:[\s.()-]*\d){7,}")


def redact_phones(text: str) -> str:
    """Return ``text`` with anything that looks like a phone number masked (free text on shared topics)."""
    return _PHONE_LIKE.sub(lambda m: mask_phone(m.group()), text)
