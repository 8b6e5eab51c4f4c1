"""Tracking links: a good token names its delivery until it expires; anything else names nothing."""

from __future__ import annotations

import pytest

from base.tracking import make_token, read_token, tracking_url

SECRET, OLD = "current-secret-" + "c" * 17, "previous-secret-" + "p" * 16
NOW = 1_790_000_000_000


def test_a_token_names_its_delivery_until_it_expires_under_every_accepted_secret() -> None:
    token = make_token(SECRET, "D-1001", NOW + 60_000)
    assert read_token([SECRET], token, NOW) == "D-1001"
    assert read_token([OLD, SECRET], token, NOW + 59_000) == "D-1001"  # mid-rotation
    assert read_token([SECRET], token, NOW + 60_000) is None  # expired
    assert make_token(SECRET, "D-1001", NOW + 60_000) == token  # the same cause renders the same link
    assert tracking_url("https://track.example/", SECRET, "D-1001", NOW + 60_000).endswith(f"/t/{token}")


def _flip(token: str, at: int) -> str:
    return token[:at] + ("A" if token[at] != "A" else "B") + token[at + 1 :]


@pytest.mark.parametrize(
    "forged",
    [
        "",
        "x",
        "a.b.c",
        "not base64!.nope",
        "." * 2,
        "ééé.ééé",
        "x" * 401,
    ],
)
def test_garbage_names_nothing(forged: str) -> None:
    assert read_token([SECRET], forged, NOW) is None


def test_a_tampered_or_foreign_token_names_nothing() -> None:
    token = make_token(SECRET, "D-1001", NOW + 60_000)
    assert read_token([OLD], token, NOW) is None
    assert read_token([SECRET], _flip(token, 3), NOW) is None  # another delivery or expiry
    assert read_token([SECRET], _flip(token, len(token) - 3), NOW) is None  # another signature
    other = make_token(SECRET, "D-1002", NOW + 60_000)
    assert read_token([SECRET], token.split(".")[0] + "." + other.split(".")[1], NOW) is None
    assert read_token(["", SECRET], token, NOW) == "D-1001"  # an unset secret verifies nothing
