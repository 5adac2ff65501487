"""The central station's view of many sites (``station.role: central`` or ``both``).

Each site's station publishes to its own broker (see :mod:`vmscore.station.mqtt` for the topics),
which bridges to the central broker (``deploy/mosquitto/``, ``docs/mqtt-bridging.md``). The
central station subscribes there with a persistent session, so what the sites publish while it
is down waits for it. It keeps:

- per site, in memory and rebuilt from retained messages on every connect: the site's and its
  station's availability, the bridge's link state (``$SYS/broker/connection/<bridge>/state``),
  the camera inventory with each camera's status and motion, and the recording summary;
- every site's alarms in ``central.db`` (SQLite), keyed by (station, alarm id). An alarm's state
  is applied only when its ``version`` is newer than the stored one, so QoS 1 duplicates and
  reordering across bridges change nothing and each change reaches the operators once. Per
  station it keeps the change ``seq`` up to which nothing is missing; a jump (a message lost to
  an overflowing broker queue or an expired session), the station coming online and the start of
  the central station make it fetch ``GET /api/alarm-changes?since=`` from that station over
  HTTP with the station's token, retried every ``catch_up_s`` until it succeeds.

An operator's action on a site's alarm goes back as an MQTT command
(``<prefix>/<site>/cmd/<name>``, QoS 1, kept by the brokers while a link is down); the site
applies it and its next alarm change shows the result here.

Threading: paho's network thread only queues messages; one worker thread applies them, writes
the database and publishes to the station's event hub; HTTP catch-ups run on a small pool and
hand their result back to the worker. Public methods are thread-safe.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import unquote

import httpx
import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from vmscore.station.hub import EventHub, HubMessage
from vmscore.station.mqtt import (
    COMMANDS,
    RESERVED_SITE_NAMES,
    MqttSettings,
    connect_async,
    make_client,
    topic_segment,
)

__all__ = ["Central", "CentralSettings", "RemoteStation", "SiteView"]

log = logging.getLogger(__name__)

_StationName = Annotated[
    str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
]
MAX_MESSAGE_BYTES = 1 << 20
"""Larger messages from the broker are counted as bad and ignored."""
MAX_SITES = 10_000
MAX_CAMERAS_PER_SITE = 10_000
"""Bounds on what the broker can make the central station remember."""
_QUEUE_MAX = 100_000
_CATCH_UP_PAGES = 100
"""At most this many pages of 1000 changes per catch-up; the next catch-up goes on."""


class RemoteStation(BaseModel):
    """A site's station as the central station reaches it over HTTP (``central.stations``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: _StationName
    """The station's ``station.name`` (what its MQTT messages carry)."""
    url: str = Field(pattern=r"^https?://[^\s/?#]+/?$", max_length=300)
    """Its HTTP address, e.g. ``https://school-12.example:8443``."""
    token: SecretStr
    """A bearer token issued at that station (``POST /api/auth/tokens``) to a user whose role
    and permissions decide what the central station may see and do there (operator for alarm
    handling, live video and export)."""
    ca_file: Path | None = None
    """The CA of the station's HTTPS certificate; None: the system's CAs."""


class CentralSettings(BaseModel):
    """The ``central:`` section: where the sites' messages arrive and how to reach the sites."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mqtt: MqttSettings
    """The central broker (its local listener). The client id defaults to
    ``vmscore-central-<station>``; keep it stable, the broker keeps the session under it."""
    stations: list[RemoteStation] = Field(default_factory=list, max_length=10_000)
    catch_up_s: float = Field(default=15.0, ge=1, le=3600)
    """Retry interval of a catch-up over HTTP that failed."""
    timeout_s: float = Field(default=10.0, ge=1, le=120)
    """HTTP timeout towards a site's station (connect and each read)."""
    retention_days: float = Field(default=90.0, gt=0, le=3650)
    """Closed alarms of sites are forgotten at central after this long."""


@dataclass
class SiteView:
    """What the central station knows of one site."""

    name: str
    station: str | None = None
    available: str | None = None
    """The site's ``available`` topic: online, stopped (None: never heard)."""
    link: bool | None = None
    """The bridge's link to the central broker (None: no notification seen)."""
    info: dict[str, Any] = field(default_factory=dict)
    """The site's display name, address and arming."""
    cameras: list[dict[str, Any]] = field(default_factory=list)
    recordings: dict[str, Any] = field(default_factory=dict)
    status: dict[str, str] = field(default_factory=dict)
    motion: dict[str, bool] = field(default_factory=dict)
    health: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per camera, its latest health (fps, bitrate, ...) as the site published it."""
    tamper: dict[str, list[str]] = field(default_factory=dict)
    """Per camera, the tamper flags active now."""
    updated_us: int = 0
    messages: int = 0
    message_bytes: int = 0
    """What the site sent the central station since it started (payload bytes)."""


def _now_us() -> int:
    return time.time_ns() // 1000


_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS remote_station (
        name TEXT PRIMARY KEY,
        applied_seq INTEGER NOT NULL DEFAULT 0
    )""",
    """CREATE TABLE IF NOT EXISTS remote_alarm (
        station TEXT NOT NULL,
        id INTEGER NOT NULL,
        site TEXT,
        camera TEXT,
        state TEXT NOT NULL,
        priority_level INTEGER NOT NULL,
        created_us INTEGER NOT NULL,
        updated_us INTEGER NOT NULL,
        version INTEGER NOT NULL,
        alarm TEXT NOT NULL,
        PRIMARY KEY (station, id)
    )""",
    "CREATE INDEX IF NOT EXISTS remote_alarm_order ON remote_alarm (priority_level, created_us)",
    "CREATE INDEX IF NOT EXISTS remote_alarm_closed ON remote_alarm (state, updated_us)",
)


class _BadMessageError(ValueError):
    pass


def _alarm_fields(after: object) -> dict[str, Any]:
    """The columns of an alarm as a site sent it; _BadMessageError when it is not one."""
    if not isinstance(after, dict):
        raise _BadMessageError("the alarm is not a JSON object")
    out: dict[str, Any] = {}
    for key in ("id", "version", "priority_level", "created_us", "updated_us"):
        v = after.get(key)
        if type(v) is not int or not 0 <= v < 1 << 62:
            raise _BadMessageError(f"alarm field {key!r} is not a non-negative integer")
        out[key] = v
    for key in ("state",):
        v = after.get(key)
        if not isinstance(v, str) or not 0 < len(v) <= 32:
            raise _BadMessageError(f"alarm field {key!r} is not a short string")
        out[key] = v
    for key in ("site", "camera"):
        v = after.get(key)
        if v is not None and (not isinstance(v, str) or not 0 < len(v) <= 100):
            raise _BadMessageError(f"alarm field {key!r} is not a name")
        out[key] = v
    return out


class Central:
    """The central station's link to its sites (see the module docstring)."""

    def __init__(
        self,
        settings: CentralSettings,
        station: str,
        data_dir: Path,
        hub: EventHub,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self._station = station
        self._prefix = settings.mqtt.topic_prefix
        self._hub = hub
        self._clock = clock
        self._remotes = {r.name: r for r in settings.stations}
        self._db = sqlite3.connect(data_dir / "central.db", check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        for stmt in _SCHEMA:
            self._db.execute(stmt)
        self._db.commit()
        self._db_lock = threading.Lock()
        self._applied: dict[str, int] = dict(
            self._db.execute("SELECT name, applied_seq FROM remote_station").fetchall()
        )
        self._lock = threading.Lock()  # the fields below
        self._sites: dict[str, SiteView] = {}
        self._station_available: dict[str, str] = {}
        self._stats = dict.fromkeys(
            (
                "messages",
                "bad_messages",
                "dropped",
                "alarm_changes",
                "duplicates",
                "holes",
                "catch_ups",
                "catch_up_errors",
                "commands",
            ),
            0,
        )
        self._catching_up: set[str] = set()
        self._retry: dict[str, float] = {}  # station -> when to try a catch-up again
        self._queue: queue.Queue[tuple[Any, ...] | None] = queue.Queue(maxsize=_QUEUE_MAX)
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="vmscore-catch-up")
        self._connected = threading.Event()
        self._stopping = False
        mqtt = settings.mqtt
        self._client = make_client(mqtt, mqtt.client_id or f"vmscore-central-{station}")
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._worker = threading.Thread(target=self._work, name="vmscore-central")

    # -- life ------------------------------------------------------------------------------------

    def start(self) -> None:
        self._worker.start()
        connect_async(self._client, self.settings.mqtt)
        self._client.loop_start()
        for name in self._remotes:
            self._request_catch_up(name)

    def close(self) -> None:
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
        self._client.disconnect()
        joiner = threading.Thread(target=self._client.loop_stop, name="mqtt-stop", daemon=True)
        joiner.start()
        joiner.join(5)
        self._queue.put(None)
        self._worker.join(10)
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._client.on_connect = self._client.on_disconnect = self._client.on_message = None
        with self._db_lock:
            self._db.close()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    # -- queries ---------------------------------------------------------------------------------

    def remote(self, station: str) -> RemoteStation | None:
        """How to reach a site's station over HTTP (None: not configured)."""
        return self._remotes.get(station)

    def site_names(self) -> list[str]:
        with self._lock:
            return sorted(self._sites)

    def site(self, name: str) -> SiteView | None:
        with self._lock:
            return self._sites.get(name)

    def site_state(self, view: SiteView) -> str:
        """``online``; ``link_down`` (the bridge is cut: the site records on, its messages wait);
        ``station_offline`` (its station died); ``stopped``; ``unknown``."""
        with self._lock:
            station_up = self._station_available.get(view.station or "")
        if view.link is False:
            return "link_down"
        if station_up == "offline":
            return "station_offline"
        if view.available == "stopped" or station_up == "stopped":
            return "stopped"
        if view.available == "online" and station_up in (None, "online"):
            return "online"
        return "unknown"

    def site_json(self, view: SiteView, camera_visible: Callable[[str], bool]) -> dict[str, Any]:
        remote = self._remotes.get(view.station or "")
        cameras = []
        for cam in view.cameras:
            name = cam.get("name")
            if not isinstance(name, str) or not camera_visible(name):
                continue
            cameras.append(
                {
                    **cam,
                    "site": view.name,
                    "station": view.station,
                    "online": view.status.get(name, "online" if cam.get("online") else "offline")
                    == "online",
                    "motion": view.motion.get(name, False),
                    "tamper": view.tamper.get(name, []),
                    "health": view.health.get(name),
                    "recordings": view.recordings.get(name),
                }
            )
        info = view.info
        display = info.get("display_name")
        return {
            "name": view.name,
            "display_name": display if isinstance(display, str) and display else view.name,
            "address": info.get("address") if isinstance(info.get("address"), str) else "",
            "armed": info.get("armed") if isinstance(info.get("armed"), bool) else None,
            "station": view.station,
            "state": self.site_state(view),
            "available": view.available,
            "link": view.link,
            "reachable": remote is not None,
            "messages": view.messages,
            "message_bytes": view.message_bytes,
            "cameras": cameras,
            "updated_us": view.updated_us,
        }

    def find_camera(self, station: str, camera: str) -> tuple[str, dict[str, Any]] | None:
        """The site and inventory entry of a camera of ``station`` (None: not known)."""
        with self._lock:
            for view in self._sites.values():
                if view.station != station:
                    continue
                for cam in view.cameras:
                    if cam.get("name") == camera:
                        return view.name, cam
        return None

    def alarms(
        self,
        *,
        states: Iterable[str] | None = None,
        sites: Iterable[str] | None = None,
        visible: Callable[[str | None, str | None], bool] | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        """Sites' alarms, most urgent first (priority, then newest), each with its ``station``.
        ``states`` defaults to every state; ``visible(camera, site)`` filters for a user."""
        where, args = [], []
        if states is not None:
            st = list(states)
            where.append(f"state IN ({','.join('?' * len(st))})")
            args += st
        if sites is not None:
            si = list(sites)
            where.append(f"site IN ({','.join('?' * len(si))})")
            args += si
        sql = "SELECT station, alarm, site, camera FROM remote_alarm"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY state = 'closed', priority_level, created_us DESC, station, id DESC"
        out: list[dict[str, Any]] = []
        skip = offset
        with self._db_lock:
            rows = self._db.execute(sql, args)
            for station, alarm, site, camera in rows:
                if visible is not None and not visible(camera, site):
                    continue
                if skip:
                    skip -= 1
                    continue
                out.append({**json.loads(alarm), "station": station})
                if len(out) >= limit:
                    break
        return out

    def alarm(self, station: str, alarm_id: int) -> dict[str, Any] | None:
        with self._db_lock:
            row = self._db.execute(
                "SELECT alarm FROM remote_alarm WHERE station = ? AND id = ?", (station, alarm_id)
            ).fetchone()
        return None if row is None else {**json.loads(row[0]), "station": station}

    def stats(self) -> dict[str, Any]:
        with self._lock:
            out: dict[str, Any] = dict(self._stats)
            out["sites"] = len(self._sites)
            out["catching_up"] = sorted(self._catching_up)
            out["applied_seq"] = dict(self._applied)
        out["connected"] = self.connected
        return out

    # -- commands --------------------------------------------------------------------------------

    def command(self, site: str, name: str, payload: dict[str, Any]) -> bool:
        """Sends an operator's command to a site (QoS 1; kept by the brokers while the site's
        link is down). ValueError for an invalid command. Returns whether the central broker is
        connected now (if not, paho sends it after reconnecting)."""
        model = COMMANDS.get(name)
        if model is None:
            raise ValueError(f"unknown command {name!r}")
        try:
            body = model.model_validate(payload).model_dump(exclude_none=True)
        except ValidationError as e:
            raise ValueError(f"command {name}: {e.errors()[0]['msg']}") from None
        seg = topic_segment(site, reserved=RESERVED_SITE_NAMES)
        data = json.dumps(body, separators=(",", ":")).encode()
        info = self._client.publish(f"{self._prefix}/{seg}/cmd/{name}", data, qos=1)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            raise OSError(f"the command could not be queued: {paho.error_string(info.rc)}")
        self._count("commands")
        return self.connected

    # -- MQTT (paho's thread) ----------------------------------------------------------------------

    def _on_connect(
        self,
        client: paho.Client,
        userdata: object,
        flags: paho.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            log.error("the central broker refused the central station: %s", reason)
            return
        p = self._prefix
        topics = [
            f"{p}/+/available",
            f"{p}/+/station",
            f"{p}/+/alarms",
            f"{p}/+/info",
            f"{p}/+/cameras",
            f"{p}/+/recordings",
            f"{p}/+/+/status",
            f"{p}/+/+/motion",
            f"{p}/+/+/state",
            f"{p}/+/+/tamper",
            f"{p}/station/+/available",
            f"{p}/station/+/alarms",
            "$SYS/broker/connection/+/state",
        ]
        client.subscribe([(t, 1) for t in topics])
        self._connected.set()
        log.info("central station connected to its broker (session present: %s)", flags)

    def _on_disconnect(
        self,
        client: paho.Client,
        userdata: object,
        flags: paho.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._connected.clear()
        if not self._stopping:
            log.warning("central station lost its broker: %s", reason)

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        try:
            item = ("msg", msg.topic, bytes(msg.payload))
        except (UnicodeDecodeError, TypeError):
            self._count("bad_messages")
            return
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            # A lost alarm change shows as a jump in seq later and is fetched then.
            self._count("dropped")

    # -- the worker ------------------------------------------------------------------------------

    def _work(self) -> None:
        next_housekeeping = self._clock() + 60
        while True:
            try:
                item = self._queue.get(timeout=1.0)
            except queue.Empty:
                item = ("tick",)
            if item is None:
                return
            try:
                if item[0] == "msg":
                    self._message(item[1], item[2])
                elif item[0] == "caught_up":
                    self._caught_up(*item[1:])
                now = self._clock()
                due = [s for s, t in list(self._retry.items()) if t <= now]
                for s in due:
                    del self._retry[s]
                    self._request_catch_up(s)
                if now >= next_housekeeping:
                    next_housekeeping = now + 3600
                    self._housekeeping()
            except Exception:
                log.exception("central station: could not handle %s", item[:2])

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._stats[name] += n

    def _message(self, topic: str, payload: bytes) -> None:
        self._count("messages")
        if len(payload) > MAX_MESSAGE_BYTES:
            self._count("bad_messages")
            return
        try:
            self._route(topic, payload)
        except _BadMessageError as e:
            self._count("bad_messages")
            log.warning("central station ignored a message on %r: %s", topic[:200], e)

    def _json(self, payload: bytes) -> Any:
        try:
            return json.loads(payload)
        except (ValueError, RecursionError) as e:
            raise _BadMessageError(f"not JSON: {e}") from None

    def _route(self, topic: str, payload: bytes) -> None:
        if topic.startswith("$SYS/broker/connection/"):
            client_id = topic.split("/")[3]
            if client_id.startswith("vmscore-bridge-"):
                site = unquote(client_id[len("vmscore-bridge-") :])
                self._site_update(site, link=payload.strip() == b"1")
            return
        if not topic.startswith(self._prefix + "/"):
            return
        raw = topic[len(self._prefix) + 1 :].split("/")
        levels = [unquote(x) for x in raw]
        if raw[0] == "station" and len(raw) == 3:
            if levels[2] == "available":
                self._station_up(levels[1], payload.decode("utf-8", "replace")[:32])
            elif levels[2] == "alarms":
                self._alarm_message(self._json(payload), None)
            return
        if len(levels) == 2:
            site, what = levels
            if what == "available":
                self._site_update(site, available=payload.decode("utf-8", "replace")[:32])
            elif what == "station":
                name = payload.decode("utf-8", "replace")[:64]
                self._site_update(site, station=name)
            elif what == "alarms":
                self._alarm_message(self._json(payload), site)
            elif what == "cameras":
                cams = self._json(payload)
                if not isinstance(cams, list) or not all(
                    isinstance(c, dict) and isinstance(c.get("name"), str) for c in cams
                ):
                    raise _BadMessageError("the camera inventory is not a list of cameras")
                self._site_update(site, cameras=cams[:MAX_CAMERAS_PER_SITE])
            elif what in ("recordings", "info"):
                data = self._json(payload)
                if not isinstance(data, dict):
                    raise _BadMessageError(f"the site's {what} is not an object")
                self._site_update(site, **{what: data})
        elif len(levels) == 3:
            self._camera_message(levels[0], levels[1], levels[2], payload)
        else:
            return
        with self._lock:
            view = self._sites.get(levels[0])
            if view is not None:
                view.messages += 1
                view.message_bytes += len(payload)

    def _camera_message(self, site: str, camera: str, what: str, payload: bytes) -> None:
        value: Any
        if what in ("state", "tamper"):
            value = self._json(payload)
            if not isinstance(value, dict):
                raise _BadMessageError(f"the camera's {what} is not an object")
            if what == "tamper":
                flags = value.get("flags")
                if not isinstance(flags, list) or not all(isinstance(f, str) for f in flags):
                    raise _BadMessageError("the tamper flags are not a list of names")
                value = flags[:16]
        elif what in ("status", "motion"):
            value = payload.decode("utf-8", "replace")[:32]
        else:
            return
        with self._lock:
            view = self._view(site)
            tables: dict[str, dict[str, Any]] = {
                "status": view.status,
                "motion": view.motion,
                "state": view.health,
                "tamper": view.tamper,
            }
            per_camera = tables[what]
            if camera not in per_camera and len(per_camera) >= MAX_CAMERAS_PER_SITE:
                raise _BadMessageError(f"more than {MAX_CAMERAS_PER_SITE} cameras at {site}")
            per_camera[camera] = value == "ON" if what == "motion" else value
        if what != "state":  # health comes every minute per camera: read it from the sites
            self._hub.publish(
                HubMessage(
                    "remote_camera",
                    {"site": site, "camera": camera, what: value},
                    camera=camera,
                    site=site,
                )
            )

    def _view(self, site: str) -> SiteView:
        """With _lock held."""
        view = self._sites.get(site)
        if view is None:
            if len(self._sites) >= MAX_SITES:
                raise _BadMessageError(f"more than {MAX_SITES} sites")
            view = self._sites[site] = SiteView(site)
        return view

    def _site_update(self, site: str, **changes: Any) -> None:
        with self._lock:
            view = self._view(site)
            before = (view.available, view.link, view.station)
            for k, v in changes.items():
                setattr(view, k, v)
            view.updated_us = _now_us()
            changed = before != (view.available, view.link, view.station)
            station = view.station
        if changed or "cameras" in changes or "info" in changes:
            self._hub.publish(
                HubMessage(
                    "remote_site",
                    {"site": site, "state": self.site_state(view), "link": view.link},
                    site=site,
                )
            )
        if changes.get("available") == "online" and station:
            self._request_catch_up(station)

    def _station_up(self, station: str, state: str) -> None:
        with self._lock:
            before = self._station_available.get(station)
            self._station_available[station] = state
            sites = [v.name for v in self._sites.values() if v.station == station]
        if before != state:
            for site in sites:
                self._hub.publish(
                    HubMessage("remote_site", {"site": site, "station": state}, site=site)
                )
            if state == "online":
                self._request_catch_up(station)

    # -- alarms ----------------------------------------------------------------------------------

    def _alarm_message(self, data: Any, site: str | None) -> None:
        if not isinstance(data, dict):
            raise _BadMessageError("the alarm message is not a JSON object")
        station, seq = data.get("station"), data.get("seq")
        if not isinstance(station, str) or not 0 < len(station) <= 64:
            raise _BadMessageError("the alarm message names no station")
        if seq is not None and (type(seq) is not int or seq <= 0):
            raise _BadMessageError("the alarm message's seq is not a positive integer")
        if station == self._station:
            return  # a station that is also a site: its alarms are its own, listed locally
        after = data.get("after")
        fields = _alarm_fields(after)
        assert isinstance(after, dict)  # _alarm_fields refuses anything else
        if fields["site"] != site:
            raise _BadMessageError(f"an alarm of site {fields['site']!r} on another site's topic")
        self._count("alarm_changes")
        if not self._store_alarm(station, after, fields):
            self._count("duplicates")
        if seq is None:
            return
        applied = self._applied.get(station, 0)
        if seq == applied + 1:
            self._set_applied(station, seq)
        elif seq > applied + 1:
            self._count("holes")
            if station in self._remotes:
                self._request_catch_up(station)
            else:
                # Nobody to ask: the missed changes stay missed.
                log.warning(
                    "alarm changes %d to %d of station %r were not received and the station has"
                    " no HTTP address in central.stations",
                    applied + 1,
                    seq - 1,
                    station,
                )
                self._set_applied(station, seq)

    def _set_applied(self, station: str, seq: int) -> None:
        """On the worker (the only writer of _applied; readers elsewhere copy it under _lock)."""
        with self._lock:
            self._applied[station] = seq
        with self._db_lock, self._db:
            self._db.execute(
                "INSERT INTO remote_station (name, applied_seq) VALUES (?, ?)"
                " ON CONFLICT (name) DO UPDATE SET applied_seq = excluded.applied_seq",
                (station, seq),
            )

    def _store_alarm(self, station: str, after: dict[str, Any], f: dict[str, Any]) -> bool:
        """Stores the alarm if it is newer than what is stored (or another alarm that reuses
        the id after the site's database was replaced); publishes the change. Returns whether
        it was stored."""
        with self._db_lock, self._db:
            row = self._db.execute(
                "SELECT version, created_us, state FROM remote_alarm WHERE station = ? AND id = ?",
                (station, f["id"]),
            ).fetchone()
            if row is not None and row[0] >= f["version"] and row[1] == f["created_us"]:
                return False
            self._db.execute(
                "INSERT OR REPLACE INTO remote_alarm (station, id, site, camera, state,"
                " priority_level, created_us, updated_us, version, alarm)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    station,
                    f["id"],
                    f["site"],
                    f["camera"],
                    f["state"],
                    f["priority_level"],
                    f["created_us"],
                    f["updated_us"],
                    f["version"],
                    json.dumps(after, separators=(",", ":")),
                ),
            )
        if row is None or row[1] != f["created_us"]:
            kind = "new"
        elif f["state"] == "closed" and row[2] != "closed":
            kind = "end"
        else:
            kind = "update"
        self._hub.publish(
            HubMessage(
                "remote_alarm",
                {"type": kind, "station": station, "alarm": {**after, "station": station}},
                camera=f["camera"],
                site=f["site"],
            )
        )
        return True

    def _request_catch_up(self, station: str) -> None:
        remote = self._remotes.get(station)
        if remote is None:
            return
        with self._lock:
            if station in self._catching_up or self._stopping:
                return
            self._catching_up.add(station)
            since = self._applied.get(station, 0)
        try:
            self._pool.submit(self._fetch, remote, since)
        except RuntimeError:  # shut down
            with self._lock:
                self._catching_up.discard(station)

    def _fetch(self, remote: RemoteStation, since: int) -> None:
        """On the pool: the station's alarm changes after ``since``, handed to the worker."""
        changes: list[dict[str, Any]] = []
        through = since
        error: str | None = None
        try:
            with httpx.Client(
                base_url=remote.url,
                headers={"Authorization": f"Bearer {remote.token.get_secret_value()}"},
                timeout=self.settings.timeout_s,
                verify=str(remote.ca_file) if remote.ca_file else True,
            ) as client:
                cursor = since
                for _ in range(_CATCH_UP_PAGES):
                    r = client.get("/api/alarm-changes", params={"since": cursor, "limit": 1000})
                    r.raise_for_status()
                    body = r.json()
                    if not isinstance(body, dict) or not isinstance(body.get("changes"), list):
                        raise _BadMessageError("the answer is not a change list")
                    if body.get("station") != remote.name:
                        raise _BadMessageError(
                            f"the station at {remote.url} is {body.get('station')!r},"
                            f" not {remote.name!r}"
                        )
                    changes += body["changes"]
                    new = body.get("through")
                    if type(new) is not int or new < 0:
                        raise _BadMessageError("the answer has no 'through'")
                    through = new
                    if not body.get("more") or new <= cursor:
                        break
                    cursor = new
        except (httpx.HTTPError, ValueError) as e:  # _BadMessageError and JSON errors included
            error = f"{type(e).__name__}: {e}"
        with contextlib.suppress(queue.Full):
            self._queue.put(("caught_up", remote.name, since, changes, through, error), timeout=5)

    def _caught_up(
        self, station: str, since: int, changes: list[Any], through: int, error: str | None
    ) -> None:
        with self._lock:
            self._catching_up.discard(station)
        if error is not None:
            self._count("catch_up_errors")
            self._retry[station] = self._clock() + self.settings.catch_up_s
            log.warning("catch-up of station %r failed (retrying): %s", station, error)
            return
        self._count("catch_ups")
        for ch in changes:
            try:
                after = ch["after"]
                fields = _alarm_fields(after)  # after is a dict from here on
                self._store_alarm(station, after, fields)
            except (_BadMessageError, KeyError, TypeError) as e:
                self._count("bad_messages")
                log.warning("catch-up of station %r: a change was ignored: %s", station, e)
        applied = self._applied.get(station, 0)
        if through < since:
            log.warning(
                "station %r's alarm change log ends at %d, before %d: its database was replaced",
                station,
                through,
                since,
            )
            self._set_applied(station, through)
        elif through > applied:
            self._set_applied(station, through)

    def _housekeeping(self) -> None:
        before = _now_us() - int(self.settings.retention_days * 86400e6)
        with self._db_lock, self._db:
            self._db.execute(
                "DELETE FROM remote_alarm WHERE state = 'closed' AND updated_us < ?", (before,)
            )
