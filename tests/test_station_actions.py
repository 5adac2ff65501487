"""What the station does with what its rules decide, and how its analysis keeps up: every action
kind executed for real (alarm with snapshot, event recording, bookmark, snapshot, webhook,
arming), schedule rules arming sites, and the analysis pipeline's backpressure (it falls behind
to the next keyframe and counts what it skipped, never blocking the dispatcher)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from station_helpers import clip, document, wait_for
from vmscore import IngestEngine
from vmscore.motion import MotionSettings
from vmscore.sim import CameraServer
from vmscore.station.analysis import CameraAnalysis
from vmscore.station.events import StationEvent
from vmscore.station.station import Station


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    got: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            got.append(json.loads(body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", got
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="module")
def corridor(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return clip(str(tmp_path_factory.mktemp("clips")), "lights", 1, 10.0)


def test_every_action_kind_is_carried_out(
    corridor: Any, webhook: tuple[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    url, hooks = webhook
    with CameraServer() as cs:
        cs.add_camera("hall", corridor.directory)
        doc = document(
            tmp_path,
            [{"name": "hall", "site": "school-1", "main_url": cs.url("hall"),
              "sub_url": cs.url("hall", sub=True), "recording": {"mode": "event"}}],
            sites=[{"name": "school-1", "armed": True}, {"name": "school-2", "armed": True}],
            rules=[
                {"name": "panic", "trigger": {"kind": "external", "details": ["panic"]},
                 "actions": [
                     {"type": "alarm", "priority": "critical", "category": "Intrusion",
                      "title": "Panic button", "related_cameras": ["hall"]},
                     {"type": "record", "pre_roll_s": 2, "post_roll_s": 1},
                     {"type": "bookmark", "text": "panic pressed"},
                     {"type": "snapshot"},
                     {"type": "webhook", "url": url},
                     {"type": "arm", "armed": False, "sites": ["school-2"]},
                 ]},
            ],
        )  # fmt: skip
        with Station(doc) as station:
            wait_for(lambda: station.camera_state("hall").online, 15, "camera online")
            time.sleep(5)  # two GOPs of pre-roll in the ring
            ev = station.external_event("panic", camera="hall", data={"button": 3})
            alarm = wait_for(lambda: station.alarms.list(), 5, "the alarm")[0]
            assert alarm.title == "Panic button" and alarm.priority == "critical"
            assert alarm.camera == "hall" and list(alarm.related_cameras) == ["hall"]
            assert alarm.record_start_us is not None and alarm.record_start_us < ev.at_us
            wait_for(lambda: station.alarms.snapshot(alarm.id), 10, "the alarm's snapshot")
            wait_for(lambda: station.store.snapshots("hall"), 10, "the snapshot action")
            (bookmark,) = station.store.bookmarks(["hall"])
            assert bookmark.text == "panic pressed" and bookmark.user == "rule:panic"
            hook = wait_for(lambda: hooks, 10, "the webhook")[0]
            assert hook["rule"] == "panic" and hook["event"]["detail"] == "panic"
            assert hook["event"]["data"] == {"button": 3}
            assert station.is_armed("school-1") and not station.is_armed("school-2")

            # The event recording: from the keyframe at or before the event - 2 s, finished at
            # the first keyframe after its post-roll.
            def finished() -> Any:
                station.recorder.flush()
                return station.recorder.recordings("hall")

            recs = wait_for(finished, 15, "the event recording", step=0.5)
            assert recs[0].start_wall_us <= ev.at_us - 2_000_000 + 100_000
            assert recs[-1].end_wall_us >= ev.at_us + 1_000_000
            events = station.recorder.events("hall")
            assert any(e.kind.startswith("panic|") for e in events)


def test_a_schedule_rule_arms_the_sites_when_its_profile_starts(tmp_path: Path) -> None:
    doc = document(
        tmp_path,
        [],
        sites=[{"name": "school-1", "armed": False}, {"name": "school-2", "armed": False}],
        rules=[{"name": "night-arm", "trigger": {"kind": "schedule", "details": ["always:start"]},
                "actions": [{"type": "arm", "armed": True}]}],
        time_profiles=[{"name": "always", "ranges": [{"start": "00:00", "end": "24:00"}]}],
    )  # fmt: skip
    with Station(doc) as station:
        wait_for(lambda: station.is_armed("school-1") and station.is_armed("school-2"), 5,
                 "both sites armed by the schedule")  # fmt: skip
        assert station.store.armed() == {"school-1": True, "school-2": True}


def test_analysis_falls_behind_to_the_next_keyframe_and_counts_what_it_skipped(
    corridor: Any,
) -> None:
    """Units offered faster than they are processed: the queue stays bounded, whole GOPs are
    skipped and counted, and analysis resumes on a keyframe (the decoder never sees a P-frame
    without its reference)."""
    events: list[StationEvent] = []
    an = CameraAnalysis(
        "hall", "school-1", MotionSettings(), analysis_fps=10, off_delay_s=1,
        emit=events.append, max_queue=8,
    )  # fmt: skip
    with CameraServer() as cs, IngestEngine() as engine:
        cs.add_camera("hall", corridor.directory)
        engine.add_stream("hall", cs.url("hall", sub=True))
        units = []
        deadline = time.monotonic() + 15
        while len(units) < 60 and time.monotonic() < deadline:
            units += [u for u in engine.poll(0.2) if not hasattr(u, "reason")]
    assert len(units) >= 60
    last_key = max(i for i, u in enumerate(units) if u.is_keyframe and i <= len(units) - 6)
    units = units[: last_key + 5]  # ends 5 units into a GOP, within the queue's bound
    scheduled = [an.offer(u) for u in units]  # nothing processes meanwhile
    assert scheduled.count(True) == 1, "a camera is scheduled once until its run finishes"
    assert an.stats.frames_skipped == len(units) - 5
    an.process(max_units=100)
    assert not an.finish_run()
    assert an.stats.decode_errors == 0
    # What was decoded starts at a keyframe: every decoded unit produced a picture.
    assert an.stats.frames_decoded == an.stats.units_in - an.stats.frames_skipped
    assert an.stats.frames_analysed >= 1
    # A stream that starts over from an older point (a camera restarted) is learnt anew, not an
    # error: the same units again decode and are analysed.
    before = an.stats.frames_analysed
    for u in units[last_key:]:
        if an.offer(u):
            an.process()
            an.finish_run()
    assert an.stats.frames_analysed > before and an.stats.decode_errors == 0


def test_a_camera_is_added_by_its_onvif_address_alone(corridor: Any, tmp_path: Path) -> None:
    from contextlib import closing

    from station_helpers import http_server, login
    from vmscore.sim.onvif import OnvifSimulator, SimProfile

    with CameraServer() as cs:
        cs.add_camera("axis-1", corridor.directory)
        profiles = [
            SimProfile("main", "Main", "h264", 640, 360, 10, 600, cs.url("axis-1")),
            SimProfile("sub", "Sub", "h264", 320, 180, 10, 150, cs.url("axis-1", sub=True)),
        ]
        with (
            OnvifSimulator(
                vendor="axis", username="vms", password="onvif-pw", profiles=profiles
            ) as onvif,
            Station(document(tmp_path, [])) as station,
            http_server(station) as base,
            closing(login(base, "admin")) as admin,
        ):
            body = {"name": "gate", "site": "school-1", "username": "vms",
                    "onvif_address": f"{onvif.host}:{onvif.port}"}  # fmt: skip
            r = admin.post("/api/cameras", json={**body, "password": "wrong-password"})
            assert r.status_code == 422 and "refused" in r.json()["detail"]
            assert station.config.cameras == []
            r = admin.post("/api/cameras", json={**body, "password": "onvif-pw"})
            assert r.status_code == 201, r.text
            cam = station.config.camera("gate")
            assert cam is not None
            assert cam.main_url == cs.url("axis-1") and cam.sub_url == cs.url("axis-1", sub=True)
            wait_for(lambda: station.camera_state("gate").online, 15, "the probed camera online")
            assert r.json()["has_password"] and "onvif-pw" not in r.text


@pytest.mark.parametrize("fps", [25.0, 15.0])
def test_analysis_takes_frames_at_the_configured_rate(fps: float) -> None:
    """10 analysed frames a second on average whatever the stream's rate (not every n-th)."""
    an = CameraAnalysis(
        "c", "s", MotionSettings(), analysis_fps=10, off_delay_s=1, emit=lambda e: None,
        max_queue=1000,
    )  # fmt: skip
    with CameraServer() as cs, IngestEngine() as engine:
        (url,) = cs.add_scene_cameras(1, "corridor", seconds=4, size=(320, 180), fps=fps)
        engine.add_stream("c", url)
        units: list[Any] = []
        deadline = time.monotonic() + 20
        while len(units) < 3 * fps + 1 and time.monotonic() < deadline:
            units += [u for u in engine.poll(0.2) if not hasattr(u, "reason")]
    first = next(i for i, u in enumerate(units) if u.is_keyframe)
    units = units[first : first + round(3 * fps)]  # 3 s of video from a keyframe
    for u in units:
        an.offer(u)
    an.process(max_units=len(units))
    assert an.stats.frames_decoded == len(units)
    assert 29 <= an.stats.frames_analysed <= 31
