"""Every Avro decoder fed drawn payloads: each returns a record or raises SchemaError, and quickly."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from base.exceptions import SchemaError
from loadtest.fuzzing.avro_inputs import payloads
from loadtest.fuzzing.drive import SAMPLES, run_examples
from schemas.codecs import codec

SLOW_S = 1.0  # of the thread's CPU time: a busy machine's pauses are not the decoder's


@dataclass
class DecoderTally:
    """What one decoder made of its inputs."""

    name: str
    sent: int = 0
    decoded: int = 0
    refused: int = 0  # SchemaError, with its reason
    escaped: int = 0  # any other exception: a crash for the agent that called it
    slow: int = 0  # took over SLOW_S seconds of CPU: a stuck agent at fleet rates
    reasons: set[str] = field(default_factory=set)
    samples: list[str] = field(default_factory=list)

    @property
    def failures(self) -> int:
        """Inputs that broke the contract: an exception other than SchemaError, or a slow answer."""
        return self.escaped + self.slow


def fuzz_decoder(name: str, count: int) -> DecoderTally:
    """Decode ``count`` payloads drawn for record ``name`` with its shared codec."""
    tally = DecoderTally(name)
    decode = codec(name).decode

    def act(value: bytes | None) -> None:
        tally.sent += 1
        started = time.thread_time()
        try:
            decode(value)  # type: ignore[arg-type]  # a record without a value arrives as None
            tally.decoded += 1
        except SchemaError as exc:
            tally.refused += 1
            tally.reasons.add(exc.reason)
        except Exception as exc:
            tally.escaped += 1
            if len(tally.samples) < SAMPLES:
                tally.samples.append(f"{type(exc).__name__}: {exc!s:.100} <- {value!r:.120}")
        if time.thread_time() - started > SLOW_S:
            tally.slow += 1

    run_examples(payloads(name), count, act)
    return tally
