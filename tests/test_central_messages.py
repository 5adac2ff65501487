"""The central station's handling of what arrives from the sites, message by message, without a
broker: an alarm's state applied by version whatever the order and repetition, holes in a
station's ``seq``, site and link state, and hostile topics and payloads (fuzzed), which are
counted and ignored and never raise."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vmscore.station.central import Central, CentralSettings
from vmscore.station.hub import EventHub


@pytest.fixture
def central(tmp_path: Path) -> Iterator[Central]:
    # Never started: no broker, no worker thread; the test feeds messages itself.
    c = Central(
        CentralSettings.model_validate({"mqtt": {"port": 9}}), "central", tmp_path, EventHub()
    )
    try:
        yield c
    finally:
        c._pool.shutdown()
        c._db.close()


def alarm(version: int, state: str = "new", **extra: Any) -> dict[str, Any]:
    return {
        "id": 7,
        "title": "panic at gate",
        "priority": "critical",
        "priority_level": 1,
        "state": state,
        "site": "north",
        "camera": "gate",
        "created_us": 1_000,
        "updated_us": 1_000 + version,
        "version": version,
        **extra,
    }


def change(seq: int | None, after: dict[str, Any], station: str = "north-st1") -> bytes:
    kind = "new" if after["version"] == 1 else "update"
    return json.dumps({"type": kind, "station": station, "seq": seq, "after": after}).encode()


def test_alarm_state_is_applied_by_version_whatever_the_order(central: Central) -> None:
    central._message("vmscore/north/alarms", change(2, alarm(2, "in_progress")))
    central._message("vmscore/north/alarms", change(1, alarm(1)))  # older, later
    central._message("vmscore/north/alarms", change(2, alarm(2, "in_progress")))  # again
    got = central.alarm("north-st1", 7)
    assert got is not None and got["state"] == "in_progress" and got["station"] == "north-st1"
    stats = central.stats()
    assert stats["duplicates"] == 2 and stats["alarm_changes"] == 3
    listed = central.alarms()
    assert [(a["station"], a["id"]) for a in listed] == [("north-st1", 7)]
    # The same id at another station is another alarm.
    central._message("vmscore/south/alarms", change(1, alarm(1, site="south"), "south-st1"))
    assert len(central.alarms()) == 2
    assert [a["station"] for a in central.alarms(sites=["south"])] == ["south-st1"]
    assert central.alarms(states=["closed"]) == []


def test_a_jump_in_seq_without_an_address_is_accepted_and_counted(central: Central) -> None:
    central._message("vmscore/north/alarms", change(1, alarm(1)))
    central._message("vmscore/north/alarms", change(5, alarm(2, "in_progress")))
    stats = central.stats()
    assert stats["holes"] == 1 and stats["applied_seq"]["north-st1"] == 5
    central._message("vmscore/north/alarms", change(6, alarm(3, "closed")))
    assert central.stats()["applied_seq"]["north-st1"] == 6


def test_an_alarm_on_another_sites_topic_is_refused(central: Central) -> None:
    central._message("vmscore/south/alarms", change(1, alarm(1)))
    assert central.alarm("north-st1", 7) is None
    assert central.stats()["bad_messages"] == 1


def test_site_state_follows_availability_and_the_bridge(central: Central) -> None:
    central._message("vmscore/north/station", b"north-st1")
    central._message("vmscore/north/available", b"online")
    central._message("vmscore/station/north-st1/available", b"online")
    central._message(
        "vmscore/north/cameras", json.dumps([{"name": "gate", "online": True}]).encode()
    )
    central._message("vmscore/north/gate/motion", b"ON")
    central._message("vmscore/north/gate/state", json.dumps({"fps": 25.0}).encode())
    central._message("vmscore/north/gate/tamper", b'{"active":true,"flags":["covered"]}')
    view = central.site("north")
    assert view is not None and central.site_state(view) == "online"
    site = central.site_json(view, lambda camera: True)
    cam = site["cameras"][0]
    assert cam["motion"] is True and cam["station"] == "north-st1"
    assert cam["health"] == {"fps": 25.0} and cam["tamper"] == ["covered"]
    assert central.find_camera("north-st1", "gate") == ("north", {"name": "gate", "online": True})
    central._message("$SYS/broker/connection/vmscore-bridge-north/state", b"0")
    assert central.site_state(view) == "link_down"
    central._message("$SYS/broker/connection/vmscore-bridge-north/state", b"1")
    central._message("vmscore/station/north-st1/available", b"offline")
    assert central.site_state(view) == "station_offline"
    assert central.site_json(view, lambda camera: False)["cameras"] == []


_LEVEL = st.one_of(
    st.sampled_from(["north", "station", "cmd", "gate", "%2F", "", "north-st1"]),
    st.text(max_size=12),
)
_KIND = st.sampled_from(
    [
        "alarms",
        "available",
        "station",
        "cameras",
        "recordings",
        "status",
        "motion",
        "state",
        "tamper",
    ]
)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=20,
)


@st.composite
def _payload(draw: st.DrawFn) -> bytes:
    choice = draw(st.integers(0, 3))
    if choice == 0:
        return draw(st.binary(max_size=200))
    if choice == 1:
        return json.dumps(draw(_JSON)).encode()
    # An alarm message with fields swapped for anything.
    base: dict[str, Any] = {"type": "new", "station": "north-st1", "seq": 1, "after": alarm(1)}
    key = draw(st.sampled_from(["type", "station", "seq", "after", "id", "version", "site"]))
    value = draw(_JSON)
    if key in base:
        base[key] = value
    else:
        base["after"][key] = value
    return json.dumps(base).encode()


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    levels=st.lists(_LEVEL, min_size=1, max_size=4),
    kind=_KIND,
    payload=_payload(),
)
def test_hostile_messages_never_raise(
    central: Central, levels: list[str], kind: str, payload: bytes
) -> None:
    for topic in ("vmscore/" + "/".join([*levels, kind]), "$SYS/broker/connection/x/state"):
        central._message(topic, payload)
    # Whatever came in, the stored alarms are well-formed and listable.
    for a in central.alarms(limit=1000):
        assert isinstance(a["id"], int) and isinstance(a["station"], str)


def test_a_station_that_is_also_a_site_ignores_its_own_alarms(tmp_path: Path) -> None:
    """``role: both``: its own site's alarms are its local ones, not listed twice."""
    c = Central(
        CentralSettings.model_validate({"mqtt": {"port": 9}}), "north-st1", tmp_path, EventHub()
    )
    try:
        c._message("vmscore/north/alarms", change(1, alarm(1)))
        c._message("vmscore/south/alarms", change(1, alarm(1, site="south"), "south-st1"))
        assert [a["station"] for a in c.alarms()] == ["south-st1"]
    finally:
        c._pool.shutdown()
        c._db.close()
