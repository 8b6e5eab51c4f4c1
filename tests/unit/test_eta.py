"""ETA core: distance, speed blending and its fallbacks, when to publish, late risk, arrival error."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from base.exceptions import SettingsError
from base.settings import Settings
from streams.deliveries.eta import (
    EtaConfig,
    EtaEstimate,
    EtaMethod,
    RecentSpeed,
    blend_speed,
    estimate_eta,
    estimate_from_route,
    eta_error,
    is_late_risk,
    recent_weight,
    remaining_distance_m,
    should_emit,
    straight_line_eta,
    update_recent_speed,
)
from streams.pings.rules import haversine_m

CONFIG = EtaConfig()
# Avenida Paulista, and a drop-off about 2.2 km north-east of it.
LAT, LON = -23.5614, -46.6559
DROP_LAT, DROP_LON = -23.5430, -46.6450
NOW = 1_790_000_000_000

speeds = st.one_of(st.none(), st.floats(min_value=0.0, max_value=40.0))
evidence = st.one_of(st.none(), st.floats(min_value=0.0, max_value=3600.0))


def _estimate(eta_ms: int, computed_at: int = NOW) -> EtaEstimate:
    return EtaEstimate(eta_ms, 1000.0, 6.0, EtaMethod.BLENDED, computed_at)


def test_remaining_distance_is_straight_line_times_detour() -> None:
    straight = haversine_m(LAT, LON, DROP_LAT, DROP_LON)
    assert 2000 < straight < 2500
    assert remaining_distance_m(LAT, LON, DROP_LAT, DROP_LON, CONFIG) == pytest.approx(straight * 1.3)


def test_both_speeds_blend_and_the_recent_share_grows_with_evidence() -> None:
    thin, method = blend_speed(12.0, 4.0, CONFIG, recent_evidence_s=10.0)
    thick, _ = blend_speed(12.0, 4.0, CONFIG, recent_evidence_s=600.0)
    assert method == EtaMethod.BLENDED
    assert 4.0 < thin < thick < 12.0
    # Even a lot of recent evidence leaves the cell its floor share.
    assert thick <= 0.8 * 12.0 + 0.2 * 4.0 + 1e-9


def test_fallbacks_when_a_source_is_missing() -> None:
    assert blend_speed(None, 4.0, CONFIG) == (4.0, EtaMethod.CELL)
    assert blend_speed(None, None, CONFIG) == (CONFIG.default_speed_mps, EtaMethod.DEFAULT)
    speed, method = blend_speed(10.0, None, CONFIG, recent_evidence_s=0.0)
    # No evidence behind the recent speed and no history: the default.
    assert (speed, method) == (CONFIG.default_speed_mps, EtaMethod.RECENT)
    speed, _ = blend_speed(10.0, None, CONFIG, recent_evidence_s=1e6)
    assert speed == pytest.approx(10.0, rel=1e-3)


def test_unusable_speeds_count_as_missing() -> None:
    assert blend_speed(float("nan"), 4.0, CONFIG) == (4.0, EtaMethod.CELL)
    assert blend_speed(-3.0, float("inf"), CONFIG) == (CONFIG.default_speed_mps, EtaMethod.DEFAULT)


def test_a_stopped_driver_gets_the_floor_speed_not_an_infinite_eta() -> None:
    est = estimate_eta(LAT, LON, DROP_LAT, DROP_LON, NOW, 0.0, None, CONFIG, recent_evidence_s=1e6)
    assert est.speed_mps == CONFIG.min_speed_mps
    assert est.eta_ms == NOW + round(est.remaining_m / CONFIG.min_speed_mps * 1000)


def test_at_the_dropoff_the_eta_is_now() -> None:
    est = estimate_eta(DROP_LAT, DROP_LON + 0.0003, DROP_LAT, DROP_LON, NOW, 5.0, 5.0, CONFIG)
    assert est.method == EtaMethod.ARRIVED
    assert est.eta_ms == NOW


@given(
    lat=st.floats(-23.8, -23.3),
    lon=st.floats(-46.9, -46.3),
    recent=speeds,
    cell=speeds,
    ev=evidence,
)
def test_estimates_are_finite_bounded_and_after_now(
    lat: float, lon: float, recent: float | None, cell: float | None, ev: float | None
) -> None:
    est = estimate_eta(lat, lon, DROP_LAT, DROP_LON, NOW, recent, cell, CONFIG, recent_evidence_s=ev)
    assert est.computed_at == NOW
    assert est.eta_ms >= NOW
    assert math.isfinite(est.remaining_m)
    if est.method != EtaMethod.ARRIVED:
        assert CONFIG.min_speed_mps <= est.speed_mps <= CONFIG.max_speed_mps
        assert est.eta_ms - NOW == pytest.approx(est.remaining_m / est.speed_mps * 1000, abs=1)


@given(recent=st.floats(0.0, 40.0), cell=st.floats(0.0, 40.0), ev=evidence)
def test_blend_lies_between_its_sources(recent: float, cell: float, ev: float | None) -> None:
    speed, _ = blend_speed(recent, cell, CONFIG, ev)
    lo, hi = sorted((recent, cell))
    clamp = lambda v: min(max(v, CONFIG.min_speed_mps), CONFIG.max_speed_mps)  # noqa: E731
    assert clamp(lo) - 1e-9 <= speed <= clamp(hi) + 1e-9


@given(a=st.floats(0.0, 1e5), b=st.floats(0.0, 1e5))
def test_recent_weight_is_monotone_and_bounded(a: float, b: float) -> None:
    lo, hi = sorted((a, b))
    assert 0.0 <= recent_weight(lo, CONFIG) <= recent_weight(hi, CONFIG) <= CONFIG.max_recent_weight


def test_farther_is_later() -> None:
    near = estimate_eta(-23.5500, -46.6500, DROP_LAT, DROP_LON, NOW, 6.0, 6.0, CONFIG)
    far = estimate_eta(LAT, LON, DROP_LAT, DROP_LON, NOW, 6.0, 6.0, CONFIG)
    assert near.eta_ms < far.eta_ms


def test_should_emit_first_on_change_and_after_the_interval() -> None:
    last = _estimate(NOW + 600_000)
    assert should_emit(None, last, CONFIG)
    assert not should_emit(last, _estimate(NOW + 600_000 + 59_999, NOW + 10_000), CONFIG)
    assert should_emit(last, _estimate(NOW + 600_000 + 60_000, NOW + 10_000), CONFIG)
    assert should_emit(last, _estimate(NOW + 600_000 - 60_000, NOW + 10_000), CONFIG)
    assert not should_emit(last, _estimate(NOW + 600_000, NOW + 299_999), CONFIG)
    assert should_emit(last, _estimate(NOW + 600_000, NOW + 300_000), CONFIG)


@given(d_eta=st.integers(-3_600_000, 3_600_000), d_t=st.integers(0, 3_600_000))
def test_should_emit_is_exactly_change_or_age(d_eta: int, d_t: int) -> None:
    last = _estimate(NOW + 600_000)
    new = _estimate(NOW + 600_000 + d_eta, NOW + d_t)
    assert should_emit(last, new, CONFIG) == (abs(d_eta) >= 60_000 or d_t >= 300_000)


def test_late_risk_only_past_promised_plus_grace() -> None:
    promised = NOW + 900_000
    assert not is_late_risk(_estimate(promised + 120_000), promised, CONFIG)
    assert is_late_risk(_estimate(promised + 120_001), promised, CONFIG)
    assert not is_late_risk(_estimate(promised + 10**9), None, CONFIG)


def test_eta_error_is_signed_with_its_horizon() -> None:
    est = _estimate(NOW + 600_000)
    late = eta_error(est, NOW + 660_000)
    assert (late.error_s, late.horizon_s, late.abs_error_s) == (60.0, 660.0, 60.0)
    early = eta_error(est, NOW + 540_000)
    assert (early.error_s, early.abs_error_s) == (-60.0, 60.0)


def test_recent_speed_tracks_steady_riding_and_decays_after_a_gap() -> None:
    state = update_recent_speed(RecentSpeed(), 0.0, NOW, CONFIG)
    assert state == RecentSpeed(0.0, 0.0, NOW)
    for i in range(1, 61):
        state = update_recent_speed(state, 80.0, NOW + i * 10_000, CONFIG)
    assert state.speed_mps == pytest.approx(8.0)
    assert 0.95 * CONFIG.recent_tau_s <= state.evidence_s <= CONFIG.recent_tau_s
    # Ten minutes without a fix, then a slow step: what came before hardly counts any more.
    after_gap = update_recent_speed(state, 1300.0, NOW + 1_200_000, CONFIG)
    assert after_gap.speed_mps < 2.5


def test_parked_time_neither_lowers_the_pace_nor_adds_evidence() -> None:
    state = update_recent_speed(RecentSpeed(), 0.0, NOW, CONFIG)
    for i in range(1, 31):
        state = update_recent_speed(state, 80.0, NOW + i * 10_000, CONFIG)
    riding = state
    for i in range(31, 61):  # five minutes at a customer's door
        state = update_recent_speed(state, 3.0, NOW + i * 10_000, CONFIG)
    assert (state.speed_mps, state.evidence_s, state.last_ts) == (
        riding.speed_mps,
        riding.evidence_s,
        NOW + 600_000,
    )


def test_late_fixes_do_not_move_the_recent_speed() -> None:
    state = RecentSpeed(7.0, 100.0, NOW)
    assert update_recent_speed(state, 5000.0, NOW - 1000, CONFIG) == state


@given(steps=st.lists(st.tuples(st.floats(0.0, 2000.0), st.integers(1, 600_000)), max_size=30))
def test_recent_speed_stays_within_bounds(steps: list[tuple[float, int]]) -> None:
    state, ts = update_recent_speed(RecentSpeed(), 0.0, NOW, CONFIG), NOW
    for step_m, dt in steps:
        ts += dt
        state = update_recent_speed(state, step_m, ts, CONFIG)
        assert 0.0 <= state.speed_mps <= CONFIG.max_speed_mps + 1e-9
        assert 0.0 <= state.evidence_s <= CONFIG.recent_tau_s


def test_route_and_straight_line_estimates() -> None:
    routed = estimate_from_route(300.0, 2400.0, NOW, CONFIG)
    assert (routed.eta_ms, routed.speed_mps, routed.method) == (NOW + 300_000, 8.0, EtaMethod.ROUTING)
    naive = straight_line_eta(LAT, LON, DROP_LAT, DROP_LON, NOW, 5.0)
    assert naive.remaining_m == pytest.approx(haversine_m(LAT, LON, DROP_LAT, DROP_LON))
    assert naive.method == EtaMethod.STRAIGHT_LINE


def test_config_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="detour_factor"):
        EtaConfig(detour_factor=0.9)
    with pytest.raises(ValueError, match="min_speed_mps"):
        EtaConfig(min_speed_mps=30.0)
    with pytest.raises(ValueError, match="max_recent_weight"):
        EtaConfig(max_recent_weight=1.5)


def test_config_from_settings_and_their_validation() -> None:
    settings = Settings.from_env({"WHATSUP_ETA_MIN_CHANGE_S": "90", "WHATSUP_ETA_DETOUR_FACTOR": "1.2"})
    config = EtaConfig.from_settings(settings)
    assert (config.min_change_s, config.detour_factor, config.max_interval_s) == (90.0, 1.2, 300.0)
    assert settings.routing_url is None
    with pytest.raises(SettingsError, match="WHATSUP_ETA_DETOUR_FACTOR"):
        Settings.from_env({"WHATSUP_ETA_DETOUR_FACTOR": "0.5"})
    with pytest.raises(SettingsError, match="WHATSUP_ETA_MAX_INTERVAL_S"):
        Settings.from_env({"WHATSUP_ETA_MAX_INTERVAL_S": "0"})
    with pytest.raises(SettingsError, match="WHATSUP_ROUTING_URL"):
        Settings.from_env({"WHATSUP_ROUTING_URL": "ftp://osrm"})
