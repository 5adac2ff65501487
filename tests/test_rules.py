"""The rule engine, time profiles and webhook delivery.

The engine is fed events and ticks by hand (no clock), as the station does; webhooks go to a
real HTTP server on 127.0.0.1 that fails on demand.
"""

from __future__ import annotations

import base64
import json
import logging
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vmscore.rules import (
    AlarmAction,
    ArmAction,
    BookmarkAction,
    CameraInfo,
    Conditions,
    Ending,
    Firing,
    MqttAction,
    RecordAction,
    Rule,
    RuleEngine,
    SnapshotAction,
    TimeProfile,
    TimeRange,
    Trigger,
    WebhookAction,
    WebhookSender,
    is_active,
    next_change,
    redact_url,
    webhook_body,
)
from vmscore.station.events import EVENT_KINDS, StationEvent

S = 1_000_000
BERLIN = ZoneInfo("Europe/Berlin")
T0 = int(datetime(2024, 6, 5, 12, 0, tzinfo=UTC).timestamp()) * S
"""A Wednesday, noon UTC."""

CAMERAS = {
    "gym": CameraInfo("gym", "school-12", "indoor"),
    "yard": CameraInfo("yard", "school-12", "outdoor"),
    "lobby": CameraInfo("lobby", "school-7", "indoor"),
}


def utc(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp()) * S


def berlin(*args: int, fold: int = 0) -> int:
    return int(datetime(*args, tzinfo=BERLIN, fold=fold).timestamp()) * S


def rule(
    name: str,
    kind: str,
    *,
    actions: Sequence[Any] = (),
    conditions: Conditions | None = None,
    enabled: bool = True,
    **trigger: Any,
) -> Rule:
    return Rule(
        name=name,
        enabled=enabled,
        trigger=Trigger(kind=kind, **trigger),  # type: ignore[arg-type]
        conditions=conditions or Conditions(),
        actions=list(actions) or [AlarmAction(close_on_end=True)],
    )


def ev(kind: str, at_us: int, **kw: Any) -> StationEvent:
    return StationEvent(kind=kind, at_us=at_us, **kw)  # type: ignore[arg-type]


class Station:
    """The two callbacks the engine asks, with arming the tests can change."""

    def __init__(self, armed: Sequence[str] = ()) -> None:
        self.armed = set(armed)
        self.camera_calls = 0

    def camera(self, name: str) -> CameraInfo | None:
        self.camera_calls += 1
        return CAMERAS.get(name)

    def is_armed(self, site: str) -> bool:
        return site in self.armed


def make(
    rules: Sequence[Rule],
    profiles: Sequence[TimeProfile] = (),
    station: Station | None = None,
    **kw: Any,
) -> RuleEngine:
    station = station or Station()
    return RuleEngine(rules, profiles, camera=station.camera, is_armed=station.is_armed, **kw)


def fired(out: Sequence[Firing | Ending]) -> list[str]:
    """Names of the rules that fired, once per firing (not per action)."""
    names: list[str] = []
    for o in out:
        if isinstance(o, Firing) and o.action is o.rule.actions[0]:
            names.append(o.rule.name)
    return names


def ended(out: Sequence[Firing | Ending]) -> list[str]:
    return [o.rule.name for o in out if isinstance(o, Ending)]


# -- triggers and narrowing ------------------------------------------------------------------------

BEGIN_EVENTS = {
    "motion": ev("motion", T0, camera="gym", zone="door"),
    "tamper": ev("tamper", T0, camera="gym", detail="covered"),
    "camera_offline": ev("camera_offline", T0, camera="gym", detail="stalled"),
    "recording_gap": ev("recording_gap", T0, camera="gym", detail="storage_error"),
    "disk_trouble": ev("disk_trouble", T0, site="school-12", detail="disk1"),
    "external": ev("external", T0, site="school-12", detail="door_forced"),
    "schedule": ev("schedule", T0, detail="night:start"),
}


@pytest.mark.parametrize("kind", list(BEGIN_EVENTS))
def test_each_trigger_kind_fires_only_for_its_own_event_kind(kind: str) -> None:
    """A rule for one kind must not fire on another (an offline rule raising on motion)."""
    rules = [rule(k, k) for k in BEGIN_EVENTS]
    engine = make(rules, [TimeProfile(name="night", ranges=[TimeRange()])])
    out = engine.on_event(BEGIN_EVENTS[kind])
    assert fired(out) == [kind]
    f = out[0]
    assert isinstance(f, Firing)
    assert f.event == BEGIN_EVENTS[kind] and f.at_us == T0 and f.key == BEGIN_EVENTS[kind].key


def test_end_events_never_fire() -> None:
    engine = make([rule(k, k) for k in BEGIN_EVENTS])
    for kind in ("motion_end", "tamper_end", "camera_online", "disk_ok"):
        assert engine.on_event(ev(kind, T0, camera="gym", site="school-12")) == []
    assert engine.stats()["firings"] == 0


def test_one_firing_per_action_in_the_rule_order() -> None:
    actions = [
        AlarmAction(priority="critical", category="intrusion", related_cameras=["yard"]),
        RecordAction(pre_roll_s=5, post_roll_s=20),
        BookmarkAction(text="door"),
        MqttAction(topic="vms/{site}/{camera}"),
        WebhookAction(url="http://127.0.0.1:9/hook"),
        SnapshotAction(),
    ]
    engine = make([rule("a", "motion", actions=actions), rule("b", "motion")])
    e = ev("motion", T0, camera="gym", zone="door")
    out = engine.on_event(e)
    assert [o.action for o in out if isinstance(o, Firing)] == [
        *actions,
        AlarmAction(close_on_end=True),
    ]
    assert [o.rule.name for o in out] == ["a"] * 6 + ["b"]
    assert all(isinstance(o, Firing) and o.event is e and o.key == e.key for o in out)


@pytest.mark.parametrize(
    ("trigger", "event", "matches"),
    [
        # sites: through the camera's configured site
        ({"sites": ["school-12"]}, ev("motion", T0, camera="gym"), True),
        ({"sites": ["school-7"]}, ev("motion", T0, camera="gym"), False),
        # groups and cameras
        ({"groups": ["indoor"]}, ev("motion", T0, camera="lobby"), True),
        ({"groups": ["indoor"]}, ev("motion", T0, camera="yard"), False),
        ({"cameras": ["yard", "gym"]}, ev("motion", T0, camera="gym"), True),
        ({"cameras": ["yard"]}, ev("motion", T0, camera="gym"), False),
        ({"cameras": ["gym"], "groups": ["outdoor"]}, ev("motion", T0, camera="gym"), False),
        # an unknown camera matches only triggers without camera or group narrowing
        ({}, ev("motion", T0, camera="ghost"), True),
        ({"cameras": ["ghost"]}, ev("motion", T0, camera="ghost"), False),
        ({"groups": [""]}, ev("motion", T0, camera="ghost"), False),
        ({"sites": ["school-12"]}, ev("motion", T0, camera="ghost", site="school-12"), True),
        ({"sites": ["school-12"]}, ev("motion", T0, camera="ghost"), False),
        # zones: empty matches any zone and no zone
        ({}, ev("motion", T0, camera="gym", zone=None), True),
        ({"zones": ["door"]}, ev("motion", T0, camera="gym", zone="door"), True),
        ({"zones": ["door"]}, ev("motion", T0, camera="gym", zone="window"), False),
        ({"zones": ["door"]}, ev("motion", T0, camera="gym", zone=None), False),
    ],
)
def test_motion_narrowing(trigger: dict[str, Any], event: StationEvent, matches: bool) -> None:
    engine = make([rule("r", "motion", **trigger)])
    assert fired(engine.on_event(event)) == (["r"] if matches else [])


def at0(kind: str, **kw: Any) -> StationEvent:
    return ev(kind, T0, **kw)


DISK = {"site": "school-12", "detail": "disk1"}


@pytest.mark.parametrize(
    ("trigger", "event", "matches"),
    [
        ({"details": ["covered"]}, at0("tamper", camera="gym", detail="covered"), True),
        ({"details": ["covered"]}, at0("tamper", camera="gym", detail="too_dark"), False),
        ({"details": ["door_forced"]}, at0("external", detail="door_forced"), True),
        ({"details": ["door_forced"]}, at0("external", detail="panic"), False),
        ({"details": ["full"]}, at0("recording_gap", camera="gym", detail="full"), True),
        ({"details": ["full"]}, at0("recording_gap", camera="gym", detail="lost"), False),
        ({"details": ["night:end"]}, at0("schedule", detail="night:end"), True),
        ({"details": ["night:end"]}, at0("schedule", detail="night:start"), False),
        # disk trouble: the detail is the storage location, the reason is in data; both count
        ({"details": ["disk1"]}, at0("disk_trouble", **DISK), True),
        ({"details": ["full"]}, at0("disk_trouble", **DISK, data={"reason": "full"}), True),
        ({"details": ["full"]}, at0("disk_trouble", **DISK, data={"reason": "error"}), False),
        # events with a site but no camera match by site
        ({"sites": ["school-12"]}, at0("disk_trouble", **DISK), True),
        ({"sites": ["school-7"]}, at0("disk_trouble", **DISK), False),
        ({"cameras": ["gym"]}, at0("disk_trouble", **DISK), False),
        ({"sites": ["school-7"]}, at0("external", site="school-7", detail="x"), True),
        # a station-wide schedule edge concerns every site, but no camera
        ({"sites": ["school-7"]}, at0("schedule", detail="night:start"), True),
        ({"groups": ["indoor"]}, at0("schedule", detail="night:start"), False),
    ],
)
def test_detail_and_site_narrowing(
    trigger: dict[str, Any], event: StationEvent, matches: bool
) -> None:
    profiles = [TimeProfile(name="night", ranges=[TimeRange()])]
    engine = make([rule("r", event.kind, **trigger)], profiles)
    assert fired(engine.on_event(event)) == (["r"] if matches else [])


def test_the_camera_is_looked_up_once_per_event() -> None:
    station = Station()
    engine = make([rule(f"r{i}", "motion", groups=["indoor"]) for i in range(5)], station=station)
    engine.on_event(ev("motion", T0, camera="gym"))
    assert station.camera_calls == 1


def test_a_disabled_rule_never_fires() -> None:
    engine = make([rule("off", "motion", enabled=False), rule("on", "motion")])
    assert fired(engine.on_event(ev("motion", T0, camera="gym"))) == ["on"]
    assert ended(engine.on_event(ev("motion_end", T0 + S, camera="gym"))) == ["on"]


# -- continuation, endings, cooldown ---------------------------------------------------------------


def test_a_condition_going_on_is_a_continuation_and_a_new_begin_after_its_end_fires() -> None:
    engine = make([rule("r", "motion")])
    m = ev("motion", T0, camera="gym", zone="door")
    assert fired(engine.on_event(m)) == ["r"]
    assert engine.on_event(ev("motion", T0 + S, camera="gym", zone="door")) == []
    assert engine.stats()["continuations"] == 1
    # another zone of the same camera is another condition
    assert fired(engine.on_event(ev("motion", T0 + S, camera="gym", zone="window"))) == ["r"]
    out = engine.on_event(ev("motion_end", T0 + 2 * S, camera="gym", zone="door"))
    assert len(out) == 1 and isinstance(out[0], Ending)
    assert out[0].key == m.key and out[0].event.kind == "motion_end"
    assert engine.on_event(ev("motion_end", T0 + 3 * S, camera="gym", zone="door")) == []
    assert fired(engine.on_event(ev("motion", T0 + 4 * S, camera="gym", zone="door"))) == ["r"]


@pytest.mark.parametrize(
    ("begin", "end"),
    [
        (
            ev("tamper", T0, camera="gym", detail="covered"),
            ev("tamper_end", T0 + S, camera="gym", detail="covered"),
        ),
        (
            ev("camera_offline", T0, camera="gym", detail="stalled"),
            ev("camera_online", T0 + S, camera="gym"),
        ),
        (
            ev("disk_trouble", T0, site="school-12", detail="disk1"),
            ev("disk_ok", T0 + S, site="school-12", detail="disk1"),
        ),
    ],
)
def test_paired_kinds_end_what_they_started(begin: StationEvent, end: StationEvent) -> None:
    """A camera back online ends its offline condition: the alarm with close_on_end closes."""
    engine = make([rule("r", begin.kind)])
    assert fired(engine.on_event(begin)) == ["r"]
    assert engine.on_event(begin) == []  # still going on
    out = engine.on_event(end)
    assert ended(out) == ["r"] and out[0].key == begin.key and out[0].event == end


def test_instants_fire_each_time() -> None:
    """A recording gap or an external event has no end: each one is a new occurrence."""
    engine = make([rule("gap", "recording_gap"), rule("ext", "external")])
    for i in range(3):
        assert fired(engine.on_event(ev("recording_gap", T0 + i * S, camera="gym"))) == ["gap"]
        assert fired(engine.on_event(ev("external", T0 + i * S, detail="panic"))) == ["ext"]
    assert engine.stats()["open"] == 0


def test_ending_only_for_rules_that_fired() -> None:
    night = TimeProfile(name="night", ranges=[TimeRange(start="18:00", end="07:00")])
    engine = make(
        [
            rule("always", "motion"),
            rule("at_night", "motion", conditions=Conditions(time_profile="night")),
            rule("school7", "motion", sites=["school-7"]),
            rule("long", "motion", conditions=Conditions(min_duration_s=30)),
        ],
        [night],
    )
    assert fired(engine.on_event(ev("motion", T0, camera="gym"))) == ["always"]
    assert engine.pending() == 1
    out = engine.on_event(ev("motion_end", T0 + 10 * S, camera="gym"))
    assert ended(out) == ["always"] and fired(out) == []
    assert engine.pending() == 0 and engine.stats()["cancelled"] == 1


def test_cooldown_per_camera_and_zone_from_the_last_firing() -> None:
    engine = make([rule("r", "motion", conditions=Conditions(cooldown_s=60))])

    def burst(at_us: int, camera: str, zone: str) -> list[str]:
        out = engine.on_event(ev("motion", at_us, camera=camera, zone=zone))
        engine.on_event(ev("motion_end", at_us + S, camera=camera, zone=zone))
        return fired(out)

    assert burst(T0, "gym", "door") == ["r"]
    assert burst(T0 + 30 * S, "gym", "door") == []  # within the cooldown
    assert burst(T0 + 30 * S, "gym", "window") == ["r"]  # another zone
    assert burst(T0 + 31 * S, "yard", "door") == ["r"]  # another camera
    assert burst(T0 + 59 * S, "gym", "door") == []
    assert burst(T0 + 60 * S, "gym", "door") == ["r"]  # measured from the last firing
    assert burst(T0 + 100 * S, "gym", "door") == []  # ... which is now T0+60
    assert engine.stats()["cooldowns"] == 3
    engine.tick(T0 + 200 * S)
    assert engine.stats()["cooldowns"] == 0  # expired entries are dropped


def test_cooldown_for_instants_is_per_detail() -> None:
    engine = make([rule("r", "external", conditions=Conditions(cooldown_s=10))])
    assert fired(engine.on_event(ev("external", T0, detail="a"))) == ["r"]
    assert fired(engine.on_event(ev("external", T0 + S, detail="a"))) == []
    assert fired(engine.on_event(ev("external", T0 + S, detail="b"))) == ["r"]
    assert fired(engine.on_event(ev("external", T0 + 10 * S, detail="a"))) == ["r"]


def test_site_armed() -> None:
    station = Station()
    engine = make([rule("r", "motion", conditions=Conditions(site_armed=True))], station=station)
    assert engine.on_event(ev("motion", T0, camera="gym")) == []
    station.armed.add("school-12")
    # the rule did not fire for that condition, so a new begin is evaluated afresh
    assert fired(engine.on_event(ev("motion", T0 + S, camera="gym"))) == ["r"]
    assert engine.on_event(ev("motion", T0, camera="lobby")) == []  # school-7 is not armed
    # unknown camera: the event's own site counts
    assert fired(engine.on_event(ev("motion", T0, camera="ghost", site="school-12"))) == ["r"]
    assert engine.on_event(ev("motion", T0, camera="ghost2")) == []


def test_site_armed_is_checked_again_when_a_wait_ends() -> None:
    station = Station(armed=["school-12"])
    c = Conditions(site_armed=True, min_duration_s=5)
    engine = make([rule("r", "motion", conditions=c)], station=station)
    engine.on_event(ev("motion", T0, camera="gym"))
    station.armed.clear()  # an operator disarmed the site meanwhile
    assert engine.tick(T0 + 10 * S) == [] and engine.pending() == 0


# -- minimum duration ------------------------------------------------------------------------------


def test_min_duration_fires_at_the_tick_after_it_with_the_original_event() -> None:
    engine = make([rule("r", "camera_offline", conditions=Conditions(min_duration_s=30))])
    off = ev("camera_offline", T0, camera="gym", detail="stalled")
    assert engine.on_event(off) == [] and engine.pending() == 1
    assert engine.tick(T0 + 29 * S) == []
    assert engine.on_event(ev("camera_offline", T0 + 29 * S, camera="gym")) == []  # continuation
    out = engine.tick(T0 + 31 * S)
    assert fired(out) == ["r"]
    f = out[0]
    assert isinstance(f, Firing)
    assert f.event is off and f.event.at_us == T0  # the condition's start
    assert f.at_us == T0 + 30 * S  # the moment it had held long enough, not the tick
    assert engine.pending() == 0 and engine.tick(T0 + 60 * S) == []
    assert ended(engine.on_event(ev("camera_online", T0 + 70 * S, camera="gym"))) == ["r"]


def test_min_duration_is_cancelled_by_the_end() -> None:
    engine = make([rule("r", "motion", conditions=Conditions(min_duration_s=10))])
    engine.on_event(ev("motion", T0, camera="gym"))
    assert engine.on_event(ev("motion_end", T0 + 9 * S, camera="gym")) == []
    assert engine.pending() == 0 and engine.tick(T0 + 20 * S) == []
    # a new condition starts its own wait
    engine.on_event(ev("motion", T0 + 30 * S, camera="gym"))
    assert fired(engine.tick(T0 + 40 * S)) == ["r"]


def test_an_end_after_the_deadline_without_a_tick_between_fires_then_ends() -> None:
    """The outcome must not depend on how often the station ticks."""
    engine = make([rule("r", "motion", conditions=Conditions(min_duration_s=10))])
    engine.on_event(ev("motion", T0, camera="gym"))
    out = engine.on_event(ev("motion_end", T0 + 12 * S, camera="gym"))
    assert [type(o).__name__ for o in out] == ["Firing", "Ending"]
    assert out[0].at_us == T0 + 10 * S  # type: ignore[union-attr]


def test_recording_gap_duration_is_the_gap_length() -> None:
    engine = make([rule("r", "recording_gap", conditions=Conditions(min_duration_s=60))])

    def gap(start_s: int, end_s: int) -> StationEvent:
        return ev(
            "recording_gap", T0, camera="gym", data={"start_us": start_s * S, "end_us": end_s * S}
        )

    assert engine.on_event(gap(0, 59)) == []
    assert fired(engine.on_event(gap(0, 60))) == ["r"]
    assert engine.on_event(ev("recording_gap", T0, camera="gym")) == []  # length unknown
    assert engine.pending() == 0


def test_external_min_duration_is_a_delay() -> None:
    engine = make([rule("r", "external", conditions=Conditions(min_duration_s=5))])
    engine.on_event(ev("external", T0, detail="door"))
    assert engine.on_event(ev("external", T0 + S, detail="door")) == []  # continuation
    out = engine.tick(T0 + 5 * S)
    assert fired(out) == ["r"] and out[0].at_us == T0 + 5 * S  # type: ignore[union-attr]


# -- time profiles ---------------------------------------------------------------------------------

FRI_NIGHT = TimeProfile(
    name="fri_night",
    timezone="Europe/Berlin",
    ranges=[TimeRange(days=["fri"], start="18:00", end="07:00")],
)


@pytest.mark.parametrize(
    ("at", "active"),
    [
        (berlin(2024, 6, 7, 17, 59, 59), False),  # Friday
        (berlin(2024, 6, 7, 18, 0), True),
        (berlin(2024, 6, 7, 23, 59, 59), True),
        (berlin(2024, 6, 8, 0, 0), True),  # Saturday morning: still Friday's range
        (berlin(2024, 6, 8, 6, 59, 59), True),
        (berlin(2024, 6, 8, 7, 0), False),
        (berlin(2024, 6, 8, 18, 0), False),  # Saturday evening: not a Friday
        (berlin(2024, 6, 7, 6, 0), False),  # Friday morning belongs to Thursday
        (utc(2024, 6, 7, 16, 0), True),  # 18:00 in Berlin in summer is 16:00 UTC
        (utc(2024, 1, 5, 16, 30), False),  # ... and 17:00 UTC in winter
        (utc(2024, 1, 5, 17, 0), True),
    ],
)
def test_overnight_range_in_local_time(at: int, active: bool) -> None:
    assert is_active(FRI_NIGHT, at) is active


def test_24_00_end_and_whole_days() -> None:
    evening = TimeProfile(name="e", ranges=[TimeRange(days=["mon"], start="20:00", end="24:00")])
    assert is_active(evening, utc(2024, 6, 3, 23, 59, 59))  # a Monday
    assert not is_active(evening, utc(2024, 6, 4, 0, 0))
    weekend = TimeProfile(name="w", ranges=[TimeRange(days=["sat", "sun"])])
    assert not is_active(weekend, utc(2024, 6, 7, 23, 59, 59))
    assert is_active(weekend, utc(2024, 6, 8, 0, 0))
    assert is_active(weekend, utc(2024, 6, 9, 23, 59, 59))
    assert not is_active(weekend, utc(2024, 6, 10, 0, 0))
    assert next_change(weekend, utc(2024, 6, 8, 12, 0)) == utc(2024, 6, 10, 0, 0)
    with pytest.raises(ValueError, match="empty"):
        TimeRange(start="10:00", end="10:00")


def test_exception_dates_apply_to_the_local_date_of_the_moment() -> None:
    """A holiday on Saturday removes Friday's overnight range after midnight only."""
    holiday = FRI_NIGHT.model_copy(update={"except_dates": ["2024-06-08"]})
    assert is_active(holiday, berlin(2024, 6, 7, 23, 0))
    assert not is_active(holiday, berlin(2024, 6, 8, 0, 0))
    assert not is_active(holiday, berlin(2024, 6, 8, 6, 0))
    # 23:30 UTC on Friday is already Saturday in Berlin
    assert not is_active(holiday, utc(2024, 6, 7, 22, 30))
    assert next_change(holiday, berlin(2024, 6, 7, 20, 0)) == berlin(2024, 6, 8, 0, 0)
    fri_off = FRI_NIGHT.model_copy(update={"except_dates": ["2024-06-07"]})
    assert not is_active(fri_off, berlin(2024, 6, 7, 20, 0))
    assert is_active(fri_off, berlin(2024, 6, 8, 1, 0))


def test_dst_spring_forward_in_berlin() -> None:
    """31 March 2024: 02:00 CET jumps to 03:00 CEST (01:00 UTC)."""
    inside_gap = TimeProfile(
        name="g", timezone="Europe/Berlin", ranges=[TimeRange(start="02:00", end="02:30")]
    )
    across = TimeProfile(
        name="a", timezone="Europe/Berlin", ranges=[TimeRange(start="01:00", end="02:30")]
    )
    after = TimeProfile(
        name="b", timezone="Europe/Berlin", ranges=[TimeRange(start="03:00", end="04:00")]
    )
    jump = utc(2024, 3, 31, 1, 0)
    # the skipped half hour never happens: the range is not active that night at all
    assert not any(is_active(inside_gap, jump + k * 60 * S) for k in range(-120, 240))
    assert next_change(inside_gap, utc(2024, 3, 30, 12, 0)) == berlin(2024, 4, 1, 2, 0)
    # a range across the jump ends at the jump
    assert next_change(across, utc(2024, 3, 30, 12, 0)) == berlin(2024, 3, 31, 1, 0)
    assert next_change(across, berlin(2024, 3, 31, 1, 0)) == jump
    assert is_active(across, jump - S) and not is_active(across, jump)
    # 03:00 local is the moment of the jump itself
    assert next_change(after, utc(2024, 3, 30, 12, 0)) == jump
    assert next_change(after, jump) == utc(2024, 3, 31, 2, 0)  # 04:00 CEST


def test_dst_fall_back_in_berlin() -> None:
    """27 October 2024: 03:00 CEST goes back to 02:00 CET (01:00 UTC); 02:00-03:00 happens
    twice and a range in it is active both times."""
    repeated = TimeProfile(
        name="r", timezone="Europe/Berlin", ranges=[TimeRange(start="02:15", end="02:45")]
    )
    first = berlin(2024, 10, 27, 2, 15, fold=0)
    second = berlin(2024, 10, 27, 2, 15, fold=1)
    assert second - first == 3600 * S
    changes = [next_change(repeated, utc(2024, 10, 26, 12, 0))]
    for _ in range(3):
        assert changes[-1] is not None
        changes.append(next_change(repeated, changes[-1]))
    assert changes == [first, first + 1800 * S, second, second + 1800 * S]
    night = TimeProfile(
        name="n", timezone="Europe/Berlin", ranges=[TimeRange(start="22:00", end="06:00")]
    )
    # the night of the change lasts 9 hours of real time
    start = next_change(night, utc(2024, 10, 26, 12, 0))
    end = next_change(night, start)  # type: ignore[arg-type]
    assert start is not None and end is not None and end - start == 9 * 3600 * S


def _flips_by_stepping(profile: TimeProfile, at_us: int, hours: int) -> int | None:
    """The reference: walk minute by minute (every boundary and DST jump is on a minute)."""
    state = is_active(profile, at_us)
    first = (at_us // (60 * S) + 1) * 60 * S
    for t in range(first, at_us + hours * 3600 * S + 1, 60 * S):
        if is_active(profile, t) != state:
            return t
    return None


_hhmm = st.builds(
    lambda h, m: f"{h:02d}:{m:02d}", st.integers(0, 23), st.sampled_from([0, 15, 30, 59])
) | st.just("24:00")


@settings(max_examples=30, deadline=None)
@given(
    ranges=st.lists(
        st.tuples(
            st.lists(
                st.sampled_from(["mon", "tue", "wed", "thu", "fri", "sat", "sun"]),
                min_size=1,
                unique=True,
            ),
            _hhmm,
            _hhmm,
        )
        .filter(lambda t: t[1] != t[2])  # an empty range is refused by the model
        .map(lambda t: TimeRange(days=t[0], start=t[1], end=t[2])),
        min_size=1,
        max_size=3,
    ),
    zone=st.sampled_from(["Europe/Berlin", "America/New_York", "UTC", "Australia/Lord_Howe"]),
    start=st.sampled_from(
        [
            utc(2024, 3, 29, 0, 0),
            utc(2024, 10, 25, 0, 0),
            utc(2024, 11, 2, 0, 0),
            utc(2024, 4, 5, 0, 0),
        ]
    ),
    offset_s=st.integers(0, 2 * 86400),
    holiday=st.booleans(),
)
def test_next_change_agrees_with_stepping(
    ranges: list[TimeRange], zone: str, start: int, offset_s: int, holiday: bool
) -> None:
    at = start + offset_s * S + 123_456
    day = (datetime.fromtimestamp(at / S, UTC) + timedelta(days=1)).date().isoformat()
    p = TimeProfile(name="p", timezone=zone, ranges=ranges, except_dates=[day] if holiday else [])
    expected = _flips_by_stepping(p, at, 36)
    got = next_change(p, at, horizon_s=36 * 3600)
    assert got == expected


def test_next_change_is_computed_not_stepped() -> None:
    t = time.perf_counter()
    for i in range(200):
        next_change(FRI_NIGHT, T0 + i * 3_600 * S)
    assert (time.perf_counter() - t) / 200 < 0.01
    always = TimeProfile(name="always", ranges=[TimeRange()])
    assert next_change(always, T0) is None


def test_a_bad_exception_date_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"2024-02-30.*not a date"):
        TimeProfile(name="holidays", ranges=[TimeRange()], except_dates=["2024-02-30"])
    # A profile built without validation (from stored data) is refused by the engine too.
    bad = TimeProfile.model_construct(
        name="holidays", timezone="UTC", ranges=[TimeRange()], except_dates=["2024-02-30"]
    )
    with pytest.raises(ValueError, match=r"holidays.*2024-02-30"):
        make([], [bad])
    with pytest.raises(ValueError, match="holidays"):
        is_active(bad, T0)


def test_time_profile_condition_uses_the_event_time() -> None:
    night = TimeProfile(name="night", ranges=[TimeRange(start="18:00", end="07:00")])
    engine = make([rule("r", "motion", conditions=Conditions(time_profile="night"))], [night])
    assert engine.on_event(ev("motion", utc(2024, 6, 5, 17, 59, 59), camera="gym")) == []
    assert fired(engine.on_event(ev("motion", utc(2024, 6, 5, 18, 0), camera="yard"))) == ["r"]
    assert fired(engine.on_event(ev("motion", utc(2024, 6, 6, 6, 59), camera="lobby"))) == ["r"]


def test_an_unknown_profile_at_start_never_fires_and_warns_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "vmscore.rules")
    engine = make([rule("r", "motion", conditions=Conditions(time_profile="gone"))])
    for i in range(3):
        assert engine.on_event(ev("motion", T0 + i * S, camera="gym", zone=str(i))) == []
    assert engine.stats()["unknown_profile"] == 3
    messages = [r.getMessage() for r in caplog.records if "gone" in r.getMessage()]
    # one at start-up, one at the first evaluation
    assert len(messages) == 2 and all("'r'" in m for m in messages)


# -- schedule edges --------------------------------------------------------------------------------

NIGHT = TimeProfile(
    name="night", timezone="Europe/Berlin", ranges=[TimeRange(start="22:00", end="06:00")]
)
ARM = rule(
    "arm", "schedule", details=["night:start"], actions=[ArmAction(armed=True, sites=["school-12"])]
)
DISARM = rule(
    "disarm",
    "schedule",
    details=["night:end"],
    actions=[ArmAction(armed=False, sites=["school-12"])],
)


def test_first_tick_at_night_arms_and_later_edges_come_at_their_moment() -> None:
    engine = make([ARM, DISARM], [NIGHT])
    out = engine.tick(berlin(2024, 6, 5, 23, 30))
    assert fired(out) == ["arm"]
    f = out[0]
    assert isinstance(f, Firing) and f.event.kind == "schedule" and f.event.detail == "night:start"
    assert f.at_us == berlin(2024, 6, 5, 23, 30)
    assert engine.tick(berlin(2024, 6, 6, 5, 59, 59)) == []
    out = engine.tick(berlin(2024, 6, 6, 6, 0, 7))
    assert fired(out) == ["disarm"] and out[0].at_us == berlin(2024, 6, 6, 6, 0)  # type: ignore[union-attr]
    assert engine.tick(berlin(2024, 6, 6, 21, 0)) == []
    # ticks a minute apart see each edge once
    seen = []
    for minute in range(24 * 60):
        seen += fired(engine.tick(berlin(2024, 6, 6, 21, 0) + minute * 60 * S))
    assert seen == ["arm", "disarm"]


def test_first_tick_by_day_reports_nothing() -> None:
    engine = make([ARM, DISARM], [NIGHT])
    assert engine.tick(berlin(2024, 6, 5, 12, 0)) == []
    assert fired(engine.tick(berlin(2024, 6, 5, 22, 0))) == ["arm"]
    assert engine.stats()["schedule_edges"] == 1


def test_ticks_that_stop_for_days_do_not_replay_every_edge() -> None:
    engine = make([ARM, DISARM], [NIGHT])
    engine.tick(berlin(2024, 6, 5, 12, 0))
    # months later, at night: only the present state is reported
    out = engine.tick(berlin(2024, 9, 1, 23, 0))
    assert fired(out) == ["arm"] and out[0].at_us == berlin(2024, 9, 1, 23, 0)  # type: ignore[union-attr]
    assert fired(engine.tick(berlin(2024, 9, 2, 6, 0))) == ["disarm"]
    # months later again, by day as at the last tick: nothing to report
    assert engine.tick(berlin(2024, 12, 2, 12, 0)) == []
    # a short stall is replayed edge by edge, in order
    out = engine.tick(berlin(2024, 12, 4, 12, 0))
    assert fired(out) == ["arm", "disarm", "arm", "disarm"]
    assert [o.at_us for o in out] == [  # type: ignore[union-attr]
        berlin(2024, 12, 2, 22, 0),
        berlin(2024, 12, 3, 6, 0),
        berlin(2024, 12, 3, 22, 0),
        berlin(2024, 12, 4, 6, 0),
    ]


def test_schedule_edges_pass_through_conditions_like_any_event() -> None:
    weekend = TimeProfile(
        name="weekend", timezone="Europe/Berlin", ranges=[TimeRange(days=["sat", "sun"])]
    )
    r = rule(
        "weekend_nights",
        "schedule",
        details=["night:start"],
        conditions=Conditions(time_profile="weekend"),
    )
    engine = make([r], [NIGHT, weekend])
    engine.tick(berlin(2024, 6, 7, 12, 0))  # Friday
    assert engine.tick(berlin(2024, 6, 7, 22, 0)) == []  # Friday night: not the weekend
    assert fired(engine.tick(berlin(2024, 6, 8, 22, 0))) == ["weekend_nights"]


# -- update at run time ----------------------------------------------------------------------------


def test_update_refuses_a_missing_profile_and_keeps_the_old_rules() -> None:
    engine = make([rule("r", "motion")])
    with pytest.raises(ValueError, match=r"rule 'x'.*'nope'"):
        engine.update([rule("x", "motion", conditions=Conditions(time_profile="nope"))], [])
    with pytest.raises(ValueError, match=r"rule 's'.*'nope'"):
        engine.update([rule("s", "schedule", details=["nope:start"])], [])
    with pytest.raises(ValueError, match="'<time profile>:start'"):
        engine.update([rule("s", "schedule", details=["night"])], [NIGHT])
    with pytest.raises(ValueError, match="two rules"):
        engine.update([rule("r", "motion"), rule("r", "tamper")], [])
    with pytest.raises(ValueError, match="two time profiles"):
        engine.update([], [NIGHT, NIGHT])
    assert fired(engine.on_event(ev("motion", T0, camera="gym"))) == ["r"]


def test_update_keeps_unchanged_waits_and_drops_changed_ones() -> None:
    keep = rule("keep", "motion", conditions=Conditions(min_duration_s=10))
    change = rule("change", "motion", conditions=Conditions(min_duration_s=10))
    engine = make([keep, change])
    engine.on_event(ev("motion", T0, camera="gym"))
    assert engine.pending() == 2
    changed = rule("change", "motion", conditions=Conditions(min_duration_s=20))
    # an equal copy of a rule counts as unchanged
    engine.update([keep.model_copy(), changed, rule("new", "tamper")], [NIGHT])
    assert engine.pending() == 1
    assert fired(engine.tick(T0 + 30 * S)) == ["keep"]
    # the new rule works, and the new profile is seen at the next tick
    assert fired(engine.on_event(ev("tamper", T0 + 31 * S, camera="gym"))) == ["new"]


def test_update_keeps_fired_conditions_so_their_end_still_closes() -> None:
    engine = make([rule("gone", "camera_offline"), rule("edited", "camera_offline")])
    engine.on_event(ev("camera_offline", T0, camera="gym"))
    edited = rule("edited", "camera_offline", actions=[AlarmAction(priority="low")])
    engine.update([edited], [])
    out = engine.on_event(ev("camera_online", T0 + S, camera="gym"))
    assert ended(out) == ["edited", "gone"]
    # the ending carries the definition that fired (its close_on_end), not the edited one
    assert all(isinstance(o, Ending) and o.rule.actions[0].close_on_end for o in out)  # type: ignore[union-attr]


def test_update_of_a_profile_reports_its_new_state_at_the_next_tick() -> None:
    engine = make([ARM, DISARM], [NIGHT])
    engine.tick(berlin(2024, 6, 5, 12, 0))
    evening = NIGHT.model_copy(update={"ranges": [TimeRange(start="11:00", end="06:00")]})
    engine.update([ARM, DISARM], [evening])
    assert fired(engine.tick(berlin(2024, 6, 5, 12, 0, 1))) == ["arm"]
    engine.update([ARM, DISARM], [evening])  # unchanged: nothing new
    assert engine.tick(berlin(2024, 6, 5, 12, 0, 2)) == []


# -- determinism and bounds ------------------------------------------------------------------------

PROFILES = [
    NIGHT,
    TimeProfile(
        name="school",
        timezone="Europe/Berlin",
        ranges=[TimeRange(days=["mon", "tue", "wed", "thu", "fri"], start="07:30", end="16:00")],
        except_dates=["2024-06-06"],
    ),
]
RULES = [
    rule(
        "intrusion",
        "motion",
        groups=["indoor"],
        zones=["door"],
        conditions=Conditions(
            time_profile="night", site_armed=True, min_duration_s=2, cooldown_s=30
        ),
    ),
    rule(
        "any_motion",
        "motion",
        conditions=Conditions(cooldown_s=5),
        actions=[BookmarkAction(), SnapshotAction()],
    ),
    rule(
        "tamper", "tamper", details=["covered", "too_dark"], conditions=Conditions(min_duration_s=3)
    ),
    rule(
        "offline",
        "camera_offline",
        sites=["school-12"],
        conditions=Conditions(min_duration_s=60, cooldown_s=600),
    ),
    rule("gap", "recording_gap", conditions=Conditions(min_duration_s=1)),
    rule("disk", "disk_trouble", conditions=Conditions(cooldown_s=60)),
    rule("panic", "external", details=["panic"], conditions=Conditions(min_duration_s=1)),
    ARM,
    DISARM,
    rule("off", "motion", enabled=False),
]

SUBJECTS = [
    ("gym", "school-12", "door"),
    ("lobby", "school-7", None),
    ("ghost", None, None),
    (None, "school-12", None),
]
"""Camera, site and zone together, so that begins and ends meet on the same key."""

_events = st.lists(
    st.tuples(
        # begins, their ends and ticks, at small steps with the odd jump of hours
        st.sampled_from([*EVENT_KINDS, "motion", "motion_end", "tamper", "tick", "tick", "tick"]),
        st.sampled_from([0, 1, 2, 3, 5, 30, 120, 3 * 3600]),
        st.sampled_from(SUBJECTS),
        st.sampled_from(["", "covered", "panic", "night:start", "disk1"]),
        st.sampled_from([{}, {"start_us": 0, "end_us": 5 * S}, {"reason": "storage_full"}]),
    ),
    max_size=80,
)


def _run(steps: list[tuple[Any, ...]]) -> tuple[list[Firing | Ending], dict[str, int]]:
    station = Station(armed=["school-7"])
    engine = make(RULES, PROFILES, station=station)
    t = berlin(2024, 6, 5, 20, 0)
    out: list[Firing | Ending] = []
    for kind, dt, (camera, site, zone), detail, data in steps:
        t += dt * S
        if kind == "tick":
            got = engine.tick(t)
        else:
            got = engine.on_event(
                ev(kind, t, camera=camera, site=site, zone=zone, detail=detail, data=data)
            )
        for o in got:  # the station executes arm actions, so arming is part of the sequence
            if isinstance(o, Firing) and isinstance(o.action, ArmAction):
                for s in o.action.sites:
                    (station.armed.add if o.action.armed else station.armed.discard)(s)
        out += got
    return out, engine.stats()


@settings(max_examples=60, deadline=None)
@given(steps=_events)
def test_same_inputs_give_the_same_outputs(steps: list[tuple[Any, ...]]) -> None:
    first, stats = _run(steps)
    second, stats2 = _run(steps)
    assert first == second and stats == stats2
    _check_endings(first)


def _check_endings(out: list[Firing | Ending]) -> None:
    """Every Ending answers an earlier firing of the same rule and key, once."""
    open_keys: set[tuple[str, str]] = set()
    for o in out:
        if isinstance(o, Firing):
            open_keys.add((o.rule.name, o.key))
        else:
            assert (o.rule.name, o.key) in open_keys
            open_keys.discard((o.rule.name, o.key))
    assert not any(o.rule.name == "off" for o in out)


def test_a_long_random_night_is_reproducible_and_exercises_every_rule() -> None:
    """Thousands of seeded steps: the same output twice, and each rule with a way to fire did
    (so the comparison above is not between two empty lists)."""
    rng = random.Random(12)
    kinds = [*EVENT_KINDS, "motion", "motion_end", "tamper", "tick", "tick", "tick"]
    steps = [
        (
            rng.choice(kinds),
            rng.choice([0, 1, 2, 3, 5, 30, 120]),
            rng.choice(SUBJECTS),
            rng.choice(["", "covered", "panic", "night:start", "disk1"]),
            rng.choice([{}, {"start_us": 0, "end_us": 5 * S}, {"reason": "storage_full"}]),
        )
        for _ in range(4000)
    ]
    first, stats = _run(steps)
    assert (first, stats) == _run(steps)
    _check_endings(first)
    names = {o.rule.name for o in first if isinstance(o, Firing)}
    assert names == {r.name for r in RULES} - {"off"}  # about a day and a night
    assert {o.rule.name for o in first if isinstance(o, Ending)} >= {"intrusion", "offline"}
    assert stats["continuations"] > 0 and stats["cancelled"] > 0


def test_state_stays_bounded_under_200k_distinct_keys(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "vmscore.rules")
    rules = [
        rule("open", "motion", conditions=Conditions(cooldown_s=3600)),
        rule("wait", "motion", conditions=Conditions(min_duration_s=3600)),
    ]
    engine = make(rules, max_keys=100_000)
    t0 = time.perf_counter()
    for i in range(200_000):
        engine.on_event(ev("motion", T0 + i, camera=f"cam{i}", zone="z"))
    stats = engine.stats()
    assert stats["open"] == stats["pending"] == stats["cooldowns"] == 100_000
    assert stats["dropped_keys"] == 3 * 100_000
    assert len(engine._wait_heap) <= 2 * 100_000 + 1024  # stale deadlines are compacted
    assert len(engine._cooldown_heap) <= 2 * 100_000 + 1024
    assert any("dropped the oldest" in r.getMessage() for r in caplog.records)
    # the newest conditions are the ones kept: their end still closes
    assert ended(engine.on_event(ev("motion_end", T0, camera="cam199999", zone="z"))) == ["open"]
    assert engine.on_event(ev("motion_end", T0, camera="cam0", zone="z")) == []
    # time passing empties waits and cooldowns
    engine.tick(T0 + 2 * 3600 * S)
    stats = engine.stats()
    assert stats["pending"] == 0 and stats["cooldowns"] == 0
    assert time.perf_counter() - t0 < 20


def test_bad_input_is_a_clear_error() -> None:
    with pytest.raises(TypeError, match="StationEvent"):
        make([]).on_event({"kind": "motion"})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Rule"):
        make([{"name": "r"}])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="max_keys"):
        make([], max_keys=0)
    with pytest.raises(ValueError, match="horizon"):
        next_change(NIGHT, T0, horizon_s=0)


# -- webhooks --------------------------------------------------------------------------------------


class Receiver:
    """A real HTTP server on 127.0.0.1 answering each request with the next scripted status
    (then 200), recording what arrived."""

    def __init__(self, statuses: Sequence[int] = (), hang: bool = False) -> None:
        self.statuses = list(statuses)
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        self.release = threading.Event()
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                with outer.lock:
                    outer.requests.append((self.command, self.path, dict(self.headers), body))
                    status = outer.statuses.pop(0) if outer.statuses else 200
                if hang:
                    outer.release.wait(10)
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            do_POST = do_PUT = do_GET = _handle  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def url(self, path: str = "/hook", auth: str = "") -> str:
        return f"http://{auth}127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def receiver_factory() -> Iterator[Callable[..., Receiver]]:
    made: list[Receiver] = []

    def factory(*args: Any, **kw: Any) -> Receiver:
        made.append(Receiver(*args, **kw))
        return made[-1]

    yield factory
    for r in made:
        r.close()


@pytest.fixture
def sender() -> Iterator[WebhookSender]:
    s = WebhookSender(backoff_s=0.05, max_backoff_s=0.2)
    yield s
    s.close(2)


def wait_for(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.01)


def _firing() -> Firing:
    r = rule("door", "motion", actions=[WebhookAction(url="http://127.0.0.1:9/")])
    e = ev("motion", T0, camera="gym", zone="door")
    return Firing(r, r.actions[0], e, e.key, T0)


@pytest.mark.parametrize("status", [503, 500, 429])
def test_webhook_retries_server_errors_then_delivers(
    receiver_factory: Callable[..., Receiver], sender: WebhookSender, status: int
) -> None:
    rx = receiver_factory([status, status])
    body = webhook_body(_firing(), {"alarm_id": 7})
    assert sender.send(WebhookAction(url=rx.url(), retries=3), body)
    wait_for(lambda: sender.stats()["sent"] == 1)
    assert sender.stats() == {"sent": 1, "failed": 0, "retried": 2, "dropped": 0, "queued": 0}
    assert len(rx.requests) == 3
    for method, path, headers, raw in rx.requests:
        assert method == "POST" and path == "/hook"
        assert headers["content-type"] == "application/json"
        sent = json.loads(raw)
        assert sent["rule"] == "door" and sent["alarm_id"] == 7
        assert sent["event"] == {
            "kind": "motion",
            "at_us": T0,
            "site": None,
            "camera": "gym",
            "zone": "door",
            "detail": "",
            "data": {},
        }


def test_webhook_gives_up_after_its_retries(
    receiver_factory: Callable[..., Receiver], sender: WebhookSender
) -> None:
    rx = receiver_factory([503] * 10)
    sender.send(WebhookAction(url=rx.url(), retries=2), {"x": 1})
    wait_for(lambda: sender.stats()["failed"] == 1)
    assert len(rx.requests) == 3 and sender.stats()["retried"] == 2


def test_webhook_4xx_is_not_retried(
    receiver_factory: Callable[..., Receiver], sender: WebhookSender
) -> None:
    rx = receiver_factory([400])
    sender.send(WebhookAction(url=rx.url(), retries=5), {"x": 1})
    wait_for(lambda: sender.stats()["failed"] == 1)
    time.sleep(0.3)  # longer than a backoff: a retry would have arrived
    assert len(rx.requests) == 1 and sender.stats()["retried"] == 0


def test_a_request_that_cannot_be_made_fails_and_the_worker_goes_on(
    receiver_factory: Callable[..., Receiver], sender: WebhookSender
) -> None:
    rx = receiver_factory()
    sender.send(WebhookAction(url=rx.url(), headers={"X-Name": "\u20ac"}), {"x": 1})
    sender.send(WebhookAction(url=rx.url("/next")), {"x": 2})
    wait_for(lambda: sender.stats()["sent"] == 1)
    assert sender.stats()["failed"] == 1 and sender.stats()["retried"] == 0
    assert [path for _, path, _, _ in rx.requests] == ["/next"]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_webhook_to_an_unreachable_port_gives_up_with_backoff(sender: WebhookSender) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/hook"
    t = time.monotonic()
    sender.send(WebhookAction(url=url, retries=3, timeout_s=1), {"x": 1})
    wait_for(lambda: sender.stats()["failed"] == 1)
    elapsed = time.monotonic() - t
    assert sender.stats()["retried"] == 3 and sender.stats()["sent"] == 0
    assert 0.05 + 0.1 + 0.2 <= elapsed < 5  # backoff doubled: 0.05, 0.1, 0.2 (the cap)


def test_webhook_methods_headers_and_credentials(
    receiver_factory: Callable[..., Receiver],
    sender: WebhookSender,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    rx = receiver_factory([503])
    url = rx.url("/put?token=abc", auth="ops:s3cr%40t@")
    sender.send(WebhookAction(url=url, method="PUT", headers={"X-Station": "central"}), {"a": 1})
    sender.send(WebhookAction(url=rx.url("/get"), method="GET"), {"a": 1})
    wait_for(lambda: sender.stats()["sent"] == 2)
    (m1, p1, h1, b1), (m2, _, _, _), (m3, p3, _, b3) = rx.requests
    assert (m1, m2, p1) == ("PUT", "PUT", "/put?token=abc") and json.loads(b1) == {"a": 1}
    assert h1["X-Station"] == "central"
    assert h1["Authorization"] == "Basic " + base64.b64encode(b"ops:s3cr@t").decode()
    assert (m3, p3, b3) == ("GET", "/get", b"")
    text = " ".join(r.getMessage() for r in caplog.records)
    assert "retry" in text and "s3cr" not in text and "ops:" not in text
    ours = " ".join(r.getMessage() for r in caplog.records if r.name.startswith("vmscore"))
    assert "token" not in ours
    assert redact_url("https://u:p@example.invalid:8443/x?k=v") == "https://example.invalid:8443/x"


def test_webhook_send_never_blocks_and_counts_overflow(
    receiver_factory: Callable[..., Receiver],
) -> None:
    rx = receiver_factory(hang=True)
    s = WebhookSender(queue_size=2, backoff_s=0.05)
    try:
        t = time.monotonic()
        results = [s.send(WebhookAction(url=rx.url(), retries=0), {"i": i}) for i in range(10)]
        assert time.monotonic() - t < 0.5
        wait_for(lambda: len(rx.requests) == 1)
        # one in flight (maybe taken before all were queued), two queued, the rest dropped
        assert results[:2] == [True, True] and 7 <= results.count(False) <= 8
        assert s.stats()["dropped"] == results.count(False)
        with pytest.raises(ValueError, match="JSON"):
            s.send(WebhookAction(url=rx.url()), {"bad": object()})
    finally:
        rx.release.set()
        s.close(2)
    assert s.stats()["sent"] == results.count(True)
    assert s.send(WebhookAction(url=rx.url()), {}) is False  # closed


def _worker_running() -> bool:
    return any(t.name == "webhook-sender" for t in threading.enumerate())


def test_webhook_close_is_bounded_during_retries() -> None:
    s = WebhookSender(backoff_s=0.5, max_backoff_s=30)
    url = f"http://127.0.0.1:{_closed_port()}/"
    s.send(WebhookAction(url=url, retries=20, timeout_s=60), {"a": 1})
    wait_for(lambda: s.stats()["retried"] >= 1)
    t = time.monotonic()
    s.close(0.3)
    assert time.monotonic() - t < 2.5  # timeout + 1 s at most
    assert s.stats()["failed"] == 1 and s.stats()["retried"] < 20
    assert not _worker_running()


def test_webhook_close_is_bounded_with_an_attempt_in_flight(
    receiver_factory: Callable[..., Receiver],
) -> None:
    rx = receiver_factory(hang=True)
    s = WebhookSender()
    s.send(WebhookAction(url=rx.url(), timeout_s=60), {"a": 1})
    s.send(WebhookAction(url=rx.url("/second")), {"b": 2})
    wait_for(lambda: len(rx.requests) == 1)
    t = time.monotonic()
    s.close(0.3)
    assert time.monotonic() - t < 2.5  # timeout + 1 s at most
    rx.release.set()  # the attempt in flight ends on its own; what was queued is given up
    wait_for(lambda: not _worker_running())
    assert s.stats()["sent"] == 1 and s.stats()["dropped"] == 1
    assert [path for _, path, _, _ in rx.requests] == ["/hook"]


def test_camera_back_online_is_a_trigger_of_its_own() -> None:
    """The offline rule's condition ends (its alarm may close) and a rule made for the return
    fires, once per return."""
    offline = rule("offline", "camera_offline")
    back = rule("back", "camera_online")
    engine = make([offline, back], [])
    assert fired(engine.on_event(ev("camera_offline", T0, camera="gym"))) == ["offline"]
    out = engine.on_event(ev("camera_online", T0 + 5 * S, camera="gym"))
    assert [type(o).__name__ for o in out] == ["Ending", "Firing"]
    assert fired(out) == ["back"] and out[0].rule.name == "offline"
    assert fired(engine.on_event(ev("camera_online", T0 + 9 * S, camera="gym"))) == ["back"]
