"""The station's HTTP API against one running station on simulated cameras over two sites, served
by its real HTTP server: every route refuses the wrong credentials and roles, a user restricted to
one site sees nothing of the other (404 like a camera that does not exist, nothing in lists or the
event stream), cameras are added, changed, disabled, enabled and removed at run time without
disturbing the others, a camera and an ONVIF device are tested before they are added, snapshots,
recordings with HTTP Range, signed exports, bookmarks and evidence locks, the operator's alarm
workflow with stale versions and resumable server-sent events, arming, rules and time profiles,
metrics, and hostile requests that must get a 4xx and never a 500. The last test restarts the
station on the same data directory: what was changed through the API is still there."""

from __future__ import annotations

import base64
import contextlib
import io
import itertools
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import av
import httpx
import pytest
import yaml
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect as ws_connect

from auth_helpers import BASE_URL, LoggedInClient, walk_routes
from station_helpers import (
    PASSWORDS,
    EventStream,
    clip,
    document,
    finished_recordings,
    http_server,
    login,
    wait_for,
    zones_of,
)
from vmscore.cameras.snapshot import NoPictureError
from vmscore.record import verify_export
from vmscore.sim import CameraServer
from vmscore.sim.onvif import OnvifSimulator, SimProfile
from vmscore.station.config import parse_config
from vmscore.station.station import Station
from vmscore.web.app import create_app
from vmscore.web.auth import CAMERA_NOT_FOUND, CSRF_HEADER, SESSION_COOKIE

pytestmark = pytest.mark.slow

USERS = {
    **PASSWORDS,
    "northview": "northview-password-1",
    "northop": "northop-password-1",
}
LOBBY_SECRET = "lobby-camera-secret-1"
ONVIF_PASSWORD = "onvif-password-1"
NORTH = ("lot", "lobby")
SOUTH = ("lot-2",)
"""``lot-2``'s name starts with ``lot-``: names that prefix one another must not mix."""


# -- helpers ----------------------------------------------------------------------------------


def user(base: str, name: str) -> httpx.Client:
    return login(base, name, USERS[name])


def jpeg_size(data: bytes) -> tuple[int, int]:
    """Width and height of a JPEG, decoded with PyAV (so it is a real picture, not a header)."""
    assert data[:2] == b"\xff\xd8", data[:16]
    ctx = av.CodecContext.create("mjpeg", "r")
    frames = list(ctx.decode(av.Packet(data))) + list(ctx.decode(None))
    assert frames, "the JPEG did not decode"
    return frames[0].width, frames[0].height


def mp4_video(data: bytes) -> tuple[int, int, int]:
    """(frames, width, height) of an MP4 decoded with PyAV."""
    with av.open(io.BytesIO(data), format="mp4") as container:
        count, size = 0, (0, 0)
        for frame in container.decode(video=0):
            count += 1
            size = (frame.width, frame.height)
    return count, *size


def free_port() -> int:
    """A loopback TCP port that nothing listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def ingest(client: httpx.Client, camera: str) -> dict[str, int]:
    """What proves a camera's ingest undisturbed: reconnects and frames of its streams."""
    h = client.get(f"/api/cameras/{camera}/health")
    assert h.status_code == 200, h.text
    streams = h.json()["streams"]
    assert set(streams) == {"main", "sub"}, streams
    return {
        "reconnects": sum(s["reconnects"] for s in streams.values()),
        "main_packets": streams["main"]["packets"],
        "analysed": h.json()["analysis"]["frames_analysed"],
    }


def raw_post(base: str, client: httpx.Client, path: str, length: int, head: bytes) -> bytes:
    """Sends a request's headers announcing ``length`` bytes of body but only ``head`` of it,
    and returns what the server answers (its status line and headers)."""
    url = urlsplit(base)
    assert url.hostname and url.port
    cookie = client.cookies.get(SESSION_COOKIE)
    request = (
        f"POST {path} HTTP/1.1\r\nHost: {url.netloc}\r\n"
        f"Cookie: {SESSION_COOKIE}={cookie}\r\n{CSRF_HEADER}: {client.headers[CSRF_HEADER]}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    ).encode()
    with socket.create_connection((url.hostname, url.port), timeout=10) as s:
        s.sendall(request + head)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = s.recv(65536)
            if not chunk:
                break
            answer += chunk
    return answer


def external(client: httpx.Client, name: str, **where: Any) -> dict[str, Any]:
    r = client.post("/api/events/external", json={"name": name, **where})
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def wait_alarm(
    client: httpx.Client, timeout: float = 5, *, rule: str | None = None, **params: Any
) -> dict[str, Any]:
    """The newest alarm matching the list filters (and raised by ``rule``), waiting for it."""

    def find() -> dict[str, Any] | None:
        found = client.get("/api/alarms", params={"sort": "newest", **params}).json()
        found = [a for a in found if rule is None or a["rule"] == rule]
        return found[0] if found else None

    got: dict[str, Any] = wait_for(find, timeout, f"an alarm of {rule or 'any rule'}, {params}")
    return got


# -- the station ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("station-api")
    carpark = clip(str(root / "clips"), "carpark", 1, 12)
    corridor = clip(str(root / "clips"), "corridor", 1, 12)
    with CameraServer() as cs:
        cs.add_camera("lot", carpark.directory)
        cs.add_camera("lobby", corridor.directory)
        cs.add_camera("lot-2", carpark.directory, start_offset_s=6)
        # Not in the configuration: added through the API while the station runs.
        cs.add_camera("extra", corridor.directory, start_offset_s=4)
        cs.add_camera("onvifcam", carpark.directory, start_offset_s=9)

        def cam(name: str, site: str, **kw: Any) -> dict[str, Any]:
            return {
                "name": name,
                "site": site,
                "main_url": cs.url(name),
                "sub_url": cs.url(name, sub=True),
                **kw,
            }

        doc = document(
            root,
            [
                cam("lot", "north", motion={"zones": zones_of(carpark, ["entrance"])}),
                cam("lobby", "north", username="svc", password=LOBBY_SECRET),
                cam("lot-2", "south"),
            ],
            sites=[
                {"name": "north", "display_name": "North school", "armed": True},
                {"name": "south", "display_name": "South school", "armed": True},
            ],
            rules=[
                {
                    "name": "panic",
                    "trigger": {"kind": "external", "details": ["panic"]},
                    "actions": [{"type": "alarm", "priority": "critical", "category": "Intrusion"}],
                },
                {
                    "name": "doorbell",
                    "trigger": {"kind": "external", "details": ["doorbell"]},
                    "actions": [{"type": "alarm", "priority": "low"}],
                },
                {
                    "name": "armed-entry",
                    "trigger": {"kind": "external", "details": ["entry"]},
                    "conditions": {"site_armed": True},
                    "actions": [{"type": "alarm", "priority": "medium"}],
                },
            ],
            users=[
                *({"name": n, "role": n, "password": p} for n, p in PASSWORDS.items()),
                {
                    "name": "northview",
                    "role": "viewer",
                    "sites": ["north"],
                    "password": USERS["northview"],
                },
                {
                    "name": "northop",
                    "role": "operator",
                    "sites": ["north"],
                    "password": USERS["northop"],
                },
            ],
        )
        doc["defaults"]["recording"]["segment_s"] = 2
        station = Station(doc)
        try:
            with http_server(station) as base:
                for name in (*NORTH, *SOUTH):
                    wait_for(lambda n=name: station.camera_state(n).online, 10, f"{name} online")
                yield {"cs": cs, "station": station, "base": base, "doc": doc, "root": root}
        finally:
            station.close()


@pytest.fixture(scope="module")
def admin(world: dict[str, Any]) -> Iterator[httpx.Client]:
    with contextlib.closing(user(world["base"], "admin")) as c:
        yield c


@pytest.fixture(scope="module")
def op(world: dict[str, Any]) -> Iterator[httpx.Client]:
    with contextlib.closing(user(world["base"], "operator")) as c:
        yield c


@pytest.fixture(scope="module")
def viewer(world: dict[str, Any]) -> Iterator[httpx.Client]:
    with contextlib.closing(user(world["base"], "viewer")) as c:
        yield c


@pytest.fixture(scope="module")
def northview(world: dict[str, Any]) -> Iterator[httpx.Client]:
    with contextlib.closing(user(world["base"], "northview")) as c:
        yield c


@pytest.fixture(scope="module")
def northop(world: dict[str, Any]) -> Iterator[httpx.Client]:
    with contextlib.closing(user(world["base"], "northop")) as c:
        yield c


# -- 1. the route walk ------------------------------------------------------------------------


class WalkClient(LoggedInClient):
    """A test client for the walk that reads only the head of the endless event stream, and
    that keeps ONVIF discovery on loopback (an empty body would multicast on every interface)."""

    quiet_port = 9

    def request(self, method: str, url: Any, **kw: Any) -> httpx.Response:
        path = str(url).split("?")[0]
        if method == "GET" and path == "/api/events":
            with self.stream(method, url, **kw) as response:
                return response
        if method == "POST" and path == "/api/onvif/discover" and kw.get("json") == {}:
            kw["json"] = {"timeout_s": 0.2, "targets": [["127.0.0.1", self.quiet_port]]}
        return super().request(method, url, **kw)


def test_route_walk_denies_wrong_credentials_roles_and_csrf(world: dict[str, Any]) -> None:
    app = create_app(world["station"])
    WalkClient.quiet_port = free_port()
    clients: dict[str, WalkClient] = {}
    anonymous = WalkClient(app, base_url=BASE_URL, client=("127.0.0.1", 50000))
    try:
        for role in ("viewer", "operator", "admin"):
            c = WalkClient(app, base_url=BASE_URL, client=("127.0.0.1", 50000))
            c.user, c.password = role, PASSWORDS[role]
            c.relogin()  # through the real login route, as the document's user
            clients[role] = c
        # The UI's files (/static) are public: the page logs in by itself.
        report = walk_routes(app, clients, anonymous, public_paths={"/static"})
    finally:
        for c in (anonymous, *clients.values()):
            c.close()
    public = {r for r, p in report.routes.items() if p == "public"}
    assert public == {
        "GET /",
        "GET /api/live",
        "POST /api/auth/login",
        "GET /api/openapi.json",
        "GET /api/docs",
        "GET /docs/oauth2-redirect",
        "GET /static",
    }, public
    # The station's own routes are all there, each with the role the issue gives it.
    for route, policy in {
        "GET /api/cameras/{camera}/snapshot.jpg": "viewer",
        "GET /api/recordings/{camera}/video.mp4": "viewer",
        "GET /api/events": "viewer",
        "WS /api/cameras/{camera}/live": "viewer",
        "PUT /api/views/{name}": "viewer",
        "GET /metrics": "viewer",
        "POST /api/alarms/{alarm_id}/acknowledge": "operator",
        "POST /api/recordings/{camera}/export": "operator",
        "GET /api/exports/{name}": "operator",
        "POST /api/sites/{site}/arm": "operator",
        "POST /api/cameras": "admin",
        "PUT /api/cameras/{camera}/zones": "admin",
        "PUT /api/rules/{name}": "admin",
        "GET /api/config": "admin",
        "POST /api/onvif/probe": "admin",
        "GET /api/audit": "admin",
    }.items():
        assert report.routes.get(route) == policy, (route, report.routes.get(route))
    assert len(report.routes) > 60 and len(report.checks) > 300, report.summary()
    # The walk's PUT of a site under a placeholder name was undone by its DELETE.
    assert [s.name for s in world["station"].config.sites] == ["north", "south"]


@pytest.fixture(scope="module")
def footage(world: dict[str, Any], viewer: httpx.Client) -> dict[str, Any]:
    """A range of lot's recorded footage (a few finished 2 s segments) and its MP4."""
    recs = finished_recordings(world["station"], viewer, "lot")
    start = recs[0]["start_us"]
    end = min(recs[-1]["end_us"], start + 5_000_000)
    r = viewer.get("/api/recordings/lot/video.mp4", params={"start_us": start, "end_us": end})
    assert r.status_code == 200, r.text
    return {"recordings": recs, "start_us": start, "end_us": end, "mp4": r.content, "response": r}


# -- 2. per-camera permissions ----------------------------------------------------------------


def test_restricted_viewer_sees_only_its_site(
    world: dict[str, Any],
    northview: httpx.Client,
    viewer: httpx.Client,
    op: httpx.Client,
    footage: dict[str, Any],
) -> None:
    now = time.time_ns() // 1000
    camera_routes = [
        ("GET", "/api/cameras/{c}", {}),
        ("GET", "/api/cameras/{c}/snapshot.jpg", {}),
        ("GET", "/api/cameras/{c}/health", {}),
        ("GET", "/api/cameras/{c}/motion", {"since_us": now - 60_000_000, "until_us": now}),
        ("GET", "/api/recordings", {"camera": "{c}"}),
        (
            "GET",
            "/api/recordings/{c}/video.mp4",
            {"start_us": footage["start_us"], "end_us": footage["end_us"]},
        ),
        ("GET", "/api/bookmarks", {"camera": "{c}"}),
        ("GET", "/api/locks", {"camera": "{c}"}),
    ]

    def call(client: httpx.Client, cam: str, method: str, path: str, params: Any) -> Any:
        params = {k: (v.format(c=cam) if isinstance(v, str) else v) for k, v in params.items()}
        return client.request(method, path.format(c=cam), params=params)

    for method, path, params in camera_routes:
        hidden = call(northview, "lot-2", method, path, params)
        missing = call(northview, "no-such-camera", method, path, params)
        assert hidden.status_code == missing.status_code == 404, (path, hidden.text)
        assert hidden.json() == missing.json() == {"detail": CAMERA_NOT_FOUND}, path
        # The same route answers for a camera of the user's own site, and for lot-2 to a
        # viewer of every site.
        for client, cam in ((northview, "lot"), (viewer, "lot-2")):
            r = call(client, cam, method, path, params)
            assert r.status_code == 200, (path, cam, r.status_code, r.text[:200])

    assert sorted(c["name"] for c in northview.get("/api/cameras").json()) == sorted(NORTH)
    assert sorted(c["name"] for c in viewer.get("/api/cameras").json()) == sorted(NORTH + SOUTH)
    health = northview.get("/api/health").json()
    assert sorted(c["camera"] for c in health["cameras"]) == sorted(NORTH)
    sites = northview.get("/api/sites").json()
    assert [(s["name"], sorted(s["cameras"])) for s in sites] == [("north", sorted(NORTH))]

    # Alarms of the other site: not in the list, not by id, not on the event stream.
    own_stream = EventStream(user(world["base"], "northview"))
    all_stream = EventStream(user(world["base"], "viewer"))
    try:
        external(op, "doorbell", camera="lot-2")
        external(op, "doorbell", site="south")
        external(op, "doorbell", camera="lobby")
        wait_for(lambda: own_stream.alarms(camera="lobby", type="new"), 5, "lobby's alarm")
        wait_for(lambda: all_stream.alarms(camera="lobby", type="new"), 5, "lobby's alarm")
        # Published in order, so the others' alarms came before lobby's on the full stream.
        assert all_stream.alarms(camera="lot-2", type="new")
        assert all_stream.alarms(site="south", camera=None, type="new")
        seen = {(d["alarm"]["site"], d["alarm"]["camera"]) for d, _ in own_stream.alarms()}
        assert seen == {("north", "lobby")}, seen
        assert all(eid and eid.isdigit() for _, eid in own_stream.alarms())
        others = [
            d
            for ev, d, _ in own_stream.items
            if d.get("camera") == "lot-2" or d.get("site") == "south"
        ]
        assert others == [], others
    finally:
        own_stream.close()
        all_stream.close()
    station: Station = world["station"]
    wait_for(lambda: station.hub.subscribers == 0, 5, "the closed streams unsubscribed")
    listed = northview.get("/api/alarms", params={"limit": 1000}).json()
    assert listed and {(a["site"], a["camera"]) for a in listed} <= {("north", c) for c in NORTH}
    everything = viewer.get("/api/alarms", params={"limit": 1000}).json()
    hidden_alarm = next(a for a in everything if a["camera"] == "lot-2")
    site_alarm = next(a for a in everything if a["camera"] is None and a["site"] == "south")
    for a in (hidden_alarm, site_alarm):
        r = northview.get(f"/api/alarms/{a['id']}")
        assert r.status_code == 404 and r.json() == {"detail": "no such alarm"}
        assert northview.get(f"/api/alarms/{a['id']}/history").status_code == 404
    r = northview.get("/api/alarms", params={"camera": "lot-2"})
    assert r.status_code == 200 and r.json() == []


def test_restricted_operator_acts_only_on_its_site(
    world: dict[str, Any], northop: httpx.Client, op: httpx.Client
) -> None:
    r = northop.post("/api/events/external", json={"name": "doorbell", "camera": "lot-2"})
    assert r.status_code == 404 and r.json() == {"detail": CAMERA_NOT_FOUND}
    r = northop.post("/api/events/external", json={"name": "doorbell", "site": "south"})
    assert r.status_code == 404
    # Nor through a camera of its own said to be at the other site.
    r = northop.post(
        "/api/events/external", json={"name": "entry", "camera": "lot", "site": "south"}
    )
    assert r.status_code == 422 and "not at site south" in r.json()["detail"]
    assert northop.post("/api/sites/south/disarm").status_code == 404
    r = northop.post("/api/bookmarks", json={"camera": "lot-2", "start_us": 1, "text": "not mine"})
    assert r.status_code == 404 and r.json() == {"detail": CAMERA_NOT_FOUND}
    external(op, "doorbell", camera="lot-2")
    hidden = wait_alarm(op, camera="lot-2", rule="doorbell")
    for action in ("acknowledge", "close", "comment"):
        r = northop.post(f"/api/alarms/{hidden['id']}/{action}", json={"comment": "mine?"})
        assert r.status_code == 404 and r.json() == {"detail": "no such alarm"}, action
    now = time.time_ns() // 1000
    r = northop.post(
        "/api/recordings/lot-2/export", json={"start_us": now - 5_000_000, "end_us": now}
    )
    assert r.status_code == 404 and r.json() == {"detail": CAMERA_NOT_FOUND}
    # A user who may not see every camera gets no station-wide metrics.
    assert northop.get("/metrics").status_code == 403


def test_event_stream_follows_its_users_permissions_and_end(
    world: dict[str, Any], admin: httpx.Client, op: httpx.Client
) -> None:
    """An open event stream is not a pass: narrowed permissions apply to it and removing the
    user ends it."""
    station: Station = world["station"]
    password = "temporary-password-1"
    r = admin.post(
        "/api/users",
        json={"name": "temp-viewer", "role": "viewer", "password": password, "sites": ["north"]},
    )
    assert r.status_code == 201, r.text
    stream = EventStream(login(world["base"], "temp-viewer", password))
    try:

        def about(camera: str) -> list[dict[str, Any]]:
            return [
                d
                for _, d, _ in list(stream.items)
                if camera in (d.get("camera"), d.get("alarm", {}).get("camera"))
            ]

        external(op, "doorbell", camera="lobby")
        wait_for(lambda: about("lobby"), 5, "lobby's alarm on the stream")
        assert about("lot-2") == []
        r = admin.patch("/api/users/temp-viewer", json={"sites": ["south"]})
        assert r.status_code == 200, r.text
        # lot-2's events reach the stream once the change applies (within seconds).
        wait_for(
            lambda: external(op, "knock", camera="lot-2") and about("lot-2"),
            8,
            "lot-2 on the stream after the change",
            step=0.5,
        )
        seen = len(stream.items)
        external(op, "knock", camera="lobby")
        external(op, "marker", camera="lot-2")
        wait_for(lambda: any(d.get("detail") == "marker" for d in about("lot-2")), 5, "marker")
        assert not [d for _, d, _ in stream.items[seen:] if "lobby" in json.dumps(d)]

        t0 = time.monotonic()
        assert admin.delete("/api/users/temp-viewer").status_code == 204
        stream._thread.join(8)
        assert not stream._thread.is_alive(), "the stream outlived its user"
        assert time.monotonic() - t0 < 6
    finally:
        stream.close()
    wait_for(lambda: station.hub.subscribers == 0, 5, "the ended stream unsubscribed")


# -- 5. snapshots -----------------------------------------------------------------------------


def test_snapshot_is_a_jpeg_of_the_camera_size(viewer: httpx.Client) -> None:
    r = wait_for(
        lambda: (x := viewer.get("/api/cameras/lot/snapshot.jpg")).status_code == 200 and x,
        10,
        "a snapshot",
    )
    assert r.headers["content-type"] == "image/jpeg"
    assert r.headers["cache-control"] == "no-store"
    assert jpeg_size(r.content) == (640, 360)
    small = viewer.get("/api/cameras/lot/snapshot.jpg", params={"width": 320})
    assert small.status_code == 200 and jpeg_size(small.content) == (320, 180)
    wide = viewer.get("/api/cameras/lobby/snapshot.jpg", params={"width": 4000})
    assert wide.status_code == 200 and jpeg_size(wide.content) == (640, 360)
    assert viewer.get("/api/cameras/lot/snapshot.jpg", params={"width": -1}).status_code == 422


class LiveVideo:
    """A browser's view of ``/api/cameras/{camera}/live`` (websockets' client): the JSON messages,
    the init segment and the media that follow, how the server closed."""

    def __init__(
        self, base: str, client: httpx.Client | None, camera: str, stream: str = "sub", **kw: Any
    ) -> None:
        headers = {"Origin": kw.pop("origin", base)}
        if client is not None:
            headers["Cookie"] = f"{SESSION_COOKIE}={client.cookies.get(SESSION_COOKIE)}"
        url = base.replace("http://", "ws://") + f"/api/cameras/{camera}/live?stream={stream}"
        self._connection = ws_connect(url, additional_headers=headers, open_timeout=10, **kw)
        self.ws = self._connection.__enter__()
        self.messages: list[dict[str, Any]] = []
        self.init = b""
        self.media = bytearray()
        self.fragments = 0

    def read(self, seconds: float, *, until_fragments: int = 10**9) -> LiveVideo:
        deadline = time.monotonic() + seconds
        expect_init = False
        while time.monotonic() < deadline and self.fragments < until_fragments:
            try:
                msg = self.ws.recv(timeout=max(0.01, deadline - time.monotonic()))
            except TimeoutError:
                break
            except ConnectionClosed:
                break
            if isinstance(msg, str):
                self.messages.append(json.loads(msg))
                expect_init = self.messages[-1]["type"] == "init"
            elif expect_init:
                self.init, expect_init = msg, False
            else:
                self.media += msg
                self.fragments += msg.count(b"moof")
        return self

    def kinds(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["type"] == kind]

    def close_code(self) -> int | None:
        with contextlib.suppress(ConnectionClosed, TimeoutError):
            while True:
                self.ws.recv(timeout=5)
        return self.ws.close_code

    def close(self) -> None:
        self._connection.__exit__(None, None, None)


def test_live_video_over_websocket(
    world: dict[str, Any],
    admin: httpx.Client,
    northview: httpx.Client,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base = world["base"]
    live = LiveVideo(base, admin, "lot").read(15, until_fragments=25)
    try:
        inits = live.kinds("init")
        assert inits and inits[0]["role"] == "sub", live.messages
        assert inits[0]["codec"].startswith("avc1.") and inits[0]["width"] == 320
        assert live.kinds("status")[0]["state"] == "playing", live.messages
        # It starts at a keyframe and decodes as it arrives: a browser's SourceBuffer would too.
        assert live.fragments >= 25
        with av.open(io.BytesIO(live.init + bytes(live.media)), format="mp4") as c:
            frames = list(c.decode(video=0))
        assert len(frames) >= 25 and frames[0].key_frame
        assert (frames[0].width, frames[0].height) == (320, 180)
    finally:
        live.close()
    main = LiveVideo(base, admin, "lot", "main").read(10, until_fragments=1)
    main.close()
    assert main.kinds("init")[0]["role"] == "main" and main.kinds("init")[0]["width"] == 640
    # One muxing per stream whatever the viewers: the station's live figures say who watches.
    stats = {s["stream_id"]: s for s in world["station"].live.stats()}
    assert stats["lot@sub"]["mux_errors"] == 0

    # A user without permission, an unknown camera: the same refusal, and no video.
    for camera in ("lot-2", "no-such-camera"):
        refused = LiveVideo(base, northview, camera).read(5)
        assert refused.close_code() == 4403
        assert [m["state"] for m in refused.kinds("status")] == ["forbidden"]
        assert not refused.init and not refused.media
    # Viewers are bounded per user: beyond, a clear refusal instead of more work.
    monkeypatch.setattr("vmscore.station.live.MAX_VIEWERS_PER_USER", 1)
    first = LiveVideo(base, northview, "lot").read(5, until_fragments=1)
    try:
        second = LiveVideo(base, northview, "lobby").read(5)
        assert second.close_code() == 4404
        assert "per user" in second.kinds("status")[0]["reason"], second.messages
    finally:
        first.close()
    # No session, or a page of another origin using the operator's cookie: no handshake.
    for client, origin in ((None, base), (admin, "http://evil.example")):
        with pytest.raises(InvalidStatus) as e:
            LiveVideo(base, client, "lot", origin=origin)
        assert e.value.response.status_code == 403


def test_saved_views_belong_to_their_user(viewer: httpx.Client, northview: httpx.Client) -> None:
    view = {"layout": "3x3", "group_by": "site", "group": "north", "cameras": None, "page": 1}
    r = viewer.put("/api/views/night-shift", json=view)
    assert r.status_code == 200, r.text
    assert viewer.put("/api/views/night-shift", json={**view, "page": 0}).status_code == 200
    assert viewer.get("/api/views").json() == [
        {"name": "night-shift", "view": {**view, "page": 0}, "updated_us": ANY_INT}
    ]
    assert northview.get("/api/views").json() == []
    assert northview.delete("/api/views/night-shift").status_code == 404
    for bad in ({"layout": "9x9"}, {"group_by": "floor"}, {"page": -1}, {"extra": 1}):
        assert viewer.put("/api/views/x", json=bad).status_code == 422, bad
    assert viewer.put("/api/views/..", json=view).status_code in (404, 422)
    assert viewer.delete("/api/views/night-shift").status_code == 204
    assert viewer.get("/api/views").json() == []


class _AnyInt:
    def __eq__(self, other: object) -> bool:
        return isinstance(other, int)


ANY_INT = _AnyInt()


def test_motion_timeline(viewer: httpx.Client) -> None:
    """Motion per second for the timeline: the car park's cars, as a score and a 16x16 grid."""

    def seconds() -> list[dict[str, Any]]:
        now = time.time_ns() // 1000
        hour = {"since_us": now - 3600 * 1_000_000, "until_us": now}
        r = viewer.get("/api/cameras/lot/motion", params=hour)
        assert r.status_code == 200, r.text
        found: list[dict[str, Any]] = r.json()
        return [m for m in found if m["score"] > 0]

    found = wait_for(seconds, 10, "motion on the car park")
    for m in found:
        assert m["second_us"] % 1_000_000 == 0 and 0 < m["score"] <= 1, m
        assert len(bytes.fromhex(m["grid"])) == 32 and any(bytes.fromhex(m["grid"])), m
    assert [m["second_us"] for m in found] == sorted(m["second_us"] for m in found)
    for bad in ({"since_us": 10, "until_us": 5}, {"since_us": 0, "until_us": 2 * 86400 * 10**6}):
        assert viewer.get("/api/cameras/lot/motion", params=bad).status_code == 422


# -- 6. recordings ----------------------------------------------------------------------------


def test_recordings_list_and_mp4_with_http_range(
    viewer: httpx.Client, footage: dict[str, Any]
) -> None:
    recs = footage["recordings"]
    for a, b in itertools.pairwise(recs):
        # Back to back, never overlapping on the timeline (wall times are slewed by at most
        # 500 ppm against the media clock: 2 ms over a 4 s segment).
        overlap_ms = (a["end_us"] - b["start_us"]) / 1000
        assert a["start_us"] < a["end_us"], a
        assert overlap_ms <= 5, f"segments {a['id']} and {b['id']} overlap by {overlap_ms} ms"
        assert a["bytes"] > 0 and a["frames"] > 0
    full, first = footage["mp4"], footage["response"]
    assert first.headers["content-type"] == "video/mp4"
    assert first.headers["accept-ranges"] == "bytes"
    assert int(first.headers["content-length"]) == len(full)
    frames, width, height = mp4_video(full)
    assert (width, height) == (640, 360)
    # About 5 s at 10 fps (the range starts at a keyframe, it may end a little early).
    assert 35 <= frames <= 55, frames

    params = {"start_us": footage["start_us"], "end_us": footage["end_us"]}
    size = len(full)

    def part(spec: str) -> httpx.Response:
        return viewer.get("/api/recordings/lot/video.mp4", params=params, headers={"Range": spec})

    head, tail, last = part("bytes=0-99"), part("bytes=100-"), part("bytes=-50")
    assert head.status_code == tail.status_code == last.status_code == 206
    assert head.headers["content-range"] == f"bytes 0-99/{size}"
    assert tail.headers["content-range"] == f"bytes 100-{size - 1}/{size}"
    assert last.headers["content-range"] == f"bytes {size - 50}-{size - 1}/{size}"
    assert int(tail.headers["content-length"]) == size - 100
    assert head.content + tail.content == full
    assert last.content == full[-50:]
    middle = part(f"bytes={size // 2}-{size // 2 + 4095}")
    assert middle.status_code == 206 and middle.content == full[size // 2 : size // 2 + 4096]
    for spec in (f"bytes={size}-", f"bytes={size + 10}-{size + 20}", "bytes=10-5", "pages=1-2"):
        r = part(spec)
        assert r.status_code == 416, (spec, r.status_code)
        assert r.headers["content-range"] == f"bytes */{size}", spec

    r = viewer.get(
        "/api/recordings/lot/video.mp4", params={"start_us": 1_000_000, "end_us": 2_000_000}
    )
    assert r.status_code == 404 and "no recordings" in r.json()["detail"]
    day = 24 * 3600 * 1_000_000
    start = footage["start_us"]
    r = viewer.get(
        "/api/recordings/lot/video.mp4", params={"start_us": start, "end_us": start + day + 1}
    )
    assert r.status_code == 422 and "24 hours" in r.json()["detail"]
    r = viewer.get("/api/recordings/lot/video.mp4", params={"start_us": start, "end_us": start})
    assert r.status_code == 422
    sub = viewer.get("/api/recordings/lot/video.mp4", params={**params, "stream": "sub"})
    assert sub.status_code == 404  # the sub-stream is not recorded by default


def test_the_last_seconds_play_before_their_segment_is_indexed(
    world: dict[str, Any], viewer: httpx.Client
) -> None:
    """An alarm's clip is wanted at once: footage whose segment is still open comes from the
    recorder's ring, as fragmented MP4 from the keyframe at or before the start."""
    st: Station = world["station"]
    now = st.camera_now_us("lot")
    clip_bytes = st.recent_clip("lot", now - 1_500_000, now)
    frames, width, height = mp4_video(clip_bytes)
    assert (width, height) == (640, 360) and frames >= 10  # 1.5 s at 10 fps, from a keyframe
    with pytest.raises(NoPictureError):
        st.recent_clip("lot", now + 60_000_000, now + 61_000_000)
    # Through the API, a range up to this instant plays, indexed or not.
    r = viewer.get(
        "/api/recordings/lot/video.mp4",
        params={"start_us": now - 1_000_000, "end_us": st.camera_now_us("lot")},
    )
    assert r.status_code == 200 and r.headers["content-type"] == "video/mp4"
    assert mp4_video(r.content)[0] >= 5


# -- 7. signed export -------------------------------------------------------------------------


def test_signed_export_download_verify_and_audit(
    world: dict[str, Any],
    op: httpx.Client,
    viewer: httpx.Client,
    admin: httpx.Client,
    northop: httpx.Client,
    footage: dict[str, Any],
    tmp_path: Path,
) -> None:
    body = {"start_us": footage["start_us"], "end_us": footage["end_us"], "reason": "case 17"}
    assert viewer.post("/api/recordings/lot/export", json=body).status_code == 403
    r = op.post("/api/recordings/lot/export", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["url"] == f"/api/exports/{out['file']}"
    mp4 = op.get(out["url"])
    manifest = op.get(out["manifest_url"])
    assert mp4.status_code == manifest.status_code == 200
    assert len(mp4.content) == out["bytes"]
    assert viewer.get(out["url"]).status_code == 403
    (tmp_path / out["file"]).write_bytes(mp4.content)
    (tmp_path / out["manifest"]).write_bytes(manifest.content)
    report = verify_export(tmp_path / out["file"], tmp_path / out["manifest"])
    assert report.valid, report.problems
    assert report.signature == "valid"
    assert (report.camera, report.exporter, report.station) == ("lot", "operator", "test-station")
    frames, width, _ = mp4_video(mp4.content)
    assert frames >= 35 and width == 640

    # The same export asked for twice at once (a double click): two files, each intact.
    results: list[httpx.Response] = []
    twins = [
        threading.Thread(
            target=lambda: results.append(op.post("/api/recordings/lot/export", json=body))
        )
        for _ in range(2)
    ]
    for t in twins:
        t.start()
    for t in twins:
        t.join(30)
    assert [r.status_code for r in results] == [200, 200], [r.text for r in results]
    a, b = (r.json() for r in results)
    assert a["file"] != b["file"] and a["manifest"] != b["manifest"]
    for twin in (a, b):
        (tmp_path / twin["file"]).write_bytes(op.get(twin["url"]).content)
        (tmp_path / twin["manifest"]).write_bytes(op.get(twin["manifest_url"]).content)
        checked = verify_export(tmp_path / twin["file"], tmp_path / twin["manifest"])
        assert checked.valid, checked.problems

    audit = admin.get("/api/audit", params={"action": "export"}).json()
    entry = next(e for e in audit if out["file"] in json.dumps(e["detail"]))
    assert entry["user"] == "operator" and entry["ok"] and entry["target"] == "lot"
    assert len([e for e in audit if e["target"] == "lot"]) == 3
    assert "case 17" in json.dumps(entry["detail"])

    # lot-2's exports are not lot's, though lot-2's name starts with "lot-".
    r = op.post("/api/recordings/lot-2/export", json={**body, "reason": "south"})
    if r.status_code == 404:  # lot-2 has footage at other times: take its own
        recs = op.get("/api/recordings", params={"camera": "lot-2"}).json()["recordings"]
        start = recs[0]["start_us"]
        r = op.post(
            "/api/recordings/lot-2/export",
            json={"start_us": start, "end_us": start + 2_000_000, "reason": "south"},
        )
    assert r.status_code == 200, r.text
    south = r.json()
    assert op.get(south["url"]).status_code == 200
    assert northop.get(out["url"]).status_code == 200
    for url in (south["url"], south["manifest_url"]):
        r = northop.get(url)
        assert r.status_code == 404 and r.json() == {"detail": "no such export"}, url


# -- 8. bookmarks and evidence locks ------------------------------------------------------------


def test_bookmarks_and_evidence_locks(
    op: httpx.Client,
    viewer: httpx.Client,
    admin: httpx.Client,
    northview: httpx.Client,
    footage: dict[str, Any],
) -> None:
    start, end = footage["start_us"], footage["end_us"]
    assert (
        viewer.post("/api/bookmarks", json={"camera": "lot", "start_us": start}).status_code == 403
    )
    r = op.post(
        "/api/bookmarks",
        json={"camera": "lot", "start_us": start, "end_us": end, "text": "van at the gate"},
    )
    assert r.status_code == 201, r.text
    mark = r.json()
    assert mark["user"] == "operator" and mark["text"] == "van at the gate"
    r = op.post("/api/bookmarks", json={"camera": "lot-2", "start_us": start, "text": "south"})
    assert r.status_code == 201
    south_mark = r.json()
    r = op.post("/api/bookmarks", json={"camera": "lot", "start_us": end, "end_us": start})
    assert r.status_code == 422 and "end before it starts" in r.json()["detail"]

    listed = viewer.get("/api/bookmarks", params={"camera": "lot"}).json()
    assert [b["id"] for b in listed if b["id"] == mark["id"]] == [mark["id"]]
    ids = {b["id"] for b in northview.get("/api/bookmarks").json()}
    assert mark["id"] in ids and south_mark["id"] not in ids
    in_range = viewer.get(
        "/api/bookmarks", params={"since_us": start, "until_us": start + 1}
    ).json()
    assert mark["id"] in {b["id"] for b in in_range}
    assert viewer.delete(f"/api/bookmarks/{mark['id']}").status_code == 403
    assert op.delete(f"/api/bookmarks/{mark['id']}").status_code == 204
    assert op.delete(f"/api/bookmarks/{mark['id']}").status_code == 404
    assert mark["id"] not in {b["id"] for b in viewer.get("/api/bookmarks").json()}
    assert op.delete(f"/api/bookmarks/{south_mark['id']}").status_code == 204

    lock = {"camera": "lot", "start_us": start, "end_us": end, "reason": "police request 4711"}
    assert viewer.post("/api/locks", json=lock).status_code == 403
    r = op.post("/api/locks", json=lock)
    assert r.status_code == 201, r.text
    lock_id = r.json()["id"]
    active = viewer.get("/api/locks", params={"camera": "lot"}).json()
    found = next(lk for lk in active if lk["id"] == lock_id)
    assert found["owner"] == "operator" and found["reason"] == "police request 4711"
    r = op.post("/api/locks", json={**lock, "end_us": start})
    assert r.status_code == 422
    r = op.post("/api/locks", json={**lock, "reason": ""})
    assert r.status_code == 422
    assert viewer.delete(f"/api/locks/{lock_id}").status_code == 403
    assert op.delete(f"/api/locks/{lock_id}").status_code == 204
    assert op.delete(f"/api/locks/{lock_id}").status_code == 404
    assert lock_id not in {lk["id"] for lk in viewer.get("/api/locks").json()}
    lifted = viewer.get("/api/locks", params={"include_inactive": True}).json()
    assert lock_id in {lk["id"] for lk in lifted}

    audit = admin.get("/api/audit", params={"user": "operator", "limit": 1000}).json()
    actions = {(e["action"], e["target"]) for e in audit}
    for expected in (
        ("bookmark.add", "lot"),
        ("bookmark.delete", "lot"),
        ("evidence.lock", "lot"),
        ("evidence.unlock", "lot"),
    ):
        assert expected in actions, expected


# -- 9. alarms ----------------------------------------------------------------------------------


def test_alarm_workflow_filters_and_event_stream_resume(
    world: dict[str, Any],
    op: httpx.Client,
    viewer: httpx.Client,
    northop: httpx.Client,
) -> None:
    stream = EventStream(user(world["base"], "operator"))
    try:
        ev = external(op, "panic", camera="lot", data={"button": 3})
        assert ev["kind"] == "external" and ev["detail"] == "panic" and ev["site"] == "north"
        (data, eid), *_ = wait_for(
            lambda: stream.alarms(camera="lot", rule="panic", type="new"), 5, "the panic alarm"
        )
        alarm = data["alarm"]
        assert eid is not None and int(eid) > 0
        assert alarm["priority"] == "critical" and alarm["state"] == "new"
        assert alarm["category"] == "Intrusion" and alarm["title"].startswith("External event")
        listed = op.get("/api/alarms", params={"camera": "lot", "state": "new"}).json()
        assert alarm["id"] in {a["id"] for a in listed}
        last_seen = eid
    finally:
        stream.close()

    # The alarm's snapshot comes a moment after it was raised, as a change of its own.
    aid = alarm["id"]
    current = wait_for(
        lambda: (x := op.get(f"/api/alarms/{aid}").json())["has_snapshot"] and x, 5, "snapshot"
    )
    assert current["version"] > alarm["version"]
    snap = op.get(f"/api/alarms/{aid}/snapshot.jpg")
    assert snap.status_code == 200 and jpeg_size(snap.content) == (640, 360)
    v = current["version"]

    def act(what: str, body: dict[str, Any] | None = None, **params: Any) -> httpx.Response:
        return op.post(f"/api/alarms/{aid}/{what}", json=body or {}, params=params)

    r = act("acknowledge", expect_version=v + 7)
    assert r.status_code == 409 and "changed meanwhile" in r.json()["detail"]
    r = act("acknowledge", expect_version=v)
    assert r.status_code == 200 and r.json()["state"] == "in_progress"
    assert r.json()["owner"] == "operator"
    assert act("acknowledge").status_code == 409  # only a new alarm can be acknowledged
    assert act("resume").status_code == 409  # not on hold
    assert act("reopen").status_code == 409  # not closed
    r = act("hold", {"comment": "guard on the way"}, expect_version=v)  # stale: v was acked
    assert r.status_code == 409
    v = op.get(f"/api/alarms/{aid}").json()["version"]
    r = act("hold", {"comment": "guard on the way"}, expect_version=v)
    assert r.status_code == 200 and r.json()["state"] == "on_hold"
    r = act("resume")
    assert r.status_code == 200 and r.json()["state"] == "in_progress"
    r = act("assign", {"to": "admin"})
    assert r.status_code == 200 and r.json()["owner"] == "admin"
    assert act("assign", {"to": "admin"}).status_code == 409  # already theirs
    r = act("priority", {"priority": "medium"})
    assert r.status_code == 200 and r.json()["priority"] == "medium"
    assert act("priority", {"priority": "urgent"}).status_code == 422
    assert act("comment", {"comment": "   "}).status_code == 422
    assert act("comment", {"comment": "the caretaker"}).status_code == 200
    assert viewer.post(f"/api/alarms/{aid}/close", json={}).status_code == 403
    r = act("close", {"comment": "caretaker", "category": "No such category"})
    assert r.status_code == 422 and "unknown category" in r.json()["detail"]  # not a conflict
    assert act("comment", {"comment": "bell\x07"}).status_code == 422
    r = act("close", {"comment": "the caretaker's cat", "category": "False alarm"})
    assert r.status_code == 200 and r.json()["state"] == "closed"
    assert r.json()["category"] == "False alarm"
    assert act("close").status_code == 409  # closed again
    assert act("assign", {"to": "operator"}).status_code == 409

    history = op.get(f"/api/alarms/{aid}/history").json()
    steps = [(h["action"], h["user"]) for h in history]
    assert steps == [
        ("raised", "system"),
        ("acknowledged", "operator"),
        ("on_hold", "operator"),
        ("resumed", "operator"),
        ("assigned", "operator"),
        ("priority_changed", "operator"),
        ("commented", "operator"),
        ("closed", "operator"),
    ], steps

    # Resume: the changes made while no stream was open come first, in order, with their ids.
    resumed = EventStream(user(world["base"], "operator"), last_event_id=last_seen)
    try:
        missed = wait_for(
            lambda: [d for d, _ in resumed.alarms(id=aid)] if resumed.alarms(type="end") else [],
            5,
            "the missed changes",
        )
        assert missed[0]["alarm"]["has_snapshot"]  # the snapshot came after the id we had
        assert [d["alarm"]["state"] for d in missed] == [
            "new",
            "in_progress",
            "on_hold",
            "in_progress",
            "in_progress",
            "in_progress",
            "in_progress",
            "closed",
        ]
        assert missed[-1]["type"] == "end"
        ids = [int(e) for _, e in resumed.alarms() if e is not None]
        assert ids == sorted(ids) and ids[0] > int(last_seen)
        # and the stream goes on live after the replay
        external(op, "doorbell", camera="lot")
        wait_for(lambda: resumed.alarms(camera="lot", rule="doorbell"), 5, "a live alarm")
    finally:
        resumed.close()

    # Filters and sorting.
    external(op, "panic", camera="lot-2")
    south = wait_alarm(op, camera="lot-2", rule="panic")
    closed = op.get("/api/alarms", params={"state": "closed"}).json()
    assert aid in {a["id"] for a in closed} and {a["state"] for a in closed} == {"closed"}
    low = op.get("/api/alarms", params={"priority": "low"}).json()
    assert low and {a["priority"] for a in low} == {"low"}
    on_lot2 = op.get("/api/alarms", params={"camera": "lot-2"}).json()
    assert on_lot2 and {a["camera"] for a in on_lot2} == {"lot-2"}
    both = op.get("/api/alarms", params=[("state", "new"), ("state", "closed")]).json()
    assert {a["state"] for a in both} == {"new", "closed"}
    by_priority = op.get("/api/alarms", params={"limit": 1000}).json()
    levels = [a["priority_level"] for a in by_priority]
    assert levels == sorted(levels) and by_priority[0]["priority"] == "critical"
    newest = op.get("/api/alarms", params={"sort": "newest", "limit": 1000}).json()
    oldest = op.get("/api/alarms", params={"sort": "oldest", "limit": 1000}).json()
    assert [a["id"] for a in newest] == [a["id"] for a in reversed(oldest)]
    assert [a["created_us"] for a in oldest] == sorted(a["created_us"] for a in oldest)
    assert op.get("/api/alarms", params={"sort": "loudest"}).status_code == 422
    text = op.get("/api/alarms", params={"text": "panic"}).json()
    assert text and all("panic" in a["title"] or a["rule"] == "panic" for a in text)

    # Statistics: the false alarm counts against lot, for anyone who may see lot.
    stats = op.get("/api/alarm-statistics/false-alarms").json()
    lot = next(s for s in stats if s["camera"] == "lot")
    assert lot["false_alarms"] >= 1 and lot["closed"] >= lot["false_alarms"]
    assert 0 < lot["ratio"] <= 1 and lot["site"] == "north"
    r = op.post(f"/api/alarms/{south['id']}/close", json={"category": "False alarm"})
    assert r.status_code == 200
    stats = op.get("/api/alarm-statistics/false-alarms").json()
    assert {"lot", "lot-2"} <= {s["camera"] for s in stats}
    mine = northop.get("/api/alarm-statistics/false-alarms").json()
    assert "lot" in {s["camera"] for s in mine} and "lot-2" not in {s["camera"] for s in mine}
    assert viewer.get("/api/alarm-statistics/false-alarms").status_code == 403


# -- 10. sites, rules and time profiles ----------------------------------------------------------


def test_arming_decides_site_armed_rules(
    op: httpx.Client, viewer: httpx.Client, admin: httpx.Client
) -> None:
    assert viewer.post("/api/sites/south/disarm").status_code == 403
    assert op.post("/api/sites/nowhere/disarm").status_code == 404
    r = op.post("/api/sites/south/disarm")
    assert r.status_code == 200 and r.json() == {"site": "south", "armed": False}
    sites = {s["name"]: s for s in viewer.get("/api/sites").json()}
    assert not sites["south"]["armed"] and sites["north"]["armed"]
    assert sites["south"]["display_name"] == "South school"

    # Events are handled in order: once the doorbell after it rang, the entry was judged.
    def doorbells() -> int:
        params = {"camera": "lot-2", "text": "doorbell", "limit": 1000}
        return sum(a["count"] for a in op.get("/api/alarms", params=params).json())

    rung = doorbells()
    external(op, "entry", camera="lot-2")
    external(op, "doorbell", camera="lot-2")
    wait_for(lambda: doorbells() > rung, 5, "the doorbell after the entry")
    assert op.get("/api/alarms", params={"camera": "lot-2", "text": "entry"}).json() == []

    r = op.post("/api/sites/south/arm")
    assert r.status_code == 200 and r.json()["armed"] is True
    external(op, "entry", camera="lot-2")
    alarm = wait_alarm(op, camera="lot-2", text="entry")
    assert alarm["rule"] == "armed-entry" and alarm["priority"] == "medium"
    audit = admin.get("/api/audit", params={"user": "operator", "limit": 1000}).json()
    steps = [e["action"] for e in audit if e["target"] == "south" and e["ok"]]
    assert steps[:2] == ["arm", "disarm"], steps  # newest first


def test_rules_time_profiles_and_sites_crud(
    op: httpx.Client, admin: httpx.Client, northview: httpx.Client
) -> None:
    rule = {
        "trigger": {"kind": "external", "details": ["smoke"]},
        "actions": [{"type": "alarm", "priority": "high", "category": "Fire"}],
    }
    assert op.put("/api/rules/smoke", json=rule).status_code == 403
    r = admin.put("/api/rules/smoke", json=rule)
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "smoke" and r.json()["trigger"]["details"] == ["smoke"]
    assert "smoke" in {x["name"] for x in op.get("/api/rules").json()}
    # In force at once, without a restart.
    external(op, "smoke", camera="lobby")
    assert wait_alarm(op, camera="lobby", text="smoke")["category"] == "Fire"

    def problems(r: httpx.Response) -> str:
        assert r.status_code == 422, (r.status_code, r.text)
        detail = r.json()["detail"]
        assert detail["message"] == "invalid" and detail["problems"]
        return "\n".join(detail["problems"])

    before = admin.get("/api/config/history").json()[0]["version"]
    text = problems(admin.put("/api/rules/smoke", json={**rule, "trigger": {"kind": "fog"}}))
    assert "rules[" in text and "(smoke).trigger.kind" in text, text
    bad_site = {**rule, "trigger": {"kind": "external", "sites": ["mars"]}}
    assert "no site named 'mars'" in problems(admin.put("/api/rules/smoke", json=bad_site))
    assert "actions" in problems(admin.put("/api/rules/smoke", json={**rule, "actions": []}))
    assert "unknown setting" in problems(admin.put("/api/rules/smoke", json={**rule, "x": 1}))
    assert admin.get("/api/config/history").json()[0]["version"] == before
    assert next(x for x in op.get("/api/rules").json() if x["name"] == "smoke") == r.json()

    profile = {"timezone": "Europe/Berlin", "ranges": [{"start": "18:00", "end": "07:00"}]}
    assert op.put("/api/time-profiles/nights", json=profile).status_code == 403
    r = admin.put("/api/time-profiles/nights", json=profile)
    assert r.status_code == 200 and r.json()["ranges"][0]["days"][0] == "mon"
    bad_zone = {**profile, "timezone": "Mars/Olympus"}
    assert "unknown time zone" in problems(admin.put("/api/time-profiles/nights", json=bad_zone))
    bad_time = {"ranges": [{"start": "25:00", "end": "07:00"}]}
    assert "HH:MM" in problems(admin.put("/api/time-profiles/nights", json=bad_time))
    night_rule = {**rule, "conditions": {"time_profile": "nights"}}
    assert admin.put("/api/rules/smoke-at-night", json=night_rule).status_code == 200
    unknown = {**rule, "conditions": {"time_profile": "weekends"}}
    assert "no time profile named 'weekends'" in problems(
        admin.put("/api/rules/smoke-at-night", json=unknown)
    )
    # A profile in use cannot go; the rule first, then the profile.
    assert "no time profile named 'nights'" in problems(admin.delete("/api/time-profiles/nights"))
    assert admin.delete("/api/rules/smoke-at-night").status_code == 204
    assert admin.delete("/api/time-profiles/nights").status_code == 204
    assert admin.delete("/api/time-profiles/nights").status_code == 404
    assert op.delete("/api/rules/smoke").status_code == 403
    assert admin.delete("/api/rules/smoke").status_code == 204
    assert admin.delete("/api/rules/smoke").status_code == 404
    assert "smoke" not in {x["name"] for x in op.get("/api/rules").json()}
    # Sites: added and removed at run time; one that cameras are on cannot go.
    assert op.put("/api/sites/east", json={}).status_code == 403
    r = admin.put("/api/sites/east", json={"display_name": "East school"})
    assert r.status_code == 200 and r.json()["armed"] is False
    east = next(x for x in op.get("/api/sites").json() if x["name"] == "east")
    assert east["cameras"] == [] and east["armed"] is False
    assert "east" not in {x["name"] for x in northview.get("/api/sites").json()}
    assert "no site named 'south'" in problems(admin.delete("/api/sites/south"))
    assert admin.delete("/api/sites/east").status_code == 204
    assert op.post("/api/sites/east/arm").status_code == 404

    audit = admin.get("/api/audit", params={"user": "admin", "limit": 1000}).json()
    actions = {(e["action"], e["target"], e["ok"]) for e in audit}
    assert ("rule.put", "smoke", True) in actions and ("rule.put", "smoke", False) in actions
    assert ("time_profile.delete", "nights", True) in actions


# -- 3. cameras at run time ------------------------------------------------------------------------


def test_cameras_change_at_run_time_without_disturbing_others(
    world: dict[str, Any], admin: httpx.Client, op: httpx.Client, viewer: httpx.Client
) -> None:
    cs: CameraServer = world["cs"]
    station: Station = world["station"]
    watched = {c: ingest(admin, c) for c in ("lot", "lot-2")}
    assert all(w["reconnects"] == 0 for w in watched.values()), watched

    def undisturbed(step: str) -> None:
        for cam, before in watched.items():
            now = wait_for(
                lambda c=cam, b=before: (
                    (x := ingest(admin, c))["main_packets"] > b["main_packets"]
                    and x["analysed"] > b["analysed"]
                    and x
                ),
                5,
                f"{cam} still receiving after {step}",
            )
            assert now["reconnects"] == 0, (step, cam, now)
            watched[cam] = now

    body = {
        "name": "extra",
        "site": "south",
        "main_url": cs.url("extra").replace("rtsp://", "rtsp://svc:url-secret-9@"),
        "sub_url": cs.url("extra", sub=True),
        "recording": {"pre_roll_s": 2},
    }
    assert viewer.post("/api/cameras", json=body).status_code == 403
    r = admin.post("/api/cameras", json=body)
    assert r.status_code == 201, r.text
    assert r.json()["name"] == "extra" and r.json()["recording"]["segment_s"] == 2  # defaults
    assert r.json()["main_url"] == cs.url("extra")  # credentials never shown
    assert "url-secret-9" not in admin.get("/api/cameras").text
    wait_for(lambda: admin.get("/api/cameras/extra").json()["online"], 10, "extra online")
    undisturbed("add")

    r = admin.patch(
        "/api/cameras/extra", json={"display_name": "Bike shed", "recording": {"pre_roll_s": 1}}
    )
    assert r.status_code == 200 and r.json()["display_name"] == "Bike shed"
    assert r.json()["recording"]["pre_roll_s"] == 1 and r.json()["recording"]["segment_s"] == 2
    wait_for(lambda: admin.get("/api/cameras/extra").json()["online"], 10, "extra back online")
    undisturbed("patch")
    r = admin.patch("/api/cameras/extra", json={"name": "renamed"})
    assert r.status_code == 422

    r = admin.post("/api/cameras/extra/disable")
    assert r.status_code == 200 and r.json()["enabled"] is False and r.json()["online"] is False
    assert station.camera_state("extra").streams == {}
    r = admin.get("/api/cameras/extra/snapshot.jpg")
    assert r.status_code == 503 and "not running" in r.json()["detail"]
    assert admin.get("/api/cameras/extra/health").json()["streams"] == {}
    undisturbed("disable")
    r = admin.post("/api/cameras/extra/enable")
    assert r.status_code == 200 and r.json()["enabled"] is True
    wait_for(lambda: admin.get("/api/cameras/extra").json()["online"], 10, "extra re-enabled")
    undisturbed("enable")

    # Invalid bodies: 422 listing the problems, and nothing changes.
    version = admin.get("/api/config/history").json()[0]["version"]
    names = sorted(c["name"] for c in admin.get("/api/cameras").json())
    for bad, expected in (
        ({**body, "name": "other", "main_url": "http://x/"}, "main_url"),
        ({**body, "name": "other", "site": "west"}, "no site named 'west'"),
        ({**body}, "the name 'extra'"),
        ({**body, "name": "other", "colour": "red"}, "unknown setting"),
        ({"name": "other", "site": "south"}, "main_url: required but missing"),
        ({**body, "name": "bad name!"}, "name"),
        ({**body, "name": "other", "recording": {"mode": "sometimes"}}, "recording.mode"),
    ):
        r = admin.post("/api/cameras", json=bad)
        assert r.status_code == 422, (bad, r.text)
        text = "\n".join(r.json()["detail"]["problems"])
        assert expected in text, (expected, text)
    r = admin.post("/api/cameras", json=["not", "a", "camera"])
    assert r.status_code == 422
    r = admin.patch("/api/cameras/extra", json={"transport": "carrier-pigeon"})
    assert r.status_code == 422 and "transport" in "\n".join(r.json()["detail"]["problems"])
    assert admin.get("/api/config/history").json()[0]["version"] == version
    assert sorted(c["name"] for c in admin.get("/api/cameras").json()) == names

    # Zones: replaced as a whole, validated.
    zones = [
        {"name": "door", "polygon": [[0.1, 0.5], [0.4, 0.5], [0.4, 1.0], [0.1, 1.0]]},
        {"name": "tree", "polygon": [[0.6, 0.0], [1.0, 0.0], [1.0, 0.3]], "kind": "exclude"},
    ]
    r = admin.put("/api/cameras/extra/zones", json=zones)
    assert r.status_code == 200, r.text
    assert [(z["name"], z["kind"]) for z in r.json()] == [("door", "include"), ("tree", "exclude")]
    for bad_zones in (
        [{"name": "line", "polygon": [[0, 0], [1, 1]]}],
        [{"name": "far", "polygon": [[0, 0], [50, 0], [0, 1]]}],
        [{"polygon": [[0, 0], [1, 0], [0, 1]]}],
        {"name": "not a list"},
    ):
        r = admin.put("/api/cameras/extra/zones", json=bad_zones)
        assert r.status_code == 422, (bad_zones, r.text)
    cfg = station.config.camera("extra")
    assert cfg is not None and [z.name for z in cfg.motion.zones] == ["door", "tree"]
    r = admin.put("/api/cameras/extra/zones", json=[])
    assert r.status_code == 200 and r.json() == []
    wait_for(lambda: admin.get("/api/cameras/extra").json()["online"], 10, "extra after zones")
    undisturbed("zones")

    now = time.time_ns() // 1000
    lock = {"camera": "extra", "start_us": now - 4_000_000, "end_us": now, "reason": "theft"}
    r = op.post("/api/locks", json=lock)
    assert r.status_code == 201, r.text
    lock_id = r.json()["id"]

    assert admin.delete("/api/cameras/extra").status_code == 204
    assert admin.get("/api/cameras/extra").status_code == 404
    # Its evidence lock outlives it: an admin still sees it and may lift it, nobody else.
    assert lock_id not in {lk["id"] for lk in op.get("/api/locks").json()}
    assert lock_id in {lk["id"] for lk in admin.get("/api/locks").json()}
    assert op.delete(f"/api/locks/{lock_id}").status_code == 404
    assert admin.delete(f"/api/locks/{lock_id}").status_code == 204
    assert lock_id not in {lk["id"] for lk in admin.get("/api/locks").json()}
    assert admin.delete("/api/cameras/extra").status_code == 404
    assert "extra" not in station.camera_names()
    undisturbed("remove")
    audit = admin.get("/api/audit", params={"user": "admin", "limit": 1000}).json()
    done = {(e["action"], e["target"]) for e in audit if e["ok"]}
    for action in ("add", "update", "disable", "enable", "zones", "remove"):
        assert (f"camera.{action}", "extra") in done, action


def test_config_export_reads_back_with_secret_references(
    world: dict[str, Any], admin: httpx.Client, op: httpx.Client
) -> None:
    assert op.get("/api/config").status_code == 403
    r = admin.get("/api/config")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/yaml")
    text = r.text
    for secret in (LOBBY_SECRET, *USERS.values()):
        assert secret not in text
    references = re.findall(r"\$\{([A-Z0-9_]+)\}", text)
    assert "VMSCORE_CAMERA_LOBBY_PASSWORD" in references
    assert "VMSCORE_USER_ADMIN_PASSWORD" in references
    env = {name: f"from-env-{i:04d}" for i, name in enumerate(references)}
    cfg = parse_config(text, origin="exported", env=env)
    live = world["station"].config
    assert [c.name for c in cfg.cameras] == [c.name for c in live.cameras]
    for mine, theirs in zip(cfg.cameras, live.cameras, strict=True):
        assert mine.model_dump(exclude={"password"}) == theirs.model_dump(exclude={"password"})
    lobby = cfg.camera("lobby")
    assert lobby is not None and lobby.password is not None
    assert lobby.password.get_secret_value() == env["VMSCORE_CAMERA_LOBBY_PASSWORD"]
    assert [r.name for r in cfg.rules] == [r.name for r in live.rules]
    assert [s.name for s in cfg.sites] == ["north", "south"]
    assert yaml.safe_load(text)["station"]["name"] == "test-station"
    # The camera as the API shows it: no password, credentials out of its URLs.
    cam = admin.get("/api/cameras/lobby").json()
    assert "password" not in cam and cam["has_password"] is True and cam["username"] == "svc"


# -- 4. testing a camera, ONVIF ------------------------------------------------------------------


def test_camera_test_reports_streams_and_a_snapshot(
    world: dict[str, Any], admin: httpx.Client, op: httpx.Client
) -> None:
    cs: CameraServer = world["cs"]
    body = {"main_url": cs.url("extra"), "sub_url": cs.url("extra", sub=True)}
    assert op.post("/api/cameras/test", json=body).status_code == 403
    r = admin.post("/api/cameras/test", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["ok"] is True and out["has_snapshot"] is True
    streams = {s["role"]: s for s in out["streams"]}
    for role, size in (("main", (640, 360)), ("sub", (320, 180))):
        s = streams[role]
        assert s["ok"] and s["codec"] == "h264" and (s["width"], s["height"]) == size, s
        assert 8 <= s["fps"] <= 12 and s["bitrate_bps"] > 10_000, s
    assert jpeg_size(base64.b64decode(out["snapshot_jpeg_base64"])) == (640, 360)

    t0 = time.monotonic()
    nowhere = cs.url("lot").replace("/lot", "/no-such-camera")
    r = admin.post("/api/cameras/test", json={"main_url": nowhere})
    assert r.status_code == 200 and r.json()["ok"] is False
    report = r.json()["streams"][0]
    assert not report["ok"] and report["error"], report
    assert "404" in report["error"] or "not found" in report["error"].lower(), report
    assert time.monotonic() - t0 < 10
    r = admin.post("/api/cameras/test", json={"main_url": "http://example.invalid/"})
    assert r.status_code == 422


def test_onvif_probe_discover_and_add(world: dict[str, Any], admin: httpx.Client) -> None:
    cs: CameraServer = world["cs"]
    profiles = [
        SimProfile("main", "Main", "h264", 640, 360, 10.0, 600, cs.url("onvifcam")),
        SimProfile("sub", "Sub", "h264", 320, 180, 10.0, 150, cs.url("onvifcam", sub=True)),
    ]
    with OnvifSimulator(password=ONVIF_PASSWORD, profiles=profiles, discovery_port=0) as sim:
        probe = {"host": sim.host, "port": sim.port, "username": "admin"}
        r = admin.post("/api/onvif/probe", json={**probe, "password": ONVIF_PASSWORD})
        assert r.status_code == 200, r.text
        dev = r.json()
        assert dev["manufacturer"] == "vmscore" and dev["serial"] == "SIM0000001"
        assert (dev["main_uri"], dev["sub_uri"]) == (
            cs.url("onvifcam"),
            cs.url("onvifcam", sub=True),
        )
        assert [(p["width"], p["height"]) for p in dev["profiles"]] == [(640, 360), (320, 180)]
        r = admin.post("/api/onvif/probe", json={**probe, "password": "wrong-password"})
        assert r.status_code == 422, r.text
        r = admin.post(
            "/api/onvif/probe", json={**probe, "port": free_port(), "password": ONVIF_PASSWORD}
        )
        assert r.status_code == 502, r.text

        assert sim.discovery_address is not None
        r = admin.post(
            "/api/onvif/discover",
            json={"timeout_s": 1.0, "targets": [list(sim.discovery_address)]},
        )
        assert r.status_code == 200, r.text
        found = r.json()
        assert [d["endpoint"] for d in found] == [sim.endpoint]
        assert sim.device_url in found[0]["xaddrs"]

        # Added by its address alone: the station probes it and fills in the stream URIs.
        by_address = {"name": "onvif-a", "site": "north", "username": "admin"}
        address = f"{sim.host}:{sim.port}"
        r = admin.post(
            "/api/cameras",
            json={**by_address, "onvif_address": address, "password": "wrong-password"},
        )
        assert r.status_code == 422, r.text
        assert admin.get("/api/cameras/onvif-a").status_code == 404
        r = admin.post(
            "/api/cameras",
            json={**by_address, "onvif_address": address, "password": ONVIF_PASSWORD},
        )
        assert r.status_code == 201, r.text
        assert r.json()["main_url"] == cs.url("onvifcam") and r.json()["has_password"]

    # Added with the URIs the probe gave.
    r = admin.post(
        "/api/cameras",
        json={
            "name": "onvif-b",
            "site": "north",
            "main_url": dev["main_uri"],
            "sub_url": dev["sub_uri"],
            "onvif_address": f"{dev['host']}:{dev['port']}",
        },
    )
    assert r.status_code == 201, r.text
    for name in ("onvif-a", "onvif-b"):
        wait_for(lambda n=name: admin.get(f"/api/cameras/{n}").json()["online"], 10, name)
        snap = wait_for(
            lambda n=name: (
                (x := admin.get(f"/api/cameras/{n}/snapshot.jpg")).status_code == 200 and x
            ),
            10,
            f"{name}'s snapshot",
        )
        assert jpeg_size(snap.content) == (640, 360)
        assert admin.delete(f"/api/cameras/{name}").status_code == 204


# -- 11. metrics, OpenAPI, health --------------------------------------------------------------


def test_metrics_openapi_and_health(
    world: dict[str, Any], viewer: httpx.Client, admin: httpx.Client
) -> None:
    r = viewer.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    fps = dict(
        re.findall(
            r'^vmscore_camera_fps\{camera="([^"]+)",site="[^"]+",stream="main"\} (\S+)$', text, re.M
        )
    )
    assert set(fps) == {*NORTH, *SOUTH}, fps
    assert all(7 <= float(v) <= 13 for v in fps.values()), fps
    assert re.search(r'^vmscore_camera_online\{camera="lot",site="north"\} 1\.0$', text, re.M)
    assert re.search(r"^vmscore_cameras 3\.0$", text, re.M)
    analysed = re.search(
        r'^vmscore_camera_frames_analysed_total\{camera="lot",site="north"\} (\S+)$', text, re.M
    )
    assert analysed and float(analysed.group(1)) > 50, analysed
    free = re.search(r'^vmscore_storage_free_bytes\{storage="disk1"\} (\S+)$', text, re.M)
    assert free and float(free.group(1)) > 0, "no free space of the storage"

    schema = httpx.get(world["base"] + "/api/openapi.json").json()
    paths = schema["paths"]
    app = create_app(world["station"])
    for route in app.routes:
        path = getattr(route, "path", "")
        if (
            path.startswith("/api/")
            and path not in ("/api/openapi.json", "/api/docs")
            and ("oauth2" not in path)
        ):
            assert path in paths, path
    assert "get" in paths["/api/recordings/{camera}/video.mp4"]
    assert "/metrics" in paths

    h = viewer.get("/api/health").json()
    assert h["station"] == "test-station" and h["cameras_total"] == 3
    assert h["cameras_online"] == 3 and "storage" not in h and "mqtt" not in h
    lot = next(c for c in h["cameras"] if c["camera"] == "lot")
    assert lot["online"] and lot["streams"]["main"]["codec"] == "h264"
    assert lot["recording"], lot
    full = admin.get("/api/health").json()
    assert full["storage"] and full["storage"][0]["name"] == "disk1"
    assert full["storage"][0]["free_bytes"] > 0
    assert httpx.get(world["base"] + "/api/live").json() == {"status": "ok"}
    assert httpx.get(world["base"] + "/api/health").status_code == 401


# -- 12. hostile requests --------------------------------------------------------------------


def test_hostile_requests_get_4xx_never_500(
    world: dict[str, Any], op: httpx.Client, admin: httpx.Client, footage: dict[str, Any]
) -> None:
    big = 10**20
    start = footage["start_us"]
    wrong: list[tuple[str, int, str]] = []

    def expect(what: str, r: httpx.Response, *allowed: int) -> None:
        if r.status_code >= 500 or (allowed and r.status_code not in allowed):
            wrong.append((what, r.status_code, r.text[:200]))

    # Bodies past 1 MiB are refused from their Content-Length, before they are read.
    for client, path in ((op, "/api/events/external"), (admin, "/api/cameras")):
        answer = raw_post(world["base"], client, path, 8 << 20, b'{"name": "x", "data": "')
        assert answer.startswith(b"HTTP/1.1 413 "), (path, answer[:200])
    blob = "A" * ((1 << 20) - 100)
    r = op.post("/api/events/external", json={"name": "big", "data": {"blob": blob}})
    expect("just under 1 MiB", r, 200)
    many = [{"name": f"z{i}", "polygon": [[0, 0], [1, 0], [0, 1]]} for i in range(5000)]
    expect("5000 zones", admin.put("/api/cameras/lot/zones", json=many), 413, 422)
    nested = '{"name": "x", "data": {"d": ' + "[" * 50_000 + "]" * 50_000 + "}}"
    expect(
        "deep JSON",
        op.post(
            "/api/events/external",
            content=nested.encode(),
            headers={"Content-Type": "application/json"},
        ),
        400,
        413,
        422,
    )
    expect(
        "not JSON",
        op.post(
            "/api/bookmarks", content=b"{camera: lot", headers={"Content-Type": "application/json"}
        ),
        422,
    )
    expect(
        "wrong types",
        op.post("/api/bookmarks", json={"camera": 5, "start_us": "soon", "end_us": []}),
        422,
    )
    expect("export wrong types", op.post("/api/recordings/lot/export", json={"start_us": "a"}), 422)
    expect(
        "null body",
        op.post(
            "/api/alarms/1/close", content=b"null", headers={"Content-Type": "application/json"}
        ),
        404,
        422,
    )
    expect("name with newline", op.post("/api/events/external", json={"name": "a\nb"}), 422)

    # Numbers past SQLite's 64-bit integers.
    expect("huge alarm id", op.get(f"/api/alarms/{big}"), 404, 422)
    expect("huge alarm id ack", op.post(f"/api/alarms/{big}/acknowledge"), 404, 422)
    expect("huge bookmark id", op.delete(f"/api/bookmarks/{big}"), 404, 422)
    expect("huge lock id", op.delete(f"/api/locks/{big}"), 404, 422)
    expect("huge alarm since", op.get("/api/alarms", params={"since_us": big}), 422)
    expect("unknown alarm state", op.get("/api/alarms", params={"state": "burning"}), 422)
    expect("unknown alarm priority", op.get("/api/alarms", params={"priority": "meh"}), 422)
    expect(
        "huge recordings since",
        op.get("/api/recordings", params={"camera": "lot", "since_us": big}),
        200,
        422,
    )
    expect("huge bookmarks since", op.get("/api/bookmarks", params={"since_us": big}), 200, 422)
    expect(
        "huge motion range",
        op.get("/api/cameras/lot/motion", params={"since_us": big, "until_us": big + 1}),
        200,
        422,
    )
    expect(
        "huge video range",
        op.get("/api/recordings/lot/video.mp4", params={"start_us": big, "end_us": big + 1}),
        404,
        422,
    )
    expect(
        "huge bookmark",
        op.post("/api/bookmarks", json={"camera": "lot", "start_us": big}),
        422,
    )
    expect(
        "huge lock",
        op.post(
            "/api/locks",
            json={"camera": "lot", "start_us": big, "end_us": big + 1, "reason": "x"},
        ),
        422,
    )
    expect(
        "huge export",
        op.post("/api/recordings/lot/export", json={"start_us": big, "end_us": big + 1}),
        404,
        422,
    )
    expect(
        "huge expect_version",
        op.post("/api/alarms/1/acknowledge", params={"expect_version": big}),
        404,
        409,
        422,
    )
    expect(
        "huge false-alarm since",
        op.get("/api/alarm-statistics/false-alarms", params={"since_us": big}),
        200,
        422,
    )
    expect(
        "huge range header",
        op.get(
            "/api/recordings/lot/video.mp4",
            params={"start_us": start, "end_us": start + 1_000_000},
            headers={"Range": f"bytes={big}-"},
        ),
        416,
    )
    expect(
        "multi-range",
        op.get(
            "/api/recordings/lot/video.mp4",
            params={"start_us": start, "end_us": start + 1_000_000},
            headers={"Range": "bytes=0-1,5-9"},
        ),
        200,
        206,
        416,
    )

    # Exports: only files the station wrote, by their exact names.
    for path in (
        "/api/exports/..%2F..%2Fstation.db",
        "/api/exports/..%2Fstation.db",
        "/api/exports/lot-1-2-3.mp4%2F..%2F..%2Fstation.db",
        "/api/exports/lot-1-2-3.mp4",
        "/api/exports/lot-1-2-3.mp4.manifest.json",
        "/api/exports/%2Fetc%2Fpasswd",
        "/api/exports/lot-1-2-3.mp4%00.txt",
        "/api/exports/../station.db",
        "/api/exports/.%2e/station.key",
        "/api/exports/lot-2-..-3.mp4",
    ):
        r = op.get(path)
        expect(path, r, 404, 422)
        assert b"SQLite" not in r.content and b"PRIVATE" not in r.content

    # The UI's files: only what is under its folder, to anyone, and nothing else.
    assert op.get("/static/js/app.js").status_code == 200
    for path in (
        "/static/..%2Fapp.py",
        "/static/%2e%2e/%2e%2e/station/station.py",
        "/static/js/..%2F..%2Fauth.py",
        "/static/%2Fetc%2Fpasswd",
        "/static/js/%00.js",
    ):
        r = op.get(path)
        expect(path, r, 400, 404)
        assert b"import" not in r.content and b"root:" not in r.content

    # Camera names with odd characters answer like any unknown camera.
    odd = ("%00", "a%2Fb", "x" * 5000, "%C3%BCml%C3%A4ut", "..", "lot%0D%0AX-Evil:%201", "lot%20")
    for name in (*odd, "-lot", "lot*", "LOT", "lot-"):
        expect(name, op.get(f"/api/cameras/{name}"), 404, 422)
        expect(name, op.get(f"/api/cameras/{name}/snapshot.jpg"), 404, 422)
        expect(name, op.get("/api/recordings", params={"camera": unquote(name)}), 404, 422)
        expect(
            name, op.post("/api/bookmarks", json={"camera": unquote(name), "start_us": 1}), 404, 422
        )
        expect(name, admin.patch(f"/api/cameras/{name}", json={"enabled": False}), 404, 405, 422)
    expect(
        "nul camera", op.post("/api/bookmarks", json={"camera": "\x00", "start_us": 1}), 404, 422
    )
    expect("odd site", op.post("/api/sites/%00/arm"), 404, 422)
    expect("odd rule", admin.put("/api/rules/..%2F..", json={}), 404, 422)
    expect("alarm id text", op.get("/api/alarms/abc"), 422)
    expect("negative alarm id", op.get("/api/alarms/-1"), 404, 422)

    # The event stream shrugs off a bogus resume point: past the replay it is still live.
    def stream_lives(**kw: Any) -> int:
        timeout = httpx.Timeout(10.0, read=5.0)
        with op.stream("GET", "/api/events", timeout=timeout, **kw) as r:
            if r.status_code != 200:
                return r.status_code
            lines = r.iter_lines()
            assert next(lines).startswith(": vmscore event stream")
            assert op.post("/api/sites/north/arm").status_code == 200
            assert "event: site" in lines, kw
            return 200

    for value in (str(big), "abc", "-5", "9" * 5000, str(2**63)):
        assert stream_lives(headers={"Last-Event-ID": value}) == 200, value
    assert stream_lives(params={"last_event_id": big}) in (200, 422)

    # Still serving normally after all of it.
    assert op.get("/api/cameras/lot/health").status_code == 200
    assert wrong == [], "\n".join(map(str, wrong))


# -- 13. restart ---------------------------------------------------------------------------------


def test_changes_survive_a_restart(
    world: dict[str, Any], admin: httpx.Client, op: httpx.Client
) -> None:
    """Runs last: it closes the module's station and starts another on the same data directory
    with the original document; the database wins."""
    r = admin.patch("/api/cameras/lobby", json={"display_name": "Main hall"})
    assert r.status_code == 200
    rule = {
        "trigger": {"kind": "external", "details": ["flood"]},
        "actions": [{"type": "alarm", "priority": "high"}],
    }
    assert admin.put("/api/rules/flood", json=rule).status_code == 200
    zones = [{"name": "desk", "polygon": [[0.2, 0.2], [0.5, 0.2], [0.5, 0.6]]}]
    assert admin.put("/api/cameras/lot-2/zones", json=zones).status_code == 200
    assert op.post("/api/sites/north/disarm").status_code == 200
    external(op, "panic", camera="lobby")
    alarm = wait_alarm(op, camera="lobby", rule="panic")
    world["station"].close()

    doc = world["doc"]
    assert doc["cameras"][1].get("display_name") is None  # the file never said it
    station = Station(doc)
    try:
        cfg = station.config
        lobby = cfg.camera("lobby")
        assert lobby is not None and lobby.display_name == "Main hall"
        assert "flood" in {r.name for r in cfg.rules}
        lot2 = cfg.camera("lot-2")
        assert lot2 is not None and [z.name for z in lot2.motion.zones] == ["desk"]
        assert not station.is_armed("north") and station.is_armed("south")
        assert station.alarms.get(alarm["id"]).state == "new"
        with http_server(station) as base, contextlib.closing(user(base, "operator")) as again:
            wait_for(lambda: again.get("/api/cameras/lot").json()["online"], 10, "lot online")
            external(again, "flood", camera="lot")
            assert wait_alarm(again, camera="lot", rule="flood")["priority"] == "high"
            assert again.get("/api/recordings", params={"camera": "lot"}).json()["recordings"]
    finally:
        station.close()
