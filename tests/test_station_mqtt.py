"""The station speaking MQTT to a real mosquitto on loopback: retained availability of the station
and its sites (online, then stopped), a simulated camera's motion as ON/OFF state, alarms as
new/update/end whoever changes them, commands in (acknowledge, arm/disarm, external events) with
malformed or misdirected ones changing nothing, and a broker that goes away and comes back."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mqtt_helpers import Broker, Message, Subscriber, mosquitto, read_retained, wait_until
from station_helpers import clip, document, http_server, login, zones_of
from vmscore.sim import CameraServer
from vmscore.station.station import Station

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]

STATION = "test-station"
AVAILABLE = f"vmscore/station/{STATION}/available"

RULES: list[dict[str, Any]] = [
    {
        "name": "intrusion",
        "trigger": {"kind": "motion"},
        "conditions": {"site_armed": True},
        "actions": [{"type": "alarm", "priority": "high", "category": "Intrusion"}],
    },
    {
        "name": "panic",
        "trigger": {"kind": "external", "details": ["panic"]},
        "actions": [{"type": "alarm", "priority": "critical", "title": "Panic button"}],
    },
    {
        "name": "doorbell",
        "trigger": {"kind": "external", "details": ["doorbell"]},
        "actions": [{"type": "mqtt", "topic": "vmscore/{site}/bell/{camera}", "payload": "rang"}],
    },
]
SITES = [{"name": "school-1", "armed": True}, {"name": "school-2", "armed": False}]


def station_document(home: Path, broker: Broker, cameras: list[dict[str, Any]]) -> dict[str, Any]:
    return document(
        home,
        cameras,
        sites=SITES,
        rules=RULES,
        mqtt={"host": broker.host, "port": broker.port, "reconnect_max_s": 2},
    )


def payload_json(m: Message) -> dict[str, Any]:
    data = json.loads(m.payload)
    assert isinstance(data, dict)
    return data


def alarm_messages(sub: Subscriber, site: str, alarm_id: int | None = None) -> list[dict[str, Any]]:
    out = [payload_json(m) for m in sub.of(f"vmscore/{site}/alarms")]
    return [m for m in out if alarm_id is None or m["after"]["id"] == alarm_id]


def wait_alarm(
    sub: Subscriber,
    site: str,
    match: Callable[[dict[str, Any]], bool],
    what: str,
    timeout: float = 10.0,
) -> dict[str, Any]:
    """The first message on the site's alarms topic that ``match`` accepts."""
    found: list[dict[str, Any]] = []

    def seen() -> bool:
        found[:] = [m for m in alarm_messages(sub, site) if match(m)]
        return bool(found)

    wait_until(seen, timeout, what)
    return found[0]


def wait_alarm_state(station: Station, alarm_id: int, state: str, timeout: float = 10.0) -> None:
    wait_until(
        lambda: station.alarms.get(alarm_id).state == state,
        timeout,
        f"alarm {alarm_id} {state}",
    )


# --- the shared world: one broker, one simulated camera with motion in a zone ------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A station on a simulated corridor camera with two schools, school-1 armed, school-2
    disarmed; the subscriber records from before the station starts, so every message arrives
    live. The camera watches one zone, the door on the left: the person who appears at the far
    end 2.5 s into the clip covers it in the picture while walking past, from about 3 s to 6 s
    (at 17 s the next one walks in), so its motion goes ON and, after the off-delay, OFF."""
    root = tmp_path_factory.mktemp("mqtt-station")
    corridor = clip(str(root / "clips"), "corridor", 1, 20.0)
    with (
        mosquitto(root / "broker") as broker,
        CameraServer() as cs,
        Subscriber(broker, "#") as sub,
    ):
        cs.add_camera("corridor", corridor.directory)
        t_add = time.time()
        cam = {
            "name": "corridor",
            "site": "school-1",
            "main_url": cs.url("corridor"),
            "sub_url": cs.url("corridor", sub=True),
            "motion": {"zones": zones_of(corridor, ["door-left"])},
        }
        station = Station(station_document(root / "home", broker, [cam]))
        try:
            assert station.mqtt is not None and station.mqtt.wait_connected(10)
            with http_server(station) as base:
                yield {
                    "broker": broker,
                    "station": station,
                    "sub": sub,
                    "base": base,
                    "t_add": t_add,
                    "clip": corridor,
                }
        finally:
            station.close()


def test_station_and_sites_announced_online(world: dict[str, Any]) -> None:
    """A dashboard learns from retained topics alone which station serves which school and
    that both are up."""
    retained = read_retained(world["broker"], "vmscore/#")
    assert retained[AVAILABLE] == b"online"
    for site in ("school-1", "school-2"):
        assert retained[f"vmscore/{site}/available"] == b"online"
        assert retained[f"vmscore/{site}/station"] == STATION.encode()
    assert world["station"].health()["mqtt"]["connected"] is True
    # A camera healthy from the start is announced online too (not only after an outage).
    wait_until(
        lambda: (
            read_retained(world["broker"], "vmscore/school-1/corridor/status").get(
                "vmscore/school-1/corridor/status"
            )
            == b"online"
        ),
        10,
        "the camera's retained status online",
    )


def test_camera_motion_on_then_off(world: dict[str, Any]) -> None:
    """A person passing the corridor's door zone turns the camera's and the zone's retained
    motion state ON, and OFF again once they are gone (after the off-delay)."""
    sub: Subscriber = world["sub"]
    cam = "vmscore/school-1/corridor"
    appears = min(e.start_s for e in world["clip"].truth.events if e.kind == "object_present")
    on = sub.wait_for(
        f"{cam}/motion", b"ON", timeout=max(0.0, world["t_add"] + appears - time.time()) + 8
    )
    assert on[0].retain is False
    sub.wait_for(f"{cam}/zones/door-left/motion", b"ON", timeout=5)
    sub.wait_for(f"{cam}/motion", b"OFF", timeout=15)
    sub.wait_for(f"{cam}/zones/door-left/motion", b"OFF", timeout=5)
    assert not sub.of(f"{cam}/zones/near/motion"), "only configured zones have a topic"
    states = [m.payload for m in sub.of(f"{cam}/motion")]
    assert states[:2] == [b"ON", b"OFF"], "motion state alternates, starting with ON"
    # Every event on the site's events topic too (just after the state it changed).
    ended = sub.wait_for(
        "vmscore/school-1/events", lambda p: json.loads(p)["kind"] == "motion_end", timeout=5
    )
    assert payload_json(ended[0])["zone"] == "door-left"
    events = [payload_json(m) for m in sub.of("vmscore/school-1/events")]
    begins = [e for e in events if e["kind"] == "motion" and e["camera"] == "corridor"]
    assert begins and begins[0]["zone"] == "door-left"
    # The retained value follows the latest change, for a consumer that connects later.
    retained = read_retained(world["broker"], f"{cam}/#")
    later = [m.payload for m in sub.of(f"{cam}/motion")][len(states) - 1 :]
    assert retained[f"{cam}/motion"] in later
    # The camera's health as retained JSON (first published a few seconds after the start).
    health = json.loads(sub.wait_for(f"{cam}/state", timeout=10)[-1].payload)
    assert health["camera"] == "corridor" and health["online"] is True


def test_motion_alarm_new_update_end(world: dict[str, Any]) -> None:
    """The operator's screen and an MQTT consumer must agree: the alarm raised by the motion
    rule appears as new, the operator's acknowledgement through the API as update (before and
    after), and closing it as end."""
    sub: Subscriber = world["sub"]
    station: Station = world["station"]
    new = wait_alarm(
        sub,
        "school-1",
        lambda m: m["type"] == "new" and m["after"]["rule"] == "intrusion",
        "intrusion alarm on MQTT",
        timeout=20,
    )
    alarm = new["after"]
    assert new["before"] is None
    # The change's number in the station's change log: a central consumer deduplicates by it.
    assert new["station"] == station.config.station.name and new["seq"] >= 1
    assert (alarm["camera"], alarm["zone"], alarm["state"]) == ("corridor", "door-left", "new")
    aid = alarm["id"]
    with contextlib.closing(login(world["base"], "operator")) as op:
        r = op.post(f"/api/alarms/{aid}/acknowledge")
        assert r.status_code == 200, r.text
    upd = wait_alarm(
        sub,
        "school-1",
        lambda m: (
            m["type"] == "update"
            and m["after"]["id"] == aid
            and m["after"]["state"] == "in_progress"
        ),
        "acknowledgement on MQTT",
    )
    assert upd["before"]["state"] == "new" and upd["after"]["owner"] == "operator"
    station.alarms.close(aid, "operator", "caretaker", "Intrusion")
    end = wait_alarm(
        sub, "school-1", lambda m: m["type"] == "end" and m["after"]["id"] == aid, "end on MQTT"
    )
    assert end["after"]["state"] == "closed" and end["before"]["state"] == "in_progress"
    assert new["seq"] < upd["seq"] < end["seq"]
    kinds = [m["type"] for m in alarm_messages(sub, "school-1", aid)]
    assert kinds[0] == "new" and kinds[-1] == "end" and "update" in kinds
    assert not alarm_messages(sub, "school-2", aid), "an alarm goes to its own site only"


def _close_panics(station: Station, site: str) -> None:
    for a in station.alarms.list(states=["new", "in_progress", "on_hold"], limit=1000):
        if a.rule == "panic" and a.site == site:
            station.alarms.close(a.id, "operator", "test done")


def _panic(station: Station, sub: Subscriber, site: str = "school-2") -> int:
    """Raises a panic alarm through the station's API and waits for it on MQTT. An open panic
    alarm of the site is closed first (the same condition would re-trigger it, not raise one)."""
    _close_panics(station, site)
    before = {a.id for a in station.alarms.list(limit=1000)}
    station.external_event("panic", site=site)
    new = wait_alarm(
        sub,
        site,
        lambda m: (
            m["type"] == "new" and m["after"]["rule"] == "panic" and m["after"]["id"] not in before
        ),
        "panic alarm",
    )
    return int(new["after"]["id"])


def test_ack_command_acknowledges_as_the_mqtt_user(world: dict[str, Any]) -> None:
    """A guard's panel acknowledges over MQTT: the alarm is worked, and its history and the
    audit log name who did it as ``mqtt:<user>``, never as a station operator."""
    station: Station = world["station"]
    sub: Subscriber = world["sub"]
    aid = _panic(station, sub)
    sub.publish("vmscore/school-2/cmd/ack", json.dumps({"alarm_id": aid, "user": "guard"}))
    wait_alarm_state(station, aid, "in_progress")
    alarm = station.alarms.get(aid)
    assert alarm.owner == "mqtt:guard"
    steps = [(h.action, h.user) for h in station.alarms.history(aid)]
    assert ("acknowledged", "mqtt:guard") in steps
    upd = wait_alarm(
        sub,
        "school-2",
        lambda m: m["type"] == "update" and m["after"]["id"] == aid,
        "the acknowledgement published back",
    )
    assert upd["after"]["owner"] == "mqtt:guard"
    wait_until(
        lambda: (
            [(e.action, e.target) for e in station.users.audit_log(user="mqtt:guard")]
            == [("mqtt.ack", str(aid))]
        ),
        5,
        "the command in the audit log",
    )
    # Delivered twice (QoS 1 may repeat): the second changes nothing. Hold and close need no
    # comment.
    version = station.alarms.get(aid).version
    for name in ("ack", "hold", "close"):
        sub.publish(f"vmscore/school-2/cmd/{name}", json.dumps({"alarm_id": aid, "user": "guard"}))
    wait_alarm_state(station, aid, "closed")
    assert station.alarms.get(aid).version == version + 2
    steps = [(h.action, h.user, h.to_state) for h in station.alarms.history(aid)][-2:]
    assert steps == [("on_hold", "mqtt:guard", "on_hold"), ("closed", "mqtt:guard", "closed")]


def test_arm_and_disarm_commands(world: dict[str, Any]) -> None:
    """The caretaker's key switch arms and disarms the school through its own topic only; the
    state is kept in the station's database."""
    station: Station = world["station"]
    sub: Subscriber = world["sub"]
    assert not station.is_armed("school-2") and station.is_armed("school-1")
    sub.publish("vmscore/school-2/cmd/arm", json.dumps({"user": "caretaker"}))
    wait_until(lambda: station.is_armed("school-2"), 10, "school-2 armed")
    assert station.store.armed()["school-2"] is True, "the armed state survives a restart"
    sub.publish("vmscore/school-2/cmd/disarm", b"")  # an empty payload is a valid command
    wait_until(lambda: not station.is_armed("school-2"), 10, "school-2 disarmed")
    assert station.is_armed("school-1"), "a site's command must not touch another site"
    wait_until(
        lambda: (
            {"mqtt.arm", "mqtt.disarm"}
            <= {e.action for e in station.users.audit_log(action="mqtt.")}
        ),
        5,
        "arming and disarming in the audit log",
    )


def test_event_command_raises_an_alarm_through_a_rule(world: dict[str, Any]) -> None:
    """A panic button wired to MQTT: its event goes through the rules like any other and
    raises the rule's alarm, with the button's data kept in the alarm."""
    station: Station = world["station"]
    sub: Subscriber = world["sub"]
    _close_panics(station, "school-2")
    before = {a.id for a in station.alarms.list(limit=1000)}
    sub.publish("vmscore/school-2/cmd/event", json.dumps({"name": "panic", "data": {"button": 3}}))
    new = wait_alarm(
        sub,
        "school-2",
        lambda m: m["type"] == "new" and m["after"]["id"] not in before,
        "alarm from an MQTT event",
    )
    alarm = new["after"]
    assert (alarm["rule"], alarm["priority"], alarm["site"]) == ("panic", "critical", "school-2")
    assert alarm["data"]["event"]["data"] == {"button": 3}
    ev = payload_json(
        sub.wait_for("vmscore/school-2/events", lambda p: json.loads(p)["kind"] == "external")[0]
    )
    assert ev["detail"] == "panic" and ev["site"] == "school-2"
    # An event naming a camera of the site: a rule's mqtt action answers on the camera's topic.
    sub.publish(
        "vmscore/school-1/cmd/event", json.dumps({"name": "doorbell", "camera": "corridor"})
    )
    sub.wait_for("vmscore/school-1/bell/corridor", b"rang")


def test_malformed_and_misdirected_commands_change_nothing(world: dict[str, Any]) -> None:
    """A broken integration or a school's broker must not change anything it has no business
    with; the station goes on serving the commands that are right."""
    station: Station = world["station"]
    sub: Subscriber = world["sub"]
    link = station.mqtt
    assert link is not None
    aid = _panic(station, sub)
    other = _panic(station, sub, site="school-1")
    armed = {s: station.is_armed(s) for s in ("school-1", "school-2")}
    alarms_before = {a.id: (a.state, a.owner) for a in station.alarms.list(limit=1000)}
    bad_before = link.stats()["bad_commands"]

    refused_by_the_link = [
        ("vmscore/school-2/cmd/ack", b"not json"),
        ("vmscore/school-2/cmd/ack", b"[1, 2]"),
        ("vmscore/school-2/cmd/ack", json.dumps({"alarm_id": aid})),  # no user
        ("vmscore/school-2/cmd/ack", json.dumps({"alarm_id": aid, "user": "g", "x": 1})),
        ("vmscore/school-2/cmd/ack", json.dumps({"alarm_id": -1, "user": "guard"})),
        ("vmscore/school-2/cmd/ack", json.dumps({"alarm_id": True, "user": "guard"})),
        ("vmscore/school-2/cmd/ack", b"{" + b" " * (70 * 1024) + b"}"),
        ("vmscore/school-2/cmd/arm", json.dumps({"user": 5})),
        ("vmscore/school-2/cmd/arm", b"\xff\xfe"),
        ("vmscore/school-2/cmd/explode", b"{}"),
        ("vmscore/school-2/cmd/event", json.dumps({"name": "bad name!"})),
    ]
    refused_by_the_station = [
        ("vmscore/school-2/cmd/ack", json.dumps({"alarm_id": "abc", "user": "guard"})),
        ("vmscore/school-2/cmd/ack", json.dumps({"alarm_id": 10**9, "user": "guard"})),
        # Another site's alarm or camera through this site's topic: a school's broker bridges
        # only its own topics, so it must not reach the other schools through them.
        ("vmscore/school-2/cmd/ack", json.dumps({"alarm_id": other, "user": "guard"})),
        ("vmscore/school-2/cmd/close", json.dumps({"alarm_id": other, "user": "guard"})),
        ("vmscore/school-2/cmd/event", json.dumps({"name": "panic", "camera": "corridor"})),
        ("vmscore/school-2/cmd/event", json.dumps({"name": "panic", "camera": "nowhere"})),
        ("vmscore/school-2/cmd/assign", json.dumps({"alarm_id": aid, "user": "g", "to": "\x01"})),
    ]
    # Topics the station does not subscribe to: a site it does not serve, a level too deep.
    not_delivered = [("vmscore/school-9/cmd/arm", b""), ("vmscore/school-2/cmd/ack/x", b"{}")]
    for topic, payload in refused_by_the_link + refused_by_the_station + not_delivered:
        sub.publish(topic, payload)
    # Commands are handled in order: once this one took effect, every one before it was seen.
    sub.publish(
        "vmscore/school-2/cmd/comment",
        json.dumps({"alarm_id": aid, "user": "guard", "comment": "sentinel"}),
    )
    wait_until(
        lambda: any(h.detail == "sentinel" for h in station.alarms.history(aid)),
        10,
        "the valid command after the bad ones",
    )
    assert link.stats()["bad_commands"] - bad_before == len(refused_by_the_link)
    assert {s: station.is_armed(s) for s in armed} == armed
    after = {a.id: (a.state, a.owner) for a in station.alarms.list(limit=1000)}
    assert after == alarms_before, "a refused command changed an alarm or raised one"
    actions = [h.action for h in station.alarms.history(aid)]
    assert actions == ["raised", "commented"]
    assert [h.action for h in station.alarms.history(other)] == ["raised"]
    assert station.health()["mqtt"]["connected"] is True


# --- a station of its own: availability after close, commands for every site ------------------


def test_stopped_after_close_and_commands_for_every_site(tmp_path: Path) -> None:
    """A station that stops cleanly says "stopped" (not the last will's "offline") for itself
    and every school it served, so a dashboard tells maintenance from a crash."""
    with mosquitto(tmp_path / "broker") as broker:
        station = Station(station_document(tmp_path / "home", broker, []))
        try:
            assert station.mqtt is not None and station.mqtt.wait_connected(10)
            retained = read_retained(broker, "vmscore/#")
            assert retained[AVAILABLE] == b"online"
            assert retained["vmscore/school-2/available"] == b"online"
            with Subscriber(broker, "vmscore/#") as sub:
                # <prefix>/cmd/<name> speaks to every site.
                sub.publish("vmscore/cmd/arm", json.dumps({"user": "night-shift"}))
                wait_until(
                    lambda: station.is_armed("school-1") and station.is_armed("school-2"),
                    10,
                    "every site armed",
                )
                sub.publish("vmscore/cmd/disarm", b"{}")
                wait_until(
                    lambda: not station.is_armed("school-1") and not station.is_armed("school-2"),
                    10,
                    "every site disarmed",
                )
                # An event without a site is published on the station's own events topic.
                sub.publish("vmscore/cmd/event", json.dumps({"name": "fire-drill"}))
                ev = payload_json(sub.wait_for(f"vmscore/station/{STATION}/events")[0])
                assert (ev["kind"], ev["detail"], ev["site"]) == ("external", "fire-drill", None)
        finally:
            station.close()
        retained = read_retained(broker, "vmscore/#")
        assert retained[AVAILABLE] == b"stopped"
        assert retained["vmscore/school-1/available"] == b"stopped"
        assert retained["vmscore/school-2/available"] == b"stopped"


# --- the broker goes away and comes back ---------------------------------------------------


def test_station_survives_broker_restart(tmp_path: Path) -> None:
    """The station never depends on its broker: alarms raised while the broker is down are
    kept and published once it is back, availability is announced again, and commands work
    on the new connection."""
    broker = Broker(tmp_path / "broker", persistence=True)
    broker.start()
    station: Station | None = None
    sub: Subscriber | None = None
    try:
        station = Station(station_document(tmp_path / "home", broker, []))
        link = station.mqtt
        assert link is not None and link.wait_connected(10)
        # A persistent session: the broker keeps what arrives for it while it reconnects too.
        sub = Subscriber(broker, "vmscore/#", session="station-watcher")
        sub.wait_for(AVAILABLE, b"online")
        assert all(m.retain for m in sub.of(AVAILABLE)), "seen as retained, not live, so far"

        broker.stop()
        wait_until(lambda: not link.connected, 10, "the station noticing the outage")
        assert station.health()["mqtt"]["connected"] is False
        station.external_event("panic", site="school-2")
        wait_until(
            lambda: [a for a in station.alarms.list(limit=10) if a.rule == "panic"],
            10,
            "the alarm raised while the broker is down",
        )
        (down_alarm,) = [a for a in station.alarms.list(limit=10) if a.rule == "panic"]
        assert not alarm_messages(sub, "school-2")
        time.sleep(1.5)  # a reconnect attempt or two fail in the meantime

        broker.start()
        new = wait_alarm(
            sub,
            "school-2",
            lambda m: m["type"] == "new" and m["after"]["id"] == down_alarm.id,
            "the alarm raised during the outage, after reconnect",
            timeout=20,
        )
        assert new["after"]["rule"] == "panic"
        wait_until(lambda: link.connected, 10, "reconnect")
        # Announced again on the new connection: live messages, not the broker's retained copy
        # replayed to the watcher's new subscription.
        for topic in (AVAILABLE, "vmscore/school-2/available"):
            wait_until(
                lambda topic=topic: any(
                    not m.retain and m.payload == b"online" for m in sub.of(topic)
                ),
                10,
                f"{topic} announced again",
            )
        assert link.stats()["reconnects"] >= 1
        # Subscribed again: a command works on the new connection.
        sub.publish(
            "vmscore/school-2/cmd/ack", json.dumps({"alarm_id": down_alarm.id, "user": "guard"})
        )
        wait_alarm_state(station, down_alarm.id, "in_progress")
        assert station.alarms.get(down_alarm.id).owner == "mqtt:guard"
    finally:
        if sub is not None:
            sub.close()
        if station is not None:
            station.close()
        broker.stop()
