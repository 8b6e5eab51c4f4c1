"""Faults on a schedule while a fleet run's load flows: the chaos soak's injector.

``plan_faults`` lays the faults out over the load (pure, tested); ``Chaos`` runs them in a thread, each
fault an action that breaks something and, after its outage, repairs it, and keeps a log of what it did and
when. The actions themselves are given by the caller (``loadtest/fleet_run.py`` builds them on the run's
processes, its broker, its Redis and its Meta sandbox).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class ChaosPlan:
    """Which faults, how often and how long; durations in seconds from the start of the measured window."""

    kill_worker_every_s: float = 30.0
    max_worker_kills: int = 0  # 0: no limit
    broker_restart_at_s: float | None = 75.0
    sink_down_at_s: float | None = 130.0
    sink_down_s: float = 30.0
    redis_down_at_s: float | None = 200.0
    redis_down_s: float = 30.0
    meta_errors_at_s: float | None = 270.0
    meta_errors_s: float = 60.0
    seed: int = 5


@dataclass(frozen=True)
class Fault:
    """One fault of the plan: when it starts, what it is, how long its outage lasts."""

    at_s: float
    kind: str
    outage_s: float = 0.0


def plan_faults(plan: ChaosPlan, duration_s: float) -> list[Fault]:
    """Return the faults of ``plan`` that start within ``duration_s``, in time order; the one-off faults
    keep clear of the worker kills' moments, so each fault's effect can be told from the others'."""
    faults = [
        Fault(at, kind, outage)
        for at, kind, outage in (
            (plan.broker_restart_at_s, "broker_restart", 0.0),
            (plan.sink_down_at_s, "sink_down", plan.sink_down_s),
            (plan.redis_down_at_s, "redis_down", plan.redis_down_s),
            (plan.meta_errors_at_s, "meta_errors", plan.meta_errors_s),
        )
        if at is not None and at < duration_s
    ]
    at, kills = plan.kill_worker_every_s, 0
    while plan.kill_worker_every_s > 0 and at < duration_s:
        if plan.max_worker_kills and kills == plan.max_worker_kills:
            break
        faults.append(Fault(at, "kill_worker"))
        at, kills = at + plan.kill_worker_every_s, kills + 1
    return sorted(faults, key=lambda fault: fault.at_s)


class Chaos(threading.Thread):
    """Run ``faults`` from ``start_at`` (epoch seconds), each through ``actions[kind](fault, rng)``, which
    breaks something, waits out the outage, repairs it and returns what it did."""

    def __init__(
        self,
        faults: list[Fault],
        actions: dict[str, Callable[[Fault, random.Random], str]],
        start_at: float,
        seed: int = 5,
    ) -> None:
        super().__init__(name="chaos", daemon=True)
        self.faults, self.actions, self.start_at, self.seed = faults, actions, start_at, seed
        self.log: list[tuple[float, str, str]] = []
        self.errors: list[str] = []
        self.halt = threading.Event()

    def run(self) -> None:
        rng = random.Random(self.seed)
        for fault in self.faults:
            if self.halt.wait(max(0.0, self.start_at + fault.at_s - time.time())):
                return
            try:
                done = self.actions[fault.kind](fault, rng)
            except Exception as exc:  # a repair that failed is a finding of the soak, not a crash of it
                done = f"failed: {type(exc).__name__}: {exc}"
                self.errors.append(f"{fault.kind} at {fault.at_s:.0f} s: {done}")
            self.log.append((time.time() - self.start_at, fault.kind, done))

    def stop(self) -> None:
        """Let the fault in progress finish its repair, and start no other."""
        self.halt.set()
        self.join()
