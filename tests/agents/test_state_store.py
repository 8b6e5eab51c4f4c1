"""The driver-state store: changelog recovery never puts back a state older than the one it holds."""

from __future__ import annotations

from types import SimpleNamespace

from streams.pings.agents import driver_ping_state
from streams.pings.state import DriverPingState, applied_offset
from streams.pings.store import NewestStateStore


def _record(key: bytes, offset: int) -> SimpleNamespace:
    value = DriverPingState(last_offset=offset).pack()
    return SimpleNamespace(key=key, value=value, message=SimpleNamespace(value=value, partition=0))


def test_recovery_keeps_the_newer_state_the_agent_stored() -> None:
    store = driver_ping_state.data
    assert isinstance(store, NewestStateStore)
    store.data.clear()
    store.data[b"d1"] = DriverPingState(last_offset=50).pack()  # the agent got there first
    batch = [_record(b"d1", 10), _record(b"d1", 40), _record(b"d2", 7), _record(b"d2", 9)]
    store.apply_changelog_batch(batch, to_key=lambda k: k, to_value=lambda v: v)
    assert applied_offset(store.data[b"d1"]) == 50
    assert applied_offset(store.data[b"d2"]) == 9  # in order, newer over older, as Faust applies them
    store.apply_changelog_batch([_record(b"d1", 60)], to_key=lambda k: k, to_value=lambda v: v)
    assert applied_offset(store.data[b"d1"]) == 60
    store.data.clear()
