"""The pure ping rules: every coordinate either snaps to H3 or is rejected with the right reason."""

from __future__ import annotations

import math

import h3
from hypothesis import given
from hypothesis import strategies as st

from streams.pings import rules

lats = st.floats(min_value=-90, max_value=90, allow_nan=False)
lons = st.floats(min_value=-180, max_value=180, allow_nan=False)


def _ping(lat: float, lon: float) -> dict[str, object]:
    return {"ping_id": "p", "driver_id": "d", "lat": lat, "lon": lon}


@given(lats, lons)
def test_valid_coordinates_snap_to_the_cells_h3_gives(lat: float, lon: float) -> None:
    result = rules.clean(_ping(lat, lon), processed_ts=5)
    if abs(lat) < rules.NULL_ISLAND_DEG and abs(lon) < rules.NULL_ISLAND_DEG:
        assert result == rules.Rejection(rules.Reason.NULL_ISLAND, "fix at (0, 0)")
        return
    assert isinstance(result, dict)
    assert result["h3_r9"] == int(h3.latlng_to_cell(lat, lon, 9), 16)
    assert result["h3_r7"] == int(h3.cell_to_parent(h3.latlng_to_cell(lat, lon, 9), 7), 16)
    assert result["processed_ts"] == 5 and result["late"] is False and result["ping_id"] == "p"


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
    result = rules.clean(_ping(*coords), processed_ts=0)
    assert isinstance(result, rules.Rejection)
    assert result.reason is rules.Reason.INVALID_COORDINATES


def test_null_island_is_its_own_reason() -> None:
    assert rules.check_coordinates(0.0, 0.0) == rules.Rejection(rules.Reason.NULL_ISLAND, "fix at (0, 0)")
    assert rules.check_coordinates(0.0, 0.001) is None  # a real fix in the Gulf of Guinea is not null island


def test_reason_codes_are_unique_snake_case() -> None:
    values = [r.value for r in rules.Reason]
    assert len(values) == len(set(values))
    assert all(v.replace("_", "").isalpha() and v.islower() for v in values)
