"""A Prometheus histogram fed a batch of observations at a time, for per-record latencies in hot loops.

prometheus-client's ``Histogram.observe`` takes a lock and updates two values per call, several
microseconds per record, as much as the clean stage's own rules. Here a batch is bucketed in plain Python
under one lock acquisition; scrapes read the same exposition format (``_bucket``, ``_sum``, ``_count``).
"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Iterable, Iterator, Sequence

from prometheus_client.core import REGISTRY, CollectorRegistry, HistogramMetricFamily, Metric


class BatchHistogram:
    """A histogram with one label, updated with ``observe_many(label_value, values)``."""

    def __init__(
        self,
        name: str,
        documentation: str,
        label: str,
        buckets: Sequence[float],
        registry: CollectorRegistry | None = REGISTRY,
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.label = label
        self.bounds = sorted(float(b) for b in buckets if not math.isinf(b))
        self._lock = threading.Lock()
        self._counts: dict[str, list[int]] = {}
        self._sums: dict[str, float] = {}
        if registry is not None:
            registry.register(self)

    def observe_many(self, label_value: str, values: Iterable[float]) -> int:
        """Add every value of a batch under ``label_value``; return how many were added."""
        bounds = self.bounds
        counts = [0] * (len(bounds) + 1)  # the last slot is +Inf
        total = 0.0
        for value in values:
            counts[bisect.bisect_left(bounds, value)] += 1
            total += value
        added = sum(counts)
        with self._lock:
            current = self._counts.setdefault(label_value, [0] * len(counts))
            for i, count in enumerate(counts):
                current[i] += count
            self._sums[label_value] = self._sums.get(label_value, 0.0) + total
        return added

    def remove(self, label_value: str) -> None:
        """Forget one label value's series."""
        with self._lock:
            self._counts.pop(label_value, None)
            self._sums.pop(label_value, None)

    def describe(self) -> list[Metric]:
        return [HistogramMetricFamily(self.name, self.documentation, labels=[self.label])]

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=[self.label])
        with self._lock:
            snapshot = {key: (list(counts), self._sums[key]) for key, counts in self._counts.items()}
        for label_value, (counts, total) in sorted(snapshot.items()):
            cumulative, buckets = 0, []
            for bound, count in zip([*self.bounds, math.inf], counts, strict=True):
                cumulative += count
                buckets.append(("+Inf" if math.isinf(bound) else _le(bound), float(cumulative)))
            family.add_metric([label_value], buckets, total)
        yield family


def _le(bound: float) -> str:
    # The same spelling as prometheus-client's own histograms (1.0, 0.25, 3600.0).
    return repr(float(bound))
