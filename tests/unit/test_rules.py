"""The pure ping rules: every ping snaps to H3 or is rejected with the right reason, given driver state."""

from __future__ import annotations

import math
from typing import Any

import h3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.pings import rules
from streams.pings.rules import Reason, RuleConfig
from streams.pings.state import MAX_PACKED_BYTES, DriverPingState, Fix, Seen

CONFIG = RuleConfig()
T0 = 1_790_000_000_000  # epoch ms
SP = (-23.5505, -46.6333)
lats = st.floats(min_value=-90, max_value=90, allow_nan=False)
lons = st.floats(min_value=-180, max_value=180, allow_nan=False)


def ping(
    seq: int | None,
    ts: int,
    lat: float = SP[0],
    lon: float = SP[1],
    *,
    received: int | None = None,
    accuracy: float | None = 5.0,
    ping_id: str | None = None,
) -> dict[str, Any]:
    return {
        "ping_id": ping_id or f"d1:{seq}",
        "driver_id": "d1",
        "device_ts": ts,
        "lat": lat,
        "lon": lon,
        "accuracy_m": accuracy,
        "speed_mps": None,
        "heading": None,
        "battery": None,
        "seq": seq,
        "source": "app",
        "received_ts": ts + 500 if received is None else received,
    }


def north(metres: float) -> float:
    return SP[0] + metres / 111_195


def judge(state: DriverPingState, p: dict[str, Any]) -> dict[str, Any] | rules.Rejection:
    return rules.evaluate(p, state, CONFIG, processed_ts=p["received_ts"])


def reason(result: dict[str, Any] | rules.Rejection) -> str:
    return "clean" if isinstance(result, dict) else str(result.reason)


# --- stateless rules -------------------------------------------------------------------------------


@given(lats, lons)
def test_valid_coordinates_snap_to_the_cells_h3_gives(lat: float, lon: float) -> None:
    result = judge(DriverPingState(), ping(1, T0, lat, lon))
    if abs(lat) < rules.NULL_ISLAND_DEG and abs(lon) < rules.NULL_ISLAND_DEG:
        assert reason(result) == "null_island"
        return
    assert isinstance(result, dict)
    assert result["h3_r9"] == int(h3.latlng_to_cell(lat, lon, 9), 16)
    assert result["h3_r7"] == int(h3.cell_to_parent(h3.latlng_to_cell(lat, lon, 9), 7), 16)
    assert result["late"] is False and result["step_m"] == 0.0 and result["ping_id"] == "d1:1"


@given(
    st.one_of(
        st.tuples(st.sampled_from([math.nan, math.inf, -math.inf]), lons),
        st.tuples(lats, st.sampled_from([math.nan, math.inf, -math.inf])),
        st.tuples(st.floats(min_value=90, exclude_min=True, allow_infinity=False), lons),
        st.tuples(st.floats(max_value=-90, exclude_max=True, allow_infinity=False), lons),
        st.tuples(lats, st.floats(min_value=180, exclude_min=True, allow_infinity=False)),
        st.tuples(lats, st.floats(max_value=-180, exclude_max=True, allow_infinity=False)),
    )
)
def test_impossible_coordinates_are_rejected(coords: tuple[float, float]) -> None:
    assert reason(judge(DriverPingState(), ping(1, T0, *coords))) == "invalid_coordinates"


def test_null_island_is_its_own_reason() -> None:
    assert rules.check_coordinates(0.0, 0.0) == rules.Rejection(Reason.NULL_ISLAND, "fix at (0, 0)")
    assert rules.check_coordinates(0.0, 0.001) is None  # a real fix in the Gulf of Guinea


@pytest.mark.parametrize(
    ("accuracy", "expected"),
    [
        (None, "clean"),
        (100.0, "clean"),
        (100.5, "low_accuracy"),
        (math.nan, "low_accuracy"),
        (math.inf, "low_accuracy"),
    ],
)
def test_accuracy_threshold(accuracy: float | None, expected: str) -> None:
    assert reason(judge(DriverPingState(), ping(1, T0, accuracy=accuracy))) == expected


@given(st.integers(min_value=-120_000, max_value=CONFIG.horizon_ms))
def test_any_age_within_the_horizon_and_skew_is_accepted(age_ms: int) -> None:
    assert reason(judge(DriverPingState(), ping(1, T0 - age_ms, received=T0))) == "clean"


@given(st.integers(min_value=120_001, max_value=10**12))
def test_a_clock_ahead_of_arrival_is_a_future_timestamp(ahead_ms: int) -> None:
    assert reason(judge(DriverPingState(), ping(1, T0 + ahead_ms, received=T0))) == "future_timestamp"


@given(st.integers(min_value=-rules.ROLLOVER_SLACK_MS, max_value=rules.ROLLOVER_SLACK_MS))
def test_the_gps_week_rollover_is_recognised(offset_ms: int) -> None:
    shifted = T0 - rules.ROLLOVER_MS + offset_ms
    assert reason(judge(DriverPingState(), ping(1, shifted, received=T0))) == "gps_week_rollover"


@given(
    st.integers(min_value=CONFIG.horizon_ms + 1, max_value=rules.ROLLOVER_MS - rules.ROLLOVER_SLACK_MS - 1)
)
def test_older_than_the_horizon_is_too_old(age_ms: int) -> None:
    assert reason(judge(DriverPingState(), ping(1, T0 - age_ms, received=T0))) == "too_old"


# --- duplicates ------------------------------------------------------------------------------------


def test_a_batch_replayed_hours_later_is_caught() -> None:
    state = DriverPingState()
    batch = [ping(seq, T0 + seq * 5000, north(seq * 40)) for seq in range(100)]
    assert {reason(judge(state, p)) for p in batch} == {"clean"}
    hours_later = T0 + 20 * 3_600_000
    replay = [{**p, "received_ts": hours_later} for p in batch]
    assert {reason(judge(state, p)) for p in replay} == {"duplicate"}
    assert len(state.seq_blocks) == 1  # a whole run of pings is one block


def test_a_phone_whose_counter_restarted_is_not_taken_for_a_replay() -> None:
    state = DriverPingState()
    for seq in range(50):
        judge(state, ping(seq, T0 + seq * 5000, north(seq * 40)))
    restarted = ping(3, T0 + 60 * 5000, north(60 * 40), ping_id="d1:new-3")
    assert reason(judge(state, restarted)) == "clean"


def test_out_of_order_pings_fill_gaps_and_blocks_merge() -> None:
    state = DriverPingState()
    order = [0, 1, 2, 6, 7, 3, 5, 4, 8]
    results = [reason(judge(state, ping(s, T0 + s * 5000, north(s * 40)))) for s in order]
    assert results == ["clean"] * len(order)
    assert state.seq_blocks == [[0, 8, T0, T0 + 8 * 5000, None]]
    assert reason(judge(state, ping(5, T0 + 5 * 5000, north(200)))) == "duplicate"


def test_pings_without_seq_are_deduplicated_by_id() -> None:
    state = DriverPingState()
    share = ping(None, T0, ping_id="wamid.ABC")
    assert reason(judge(state, share)) == "clean"
    assert reason(judge(state, {**share, "received_ts": T0 + 60_000})) == "duplicate"


def test_a_replay_of_a_bad_ping_gets_the_same_reason_as_the_original() -> None:
    state = DriverPingState()
    bad = ping(1, T0, accuracy=500.0)
    assert reason(judge(state, bad)) == "low_accuracy"
    assert reason(judge(state, bad)) == "low_accuracy"
    # The bad ping's seq still counts as seen, so the block around it stays whole.
    judge(state, ping(0, T0 - 5000))
    judge(state, ping(2, T0 + 5000))
    assert state.seq_blocks == [[0, 2, T0 - 5000, T0 + 5000, None]]


# --- jumps and lateness ----------------------------------------------------------------------------


def _ride(state: DriverPingState, n: int, start_seq: int = 0, step_m: float = 50.0) -> int:
    for i in range(n):
        seq = start_seq + i
        assert reason(judge(state, ping(seq, T0 + seq * 5000, north(seq * step_m)))) == "clean"
    return start_seq + n


def test_a_single_gps_spike_is_rejected_and_the_ride_goes_on() -> None:
    state = DriverPingState()
    seq = _ride(state, 5)
    spike = ping(seq, T0 + seq * 5000, north(5000))
    assert reason(judge(state, spike)) == "implausible_speed"
    assert reason(judge(state, ping(seq + 1, T0 + (seq + 1) * 5000, north((seq + 1) * 50)))) == "clean"
    assert state.candidate is None


def test_a_real_relocation_is_accepted_once_a_second_fix_confirms_it() -> None:
    state = DriverPingState()
    seq = _ride(state, 5)
    far = north(8000)
    first = ping(seq, T0 + seq * 5000, far)
    assert reason(judge(state, first)) == "implausible_speed"
    second = ping(seq + 1, T0 + (seq + 1) * 5000, far + 0.0003)
    assert reason(judge(state, second)) == "clean"
    third = ping(seq + 2, T0 + (seq + 2) * 5000, far + 0.0006)
    assert reason(judge(state, third)) == "clean"  # no lock-up on the old place


def test_a_bad_first_fix_does_not_lock_the_driver_out() -> None:
    state = DriverPingState()
    assert reason(judge(state, ping(0, T0, north(9000)))) == "clean"  # nothing to compare with yet
    results = [reason(judge(state, ping(s, T0 + s * 5000, north(s * 50)))) for s in range(1, 5)]
    assert results == ["implausible_speed", "clean", "clean", "clean"]


def test_a_late_ping_is_compared_with_its_neighbours_in_event_time() -> None:
    state = DriverPingState()
    # The driver rode north 50 m per 5 s from seq 0 to 9, then the phone uploads seq 10..19 later.
    for s in [*range(0, 5), *range(10, 20)]:
        judge(state, ping(s, T0 + s * 5000, north(s * 50)))
    latest = state.latest()
    # Seq 7 lies 650 m behind the live position in 65 s: fine for its event-time neighbours.
    late = judge(state, ping(7, T0 + 7 * 5000, north(7 * 50)))
    assert isinstance(late, dict) and late["late"] is True
    assert state.latest() == latest  # the live position never moves backwards
    glitch = judge(state, ping(8, T0 + 8 * 5000, north(20_000)))
    assert reason(glitch) == "implausible_speed"


def test_step_distance_and_speed_come_from_the_previous_fix_in_event_time() -> None:
    state = DriverPingState()
    judge(state, ping(0, T0, north(0)))
    result = judge(state, ping(1, T0 + 10_000, north(100)))
    assert isinstance(result, dict)
    assert result["step_m"] == pytest.approx(100, rel=1e-3)
    assert result["derived_speed_mps"] == pytest.approx(10, rel=1e-3)


# --- state ------------------------------------------------------------------------------------------


fixes = st.builds(Fix, st.integers(0, 2**62), st.floats(-90, 90), st.floats(-180, 180))


def _states_after(arrivals: list[tuple[int, int]]) -> DriverPingState:
    state = DriverPingState()
    for seq, ts in arrivals:
        state.remember(f"d1:{seq}", seq, ts, T0 - CONFIG.horizon_ms)
    return state


@settings(max_examples=200)
@given(
    st.lists(fixes, max_size=16),
    st.lists(st.tuples(st.integers(0, 3000), st.integers(0, 10)), max_size=200),
    st.lists(st.integers(0, 2**64 - 1), max_size=64),
    st.none() | fixes,
    st.integers(-1, 2**62),
    st.none() | st.lists(st.integers(-(2**62), 2**62), min_size=4, max_size=4),
)
def test_state_packs_and_unpacks_exactly_within_its_bound(
    f: list[Fix],
    arrivals: list[tuple[int, int]],
    h: list[int],
    c: Fix | None,
    offset: int,
    compacted: list[int] | None,
) -> None:
    state = _states_after([(seq, T0 + seq * 1000 + jitter) for seq, jitter in arrivals])
    state.fixes, state.id_hashes, state.candidate, state.last_offset = sorted(f), h, c, offset
    state.compacted = compacted
    packed = state.pack()
    assert len(packed) <= MAX_PACKED_BYTES <= 4096
    assert DriverPingState.unpack(packed) == state


def test_a_state_in_the_previous_format_still_unpacks() -> None:
    import struct

    v1 = struct.pack("<BBBBBq", 1, 0, 1, 0, 0, 7) + struct.pack("<qqqq", 0, 9, T0, T0 + 9000)
    state = DriverPingState.unpack(v1)
    assert state.seq_blocks == [[0, 9, T0, T0 + 9000, None]] and state.last_offset == 7
    assert state.remember("d1:4", 4, T0 + 4000, T0 - 1) is Seen.DUPLICATE


@settings(max_examples=60, deadline=None)
@given(
    st.integers(100, 1200),
    st.floats(0.0, 0.4),
    st.floats(0.0, 0.5),
    st.randoms(use_true_random=False),
)
def test_a_long_shuffled_backlog_with_holes_is_deduplicated_exactly(
    length: int, lost: float, replayed: float, rng: Any
) -> None:
    # A live run, then a shuffled backlog with lost pings, then replays of random parts of both.
    seqs = [s for s in range(length) if not (length // 4 <= s < length and rng.random() < lost)]
    live = [s for s in seqs if s < length // 4]
    backlog = [s for s in seqs if s >= length // 4]
    rng.shuffle(backlog)
    replays = [s for s in seqs if rng.random() < replayed]
    rng.shuffle(replays)
    state = DriverPingState()
    seen: set[int] = set()
    for seq in [*live, *backlog, *replays]:
        got = state.remember(f"d1:{seq}", seq, T0 + seq * 1000, T0 - CONFIG.horizon_ms)
        assert got is (Seen.DUPLICATE if seq in seen else Seen.NEW), seq
        seen.add(seq)
        assert DriverPingState.unpack(state.pack()) == state
    assert len(state.pack()) <= MAX_PACKED_BYTES
    if len(seqs) == length:  # nothing lost: the whole stretch is one block again, no bitmap
        assert state.seq_blocks == [[0, length - 1, T0, T0 + (length - 1) * 1000, None]]


@settings(max_examples=6, deadline=None)
@given(st.integers(2, 5), st.randoms(use_true_random=False))
def test_past_the_budget_a_replay_is_never_new(step: int, rng: Any) -> None:
    # Every step-th ping lost over 40,000 seqs: more holes than the budget holds exactly.
    seqs = [s for s in range(40_000) if s % step]
    state = _states_after([(s, T0 + s * 1000) for s in seqs])
    assert len(state.pack()) <= MAX_PACKED_BYTES
    assert state.compacted is not None
    for seq in rng.sample(seqs, 300):
        assert state.remember(f"d1:{seq}", seq, T0 + seq * 1000, T0 - CONFIG.horizon_ms) is not Seen.NEW
    recent = seqs[-2000:]  # the newest seqs are still known exactly
    for seq in rng.sample(recent, 50):
        assert state.remember(f"d1:{seq}", seq, T0 + seq * 1000, T0 - CONFIG.horizon_ms) is Seen.DUPLICATE
    hole = next(s for s in range(39_000, 40_000) if s % step == 0)
    assert state.remember(f"d1:{hole}", hole, T0 + hole * 1000, T0 - CONFIG.horizon_ms) is Seen.NEW


def test_a_first_ping_with_a_wrong_clock_does_not_hide_the_replays_after_it() -> None:
    state = DriverPingState()
    assert reason(judge(state, ping(0, T0 + 3_600_000 * 5, received=T0))) == "future_timestamp"
    batch = [ping(seq, T0 - 60_000 + seq * 5000, north(seq * 40), received=T0) for seq in range(1, 6)]
    assert [reason(judge(state, p)) for p in batch] == ["clean"] * 5
    assert [reason(judge(state, p)) for p in batch] == ["duplicate"] * 5


def test_a_replay_in_the_compacted_span_is_a_possible_duplicate() -> None:
    state = DriverPingState(compacted=[0, 99, T0, T0 + 99_000])
    assert reason(judge(state, ping(5, T0 + 5000))) == "possible_duplicate"
    assert reason(judge(state, ping(100, T0 + 100_000))) == "clean"


def test_a_wrong_clock_in_a_shuffled_backlog_does_not_split_its_block() -> None:
    state = DriverPingState()
    for seq in (0, 1, 3, 4):
        judge(state, ping(seq, T0 + seq * 5000, north(seq * 40)))
    assert reason(judge(state, ping(2, T0 + 3_600_000 * 5, received=T0 + 20_000))) == "future_timestamp"
    assert state.seq_blocks == [[0, 4, T0, T0 + 20_000, None]]


def test_state_stays_bounded_under_any_pattern_of_gaps() -> None:
    state = DriverPingState()
    for seq in range(0, 2000, 2):  # every other ping lost: a new range each time
        judge(state, ping(seq, T0 + seq * 1000, north(seq)))
    assert len(state.pack()) <= MAX_PACKED_BYTES
