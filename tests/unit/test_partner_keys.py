"""Which API keys the tracking agent scopes to their own deliveries."""

from __future__ import annotations

from base.apikeys import fingerprint, partner_keys


def test_only_keys_that_post_as_nothing_but_a_partner_are_scoped() -> None:
    keys = {
        "p1": frozenset({"partner"}),
        "p2": frozenset({"partner", "dispatcher"}),  # reading all does not widen what it may post
        "ops": frozenset({"partner", "internal"}),
        "orders": frozenset({"ingest"}),
        "desk": frozenset({"dispatcher"}),
    }
    assert partner_keys(keys) == {fingerprint("p1"), fingerprint("p2")}
    assert partner_keys({}) == frozenset()
