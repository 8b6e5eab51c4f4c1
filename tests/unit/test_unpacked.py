"""Unpacked driver states are reused only while the store holds the very bytes they were persisted as."""

from __future__ import annotations

from streams.unpacked import UnpackedStates


def test_a_state_is_reused_while_its_bytes_are_stored_and_unpacked_again_after() -> None:
    store: dict[bytes, bytes] = {}
    unpacks: list[bytes | None] = []

    def unpack(raw: bytes | None) -> list[str]:
        unpacks.append(raw)
        return [raw.decode()] if raw else []

    states = UnpackedStates(store.get, unpack)
    assert states.load(b"d1") == [] and unpacks == [None]
    state, packed = ["v1"], b"v1"
    store[b"d1"] = packed
    states.keep(b"d1", packed, state)
    assert states.load(b"d1") is state and len(unpacks) == 1, "the persisted object, not a new unpack"
    store[b"d1"] = bytes(bytearray(b"v1"))  # equal bytes, another object: what recovery writes
    assert states.load(b"d1") == ["v1"] and states.load(b"d1") is not state and len(unpacks) == 3
    states.keep(b"d1", store[b"d1"], state)
    states.clear()
    assert states.load(b"d1") is not state, "after a failed batch nothing is reused"
