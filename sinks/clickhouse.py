"""``ClickHouseSink``: buffer each topic partition's records, write them in batches, exactly once.

- ``add()`` stages a record (see ``sinks.staging``) into its partition's open batch; a batch is sealed at
  ``WHATSUP_SINK_BATCH_SIZE`` offsets or after ``WHATSUP_SINK_FLUSH_INTERVAL_S``. While earlier batches of
  the partition still wait for the writer (a backlog), it fills up to ``WHATSUP_SINK_BACKLOG_BATCH_SIZE``:
  the engine's fixed cost per insert is spread over more rows exactly when the sink is behind.
- The flush interval runs per topic: when a topic's oldest open batch reaches it, every open batch of the
  topic is sealed, so that one insert writes all of them. The engine's cost per insert is mostly fixed (at
  live rates it was most of the sink's CPU when each partition had its own insert).
- ``flush(topic)`` writes a group: the oldest sealed batch of each of the topic's partitions. First the
  offset range of every sealed batch not yet planned goes into ``sink_batch_plan`` (the plan, one insert),
  each range with its group's token; then one insert into the staging table with
  ``insert_deduplication_token = topic@log:p:first-last,p:first-last,...`` (the group's members). The
  caller commits the members' Kafka offsets, in one commit, only after ``flush()`` returned. ``log`` is the
  topic's id: offsets of a topic created again, or of a broker started afresh, start over, and must not be
  taken for ranges planned or written before.
- After a crash the records after the committed offsets come again: ``assign()`` reads the plan, so they are
  cut into the same batches, grouped as before under the same token, and ClickHouse drops the inserts it
  already has (the tables keep ``non_replicated_deduplication_window`` blocks' tokens; dependent views are
  deduplicated too). A member whose partition committed past its range means the group landed (offsets are
  committed only after it did); a member whose partition another sink now owns (several sinks against a
  server, after a rebalance) makes the group split: each member left here is then written alone, unless
  ``sink_offsets`` already holds its range.
- A group ClickHouse refuses for its content is split in halves (each with a token derived from its
  positions) until the refused records are found: they become dead letters, the rest lands. Any other
  failure raises ``TransientError`` and keeps the group for a retry.
- ``gps.pings.clean`` may carry byte-identical replays of a ping after a worker crash: the sink remembers the
  last ``replay_window`` ping ids of each partition (seeded from ClickHouse on assignment) and drops replays.
"""

from __future__ import annotations

import logging
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError, DataError

from base.exceptions import SchemaError, TransientError
from base.settings import Settings
from schemas.codecs import HEADER_SIZE
from sinks import metrics
from sinks.migrate import apply_migrations, apply_retention
from sinks.staging import ROUTES, ROUTES_BY_TOPIC, Route, container_file, kafka_position

log = logging.getLogger(__name__)

# Server error codes that mean "this data cannot go in", whatever the retry: bisect and dead-letter.
# Anything else (connection refused, timeouts, too many parts, memory) is worth retrying as it is.
REFUSAL_CODES = frozenset({6, 27, 33, 38, 41, 53, 69, 70, 72, 117, 321, 469, 1001})


def is_refusal(exc: BaseException) -> bool:
    """Tell whether ClickHouse refused an insert because of what was in it (not because it was unwell)."""
    if isinstance(exc, DataError):
        return True
    if isinstance(exc, DatabaseError):
        match = re.search(r"Code: (\d+)", str(exc))
        return match is not None and int(match.group(1)) in REFUSAL_CODES
    return False


@dataclass(frozen=True)
class DeadLetter:
    """A record the sink could not write, with why."""

    topic: str
    partition: int
    offset: int
    value: bytes
    table: str
    reason: str
    error: str


@dataclass(frozen=True)
class Flushed:
    """What one flush wrote: commit ``next_offset`` once the dead letters are safe."""

    topic: str
    partition: int
    next_offset: int
    rows: int
    dead_letters: list[DeadLetter]


@dataclass
class _Batch:
    first: int
    started: float
    last: int = -1
    planned: bool = False
    group: str = ""  # the token of the insert that writes it, set when it is planned
    bodies: list[bytes] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    values: list[bytes] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)


class _RecentIds:
    """At least the last ``capacity`` ids seen (at most twice as many), with O(1) membership."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        # Two generations of plain sets: cheaper per id than an ordered dict, and forgetting is one swap.
        self._new: set[bytes] = set()
        self._old: set[bytes] = set()

    def check_and_add(self, record_id: bytes) -> bool:
        """Return True if ``record_id`` was seen already; remember it either way."""
        if record_id in self._new or record_id in self._old:
            return True
        self._new.add(record_id)
        if len(self._new) >= self.capacity:
            self._old, self._new = self._new, set()
        return False


@dataclass
class _Partition:
    route: Route
    open: _Batch | None = None
    sealed: deque[_Batch] = field(default_factory=deque)
    plan: deque[tuple[int, int, str]] = field(default_factory=deque)  # first, last, group token
    recent: _RecentIds | None = None
    log_id: str = ""  # the Kafka topic's id, so that tokens and plans belong to one log of the topic
    # How much older than it is the partition's first batch counts: the same for every partition of a topic
    # (they are written together), different between topics, so that the topics' inserts spread over the
    # interval instead of queueing behind each other.
    phase: float = 0.0


def batch_token(topic: str, log_id: str, partition: int, batch: _Batch) -> str:
    """Return the token of a batch alone: which log, partition and offsets it holds."""
    return group_token(topic, log_id, [(partition, batch)])


def group_token(topic: str, log_id: str, members: list[tuple[int, _Batch]]) -> str:
    """Return the insert_deduplication_token of a group: the log, and each member's partition and range."""
    ranges = ",".join(f"{partition}:{batch.first}-{batch.last}" for partition, batch in sorted(members))
    return f"{topic}@{log_id}:{ranges}"


def group_partitions(token: str) -> set[int]:
    """Return the partitions of a group's members, read back from its token."""
    ranges = token.split("@", 1)[1].split(":", 1)[1]
    return {int(member.split(":", 1)[0]) for member in ranges.split(",")}


# The fractional parts of k times the golden ratio spread any number of partitions evenly over [0, 1).
_GOLDEN = (5**0.5 - 1) / 2


class ClickHouseSink:
    """Write pipeline topics into ClickHouse in batches, idempotently; the caller owns the Kafka consumer."""

    def __init__(
        self,
        client: Client,
        settings: Settings,
        *,
        replay_window: int = 50_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.settings = settings
        self.batch_size = settings.sink_batch_size
        self.backlog_batch_size = max(settings.sink_backlog_batch_size, settings.sink_batch_size)
        self.flush_interval_s = settings.sink_flush_interval_s
        self.replay_window = replay_window
        self._clock = clock
        self._partitions: dict[tuple[str, int], _Partition] = {}

    def start(self) -> list[str]:
        """Apply pending migrations and the retention settings; return the migrations applied."""
        applied = apply_migrations(self.client)
        apply_retention(self.client, self.settings)
        return applied

    def stop(self) -> None:
        """Forget every buffered record (not committed, so Kafka will deliver it again)."""
        self._partitions.clear()

    def assign(self, topic: str, partition: int, committed: int, log_id: str = "") -> None:
        """Take a partition of the topic's log ``log_id`` that resumes at offset ``committed``: load its
        plan and its recent ids."""
        part = self._new_partition(topic, partition, log_id)
        route = part.route
        rows = self.client.query(
            "SELECT DISTINCT first_offset, last_offset, group_token FROM sink_batch_plan"
            " WHERE topic = {t:String} AND partition = {p:UInt16} AND log_id = {l:String}"
            " AND first_offset >= {c:UInt64} ORDER BY first_offset",
            parameters={"t": topic, "p": partition, "l": log_id, "c": max(committed, 0)},
        ).result_rows
        for first, last, group in rows:
            # A range planned before groups were recorded was written alone, under its own token.
            member = _Batch(first=int(first), started=0.0, last=int(last))
            part.plan.append(
                (member.first, member.last, group or batch_token(topic, log_id, partition, member))
            )
        if part.plan:
            log.info(
                "%s[%d] resumes at %d with %d batch(es) already planned: replaying them with their tokens",
                topic,
                partition,
                committed,
                len(part.plan),
            )
        if part.recent is not None:
            for (record_id,) in self.client.query(
                f"SELECT ping_id FROM {route.table} WHERE _partition = {{p:UInt16}}"
                " AND _offset >= {lo:UInt64} AND _offset < {hi:UInt64} ORDER BY _offset",
                parameters={"p": partition, "lo": max(committed - self.replay_window, 0), "hi": committed},
            ).result_rows:
                part.recent.check_and_add(record_id.encode())
        self._partitions[(topic, partition)] = part

    def revoke(self, topic: str, partition: int) -> None:
        """Give a partition up, dropping what was buffered (its next owner reads it again)."""
        self._partitions.pop((topic, partition), None)

    def _new_partition(self, topic: str, partition: int, log_id: str = "") -> _Partition:
        route = ROUTES_BY_TOPIC[topic]
        recent = _RecentIds(self.replay_window) if route.id_after_ints is not None else None
        phase = self.flush_interval_s * (ROUTES.index(route) * _GOLDEN % 1.0)
        return _Partition(route, recent=recent, log_id=log_id, phase=phase)

    def _open(self, part: _Partition, offset: int) -> _Batch:
        batch = part.open = _Batch(first=offset, started=self._clock() - part.phase)
        part.phase = 0.0
        return batch

    def _partition(self, topic: str, partition: int) -> _Partition:
        part = self._partitions.get((topic, partition))
        if part is None:
            part = self._partitions[(topic, partition)] = self._new_partition(topic, partition)
        return part

    def add(self, topic: str, partition: int, offset: int, value: bytes | None) -> None:
        """Buffer one Kafka record of ``topic`` (its logical name, without the deployment's prefix)."""
        self.add_many(topic, partition, [offset], [value])

    def add_many(self, topic: str, partition: int, offsets: list[int], values: list[bytes | None]) -> None:
        """Buffer consecutive Kafka records of one partition of ``topic``, in offset order."""
        part = self._partition(topic, partition)
        route = part.route
        # Per record this loop does only what a current-schema value needs (a slice, the Kafka position,
        # the replay check): it runs for every row the sink writes. Everything else goes to _add_one.
        fast_header = route.fast_header
        pack_position = kafka_position
        recent = part.recent
        short_id = route.id_after_ints == 1
        batch_size, backlog_size = self.batch_size, self.backlog_batch_size
        batch = part.open
        for offset, value in zip(offsets, values, strict=True):
            if part.plan or value is None or value[:HEADER_SIZE] != fast_header:
                self._add_one(part, topic, partition, offset, value)
                batch = part.open
                continue
            if batch is None:
                batch = self._open(part, offset)
            batch.last = offset
            body = value[HEADER_SIZE:] + pack_position(partition, offset)
            if recent is not None and recent.check_and_add(
                body[2 : 2 + (body[1] >> 1)]
                if short_id and body[0] < 0x80 and body[1] < 0x80
                else route.record_id(body) or b""
            ):
                metrics.REPLAYS_DROPPED.labels(route.table).inc()
            else:
                batch.bodies.append(body)
                batch.offsets.append(offset)
                batch.values.append(value)
            size = offset - batch.first + 1
            if size >= batch_size and (size >= backlog_size or not part.sealed):
                part.sealed.append(batch)
                batch = part.open = None

    def _add_one(
        self, part: _Partition, topic: str, partition: int, offset: int, value: bytes | None
    ) -> None:
        """Buffer one record the fast path does not take: an older schema, a bad value, a planned range."""
        if part.plan and part.open is not None and offset >= part.plan[0][0] > part.open.first:
            # Records before a planned range that never reached the plan (all dead letters or replays):
            # close them off, so the planned range starts where it did before.
            self._seal(part)
        batch = part.open
        if batch is None:
            batch = self._open(part, offset)
        batch.last = offset
        route = part.route
        try:
            if value is None:
                raise SchemaError("no value (a tombstone)", reason="undecodable")
            body = route.stage(value, partition, offset)
        except SchemaError as exc:
            batch.dead.append(
                DeadLetter(topic, partition, offset, value or b"", route.table, exc.reason, str(exc))
            )
        else:
            record_id = route.record_id(body) if part.recent is not None else None
            if record_id is not None and part.recent is not None and part.recent.check_and_add(record_id):
                metrics.REPLAYS_DROPPED.labels(route.table).inc()
            else:
                batch.bodies.append(body)
                batch.offsets.append(offset)
                batch.values.append(value)
        if part.plan:
            if offset >= part.plan[0][1]:
                batch.group = part.plan.popleft()[2]
                batch.planned = True
                self._seal(part)
        elif self._full(part, offset - batch.first + 1):
            self._seal(part)

    def _full(self, part: _Partition, size: int) -> bool:
        """Tell whether an open batch of ``size`` offsets is sealed: at the batch size, or while earlier
        batches of its partition still wait for the writer, at the backlog batch size."""
        return size >= self.batch_size and (size >= self.backlog_batch_size or not part.sealed)

    @staticmethod
    def _seal(part: _Partition) -> None:
        if part.open is not None:
            part.sealed.append(part.open)
            part.open = None

    def seal_all(self) -> None:
        """Seal every open batch that no plan holds open, so the next ``due()`` writes it (at shutdown)."""
        for part in self._partitions.values():
            if not part.plan:
                self._seal(part)

    def due(self) -> list[str]:
        """Seal the open batches of every topic whose oldest one reached the flush interval; return the
        topics with batches to write."""
        now = self._clock()
        late = {
            topic
            for (topic, _), part in self._partitions.items()
            if part.open is not None and not part.plan and now - part.open.started >= self.flush_interval_s
        }
        topics = set()
        for (topic, _), part in self._partitions.items():
            if topic in late and not part.plan:
                self._seal(part)
            if part.sealed:
                topics.add(topic)
        return sorted(topics)

    def buffered(self) -> int:
        """Return how many records are buffered in all partitions."""
        return sum(
            len(b.offsets)
            for p in self._partitions.values()
            for b in (*p.sealed, *([p.open] if p.open else []))
        )

    def flush(self, topic: str) -> list[Flushed]:
        """Write the topic's oldest group of sealed batches; return one ``Flushed`` per batch done, empty
        when nothing can be written yet. TransientError (batches kept) if ClickHouse failed."""
        parts = sorted(
            (partition, part) for (name, partition), part in self._partitions.items() if name == topic
        )
        done = []
        for partition, part in parts:  # batches with nothing to insert (dead letters, replays) are done
            while part.sealed and not part.sealed[0].bodies:
                done.append(self._done(topic, partition, part, []))
        heads = [(partition, part) for partition, part in parts if part.sealed]
        if not heads:
            return done
        route = heads[0][1].route
        try:
            if any(not part.sealed[0].planned for _, part in heads):
                self._plan_sealed()
            chosen = self._writable_group(topic, heads)
            if chosen is None:  # members of the oldest group are still being read again
                return done
            group, split = chosen
            members = [(partition, part) for partition, part in heads if part.sealed[0].group == group]
            started = time.perf_counter()
            if split:
                dead = self._write_split(route, group, members)
            else:
                dead = self._insert(route, self._rows(members), group)
        except TransientError:
            metrics.INSERT_FAILURES.labels(route.table).inc()
            raise
        except Exception as exc:  # the plan insert, or anything unforeseen: retry, never drop
            metrics.INSERT_FAILURES.labels(route.table).inc()
            raise TransientError(f"ClickHouse write to {route.table} failed: {exc}") from exc
        metrics.FLUSH_SECONDS.labels(route.table).observe(time.perf_counter() - started)
        for partition, part in members:
            done.append(self._done(topic, partition, part, [d for d in dead if d.partition == partition]))
        return done

    @staticmethod
    def _done(topic: str, partition: int, part: _Partition, refused: list[DeadLetter]) -> Flushed:
        """Take a written batch off its partition and count it."""
        batch = part.sealed.popleft()
        table = part.route.table
        rows = len(batch.bodies) - len(refused)
        metrics.ROWS.labels(table).inc(rows)
        for letter in (*batch.dead, *refused):
            metrics.DEAD_LETTERS.labels(table, letter.reason).inc()
        return Flushed(topic, partition, batch.last + 1, rows, [*batch.dead, *refused])

    def _writable_group(self, topic: str, heads: list[tuple[int, _Partition]]) -> tuple[str, bool] | None:
        """Return the token of a group whose members here are all at the head of their partitions, and
        whether it is split (a member's partition is owned by another sink); None if there is none yet."""
        for _, head in heads:
            group = head.sealed[0].group
            split = False
            ready = True
            for partition in group_partitions(group):
                part = self._partitions.get((topic, partition))
                if part is None:
                    split = True
                elif (not part.sealed or part.sealed[0].group != group) and (
                    any(entry[2] == group for entry in part.plan)
                    or any(batch.group == group for batch in part.sealed)
                ):
                    ready = False  # still to be read again, or behind an older group
                    break
                # Otherwise the member is at its head, or its partition committed past it: the group landed.
            if ready:
                return group, split
        return None

    @staticmethod
    def _rows(members: list[tuple[int, _Partition]]) -> _Rows:
        rows = _Rows()
        for partition, part in members:
            batch = part.sealed[0]
            rows.bodies += batch.bodies
            rows.positions += [(partition, offset) for offset in batch.offsets]
            rows.values += batch.values
        return rows

    def _write_split(
        self, route: Route, group: str, members: list[tuple[int, _Partition]]
    ) -> list[DeadLetter]:
        """Write each member of a split group alone, unless ``sink_offsets`` shows its range landed."""
        dead = []
        for partition, part in members:
            batch = part.sealed[0]
            landed = self.client.query(
                "SELECT count() FROM sink_offsets WHERE topic = {t:String} AND partition = {p:UInt16}"
                " AND offset BETWEEN {lo:UInt64} AND {hi:UInt64}",
                parameters={"t": route.topic, "p": partition, "lo": batch.first, "hi": batch.last},
            ).result_rows[0][0]
            if not landed:
                dead += self._insert(route, self._rows([(partition, part)]), f"{group}/{partition}")
        return dead

    def _plan_sealed(self) -> None:
        """Group every sealed batch not yet in the plan and write their ranges, all in one insert.

        The n-th unplanned batch of each partition of a topic joins the topic's n-th new group."""
        # One insert for the batches of all partitions: the plan is a small table, and an insert into
        # it costs the engine as much as a few thousand rows of pings.
        groups: dict[tuple[str, int], list[tuple[int, _Batch]]] = {}
        for (topic, partition), part in list(self._partitions.items()):
            unplanned = [batch for batch in list(part.sealed) if not batch.planned and batch.bodies]
            for n, batch in enumerate(unplanned):
                groups.setdefault((topic, n), []).append((partition, batch))
        if not groups:
            return
        rows, tokens = [], []
        for (topic, _), members in groups.items():
            log_id = self._partitions[(topic, members[0][0])].log_id
            token = group_token(topic, log_id, members)
            tokens.append(token)
            for partition, batch in members:
                batch.group = token
                rows.append([topic, partition, log_id, batch.first, batch.last, token])
        self.client.insert(
            "sink_batch_plan",
            rows,
            column_names=["topic", "partition", "log_id", "first_offset", "last_offset", "group_token"],
            settings={"insert_deduplication_token": ";".join(tokens)},
        )
        for members in groups.values():
            for _, batch in members:
                batch.planned = True  # a retry of the batch must not move its boundaries either

    def _insert(self, route: Route, rows: _Rows, token: str) -> list[DeadLetter]:
        settings: dict[str, Any] = {
            "insert_deduplicate": 1,
            "insert_deduplication_token": token,
            "deduplicate_blocks_in_dependent_materialized_views": 1,
            # Folding replays inside one block costs a merge per insert; the sink already dropped them.
            "optimize_on_insert": 0,
        }
        try:
            self.client.raw_insert(
                route.staging,
                None,
                container_file(route.file_schema, rows.bodies),
                fmt="Avro",
                settings=settings,
            )
        except Exception as exc:
            if not is_refusal(exc):
                raise TransientError(f"insert into {route.staging} failed: {exc}") from exc
            if len(rows.bodies) == 1:
                error = str(exc).split("\n")[0][:500]
                (partition, offset), value = rows.positions[0], rows.values[0]
                log.warning("ClickHouse refused %s[%d] offset %d: %s", route.topic, partition, offset, error)
                return [DeadLetter(route.topic, partition, offset, value, route.table, "refused", error)]
            left, right = rows.halves()
            return self._insert(route, left, f"{token}/{left.span()}") + self._insert(
                route, right, f"{token}/{right.span()}"
            )
        metrics.INSERT_ROWS.labels(route.table).observe(len(rows.bodies))
        return []


@dataclass
class _Rows:
    """The staged bodies of an insert, with each one's Kafka position and value (for dead letters)."""

    bodies: list[bytes] = field(default_factory=list)
    positions: list[tuple[int, int]] = field(default_factory=list)
    values: list[bytes] = field(default_factory=list)

    def halves(self) -> tuple[_Rows, _Rows]:
        mid = len(self.bodies) // 2
        return (
            _Rows(self.bodies[:mid], self.positions[:mid], self.values[:mid]),
            _Rows(self.bodies[mid:], self.positions[mid:], self.values[mid:]),
        )

    def span(self) -> str:
        (p0, o0), (p1, o1) = self.positions[0], self.positions[-1]
        return f"{p0}:{o0}-{p1}:{o1}"
