"""The station's MQTT link against a real mosquitto on loopback: availability and last will, state
and event topics, alarms, commands in (good and bad), broker outages and restarts, the bounded
queue, authentication and TLS."""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from mqtt_helpers import (
    Broker,
    Subscriber,
    free_port,
    make_tls_files,
    mosquitto,
    mosquitto_passwd_exe,
    read_retained,
    wait_until,
)
from vmscore.station.events import StationEvent
from vmscore.station.mqtt import (
    MAX_COMMAND_BYTES,
    MqttCommand,
    MqttLink,
    MqttSettings,
    check_topic,
    topic_segment,
)

pytestmark = pytest.mark.timeout(60)

T0 = 1_764_000_000_000_000


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    with mosquitto(tmp_path_factory.mktemp("mosquitto")) as b:
        yield b


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> str:
    """A topic prefix of its own per test, so retained messages never leak between tests."""
    return "t-" + re.sub(r"[^A-Za-z0-9_-]", "-", request.node.name)[:60]


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path / "broker")
    yield b
    b.stop()


LinkFactory = Callable[..., MqttLink]


@pytest.fixture
def make_link(broker: Broker, prefix: str) -> Iterator[LinkFactory]:
    links: list[MqttLink] = []

    def make(
        station: str = "st1",
        sites: list[str] | None = None,
        on_command: Callable[[MqttCommand], None] | None = None,
        target: Broker | None = None,
        **settings: Any,
    ) -> MqttLink:
        b = target or broker
        site_list = ["north"] if sites is None else sites
        link = MqttLink(
            MqttSettings(host=b.host, port=b.port, topic_prefix=prefix, **settings),
            station,
            sites=lambda: list(site_list),
            on_command=on_command or (lambda c: None),
        )
        links.append(link)
        return link

    yield make
    for link in links:
        link.stop(timeout=3)


def event(kind: str, camera: str | None = "cam1", site: str | None = "north", **kw: Any):
    return StationEvent(kind=kind, at_us=T0, site=site, camera=camera, **kw)  # type: ignore[arg-type]


def paho_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("paho-mqtt-client-")]


# --- names and settings (no broker) -------------------------------------------------------------


@given(st.text(min_size=1, max_size=40))
def test_topic_segment_is_one_reversible_level(name: str) -> None:
    """A camera named "gate/1" must not create a topic level, and two names must never share a
    topic: the encoding is reversible with standard percent-decoding."""
    seg = topic_segment(name)
    assert seg and not set(seg) & set("/+#\x00")
    assert all(ord(c) >= 0x20 and not 0x7F <= ord(c) <= 0x9F for c in seg)
    if not any(0xD800 <= ord(c) <= 0xDFFF for c in name):
        assert urllib.parse.unquote(seg, errors="strict") == name


def test_reserved_names_and_topic_checks() -> None:
    """Site names that would collide with the station's own topics are encoded, still
    reversibly; raw topics with wildcards or forbidden characters are refused before the broker
    sees them (it would drop the whole connection)."""
    assert topic_segment("cmd", reserved=frozenset({"cmd"})) == "%63md"
    assert urllib.parse.unquote("%63md") == "cmd"
    assert topic_segment("100%") == "100%25"
    with pytest.raises(ValueError, match="non-empty"):
        topic_segment("")
    for bad, why in [
        ("a/+/b", "wildcard"),
        ("a/#", "wildcard"),
        ("$SYS/x", "brokers keep"),
        ("a\x00b", "characters brokers refuse"),
        ("a\x1fb", "characters brokers refuse"),
        ("", "non-empty"),
    ]:
        with pytest.raises(ValueError, match=re.escape(why)):
            check_topic(bad)
    check_topic("vmscore/north/gate%2F1/motion")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"topic_prefix": "a/+"}, "wildcard"),
        ({"topic_prefix": "/vms"}, "leading or trailing"),
        ({"topic_prefix": "vms/"}, "leading or trailing"),
        ({"topic_prefix": "a//b"}, "empty levels"),
        ({"topic_prefix": "$SYS"}, r"\$"),
        ({"password": "x"}, "without a username"),
        ({"ca_file": "ca.pem"}, "tls"),
        ({"ha_discovery": True}, "not implemented"),
        ({"max_queued": 0}, "greater than or equal"),
        ({"qos": 3}, "qos"),
        ({"brokr": "x"}, "Extra inputs"),
    ],
)
def test_settings_refuse_bad_values(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        MqttSettings(**fields)


# --- availability -------------------------------------------------------------------------------


def test_availability_online_then_stopped(broker: Broker, prefix: str, make_link) -> None:
    """Consumers see the station and each of its sites as online while it runs and as stopped
    after a clean stop (a clean disconnect does not fire the last will, so the link says so)."""
    link = make_link(sites=["north", "south"])
    t0 = time.monotonic()
    link.start()
    assert time.monotonic() - t0 < 0.5
    assert link.wait_connected(10) and link.connected
    station = f"{prefix}/station/st1/available"
    wanted = {
        station: b"online",
        f"{prefix}/north/available": b"online",
        f"{prefix}/south/available": b"online",
        f"{prefix}/north/station": b"st1",
    }
    wait_until(lambda: wanted.items() <= read_retained(broker, f"{prefix}/#").items(), 10, "online")
    link.stop(timeout=5)
    assert not link.connected
    retained = read_retained(broker, f"{prefix}/#")
    assert retained[station] == b"stopped"
    assert retained[f"{prefix}/north/available"] == b"stopped"
    assert retained[f"{prefix}/south/available"] == b"stopped"
    assert "paho-mqtt-client-vmscore-st1" not in paho_threads()
    # After stop, publishing neither raises nor queues: it counts.
    link.publish_alarm("north", "new", {"id": 1})
    assert link.stats()["dropped"] == 1
    with pytest.raises(RuntimeError):
        link.start()


def test_last_will_when_the_process_dies(broker: Broker, prefix: str) -> None:
    """A station killed with SIGKILL cannot say goodbye: the broker publishes its last will, so
    the central station sees it offline instead of forever online."""
    code = f"""
import time
from vmscore.station.mqtt import MqttLink, MqttSettings
s = MqttSettings(host={broker.host!r}, port={broker.port}, topic_prefix={prefix!r})
link = MqttLink(s, "doomed", sites=lambda: ["north"], on_command=lambda c: None)
link.start()
print("READY" if link.wait_connected(15) else "NOT CONNECTED", flush=True)
time.sleep(60)
"""
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    topic = f"{prefix}/station/doomed/available"
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line == "READY\n", line + (proc.stderr.read() if proc.stderr else "")
        wait_until(lambda: read_retained(broker, topic).get(topic) == b"online", 10, "online")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        wait_until(lambda: read_retained(broker, topic).get(topic) == b"offline", 10, "will")
        # Documented limit: one will per connection, so the site keeps its last value and
        # consumers watch the station named in <prefix>/<site>/station.
        retained = read_retained(broker, f"{prefix}/north/#")
        assert retained[f"{prefix}/north/available"] == b"online"
        assert retained[f"{prefix}/north/station"] == b"doomed"
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=10)


# --- state and events out -----------------------------------------------------------------------


def test_motion_tamper_status_and_events(broker: Broker, prefix: str, make_link) -> None:
    """What an integrator reads: per-camera and per-zone motion ON/OFF (retained), tamper and
    status state, camera health, and every event as JSON on the site's events topic."""
    cam = f"{prefix}/north/gate%2F1%2B"  # camera "gate/1+": one level, percent-encoded
    with Subscriber(broker, f"{prefix}/#") as sub:
        link = make_link()
        link.start()
        assert link.wait_connected(10)
        sent = [
            event("motion", "gate/1+", zone="door"),
            event("motion", "gate/1+"),  # the whole image
            event("motion_end", "gate/1+", zone="door"),
            event("motion_end", "gate/1+"),
            event("tamper", "gate/1+", detail="covered"),
            event("tamper", "gate/1+", detail="too_dark"),
            event("tamper_end", "gate/1+", detail="covered"),
            event("camera_offline", "gate/1+", detail="stalled"),
            event("camera_online", "gate/1+"),
            event("external", None, detail="door_contact", data={"input": 3}),
        ]
        for e in sent:
            link.publish_event(e)
        link.publish_event(event("disk_trouble", None, site=None, detail="/data"))
        link.publish_camera_state("north", "gate/1+", {"fps": 25.0, "bitrate_bps": 2_000_000})

        got = sub.wait_for(f"{prefix}/north/events", count=len(sent))
        assert [json.loads(m.payload) for m in got] == [e.to_json() for e in sent]
        assert all(m.qos == 1 for m in got)
        station_events = sub.wait_for(f"{prefix}/station/st1/events")
        assert json.loads(station_events[0].payload)["kind"] == "disk_trouble"
        sub.wait_for(f"{cam}/state")
        # The camera is ON while any zone (or the whole image) has motion: one ON, one OFF.
        assert [m.payload for m in sub.of(f"{cam}/motion")] == [b"ON", b"OFF"]
        assert [m.payload for m in sub.of(f"{cam}/zones/door/motion")] == [b"ON", b"OFF"]
        tamper = [json.loads(m.payload) for m in sub.of(f"{cam}/tamper")]
        assert [(t["active"], t["flags"]) for t in tamper] == [
            (True, ["covered"]),
            (True, ["covered", "too_dark"]),
            (True, ["too_dark"]),
        ]
        assert [m.payload for m in sub.of(f"{cam}/status")] == [b"offline", b"online"]

    retained = read_retained(broker, f"{prefix}/#")
    assert retained[f"{cam}/motion"] == b"OFF"
    assert retained[f"{cam}/zones/door/motion"] == b"OFF"
    assert json.loads(retained[f"{cam}/tamper"])["flags"] == ["too_dark"]
    assert retained[f"{cam}/status"] == b"online"
    assert json.loads(retained[f"{cam}/state"]) == {"fps": 25.0, "bitrate_bps": 2_000_000}
    assert f"{prefix}/north/events" not in retained


def test_alarms_stats_and_raw_messages(broker: Broker, prefix: str, make_link) -> None:
    """Alarm changes as Frigate-style new/update/end JSON with before/after at QoS 1, never
    retained (an old alarm must not greet every new subscriber); raw messages for the rules'
    mqtt action; bad input is a clear ValueError, not a broken link."""
    alarms = f"{prefix}/north/alarms"
    with Subscriber(broker, f"{prefix}/#") as sub:
        link = make_link()
        link.start()
        assert link.wait_connected(10)
        first = {"id": 7, "state": "new", "priority": "high", "camera": "cam1"}
        second = {**first, "state": "in_progress", "user": "ops1"}
        link.publish_alarm("north", "new", first, seq=11)
        link.publish_alarm("north", "update", second, before=first, seq=12)
        link.publish_alarm("north", "end", {**second, "state": "closed"}, before=second, seq=13)
        link.publish_stats({"cameras": 3, "fps": 74.5})
        link.publish(f"{prefix}/rules/door", "opened", qos=1, retain=True)
        link.publish(f"{prefix}/rules/bytes", b"\x00\x01", qos=0)

        got = sub.wait_for(alarms, count=3)
        assert [json.loads(m.payload) for m in got] == [
            {"type": t, "station": "st1", "seq": n, "before": b, "after": a}
            for t, n, b, a in (
                ("new", 11, None, first),
                ("update", 12, first, second),
                ("end", 13, second, {**second, "state": "closed"}),
            )
        ]
        assert all(m.qos == 1 for m in got)
        sub.wait_for(f"{prefix}/rules/door", b"opened")
        sub.wait_for(f"{prefix}/rules/bytes", b"\x00\x01")

        for bad_call, why in [
            (lambda: link.publish_alarm("north", "closed", first), "not one of"),  # type: ignore[arg-type]
            (lambda: link.publish_alarm("north", "new", {"at": object()}), "not JSON"),
            (lambda: link.publish_alarm("north", "new", {"score": float("nan")}), "JSON"),
            (lambda: link.publish_alarm("", "new", first), "non-empty name"),
            (lambda: link.publish(f"{prefix}/a/+/b", "x"), "wildcard"),
            (lambda: link.publish(f"{prefix}/a/#", "x"), "wildcard"),
            (lambda: link.publish("$SYS/broker", "x"), "brokers keep"),
            (lambda: link.publish(f"{prefix}/a", 5), "str or bytes"),  # type: ignore[arg-type]
            (lambda: link.publish(f"{prefix}/a", "x", qos=3), "QoS"),  # type: ignore[arg-type]
        ]:
            with pytest.raises(ValueError, match=why):
                bad_call()
        assert link.wait_connected(1)

    retained = read_retained(broker, f"{prefix}/#")
    assert alarms not in retained
    assert json.loads(retained[f"{prefix}/station/st1/stats"]) == {"cameras": 3, "fps": 74.5}
    assert retained[f"{prefix}/rules/door"] == b"opened"
    assert link.stats()["dropped"] == 0


# --- commands in --------------------------------------------------------------------------------


def test_every_command_reaches_on_command(broker: Broker, prefix: str, make_link) -> None:
    """Each command name, on a site's topic or on the all-sites topic, arrives parsed and
    validated with its defaults filled in."""
    got: queue.Queue[MqttCommand] = queue.Queue()
    link = make_link(sites=["north", "south"], on_command=got.put)
    link.start()
    assert link.wait_connected(10)
    none = {"comment": None}
    cases: list[tuple[str, object, str | None, dict[str, Any]]] = [
        (
            "north/cmd/ack",
            {"alarm_id": 7, "user": "ops1"},
            "north",
            {"alarm_id": 7, "user": "ops1", **none},
        ),
        (
            "south/cmd/assign",
            {"alarm_id": "a-9", "user": "ops1", "to": "ops2"},
            "south",
            {"alarm_id": "a-9", "user": "ops1", "to": "ops2", **none},
        ),
        (
            "north/cmd/hold",
            {"alarm_id": 7, "user": "ops1", "comment": "waiting for police"},
            "north",
            {"alarm_id": 7, "user": "ops1", "comment": "waiting for police"},
        ),
        (
            "north/cmd/close",
            {"alarm_id": 7, "user": "ops1", "category": "false_alarm"},
            "north",
            {"alarm_id": 7, "user": "ops1", "category": "false_alarm", **none},
        ),
        (
            "north/cmd/comment",
            {"alarm_id": 7, "user": "ops1", "comment": "cat on camera"},
            "north",
            {"alarm_id": 7, "user": "ops1", "comment": "cat on camera"},
        ),
        ("north/cmd/arm", b"", "north", {"user": None, "comment": None}),
        ("cmd/disarm", {"user": "ops1"}, None, {"user": "ops1", "comment": None}),
        (
            "south/cmd/event",
            {"name": "door_contact", "camera": "cam2", "data": {"input": 3}},
            "south",
            {"name": "door_contact", "camera": "cam2", "data": {"input": 3}},
        ),
    ]
    with Subscriber(broker, []) as pub:
        for rel, body, site, payload in cases:
            raw = body if isinstance(body, bytes) else json.dumps(body).encode()
            pub.publish(f"{prefix}/{rel}", raw)
            cmd = got.get(timeout=10)
            assert cmd == MqttCommand(
                site=site, name=rel.rsplit("/", 1)[1], payload=payload, topic=f"{prefix}/{rel}"
            )
    stats = link.stats()
    assert stats["commands"] == len(cases) and stats["bad_commands"] == 0


def test_bad_commands_are_counted_and_ignored(
    broker: Broker, prefix: str, make_link, caplog: pytest.LogCaptureFixture
) -> None:
    """Malformed, oversized, mistyped or unknown commands never reach the station and never
    break the link: each is counted and logged with its reason."""
    caplog.set_level(logging.WARNING, logger="vmscore.station.mqtt")
    got: queue.Queue[MqttCommand] = queue.Queue()
    # A retained command waiting on a site's topic would replay on every reconnect: refused.
    with Subscriber(broker, []) as pub:
        pub.publish(f"{prefix}/north/cmd/ack", b'{"alarm_id": 1, "user": "old"}', retain=True)
    link = make_link(on_command=got.put)
    link.start()
    assert link.wait_connected(10)
    ack = f"{prefix}/north/cmd/ack"
    bad: list[tuple[str, bytes, str]] = [
        (ack, b"{not json", "not JSON"),
        (ack, b"\xff\xfe\x00", "not JSON"),
        (ack, b"[" * 30000 + b"]" * 30000, "not JSON"),  # nesting deeper than the parser
        (ack, b"[1, 2]", "not an object"),
        (
            ack,
            json.dumps({"alarm_id": 1, "user": "u", "comment": "x" * MAX_COMMAND_BYTES}).encode(),
            "bytes is over",
        ),
        (ack, b'{"alarm_id": [1], "user": "ops1"}', "alarm_id"),
        (ack, b'{"alarm_id": true, "user": "ops1"}', "alarm_id"),
        (ack, b'{"alarm_id": 1, "user": 5}', "user"),
        (ack, b'{"alarm_id": 1, "user": "ops1", "force": true}', "force: Extra inputs"),
        (ack, b"", "alarm_id: Field required"),
        (f"{prefix}/north/cmd/assign", b'{"alarm_id": 1, "user": "ops1"}', "to: Field required"),
        (f"{prefix}/north/cmd/comment", b'{"alarm_id": 1, "user": "u", "comment": ""}', "comment"),
        (f"{prefix}/north/cmd/event", b'{"name": "no spaces"}', "name"),
        (f"{prefix}/north/cmd/event", b'{"name": "x", "data": [1]}', "data"),
        (f"{prefix}/cmd/reboot", b"{}", "unknown command 'reboot'"),
    ]
    with Subscriber(broker, []) as pub:
        for topic, payload, _ in bad:
            pub.publish(topic, payload)
        # Delivered in order on one connection: when this one arrives, all the above were read.
        pub.publish(f"{prefix}/cmd/arm", b'{"user": "ops1"}')
        cmd = got.get(timeout=10)
    assert cmd.name == "arm" and got.empty()
    stats = link.stats()
    assert stats["bad_commands"] == len(bad) + 1 and stats["commands"] == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("retained commands are refused" in w for w in warnings)
    for _, _, reason in bad:
        assert any(reason in w for w in warnings), (reason, warnings)
    assert link.connected


def test_on_command_errors_are_contained(broker: Broker, prefix: str, make_link) -> None:
    """A station bug in on_command is logged and counted; the next command still arrives."""
    seen: list[str] = []

    def on_command(cmd: MqttCommand) -> None:
        seen.append(cmd.payload["user"] or "")
        if len(seen) == 1:
            raise RuntimeError("station bug")

    link = make_link(on_command=on_command)
    link.start()
    assert link.wait_connected(10)
    with Subscriber(broker, []) as pub:
        pub.publish(f"{prefix}/north/cmd/arm", b'{"user": "a"}')
        pub.publish(f"{prefix}/north/cmd/arm", b'{"user": "b"}')
    wait_until(lambda: len(seen) == 2, 10, "two commands")
    assert link.stats()["command_errors"] == 1 and link.connected


def test_sites_change_and_reserved_names(broker: Broker, prefix: str, make_link) -> None:
    """refresh_sites() subscribes new sites and announces them; a removed site is announced
    stopped and its commands no longer reach the station. A site named like the station's own
    topics ("cmd") gets an encoded level and still works."""
    sites = ["north"]
    got: queue.Queue[MqttCommand] = queue.Queue()
    link = make_link(sites=sites, on_command=got.put)  # sites() reads this list each time
    link.start()
    assert link.wait_connected(10)
    sites[:] = ["cmd"]
    link.refresh_sites()
    wait_until(
        lambda: read_retained(broker, f"{prefix}/#").get(f"{prefix}/%63md/available") == b"online",
        10,
        "new site online",
    )
    assert read_retained(broker, f"{prefix}/north/available")[f"{prefix}/north/available"] == (
        b"stopped"
    )
    with Subscriber(broker, f"{prefix}/#") as pub:
        pub.publish(f"{prefix}/north/cmd/arm", b"")  # no longer this station's site
        pub.publish(f"{prefix}/%63md/cmd/disarm", b"")
        cmd = got.get(timeout=10)
        assert (cmd.site, cmd.name) == ("cmd", "disarm") and got.empty()
        link.publish_event(event("motion", "cmd", site="cmd"))
        pub.wait_for(f"{prefix}/%63md/%63md/motion", b"ON")
    assert link.stats()["bad_commands"] == 0


# --- outages ------------------------------------------------------------------------------------


def test_broker_restart_reconnects_and_restores_state(own_broker: Broker, prefix: str) -> None:
    """A broker restarted without persistence forgets every retained message: the link
    reconnects, announces itself online again, re-publishes the latest state (including changes
    made while the broker was down) and subscribes again, so commands work after the restart."""
    broker = own_broker.start()
    got: queue.Queue[MqttCommand] = queue.Queue()
    settings = MqttSettings(port=broker.port, topic_prefix=prefix, reconnect_max_s=1)
    link = MqttLink(settings, "st1", sites=lambda: ["north"], on_command=got.put)
    with link:
        assert link.wait_connected(10)
        cam = f"{prefix}/north/cam1"
        link.publish_event(event("motion"))
        wait_until(
            lambda: read_retained(broker, f"{cam}/motion") == {f"{cam}/motion": b"ON"}, 10, "ON"
        )

        broker.stop()
        wait_until(lambda: not link.connected, 10, "the link to notice")
        t0 = time.monotonic()
        link.publish_event(event("motion_end"))
        link.publish_camera_state("north", "cam1", {"fps": 0.0, "online": False})
        assert time.monotonic() - t0 < 0.5
        broker.start()  # same port, empty: no retained messages

        assert link.wait_connected(15)
        assert link.stats()["reconnects"] == 1
        wanted = {
            f"{prefix}/station/st1/available": b"online",
            f"{prefix}/north/available": b"online",
            f"{cam}/motion": b"OFF",
            f"{cam}/state": b'{"fps":0.0,"online":false}',
        }
        wait_until(
            lambda: wanted.items() <= read_retained(broker, f"{prefix}/#").items(), 10, "state"
        )
        with Subscriber(broker, []) as pub:
            pub.publish(f"{prefix}/north/cmd/ack", b'{"alarm_id": 3, "user": "ops1"}')
            assert got.get(timeout=10).payload["alarm_id"] == 3


def test_start_without_broker_and_bounded_queue(own_broker: Broker, prefix: str) -> None:
    """The station starts while the broker is down; publishing then never blocks; at most
    max_queued messages wait (the rest are counted as dropped); once the broker is up the link
    connects by itself and the queued alarms arrive in order."""
    broker = own_broker
    broker.persistence = True
    broker.start()
    alarms = f"{prefix}/north/alarms"
    # A persistent session subscribed now keeps what arrives while the reader is away.
    Subscriber(broker, alarms, session=f"{prefix}-reader").close()
    broker.stop()

    settings = MqttSettings(port=broker.port, topic_prefix=prefix, max_queued=50, reconnect_max_s=1)
    link = MqttLink(settings, "st1", sites=lambda: ["north"], on_command=lambda c: None)
    t0 = time.monotonic()
    link.start()
    assert time.monotonic() - t0 < 0.5
    try:
        assert not link.wait_connected(0.5)
        t0 = time.monotonic()
        for i in range(200):
            link.publish_alarm("north", "new", {"id": i})
        link.publish_event(event("camera_offline"))  # state: kept, not queued
        assert time.monotonic() - t0 < 2.0
        stats = link.stats()
        # 150 alarms and the camera_offline event over the bound; the status state is kept
        assert stats["dropped"] == 151 and stats["published"] == 0

        broker.start()
        assert link.wait_connected(15)
        with Subscriber(broker, alarms, session=f"{prefix}-reader") as sub:
            got = sub.wait_for(alarms, count=50, timeout=10)
        assert [json.loads(m.payload)["after"]["id"] for m in got] == list(range(50))
        status = f"{prefix}/north/cam1/status"
        wait_until(lambda: read_retained(broker, status) == {status: b"offline"}, 10, "status")
    finally:
        link.stop(timeout=3)


def test_stop_is_bounded_while_the_broker_is_down(prefix: str) -> None:
    """Stopping a link that never reached its broker returns within the timeout and leaves no
    paho thread behind."""
    settings = MqttSettings(port=free_port(), topic_prefix=prefix)
    link = MqttLink(settings, "lonely", sites=list, on_command=lambda c: None)
    link.start()
    time.sleep(0.2)
    t0 = time.monotonic()
    link.stop(timeout=2)
    assert time.monotonic() - t0 < 2.5
    wait_until(lambda: "paho-mqtt-client-vmscore-lonely" not in paho_threads(), 3, "paho thread")


# --- protocol, authentication, TLS --------------------------------------------------------------


def test_mqtt_311(broker: Broker, prefix: str, make_link) -> None:
    """MQTT 3.1.1 (brokers and gateways without MQTT 5) works the same way."""
    got: queue.Queue[MqttCommand] = queue.Queue()
    link = make_link(on_command=got.put, protocol="3.1.1")
    link.start()
    assert link.wait_connected(10)
    with Subscriber(broker, []) as pub:
        pub.publish(f"{prefix}/north/cmd/hold", b'{"alarm_id": 1, "user": "u"}')
    assert got.get(timeout=10).name == "hold"
    link.stop()
    topic = f"{prefix}/station/st1/available"
    assert read_retained(broker, topic) == {topic: b"stopped"}


@pytest.mark.skipif(mosquitto_passwd_exe() is None, reason="mosquitto_passwd is not installed")
def test_password_authentication(
    own_broker: Broker, prefix: str, make_link, caplog: pytest.LogCaptureFixture
) -> None:
    """A broker that requires a password: the right one connects, a wrong one is refused with a
    clear log line (and the link keeps trying in the background instead of failing the station)."""
    own_broker.users = {"station1": "s3cret"}
    broker = own_broker.start()
    good = make_link(target=broker, username="station1", password="s3cret")
    good.start()
    assert good.wait_connected(10)
    caplog.set_level(logging.ERROR, logger="vmscore.station.mqtt")
    bad = make_link(station="st2", target=broker, username="station1", password="wrong")
    bad.start()
    assert not bad.wait_connected(1.5)
    assert any("refused station 'st2'" in r.getMessage() for r in caplog.records)
    assert "wrong" not in caplog.text
    assert "s3cret" not in repr(MqttSettings(username="station1", password="s3cret"))


def test_tls(own_broker: Broker, prefix: str, make_link, tmp_path: Path) -> None:
    """TLS with the station's own CA file connects; without it the broker's certificate is not
    trusted and the link stays disconnected rather than talking in the clear."""
    tls = make_tls_files(tmp_path / "tls")
    own_broker.tls = tls
    broker = own_broker.start()
    trusted = make_link(target=broker, tls=True, ca_file=tls.ca)
    trusted.start()
    assert trusted.wait_connected(10)
    untrusted = make_link(station="st2", target=broker, tls=True)
    untrusted.start()
    assert not untrusted.wait_connected(1.5)
    with pytest.raises(ValueError, match="TLS"):
        make_link(station="st3", target=broker, tls=True, ca_file=tmp_path / "missing.pem")
