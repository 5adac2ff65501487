"""Many sites, one central station, end to end on loopback with real peers: a central mosquitto
and three site mosquittos running the configurations in ``deploy/mosquitto/`` (TLS bridges
through relays that can cut a link), three site stations recording simulated cameras, and a
central station (``role: central``) aggregating them, each with its real HTTP server.

An incident at a site reaches central within 2 s; central acknowledges it and the site shows it
acknowledged, and the reverse; a site whose link is cut keeps raising alarms and they arrive at
central once the link returns, exactly once, as do the commands central sent meanwhile; a lost
alarm message is found by its ``seq`` and fetched over HTTP; a site's live video, recordings
and exports come through the central station with the central station's token; permissions
and hostile paths. In a real browser logged in at central, the overview shows each site's
cameras under its heading, playing live, and a site's alarm is acknowledged from the central
alarm list. Message rates and sizes for docs/capacity.md are printed with ``-s``."""

from __future__ import annotations

import contextlib
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import httpx
import pytest
from websockets.sync.client import connect as ws_connect

from browser_helpers import UiPage, chromium, video_advances
from mqtt_bridge_helpers import CENTRAL_USER, BridgedSites, bridged_sites
from station_helpers import (
    PASSWORDS,
    EventStream,
    clip,
    document,
    http_server,
    login,
    wait_for,
    zones_of,
)
from vmscore.sim import CameraServer
from vmscore.station.station import Station

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

SITES = ("north", "south", "east")


def report(line: str) -> None:
    print(f"\n[central] {line}", end="")


def remote_alarms(events: EventStream, **match: Any) -> list[dict[str, Any]]:
    """The central event stream's ``remote_alarm`` messages whose alarm has every field of
    ``match`` (``type`` and ``station`` match the message)."""
    out = []
    for ev, data, _ in list(events.items):
        if ev != "remote_alarm":
            continue
        if any(data[k] != match[k] for k in ("type", "station") if k in match):
            continue
        fields = {k: v for k, v in match.items() if k not in ("type", "station")}
        if all(data["alarm"].get(k) == v for k, v in fields.items()):
            out.append(data)
    return out


def panic(client: httpx.Client, detail: str = "panic") -> None:
    """An external event at the site's camera: a panic button, a door contact, a smoke
    detector (each its own condition, so each raises its own alarm while the others are open)."""
    r = client.post("/api/events/external", json={"name": detail, "camera": "gate"})
    assert r.status_code == 200, r.text


def newest_alarm(client: httpx.Client) -> dict[str, Any]:
    """The site's newest alarm raised by an external event (south's motion alarms aside)."""
    found = client.get("/api/alarms", params={"sort": "newest", "limit": 50}).json()
    found = [a for a in found if a["rule"] == "panic"]
    assert found, "no alarm at the site"
    alarm: dict[str, Any] = found[0]
    return alarm


def central_document(
    home: Path, name: str, topo: BridgedSites, sites: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """A central station's configuration: no cameras, the central broker, the three sites'
    stations with their tokens."""
    doc = document(home, [], sites=[], rules=[])
    doc["sites"] = []
    doc["station"]["name"] = name
    doc["station"]["role"] = "central"
    doc["central"] = {
        "mqtt": {
            "host": "127.0.0.1",
            "port": topo.central.port,
            "username": CENTRAL_USER,
            "password": topo.central.central_password,
        },
        "stations": [
            {"name": f"{s}-st1", "url": sites[s]["base"], "token": sites[s]["token"]} for s in SITES
        ],
        "catch_up_s": 1,
    }
    return doc


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    t0 = time.monotonic()
    root = tmp_path_factory.mktemp("central")
    scene = clip(str(root / "clips"), "carpark", 1, 8)
    with contextlib.ExitStack() as stack:
        topo: BridgedSites = stack.enter_context(bridged_sites(root / "brokers", SITES))
        cs = stack.enter_context(CameraServer())
        sites: dict[str, dict[str, Any]] = {}
        for i, s in enumerate(SITES):
            cs.add_camera(f"{s}-gate", scene.directory, start_offset_s=2 * i)
            home = root / s
            doc = document(
                home,
                [
                    {
                        "name": "gate",
                        "site": s,
                        "main_url": cs.url(f"{s}-gate"),
                        "sub_url": cs.url(f"{s}-gate", sub=True),
                        # Analysis is switched on at south by a test: cars enter its zone
                        # every 8 s.
                        "analysis": False,
                        "motion": {"zones": zones_of(scene, ["entrance"])},
                    }
                ],
                sites=[{"name": s, "display_name": f"{s.title()} school", "armed": True}],
                rules=[
                    {
                        "name": "panic",
                        "trigger": {
                            "kind": "external",
                            "details": ["panic", "door", "smoke"],
                        },
                        "actions": [
                            {"type": "alarm", "priority": "critical", "category": "Intrusion"}
                        ],
                    },
                    {
                        "name": "intrusion",
                        "trigger": {"kind": "motion"},
                        "conditions": {"site_armed": True},
                        "actions": [{"type": "alarm", "priority": "high", "category": "Intrusion"}],
                    },
                ],
                mqtt={"host": "127.0.0.1", "port": topo.sites[s].port},
            )
            doc["station"]["name"] = f"{s}-st1"
            doc["defaults"]["recording"]["segment_s"] = 2
            doc["users"].append(
                {"name": "central-link", "role": "operator", "password": "central-link-pass-1"}
            )
            station = Station(doc)
            stack.callback(station.close)
            base = stack.enter_context(http_server(station))
            token = station.users.create_token("central-link", "central station")
            sites[s] = {"station": station, "base": base, "token": token}
        cdoc = central_document(root / "central", "central", topo, sites)
        central = Station(cdoc)
        stack.callback(central.close)
        cbase = stack.enter_context(http_server(central))
        op = stack.enter_context(contextlib.closing(login(cbase, "operator")))
        events = EventStream(login(cbase, "operator"))
        stack.callback(events.close)
        clients = {
            s: stack.enter_context(contextlib.closing(login(sites[s]["base"], "operator")))
            for s in SITES
        }

        def all_online() -> bool:
            got = op.get("/api/central/sites").json()
            return len(got) == 3 and all(
                x["state"] == "online" and x["cameras"] and x["cameras"][0].get("codec")
                for x in got
            )

        wait_for(all_online, 30, "three sites online at central with their cameras")
        yield {
            "t0": t0,
            "topo": topo,
            "sites": sites,
            "central": central,
            "cbase": cbase,
            "op": op,
            "events": events,
            "clients": clients,
            "root": root,
        }


def test_sites_cameras_and_link_state_at_central(world: dict[str, Any]) -> None:
    got = {x["name"]: x for x in world["op"].get("/api/central/sites").json()}
    assert set(got) == set(SITES)
    for s in SITES:
        site = got[s]
        assert site["station"] == f"{s}-st1"
        assert site["state"] == "online" and site["link"] is True and site["reachable"]
        [cam] = site["cameras"]
        assert cam["name"] == "gate" and cam["site"] == s and cam["station"] == f"{s}-st1"
        assert cam["codec"] == "h264" and cam["width"] == 640
        assert "main_url" not in cam, "the inventory carries no camera addresses"
    health = world["op"].get("/api/health")
    assert health.status_code == 200
    assert health.json()["role"] == "central" and health.json()["central"]["connected"]


def test_incident_reaches_central_within_2s_and_acks_go_both_ways(world: dict[str, Any]) -> None:
    events, op, north = world["events"], world["op"], world["clients"]["north"]
    t0 = time.monotonic()
    panic(north)
    alarm = wait_for(
        lambda: remote_alarms(events, type="new", station="north-st1", rule="panic"),
        5,
        "north's alarm at central",
        step=0.01,
    )[-1]["alarm"]
    latency = time.monotonic() - t0
    report(f"incident at a site -> central operator's event stream: {1000 * latency:.0f} ms")
    assert latency < 2.0
    assert alarm["site"] == "north" and alarm["camera"] == "gate" and alarm["state"] == "new"
    listed = op.get("/api/central/alarms", params={"state": "new"}).json()
    assert [(a["station"], a["id"]) for a in listed].count(("north-st1", alarm["id"])) == 1

    # Central acknowledges: the site shows it, and central sees the site's change come back.
    t0 = time.monotonic()
    r = op.post(f"/api/central/alarms/north-st1/{alarm['id']}/acknowledge", json={})
    assert r.status_code == 202, r.text
    wait_for(
        lambda: north.get(f"/api/alarms/{alarm['id']}").json()["state"] == "in_progress",
        5,
        "the acknowledgement at the site",
        step=0.02,
    )
    at_site = north.get(f"/api/alarms/{alarm['id']}/history").json()
    assert any(
        h["action"] == "acknowledged" and h["user"] == "mqtt:operator@central" for h in at_site
    ), at_site
    wait_for(
        lambda: (
            op.get(f"/api/central/alarms/north-st1/{alarm['id']}").json()["state"] == "in_progress"
        ),
        5,
        "the acknowledged state back at central",
        step=0.02,
    )
    report(f"acknowledge at central -> site -> central: {1000 * (time.monotonic() - t0):.0f} ms")

    # The reverse: acknowledged at the site, shown at central.
    south = world["clients"]["south"]
    panic(south)
    a2 = wait_for(
        lambda: remote_alarms(events, type="new", station="south-st1", rule="panic"),
        5,
        "south's alarm",
    )[-1]["alarm"]
    assert south.post(f"/api/alarms/{a2['id']}/acknowledge").status_code == 200
    wait_for(
        lambda: (
            op.get(f"/api/central/alarms/south-st1/{a2['id']}").json()["state"] == "in_progress"
        ),
        5,
        "the site's acknowledgement at central",
    )
    # Central closes it with a category; the site's history has the operator's comment.
    r = op.post(
        f"/api/central/alarms/south-st1/{a2['id']}/close",
        json={"comment": "checked on camera", "category": "False alarm"},
    )
    assert r.status_code == 202, r.text
    wait_for(
        lambda: op.get(f"/api/central/alarms/south-st1/{a2['id']}").json()["state"] == "closed",
        5,
        "the close at central",
    )
    closed = south.get(f"/api/alarms/{a2['id']}").json()
    assert closed["state"] == "closed" and closed["category"] == "False alarm"


def test_motion_incident_at_a_site_reaches_central_within_2s(world: dict[str, Any]) -> None:
    """A car entering the zone of south's camera: the site's motion analysis raises the alarm,
    and the central operator's event stream has it within 2 s of the site's own event stream.
    (The alarm's ``created_us`` is the camera's time of the frame, not when it was raised.)"""
    events: EventStream = world["events"]
    station: Station = world["sites"]["south"]["station"]
    at_site = EventStream(login(world["sites"]["south"]["base"], "operator"))

    def analyse(doc: dict[str, Any]) -> None:
        for cam in doc["cameras"]:
            cam["analysis"] = True

    station.change(analyse, user="admin", reason="motion analysis on")

    def arrivals() -> list[tuple[float, dict[str, Any]]]:
        return [
            (t, data["alarm"])
            for t, (ev, data, _) in zip(events.arrived, events.items, strict=False)
            if ev == "remote_alarm"
            and data["type"] == "new"
            and data["alarm"]["rule"] == "intrusion"
            and data["station"] == "south-st1"
        ]

    try:
        arrived, alarm = wait_for(arrivals, 30, "south's intrusion alarm at central")[0]
        [raised] = [
            t
            for t, (ev, data, _) in zip(at_site.arrived, at_site.items, strict=False)
            if ev == "alarm" and data["type"] == "new" and data["alarm"]["id"] == alarm["id"]
        ]
    finally:
        at_site.close()

        def quiet(doc: dict[str, Any]) -> None:
            for cam in doc["cameras"]:
                cam["analysis"] = False

        # Back to quiet, its alarm closed: the other tests expect no open alarm at south.
        station.change(quiet, user="admin", reason="motion analysis off")
        for a in station.alarms.list(states=["new", "in_progress"]):
            station.alarms.close(a.id, "admin", "test over", "Test")
    latency = arrived - raised
    report(
        f"motion alarm raised at a site -> central operator's event stream: {latency * 1e3:.0f} ms"
    )
    assert alarm["site"] == "south" and alarm["camera"] == "gate" and alarm["zone"] == "entrance"
    assert latency < 2.0


def test_cut_link_queues_alarms_and_commands_and_delivers_them_once(
    world: dict[str, Any],
) -> None:
    topo, events, op = world["topo"], world["events"], world["op"]
    east = world["clients"]["east"]
    panic(east)
    before = wait_for(
        lambda: remote_alarms(events, type="new", station="east-st1"), 5, "east's first alarm"
    )[-1]["alarm"]

    topo.cut("east")
    wait_for(
        lambda: (
            {x["name"]: x for x in op.get("/api/central/sites").json()}["east"]["state"]
            == "link_down"
        ),
        40,
        "east's link down at central",
    )
    # During the cut: the site raises an alarm, and central acknowledges the earlier one.
    panic(east, "door")
    during = wait_for(
        lambda: (a := newest_alarm(east))["id"] != before["id"] and a, 5, "the alarm at east"
    )
    assert during["id"] != before["id"]
    r = op.post(f"/api/central/alarms/east-st1/{before['id']}/acknowledge", json={})
    assert r.status_code == 202
    time.sleep(1.0)
    assert not remote_alarms(events, station="east-st1", id=during["id"])
    assert east.get(f"/api/alarms/{before['id']}").json()["state"] == "new"

    t0 = time.monotonic()
    topo.restore("east")
    wait_for(
        lambda: remote_alarms(events, type="new", station="east-st1", id=during["id"]),
        30,
        "the alarm raised during the cut at central",
    )
    report(f"after the link returned, the queued alarm came in {time.monotonic() - t0:.1f} s")
    wait_for(
        lambda: east.get(f"/api/alarms/{before['id']}").json()["state"] == "in_progress",
        15,
        "the acknowledgement sent during the cut at the site",
    )
    time.sleep(1.0)  # duplicates, if any, would have come by now
    assert len(remote_alarms(events, type="new", station="east-st1", id=during["id"])) == 1
    listed = op.get("/api/central/alarms", params={"site": "east", "limit": 1000}).json()
    assert [a["id"] for a in listed].count(during["id"]) == 1
    state = {x["name"]: x for x in op.get("/api/central/sites").json()}["east"]
    assert state["state"] == "online" and state["link"] is True


def test_a_lost_alarm_message_is_fetched_over_http(world: dict[str, Any]) -> None:
    """A message that never arrives (here: two alarms raised while the central station's
    consumer is away and its session dropped) shows as a jump in ``seq``, and the changes in
    between are fetched from the site with the central station's token."""
    central: Station = world["central"]
    cc = central.central
    assert cc is not None
    north = world["clients"]["north"]
    stats0 = cc.stats()
    # Take the consumer's messages away for two alarms: its queue sees nothing of them.
    pause = cc._on_message
    cc._client.on_message = lambda *a: None
    try:
        last = newest_alarm(north)["id"]
        panic(north, "smoke")
        first = wait_for(
            lambda: (a := newest_alarm(north))["id"] != last and a, 5, "the first hidden alarm"
        )
        panic(north, "door")
        second = wait_for(
            lambda: (a := newest_alarm(north))["id"] != first["id"] and a, 5, "the second"
        )
        time.sleep(0.5)
    finally:
        cc._client.on_message = pause
    # The next change (an acknowledgement at the site) arrives with a seq past the hole.
    assert north.post(f"/api/alarms/{first['id']}/acknowledge").status_code == 200
    wait_for(
        lambda: (cc.alarm("north-st1", first["id"]) or {}).get("state") == "in_progress",
        10,
        "the hidden alarm at central, fetched after the hole",
    )
    wait_for(lambda: cc.alarm("north-st1", second["id"]), 5, "the second hidden alarm")
    stats = cc.stats()
    assert stats["holes"] > stats0["holes"]
    assert stats["catch_ups"] > stats0["catch_ups"]
    site_last = north.get("/api/alarm-changes", params={"since": 0}).json()["through"]
    wait_for(lambda: cc.stats()["applied_seq"]["north-st1"] >= site_last, 5, "central up to date")


def test_live_video_recordings_and_export_through_central(world: dict[str, Any]) -> None:
    cbase, op = world["cbase"], world["op"]
    cookie = op.cookies.get("vmscore_session")
    url = cbase.replace("http", "ws") + "/api/central/stations/south-st1/cameras/gate/live"
    frames, init = 0, b""
    with ws_connect(
        url + "?stream=main",
        additional_headers={"Cookie": f"vmscore_session={cookie}", "Origin": cbase},
        open_timeout=10,
    ) as ws:
        media = io.BytesIO()
        deadline = time.monotonic() + 15
        while frames < 20 and time.monotonic() < deadline:
            msg = ws.recv(timeout=10)
            if isinstance(msg, bytes):
                if not init:
                    init = msg
                else:
                    media.write(msg)
                    frames += 1
    assert init[4:8] == b"ftyp" and frames >= 20
    with av.open(io.BytesIO(init + media.getvalue()), format="mp4") as c:
        decoded = list(c.decode(video=0))
    assert len(decoded) >= 10 and decoded[0].width == 640

    # Recordings: the list and a byte range of the video, through central.
    base = "/api/central/stations/north-st1"
    recs = wait_for(
        lambda: op.get(f"{base}/recordings", params={"camera": "gate"}).json()["recordings"],
        15,
        "north's recordings through central",
    )
    rec = recs[0]
    params = {"start_us": rec["start_us"], "end_us": rec["end_us"]}
    whole = op.get(f"{base}/recordings/gate/video.mp4", params=params)
    assert whole.status_code == 200 and whole.content[4:8] == b"ftyp"
    part = op.get(
        f"{base}/recordings/gate/video.mp4", params=params, headers={"Range": "bytes=0-99"}
    )
    assert part.status_code == 206 and part.content == whole.content[:100]
    snap = op.get(f"{base}/cameras/gate/snapshot.jpg")
    assert snap.status_code == 200 and snap.content[:2] == b"\xff\xd8"

    # A signed export at the site, started and fetched through central.
    r = op.post(f"{base}/recordings/gate/export-jobs", json={**params, "reason": "police"})
    assert r.status_code == 202, r.text
    job = r.json()["id"]
    done = wait_for(
        lambda: (j := op.get(f"{base}/export-jobs/{job}").json())["state"] != "running" and j,
        20,
        "the export job",
    )
    assert done["state"] == "done", done
    name = done["result"]["file"]
    exported = op.get(f"{base}/exports/{name}")
    assert exported.status_code == 200 and exported.content[4:8] == b"ftyp"


def test_arm_and_disarm_a_site_from_central(world: dict[str, Any]) -> None:
    op, south = world["op"], world["clients"]["south"]

    def central_armed() -> bool | None:
        sites = {x["name"]: x for x in op.get("/api/central/sites").json()}
        armed: bool | None = sites["south"]["armed"]
        return armed

    assert central_armed() is True
    assert sites_named(op)["south"]["display_name"] == "South school"
    assert op.post("/api/central/sites/south/disarm").status_code == 202
    wait_for(lambda: central_armed() is False, 5, "south disarmed, as central sees it")
    [site] = [s for s in south.get("/api/sites").json() if s["name"] == "south"]
    assert site["armed"] is False
    assert op.post("/api/central/sites/south/arm").status_code == 202
    wait_for(lambda: central_armed() is True, 5, "south armed again")
    assert op.post("/api/central/sites/nowhere/arm").status_code == 404


def sites_named(client: httpx.Client) -> dict[str, dict[str, Any]]:
    return {x["name"]: x for x in client.get("/api/central/sites").json()}


def test_central_permissions_and_hostile_paths(world: dict[str, Any]) -> None:
    cbase = world["cbase"]
    with contextlib.closing(login(cbase, "viewer")) as viewer:
        assert len(viewer.get("/api/central/sites").json()) == 3
        alarms = viewer.get("/api/central/alarms").json()
        assert alarms
        a = alarms[0]
        r = viewer.post(f"/api/central/alarms/{a['station']}/{a['id']}/acknowledge", json={})
        assert r.status_code == 403
        assert viewer.get("/api/central/stations/north-st1/export-jobs/x").status_code == 403
    op = world["op"]
    for path in (
        "config",
        "auth/tokens",
        "users",
        "cameras/nosuch/snapshot.jpg",
        "cameras/gate/../../config",
        "recordings",
        "alarms",
        "exports/other-1-2-3.mp4",
        "alarms/99999999/history",
    ):
        r = op.get(f"/api/central/stations/north-st1/{path}")
        assert r.status_code in (404, 422), (path, r.status_code, r.text)
    assert op.get("/api/central/stations/nosuch/cameras/gate/snapshot.jpg").status_code == 404
    assert op.post("/api/central/alarms/north-st1/99999/acknowledge", json={}).status_code == 404
    r = op.post("/api/central/alarms/north-st1/1/explode", json={})
    assert r.status_code == 422
    with httpx.Client(base_url=cbase) as anonymous:
        assert anonymous.get("/api/central/sites").status_code == 401


def test_message_rates_for_the_capacity_model(world: dict[str, Any]) -> None:
    """What each site sent central during this module (the central station counts messages and
    payload bytes per site), and the size of each kind of message, for docs/capacity.md
    (printed with ``-s``). The tests make the sites far busier than a school: an incident every
    few seconds."""
    topo: BridgedSites = world["topo"]
    minutes = (time.monotonic() - world["t0"]) / 60
    for site in sites_named(world["op"]).values():
        report(
            f"{site['name']}: {site['messages'] / minutes:.0f} messages,"
            f" {site['message_bytes'] / minutes / 1000:.1f} kB a minute from one camera"
            f" over {minutes:.1f} min"
        )
    sizes: dict[str, list[int]] = {}
    with topo.central_client(["vmscore/north/#", "vmscore/south/#"]) as sub:
        panic(world["clients"]["north"])
        wait_for(lambda: any(m.topic.endswith("/alarms") for m in sub.messages), 5, "an alarm")
        for m in list(sub.messages):
            sizes.setdefault(m.topic.split("/")[-1], []).append(len(m.payload))
    for kind, values in sorted(sizes.items()):
        report(f"message {kind}: up to {max(values)} bytes")
    assert max(sizes["alarms"]) < 4096
    stats = world["central"].central.stats()
    report(f"central consumer: {json.dumps({k: stats[k] for k in ('messages', 'duplicates')})}")
    assert stats["bad_messages"] == 0


def remote_tile(station: str) -> str:
    return f".grid .tile[data-station='{station}'][data-camera='gate']"


def test_central_overview_alarms_and_playback_in_the_browser(world: dict[str, Any]) -> None:
    """The operator at central: every site under its heading with its link state, each site's
    "gate" (the same name at three sites) playing live through central; a panic at north shows
    on north's tile only, is acknowledged from the central alarm list and is in progress at the
    site; north's recordings play at central."""
    north = world["clients"]["north"]
    # An open alarm of the same condition would take the panic as a re-trigger: start afresh.
    for a in north.get("/api/alarms", params={"state": ["new", "in_progress", "on_hold"]}).json():
        r = north.post(f"/api/alarms/{a['id']}/close", json={"category": "Test"})
        assert r.status_code == 200, r.text
    t0 = time.monotonic()
    with chromium() as browser:
        page = UiPage(browser, world["cbase"], "operator", PASSWORDS["operator"])
        try:
            heads = page.wait(
                "() => { const h = [...document.querySelectorAll('.grid .site-heading')];"
                " return h.length === 3 && Object.fromEntries("
                "h.map(x => [x.dataset.site, [x.dataset.state, x.textContent]])); }",
                what="the three sites' headings",
            )
            assert set(heads) == set(SITES)
            for s in SITES:
                state, text = heads[s]
                assert state == "online" and "online" in text and f"{s}-st1" in text, heads
                assert f"{s.title()} school" in text and "armed" in text, heads
            for s in SITES:
                tile = remote_tile(f"{s}-st1")
                wait_for(video_advances(page, f"{tile} video", 1.0), 20, f"{s}'s gate live")
                live = page.js(f"() => document.querySelector({tile + ' .live'!r}).dataset")
                assert live["role"] == "sub" and live["codec"].startswith("avc1."), live
                assert page.js(f"() => document.querySelector({tile + ' video'!r}).readyState") >= 2
            page.screenshot("central-overview")

            # A panic at north: north's "gate" tile shows it, south's "gate" does not.
            panic(north)
            alarm = wait_for(
                lambda: (a := newest_alarm(north))["state"] == "new" and a, 5, "north's alarm"
            )
            page.wait(
                f"() => document.querySelector({remote_tile('north-st1')!r}).dataset.alarmId"
                f" === {str(alarm['id'])!r}",
                what="north's tile to show the alarm",
            )
            assert not page.js(
                f"() => document.querySelector({remote_tile('south-st1')!r}).dataset.alarmId"
            )
            # Enlarged, a site's camera plays its main stream.
            page.page.click(remote_tile("south-st1"))
            page.wait(
                "() => { const l = document.querySelector('.enlarged .live');"
                " return l?.dataset.station === 'south-st1' && l.dataset.role === 'main'; }",
                what="south's gate enlarged on its main stream",
            )
            wait_for(video_advances(page, ".enlarged video", 1.0), 20, "the enlarged camera")

            # The central alarm list: acknowledged there, in progress at the site.
            page.go("#/alarms")
            row = f"tr[data-key='north-st1/{alarm['id']}']"
            page.page.wait_for_selector(f"{row}.alarm-new", timeout=10_000)
            assert "north-st1" in page.page.inner_text(f"{row} td.site")
            page.page.click(row)
            page.page.wait_for_selector(".alarm-detail [data-action='acknowledge']")
            page.page.click(".alarm-detail [data-action='acknowledge']")
            wait_for(
                lambda: north.get(f"/api/alarms/{alarm['id']}").json()["state"] == "in_progress",
                10,
                "the acknowledgement at the site",
            )
            page.page.wait_for_selector(f"{row}.alarm-in_progress", timeout=10_000)
            # Its history comes from the site through central.
            page.wait(
                "() => document.querySelector('.alarm-history')?.innerText"
                ".includes('Acknowledged')",
                what="the site's history of the alarm",
            )
            page.screenshot("central-alarms")

            # Playback of a site's camera: its recordings through central.
            recs = (
                world["op"]
                .get("/api/central/stations/north-st1/recordings", params={"camera": "gate"})
                .json()["recordings"]
            )
            target = (recs[0]["start_us"] + recs[0]["end_us"]) // 2  # the oldest: more follows
            page.go(f"#/playback/@north-st1/gate/{target}")
            wait_for(video_advances(page, "video.playback-video", 1.0), 20, "north's playback")
            src = page.js("() => document.querySelector('video.playback-video').src")
            assert "/api/central/stations/north-st1/recordings/gate/video.mp4" in src
        finally:
            page.close()
    report(f"central browser test: {time.monotonic() - t0:.1f} s")


def test_a_restarted_central_station_gets_what_was_sent_meanwhile(
    world: dict[str, Any], tmp_path: Path
) -> None:
    """A second central station (its own session at the central broker) stops; an alarm is
    raised at north meanwhile; started again on the same data directory, it has the alarm,
    delivered by its broker session (not only fetched), and once."""
    north = world["clients"]["north"]
    doc = central_document(tmp_path, "central-b", world["topo"], world["sites"])
    through = north.get("/api/alarm-changes", params={"since": 0}).json()["through"]
    first = Station(doc)
    try:
        assert first.central is not None and first.central.wait_connected(10)
        wait_for(
            lambda: first.central.stats()["applied_seq"].get("north-st1", 0) >= through,  # type: ignore[union-attr]
            10,
            "the second central station up to date",
        )
    finally:
        first.close()
    for a in north.get("/api/alarms", params={"state": ["new", "in_progress"]}).json():
        assert north.post(f"/api/alarms/{a['id']}/close", json={}).status_code == 200
    panic(north, "smoke")
    raised = wait_for(lambda: (a := newest_alarm(north))["state"] == "new" and a, 5, "the alarm")
    again = Station(doc)
    try:
        cc = again.central
        assert cc is not None
        wait_for(lambda: cc.alarm("north-st1", raised["id"]), 15, "the alarm after the restart")
        wait_for(lambda: cc.stats()["alarm_changes"] > 0, 10, "the session's queued messages")
        rows = [a for a in cc.alarms(limit=1000) if a["station"] == "north-st1"]
        assert [a["id"] for a in rows].count(raised["id"]) == 1
    finally:
        again.close()


def test_role_needs_a_central_section(tmp_path: Path) -> None:
    from vmscore.station.config import ConfigError

    doc = document(tmp_path, [], sites=[], rules=[])
    doc["station"]["role"] = "central"
    doc["sites"] = []
    with pytest.raises(ConfigError, match="central"):
        Station(doc)
    assert PASSWORDS
