"""Records of every sunk topic, made like the pipeline makes them, for the sink's tests."""

from __future__ import annotations

import random
import time
import zlib
from typing import Any

import h3

from schemas.codecs import codec

# Recent (tables drop rows older than their retention at once), on a whole hour so runs look alike.
T0 = int(time.time() // 3600 * 3600 - 3 * 3600) * 1000
SAO_PAULO = (-23.55, -46.63)


def clean_ping(driver: str, seq: int, *, ts: int | None = None, lat: float | None = None) -> dict[str, Any]:
    """Return a CleanPing of ``driver``'s ``seq``-th fix, a few metres from the previous one."""
    rng = random.Random(f"{driver}:{seq}")
    base_lat = SAO_PAULO[0] + (zlib.crc32(driver.encode()) % 100) * 1e-3 if lat is None else lat
    plat, plon = base_lat + seq * 2e-5, SAO_PAULO[1] + seq * 2e-5
    return {
        "ping_id": f"{driver}:{seq}",
        "driver_id": driver,
        "device_ts": (ts if ts is not None else T0) + seq * 5000,
        "lat": plat,
        "lon": plon,
        "accuracy_m": 5.0 + rng.random() * 10,
        "speed_mps": 6.0,
        "heading": 45.0,
        "battery": 80.0,
        "seq": seq,
        "source": "simulator",
        "received_ts": T0 + seq * 5000 + 200,
        "h3_r9": int(h3.latlng_to_cell(plat, plon, 9), 16) if -90 <= plat <= 90 else 0,
        "h3_r7": int(h3.latlng_to_cell(plat, plon, 7), 16) if -90 <= plat <= 90 else 0,
        "step_m": 0.0 if seq == 0 else 2.9,
        "derived_speed_mps": None if seq == 0 else 0.58 + rng.random() * 8,
        "late": False,
        "processed_ts": T0 + seq * 5000 + 300,
    }


def encoded_pings(drivers: int, per_driver: int, prefix: str = "d") -> list[tuple[bytes, bytes]]:
    """Return (key, value) CleanPings of ``drivers`` drivers, interleaved like a fleet's."""
    encode = codec("CleanPing").encode
    return [
        (f"{prefix}{d}".encode(), encode(clean_ping(f"{prefix}{d}", seq)))
        for seq in range(per_driver)
        for d in range(drivers)
    ]
