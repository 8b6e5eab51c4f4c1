"""The unpacked twin of each stored driver state, reused while the store holds the very bytes it came from.

At fleet size nearly every record of a batch belongs to another driver, so an agent that unpacked each
driver's stored state for every record paid it per record. An agent keeps here the object it persisted next
to the bytes it persisted; recovery or a rebalance replaces those bytes in the store, and an object is
reused only while they are unchanged (compared by identity). An agent whose batch fails clears it: objects
changed in place but never persisted must not be reused.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

State = TypeVar("State")


class UnpackedStates(Generic[State]):
    """States by key, each with the stored bytes it matches."""

    def __init__(
        self, stored: Callable[[bytes], bytes | None], unpack: Callable[[bytes | None], State]
    ) -> None:
        self._stored, self._unpack = stored, unpack
        self._states: dict[bytes, tuple[bytes | None, State]] = {}

    def load(self, key: bytes) -> State:
        """Return a key's state, unpacking the stored bytes only when they changed since ``keep``."""
        packed = self._stored(key)
        cached = self._states.get(key)
        if cached is not None and cached[0] is packed:
            return cached[1]
        return self._unpack(packed)

    def keep(self, key: bytes, packed: bytes, state: State) -> None:
        """Remember the state just persisted as ``packed``."""
        self._states[key] = (packed, state)

    def clear(self) -> None:
        """Forget every state (a batch failed after changing some in place)."""
        self._states.clear()
