"""The operator's UI in a real browser (Debian's chromium, headless, driven by Playwright) against
one running station on simulated cameras at two schools, one of them H.265: log in; every camera
plays live in the grid (the video's time advances), the H.265 one as stills; an enlarged camera
plays its main stream with digital zoom, under a second behind the camera; a scripted intrusion
raises an alarm that shows in the list and frames its tile; the operator acknowledges and closes
it and plays its clip; the playback timeline seeks; a zone drawn on a snapshot persists; a viewer
restricted to one school gets no video of the other. Screenshots of the overview, an enlarged
camera and the alarm manager are left in test-artifacts/screenshots for review."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from browser_helpers import UiPage, chromium, video_advances
from station_helpers import PASSWORDS, clip, document, http_server, login, wait_for, zones_of
from vmscore.sim import CameraServer
from vmscore.sim.files import Clip, load_clip, write_clip
from vmscore.station.station import Station

pytestmark = pytest.mark.slow

NORTHVIEW = "northview-password-1"
H264 = ("gate", "hall", "lot")


def h265_clip(root: Path) -> Clip:
    d = root / "h265"
    write_clip(d, "carpark", 8, seed=2, main=(640, 360), sub=None, fps=10.0, codec="h265",
               bitrate=400_000)  # fmt: skip
    return load_clip(d)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("ui")
    clips = str(root / "clips")
    # A person climbs in over the gate at 4.3 s into the clip.
    night = clip(clips, "schoolyard-night", 3)
    corridor = clip(clips, "corridor", 1, 12)
    carpark = clip(clips, "carpark", 1, 12)
    dome = h265_clip(root)
    with CameraServer() as cs:
        cs.add_camera("gate", night.directory)
        cs.add_camera("hall", corridor.directory)
        cs.add_camera("lot", carpark.directory, start_offset_s=3)
        cs.add_camera("dome", dome.directory)

        def cam(name: str, site: str, *, sub: bool = True, **kw: Any) -> dict[str, Any]:
            urls = {"main_url": cs.url(name)} | ({"sub_url": cs.url(name, sub=True)} if sub else {})
            return {"name": name, "site": site, **urls, **kw}

        doc = document(
            root,
            [
                cam("gate", "north", motion={"zones": zones_of(night)}),
                cam("hall", "north", analysis=False),
                cam("lot", "south", analysis=False),
                cam("dome", "south", sub=False, analysis=False),
            ],
            sites=[{"name": "north", "armed": True}, {"name": "south", "armed": True}],
        )
        doc["users"].append(
            {"name": "northview", "role": "viewer", "password": NORTHVIEW, "sites": ["north"]}
        )
        station = Station(doc)
        try:
            with http_server(station) as base, chromium() as browser:
                api = {role: login(base, role) for role in ("viewer", "operator", "admin")}
                try:
                    yield {
                        "station": station,
                        "base": base,
                        "browser": browser,
                        "api": api,
                        "cs": cs,
                        "lot_clip": carpark.directory,
                    }
                finally:
                    for client in api.values():
                        client.close()
        finally:
            station.close()


def ui(world: dict[str, Any], user: str, password: str | None = None) -> UiPage:
    return UiPage(world["browser"], world["base"], user, password or PASSWORDS[user])


TILE_STATE = """() => Object.fromEntries([...document.querySelectorAll('.grid .tile[data-camera]')]
  .map(t => { const l = t.querySelector('.live');
              return [t.dataset.camera, {state: l.dataset.state, mode: l.dataset.mode,
                      codec: l.dataset.codec || '', role: l.dataset.role || '',
                      time: t.querySelector('video').currentTime,
                      still: t.querySelector('img').naturalWidth}]; }))"""


def test_grid_plays_every_camera_and_enlarges_on_the_main_stream(world: dict[str, Any]) -> None:
    page = ui(world, "operator")
    try:
        page.wait("() => document.querySelectorAll('.grid .tile[data-camera]').length === 4")
        for name in H264:
            sel = f".grid .tile[data-camera='{name}'] video"
            wait_for(video_advances(page, sel, 1.0), 20, f"{name}'s live video to play")
        tiles = page.js(TILE_STATE)
        for name in H264:
            assert tiles[name]["mode"] == "mse" and tiles[name]["codec"].startswith("avc1.")
            assert tiles[name]["role"] == "sub", tiles[name]
        # Chromium cannot play H.265 here: the tile shows stills of the camera's keyframes.
        dome = page.wait(
            "() => { const l = document.querySelector(\".tile[data-camera='dome'] .live\");"
            " return l.dataset.mode === 'jpeg' && l.querySelector('img').naturalWidth > 0"
            " && l.dataset; }",
            what="the H.265 camera's stills",
        )
        assert dome["codec"].startswith(("hvc1", "hev1")), dome
        page.screenshot("overview")

        # Enlarge: the main stream, playing, under a second behind the camera.
        page.page.click(".grid .tile[data-camera='lot']")
        page.wait("() => document.querySelector('.enlarged .live')?.dataset.role === 'main'")
        wait_for(video_advances(page, ".enlarged video", 1.0), 20, "the enlarged camera to play")
        size = page.js("() => document.querySelector('.enlarged .live').dataset.size")
        assert size == "640x360"
        latency = page.wait(
            "() => document.querySelector('.enlarged .live').vmsPlayer.latency()",
            what="a latency figure",
        )
        assert 0 < latency < 1.0, latency
        # Digital zoom: the keyboard zooms in, the picture is scaled; 0 resets.
        page.page.keyboard.press("+")
        page.page.keyboard.press("+")
        assert float(page.js("() => document.querySelector('.enlarged').dataset.zoom")) > 2
        page.screenshot("enlarged")
        page.page.keyboard.press("0")
        assert float(page.js("() => document.querySelector('.enlarged').dataset.zoom")) == 1
        page.page.keyboard.press("Escape")
        page.wait("() => !document.querySelector('.enlarged')")
        # Layouts: 1x1 pages through the cameras one at a time.
        page.page.keyboard.press("1")
        page.wait("() => document.querySelectorAll('.grid .tile[data-camera]').length === 1")
        assert "of 4" in page.js("() => document.querySelector('.page-label').textContent")
        page.page.keyboard.press("PageDown")
        page.wait("() => document.querySelector('.page-label').textContent.startsWith('page 2')")
    finally:
        page.close()


def test_viewer_of_one_school_gets_no_video_of_the_other(world: dict[str, Any]) -> None:
    page = ui(world, "northview", NORTHVIEW)
    try:
        names = page.wait(
            "() => { const t = [...document.querySelectorAll('.grid .tile[data-camera]')];"
            " return t.length && t.map(x => x.dataset.camera).sort(); }"
        )
        assert names == ["gate", "hall"]
        wait_for(video_advances(page, ".tile[data-camera='hall'] video", 1.0), 20, "hall playing")
        # Asking for the other school's camera by hand: refused, and not one byte of video.
        refused = page.page.evaluate(
            """() => new Promise(resolve => {
                 const ws = new WebSocket(`ws://${location.host}/api/cameras/lot/live`);
                 const got = {messages: [], binary: 0};
                 ws.onmessage = ev => typeof ev.data === 'string'
                   ? got.messages.push(JSON.parse(ev.data)) : got.binary++;
                 ws.onclose = ev => resolve({...got, code: ev.code});
               })"""
        )
        assert refused["code"] == 4403 and refused["binary"] == 0, refused
        assert [m["state"] for m in refused["messages"]] == ["forbidden"]
    finally:
        page.close()


def api_alarm(world: dict[str, Any], alarm_id: int) -> dict[str, Any]:
    got: dict[str, Any] = world["api"]["operator"].get(f"/api/alarms/{alarm_id}").json()
    return got


def test_intrusion_alarm_is_handled_in_the_alarm_manager(world: dict[str, Any]) -> None:
    page = ui(world, "operator")
    try:
        # The intruder at the gate raises an alarm: its tile is framed in the priority's colour.
        alarm_id = int(
            page.wait(
                "() => document.querySelector(\".tile[data-camera='gate'].alarm\")"
                "?.dataset.alarmId",
                timeout=40,
                what="the gate's tile to show an alarm",
            )
        )
        colour = page.js(
            "() => getComputedStyle(document.querySelector(\".tile[data-camera='gate']\"))"
            ".getPropertyValue('--alarm-colour').trim()"
        )
        assert colour == api_alarm(world, alarm_id)["colour"]
        page.go("#/alarms")
        row = f"tr[data-alarm-id='{alarm_id}']"
        page.page.wait_for_selector(row, timeout=10_000)
        assert "alarm-new" in (page.page.get_attribute(row, "class") or "")
        page.page.click(row)
        page.page.wait_for_selector(".alarm-detail [data-action='acknowledge']")
        page.screenshot("alarm-manager")
        page.page.click(".alarm-detail [data-action='acknowledge']")
        wait_for(lambda: api_alarm(world, alarm_id)["state"] == "in_progress", 10, "acknowledged")
        assert api_alarm(world, alarm_id)["owner"] == "operator"
        page.page.wait_for_selector(f"{row}.alarm-in_progress", timeout=10_000)
        # Its clip, from pre-roll on, loads (once its recording is on disk and indexed) and plays.
        page.wait(
            "() => document.querySelector('video.alarm-clip')?.readyState >= 2",
            timeout=40,
            what="the alarm's clip to load",
        )
        # The operator plays it from the start. (The clip may be a few seconds long, still being
        # recorded: its playback can end before a play() promise settles, which rejects it.)
        page.js(
            "() => { const v = document.querySelector('video.alarm-clip'); v.currentTime = 0;"
            " return v.play().then(() => 'playing', (e) => e.name); }"
        )
        wait_for(
            lambda: page.js(
                "() => { const v = document.querySelector('video.alarm-clip');"
                " return v.currentTime >= 1.0 || (v.ended && v.currentTime > 0.5); }"
            ),
            10,
            "the alarm's clip to play",
        )
        # Closed with a comment and a category.
        page.page.click(".alarm-detail [data-action='close']")
        page.page.select_option("dialog[open] select[name='category']", "False alarm")
        page.page.fill("dialog[open] textarea[name='comment']", "a cat on the gate")
        page.page.click("dialog[open] button[type='submit']")
        closed = wait_for(
            lambda: (a := api_alarm(world, alarm_id))["state"] == "closed" and a,
            10,
            "closed",
        )
        assert closed["category"] == "False alarm"
        page.go("#/overview")
        page.wait(
            "() => document.querySelector(\".tile[data-camera='gate']\") &&"
            " !document.querySelector(\".tile[data-camera='gate']\").dataset.alarmId",
            what="the gate's tile without the closed alarm",
        )
    finally:
        page.close()


def test_playback_timeline_seeks(world: dict[str, Any]) -> None:
    c = world["api"]["viewer"]
    recs = wait_for(
        lambda: c.get("/api/recordings", params={"camera": "hall"}).json()["recordings"],
        30,
        "a recording of the hall",
    )
    target = recs[0]["start_us"] + (recs[0]["end_us"] - recs[0]["start_us"]) // 2
    page = ui(world, "viewer")
    try:
        page.go(f"#/playback/hall/{target}")
        page.page.wait_for_selector("canvas.timeline-canvas")
        page.wait("() => Number(document.querySelector('#page').dataset.windowStart) > 0")
        start = int(page.js("() => document.querySelector('#page').dataset.windowStart"))
        end = int(page.js("() => document.querySelector('#page').dataset.windowEnd"))
        assert start <= target <= end
        box = page.page.locator("canvas.timeline-canvas").bounding_box()
        assert box is not None
        x = (target - start) / (end - start) * box["width"]
        page.page.mouse.click(box["x"] + x, box["y"] + box["height"] / 2)
        wait_for(video_advances(page, "video.playback-video", 1.0), 20, "playback to play")
        playhead = int(page.js("() => document.querySelector('#page').dataset.playheadUs"))
        # Where it was clicked (a pixel of the window's width), plus what has played since.
        assert target - 5_000_000 <= playhead <= target + 10_000_000, (target, playhead)
    finally:
        page.close()


def test_zone_drawn_on_a_snapshot_persists(world: dict[str, Any]) -> None:
    page = ui(world, "admin")
    try:
        page.go("#/admin/zones/hall")
        canvas = page.page.locator("canvas.zone-canvas")
        canvas.wait_for()
        before = page.js("() => document.querySelectorAll('li[data-zone]').length")
        page.page.click("[data-action='new-zone']")
        box = canvas.bounding_box()
        assert box is not None
        corners = [(0.2, 0.3), (0.6, 0.3), (0.6, 0.8), (0.2, 0.8)]
        for fx, fy in corners:
            page.page.mouse.click(box["x"] + fx * box["width"], box["y"] + fy * box["height"])
        page.page.keyboard.press("Enter")
        page.page.click("[data-action='save-zones']")
        c = world["api"]["admin"]
        zones = wait_for(
            lambda: c.get("/api/cameras/hall").json()["motion"]["zones"],
            10,
            "the zone in the camera's configuration",
        )
        (zone,) = zones
        for (x, y), (fx, fy) in zip(zone["polygon"], corners, strict=True):
            assert abs(x - fx) < 0.02 and abs(y - fy) < 0.02, zone
        page.page.reload()
        page.wait(
            "n => document.querySelectorAll('li[data-zone]').length === n + 1",
            before,
            what="the saved zone after a reload",
        )
    finally:
        page.close()


def test_tile_says_why_a_camera_is_not_live_and_recovers(world: dict[str, Any]) -> None:
    page = ui(world, "viewer")
    tile = ".grid .tile[data-camera='lot']"
    try:
        wait_for(video_advances(page, f"{tile} video", 1.0), 20, "lot playing")
        world["cs"].remove_camera("lot")  # the camera vanishes from the network
        page.wait(
            f"() => document.querySelector({tile + ' .live'!r}).dataset.state === 'offline'",
            timeout=20,
            what="the tile to say the camera is offline",
        )
        assert "offline" in page.js(
            f"() => document.querySelector({tile + ' .live-status'!r}).textContent"
        )
        page.wait(f"() => document.querySelector({tile + ' .badge.offline'!r})", what="badge")
        world["cs"].add_camera("lot", world["lot_clip"])
        # The station reconnects, and the tile plays again without anyone reloading the page.
        wait_for(video_advances(page, f"{tile} video", 1.0), 40, "lot playing again")
        page.wait(f"() => !document.querySelector({tile + ' .badge.offline'!r})", timeout=20)
        # A change of the camera's settings restarts its stream: the tile follows by itself.
        r = world["api"]["admin"].patch("/api/cameras/lot", json={"display_name": "Car park"})
        assert r.status_code == 200, r.text
        page.wait(
            f"() => document.querySelector({tile + ' .live'!r}).dataset.state !== 'playing'",
            timeout=10,
            what="the tile to notice the restart",
        )
        wait_for(video_advances(page, f"{tile} video", 1.0), 30, "lot playing after the change")
    finally:
        page.close()


def test_every_page_and_tab_loads_without_script_errors(world: dict[str, Any]) -> None:
    """Each page and administration tab renders what the station has (its modules load only
    when opened, so a broken one would otherwise go unnoticed); a viewer is told what the
    administration requires."""
    page = ui(world, "admin")
    try:
        for hash_, ready in (
            ("#/admin/cameras", "document.querySelectorAll('[data-camera]').length >= 4"),
            ("#/admin/rules", "document.querySelector(\"[data-rule='intrusion']\")"),
            ("#/admin/users", "document.querySelector(\"[data-user='northview']\")"),
            ("#/admin/health", "document.body.innerText.includes('Storage')"),
            ("#/playback", "document.querySelectorAll('[data-camera]').length >= 4"),
            ("#/alarms", "document.querySelector('.page-alarms table')"),
        ):
            page.go(hash_)
            page.wait(f"() => !!({ready})", what=f"{hash_} to render")
    finally:
        page.close()
    viewer = ui(world, "viewer")
    try:
        assert viewer.js("() => document.querySelector(\"#nav a[data-page='admin']\").hidden")
        viewer.go("#/admin/users")
        viewer.wait("() => document.body.innerText.includes('requires the admin role')")
    finally:
        viewer.close()
