"""The central station's intake: how many site messages a second it applies, and at what CPU,
against `mosquitto_sub` consuming the same stream in the same run (the thinnest consumer there
is: it parses MQTT and prints).

A mosquitto broker on loopback; a publisher in its own process (CPU not counted) sends N QoS 1
messages the way sites do: for each of C cameras at S sites, a camera health JSON (as a station
publishes every minute), motion ON/OFF, and alarm changes (new, then updates with a growing
version and per-station seq). The central station (`vmscore.station.central.Central`, its MQTT
client, its worker thread, SQLite for the alarms) and `mosquitto_sub -C N` subscribe before the
publisher starts. CPU is user + system time from /proc: this process (nothing else runs in it)
and mosquitto_sub's, from the first message published to the last one applied.

Run: pytest benchmarks/test_bench_central.py -s    (VMSCORE_BENCH_MESSAGES, 60000)
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from conftest import cpu_seconds, machine
from vmscore.station.central import Central, CentralSettings
from vmscore.station.hub import EventHub

MESSAGES = int(os.environ.get("VMSCORE_BENCH_MESSAGES", "60000"))
SITES, CAMERAS = 100, 20

PUBLISHER = r"""
import json, sys, paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
port, n, sites, cameras = (int(a) for a in sys.argv[1:5])
c = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-publisher")
c.max_queued_messages_set(0)
c.max_inflight_messages_set(1000)
c.connect("127.0.0.1", port)
c.loop_start()
health = {"online": True, "fps": 25.0, "bitrate_bps": 4800000, "packets": 123456,
          "packets_lost": 0, "frames_dropped": 0, "reconnects": 0, "codec": "h264",
          "width": 1920, "height": 1080, "last_error": "", "analysis": {"frames_analysed": 9}}
seq = {}
infos = []
T0 = 1_700_000_000_000_000
for i in range(n):
    site = f"school-{i % sites}"
    cam = f"cam-{(i // sites) % cameras}"
    kind = i % 10
    if kind < 8:
        topic, payload = f"vmscore/{site}/{cam}/state", json.dumps(health)
    elif kind == 8:
        topic, payload = f"vmscore/{site}/{cam}/motion", "ON" if i % 20 < 10 else "OFF"
    else:
        station = f"{site}-st1"
        s = seq[station] = seq.get(station, 0) + 1
        alarm_id = (s + 1) // 2
        alarm = {"id": alarm_id, "title": "Intrusion at " + cam, "priority": "high",
                 "priority_level": 2, "colour": "#f57c00", "sound": "alarm-high",
                 "category": "Intrusion", "state": "new" if s % 2 else "in_progress",
                 "owner": None, "site": site, "camera": cam, "zone": "entrance",
                 "rule": "intrusion", "source_key": "motion/" + site, "related_cameras": [],
                 "created_us": T0 + alarm_id, "updated_us": T0 + s,
                 "closed_us": None, "ended_us": None, "count": 1, "record_start_us": None,
                 "record_end_us": None, "event_id": None, "has_snapshot": False, "data": {},
                 "version": 1 if s % 2 else 2}
        topic = f"vmscore/{site}/alarms"
        payload = json.dumps({"type": "new" if s % 2 else "update", "station": station,
                              "seq": s, "before": None, "after": alarm})
    infos.append(c.publish(topic, payload, qos=1))
for info in infos:
    info.wait_for_publish(60)
c.disconnect()
c.loop_stop()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[int]:
    mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    port = _free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 1000000\n"
        f"max_inflight_messages 1000\nset_tcp_nodelay true\nlog_dest file {tmp_path}/log\n"
        "user root\n"
    )
    proc = subprocess.Popen([mosquitto, "-c", str(conf)])
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert time.monotonic() < deadline, "mosquitto did not start"
            time.sleep(0.05)
    try:
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def test_central_intake(broker: int, tmp_path: Path, benchmark: BenchmarkFixture) -> None:
    settings = CentralSettings.model_validate(
        {"mqtt": {"port": broker, "session_expiry_s": 0}, "catch_up_s": 3600}
    )
    central = Central(settings, "central", tmp_path, EventHub())
    central.start()
    sub = subprocess.Popen(
        ["mosquitto_sub", "-p", str(broker), "-q", "1", "-t", "vmscore/#", "-C", str(MESSAGES)],
        stdout=subprocess.DEVNULL,
    )
    try:
        assert central.wait_connected(10)
        time.sleep(1.0)  # both subscribed
        me, them = os.getpid(), sub.pid
        cpu0, sub0, t0 = cpu_seconds(me), cpu_seconds(them), time.monotonic()
        publisher = subprocess.Popen(
            [sys.executable, "-c", PUBLISHER, str(broker), str(MESSAGES), str(SITES), str(CAMERAS)]
        )
        while central.stats()["messages"] < MESSAGES:
            assert time.monotonic() - t0 < 300, central.stats()
            time.sleep(0.01)
        wall = time.monotonic() - t0
        ours = cpu_seconds(me) - cpu0
        assert publisher.wait(60) == 0
        # mosquitto_sub has taken its N messages and exited: its CPU from its exit status.
        _, status, usage = os.wait4(them, 0)
        sub.returncode = os.waitstatus_to_exitcode(status)
        sub_cpu = usage.ru_utime + usage.ru_stime - sub0
        stats = central.stats()
    finally:
        central.close()
        if sub.returncode is None:
            sub.kill()
            sub.wait()
    assert stats["bad_messages"] == 0 and stats["dropped"] == 0
    alarms = MESSAGES // 10
    print(
        f"\n[central] {machine()}\n[central] {MESSAGES} messages ({alarms} alarm changes) from"
        f" {SITES} sites x {CAMERAS} cameras: central station {ours:.2f} CPU s, {wall:.1f} s"
        f" wall ({MESSAGES / wall:.0f} msg/s applied, {1e6 * ours / MESSAGES:.0f} us CPU a"
        f" message); mosquitto_sub {sub_cpu:.2f} CPU s ({1e6 * sub_cpu / MESSAGES:.0f} us a"
        f" message); ratio {ours / max(sub_cpu, 1e-3):.1f}x"
        f" mosquitto_sub's CPU"
    )
    benchmark.extra_info.update(
        central_cpu_s=ours, wall_s=wall, mosquitto_sub_cpu_s=sub_cpu, messages=MESSAGES
    )
    benchmark.pedantic(lambda: json.dumps(stats), rounds=1, iterations=1)
