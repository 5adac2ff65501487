"""The storage figures of the station's health report: the footage on each storage location, its
write rate measured from the recordings of the last 24 hours, and how many days its free space
lasts above the floor at that rate (the operator's retention forecast)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from station_helpers import document, http_server, login
from vmscore.record.index import NewRecording
from vmscore.station import station as station_module
from vmscore.station.station import Station, now_us

MIB = 1 << 20
MINUTE_US = 60 * 1_000_000
DAY_US = 24 * 60 * MINUTE_US
FREE = 100_000 * MIB
FLOOR = 10_000 * MIB


@pytest.fixture
def station(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Station]:
    # A fixed free space, so the forecast is exact whatever the test machine's disk holds.
    monkeypatch.setattr(station_module, "_free_space", lambda path: {"free_bytes": FREE})
    doc = document(tmp_path, [], rules=[])
    doc["storage"][0]["min_free_bytes"] = FLOOR
    with Station(doc) as st:
        yield st


def add(st: Station, start_us: int, minutes: float, size: int, camera: str = "cam") -> None:
    end_us = start_us + int(minutes * MINUTE_US)
    st.recorder.index.add_recordings(
        [
            NewRecording(
                camera=camera,
                stream="main",
                storage="disk1",
                path=f"{camera}/{start_us}.mp4",
                start_wall_us=start_us,
                end_wall_us=end_us,
                start_90k=0,
                end_90k=int(minutes * 60 * 90_000),
                bytes=size,
                frames=int(minutes * 600),
                codec="h264",
                width=640,
                height=360,
                keyframes=b"",
                sha256="0" * 64,
                end_reason="rotate",
            )
        ]
    )


def disk1(st: Station) -> dict[str, Any]:
    storage: list[dict[str, Any]] = st.health()["storage"]
    return next(s for s in storage if s["name"] == "disk1")


def test_no_recordings_give_no_rate_and_no_forecast(station: Station) -> None:
    s = disk1(station)
    assert s["free_bytes"] == FREE and s["min_free_bytes"] == FLOOR
    assert s["recorded_bytes"] == 0
    assert s["write_bytes_per_day"] is None and s["days_until_floor"] is None


def test_rate_from_the_last_day_and_days_until_the_floor(station: Station) -> None:
    t = now_us()
    # Two cameras over the last two hours: 2 x 12 segments of 10 minutes, 50 MiB each, i.e.
    # 1200 MiB in 2 hours, 14400 MiB a day.
    for i in range(12):
        start = t - 2 * 60 * MINUTE_US + i * 10 * MINUTE_US
        add(station, start, 10, 50 * MIB, camera="a")
        add(station, start, 10, 50 * MIB, camera="b")
    # Footage from three days ago counts as footage held, not in the rate.
    add(station, t - 3 * DAY_US, 10, 700 * MIB)

    s = disk1(station)
    assert s["recorded_bytes"] == 1900 * MIB
    assert s["write_bytes_per_day"] == 14_400 * MIB
    assert s["days_until_floor"] == pytest.approx((FREE - FLOOR) / (14_400 * MIB), abs=0.01)


def test_too_little_footage_gives_no_rate(station: Station) -> None:
    add(station, now_us() - 3 * MINUTE_US, 2, 5 * MIB)
    s = disk1(station)
    assert s["recorded_bytes"] == 5 * MIB
    assert s["write_bytes_per_day"] is None and s["days_until_floor"] is None


def test_free_space_below_the_floor_forecasts_zero_days(
    station: Station, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(station_module, "_free_space", lambda path: {"free_bytes": FLOOR // 2})
    add(station, now_us() - 60 * MINUTE_US, 60, 100 * MIB)
    assert disk1(station)["days_until_floor"] == 0


def test_figures_are_cached_between_refreshes(
    station: Station, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = now_us()
    add(station, t - 60 * MINUTE_US, 60, 100 * MIB)
    assert disk1(station)["recorded_bytes"] == 100 * MIB
    add(station, t - 120 * MINUTE_US, 60, 100 * MIB)
    assert disk1(station)["recorded_bytes"] == 100 * MIB, "recomputed on every health report"
    monkeypatch.setattr(station_module, "USAGE_REFRESH_US", 0)
    s = disk1(station)
    assert s["recorded_bytes"] == 200 * MIB
    assert s["write_bytes_per_day"] == 200 * MIB * 12


def test_admins_get_the_forecast_over_http(station: Station) -> None:
    add(station, now_us() - 60 * MINUTE_US, 60, 100 * MIB)
    with http_server(station) as base:
        admin = login(base, "admin")
        viewer = login(base, "viewer")
        s = admin.get("/api/health").json()["storage"][0]
        assert s["write_bytes_per_day"] == 2400 * MIB
        assert s["days_until_floor"] == pytest.approx((FREE - FLOOR) / (2400 * MIB), abs=0.01)
        assert "storage" not in viewer.get("/api/health").json()
        admin.close()
        viewer.close()
