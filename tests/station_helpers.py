"""Helpers for the station tests: rendered clips with ground truth (cached per session), a station
document for simulated cameras, and a real HTTP server (uvicorn) around a station."""

from __future__ import annotations

import contextlib
import functools
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from vmscore.sim.files import Clip, load_clip, write_clip
from vmscore.station.station import Station
from vmscore.web.app import create_app

CLIP_DIR: Path | None = None
PASSWORDS = {
    "admin": "admin-password-1",
    "operator": "operator-password-1",
    "viewer": "viewer-password-1",
}


@functools.lru_cache(maxsize=16)
def clip(root: str, scene: str, seed: int, seconds: float = 30.0) -> Clip:
    """A rendered clip (640x360 main, 320x180 sub, 10 fps), written once per test session."""
    d = Path(root) / f"{scene}-{seed}-{seconds:g}"
    if not (d / "clip.json").is_file():
        write_clip(
            d,
            scene,
            seconds,
            seed=seed,
            main=(640, 360),
            sub=(320, 180),
            fps=10.0,
            bitrate=600_000,
            sub_bitrate=150_000,
        )
    return load_clip(d)


def zones_of(c: Clip, names: list[str] | None = None) -> list[dict[str, Any]]:
    return [
        {"name": z.name, "polygon": [list(p) for p in z.polygon]}
        for z in c.truth.zones
        if names is None or z.name in names
    ]


def document(
    home: Path,
    cameras: list[dict[str, Any]],
    *,
    sites: list[dict[str, Any]] | None = None,
    rules: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    (home / "rec").mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {
        "station": {
            "name": "test-station",
            "data_dir": str(home / "data"),
            "offline_after_s": 3,
            "analysis_threads": 2,
        },
        "storage": [{"name": "disk1", "path": str(home / "rec")}],
        "defaults": {
            "recording": {
                "mode": "continuous_events",
                "pre_roll_s": 3,
                "post_roll_s": 2,
                "segment_s": 10,
            },
            "analysis_fps": 10,
            "motion_off_delay_s": 2,
        },
        "sites": sites or [{"name": "school-1", "armed": True}],
        "cameras": cameras,
        "rules": rules
        if rules is not None
        else [
            {
                "name": "intrusion",
                "trigger": {"kind": "motion"},
                "conditions": {"site_armed": True},
                "actions": [
                    {"type": "alarm", "priority": "high", "category": "Intrusion"},
                    {"type": "record"},
                ],
            },
            {
                "name": "offline",
                "trigger": {"kind": "camera_offline"},
                "actions": [
                    {
                        "type": "alarm",
                        "priority": "high",
                        "category": "Technical",
                        "close_on_end": True,
                    }
                ],
            },
        ],
        "users": [{"name": n, "role": n, "password": p} for n, p in PASSWORDS.items()],
    }
    doc.update(extra)
    return doc


@contextlib.contextmanager
def http_server(station: Station) -> Iterator[str]:
    """Serves the station's app with uvicorn on a free loopback port; yields its base URL."""
    config = uvicorn.Config(
        create_app(station),
        host="127.0.0.1",
        port=0,
        log_level="warning",
        lifespan="off",
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="test-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def login(base: str, user: str, password: str | None = None) -> httpx.Client:
    """An httpx client logged in with a session cookie, sending the CSRF token."""
    c = httpx.Client(base_url=base, timeout=20)
    r = c.post("/api/auth/login", json={"user": user, "password": password or PASSWORDS[user]})
    assert r.status_code == 200, r.text
    c.headers["X-CSRF-Token"] = r.json()["csrf_token"]
    return c


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, step: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(step)


def finished_recordings(
    station: Station, client: httpx.Client, camera: str, count: int = 3
) -> list[dict[str, Any]]:
    """The camera's recordings as the API lists them, once at least ``count`` are finished (the
    recorder is asked to close its open segments meanwhile)."""

    def finished() -> list[dict[str, Any]]:
        station.recorder.flush()
        r = client.get("/api/recordings", params={"camera": camera})
        recs: list[dict[str, Any]] = r.json()["recordings"]
        return recs if len(recs) >= count else []

    found: list[dict[str, Any]] = wait_for(finished, 15, f"{count} finished segments", step=0.5)
    return found


class EventStream:
    """The station's server-sent events read on a thread: (event, data, id) in arrival order."""

    def __init__(self, client: httpx.Client, last_event_id: str | None = None) -> None:
        self.items: list[tuple[str, dict[str, Any], str | None]] = []
        self.arrived: list[float] = []
        """Wall time (``time.time()``) each item arrived, in the order of ``items``."""
        self.status: int | None = None
        self._response: httpx.Response | None = None
        self._client = client
        self._headers = {"Last-Event-ID": last_event_id} if last_event_id is not None else {}
        self._open = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._open.wait(10), "the event stream did not open"
        assert self.status == 200, self.status

    def _run(self) -> None:
        event, data, eid = "message", "", None
        try:
            timeout = httpx.Timeout(10.0, read=None)
            with self._client.stream(
                "GET", "/api/events", headers=self._headers, timeout=timeout
            ) as r:
                self.status, self._response = r.status_code, r
                self._open.set()
                for line in r.iter_lines():
                    if line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("data: "):
                        data = line[6:]
                    elif line.startswith("id: "):
                        eid = line[4:]
                    elif line == "" and data:
                        self.arrived.append(time.time())
                        self.items.append((event, json.loads(data), eid))
                        event, data, eid = "message", "", None
        except (httpx.HTTPError, RuntimeError, OSError):
            return
        finally:
            self._open.set()

    def _alarm_changes(
        self, match: dict[str, Any]
    ) -> list[tuple[float, dict[str, Any], str | None]]:
        """(arrival time, change, id) of the alarm changes whose alarm has every field of
        ``match`` (``type`` matches the change)."""
        out = []
        fields = {k: v for k, v in match.items() if k != "type"}
        for t, (ev, data, eid) in zip(list(self.arrived), list(self.items), strict=False):
            if ev != "alarm":
                continue
            if "type" in match and data["type"] != match["type"]:
                continue
            if all(data["alarm"].get(k) == v for k, v in fields.items()):
                out.append((t, data, eid))
        return out

    def alarms(self, **match: Any) -> list[tuple[dict[str, Any], str | None]]:
        """Alarm changes whose alarm has every field of ``match`` (``type`` matches the change),
        with their event ids."""
        return [(data, eid) for _, data, eid in self._alarm_changes(match)]

    def timed_alarms(self, **match: Any) -> list[tuple[float, dict[str, Any]]]:
        """The same changes with the wall time each arrived."""
        return [(t, data) for t, data, _ in self._alarm_changes(match)]

    def close(self) -> None:
        """Hangs up, so the server sees the disconnect and drops its subscription. (Closing the
        socket while the reader waits in recv() would send nothing until data came in.)"""
        if self._response is not None:
            stream = self._response.extensions.get("network_stream")
            sock = stream.get_extra_info("socket") if stream is not None else None
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=5)
        assert not self._thread.is_alive(), "the event stream reader did not stop"
        self._client.close()
