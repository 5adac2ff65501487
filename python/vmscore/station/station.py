"""The monitoring station: composes ingest, recording, analysis, rules, alarms, users, MQTT and
the event hub into one running program, and changes its cameras at run time.

Threads:
- ``vmscore-dispatch`` drains the ingest engine (sub-stream units to analysis, stream events to
  camera health); it never blocks on analysis.
- ``vmscore-events`` is the only thread that evaluates rules and executes their actions, so rule
  evaluation is deterministic in the order events arrive. Everyone else (analysis threads, the
  recorder's index thread, MQTT's network thread, the web server) posts to its queue. It also
  ticks: rule durations and schedules, camera offline detection, motion off-delays.
- the analysis pool (decode + motion per camera), the recorder's threads, paho's thread, the
  webhook sender, and the web server's event loop.

Configuration: the station runs from a configuration document (see :mod:`.config`). The first
start stores the file's document in the station's database; from then on the database is the
truth, changed through :meth:`Station.change` (validated as a whole, then applied camera by
camera so the others are not disturbed).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import queue
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from vmscore import _core
from vmscore.alarms import AlarmChange, AlarmManager
from vmscore.cameras.snapshot import NoPictureError, jpeg_from_units
from vmscore.errors import ParametersChangedError
from vmscore.record import Recorder, RecorderNotice, RecordingSettings
from vmscore.rules import (
    AlarmAction,
    ArmAction,
    BookmarkAction,
    CameraInfo,
    Ending,
    Firing,
    MqttAction,
    RecordAction,
    RuleEngine,
    SnapshotAction,
    WebhookAction,
    WebhookSender,
)
from vmscore.station.analysis import AnalysisPool, CameraAnalysis
from vmscore.station.central import Central
from vmscore.station.config import CameraConfig, StationConfig, validate_document
from vmscore.station.events import StationEvent
from vmscore.station.hub import EventHub, HubMessage
from vmscore.station.live import LiveService
from vmscore.station.store import MotionSample, StationStore
from vmscore.web.auth import UserStore

log = logging.getLogger("vmscore.station")

TICK_S = 0.25
DAY_US = 86_400 * 1_000_000
RATE_WINDOW_US = DAY_US
"""A storage location's write rate is measured over the recordings of this last stretch."""
RATE_MIN_SPAN_US = 5 * 60 * 1_000_000
"""Recordings spanning less than this give no rate (a station that has just started)."""
USAGE_REFRESH_US = 60 * 1_000_000
"""The recordings' figures of the health report are recomputed at most this often: they move
slowly, and the UI polls the health every few seconds."""


SNAPSHOT_CACHE = 128
"""JPEGs of recent keyframes kept (per camera, keyframe and width)."""


def now_us() -> int:
    return time.time_ns() // 1000


@dataclass
class CameraState:
    """What the station knows of one camera at run time."""

    config: CameraConfig
    streams: dict[str, str] = field(default_factory=dict)
    """role -> ingest stream id."""
    analysis: CameraAnalysis | None = None
    online: bool = False
    playing_since_us: int = 0
    down_since_us: int = 0
    offline_reported: bool = False
    last_error: str = ""
    added_us: int = 0


@dataclass
class _OpenRecording:
    cameras: list[tuple[str, int]]
    """(camera, recorder event id)"""
    start_us: int
    alarm_ids: list[int] = field(default_factory=list)


class Station:
    """One monitoring station. ``document``: the configuration document (already validated or
    not; a :class:`~vmscore.station.config.ConfigError` says what is wrong).

    ``reset``: replace the configuration kept in the database with ``document``. ``role``
    overrides ``station.role`` (``site``, ``central`` or ``both``).
    """

    def __init__(
        self,
        document: Mapping[str, Any],
        *,
        reset: bool = False,
        origin: str = "configuration",
        role: Literal["site", "central", "both"] | None = None,
    ) -> None:
        cfg = validate_document(document, origin=origin)
        self.data_dir = Path(cfg.station.data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.data_dir, 0o700)
        for s in cfg.storage:
            Path(s.path).mkdir(parents=True, exist_ok=True)
        db = self.data_dir / "station.db"
        self.store = StationStore(db)
        kept = self.store.config()
        if kept is None or reset:
            self.store.save_config(document, user="system", reason=f"loaded from {origin}")
            self.document: dict[str, Any] = copy.deepcopy(dict(document))
        else:
            self.document = kept[1]
            cfg = validate_document(self.document, origin="the station's database")
        self.config: StationConfig = cfg
        self.started_us = now_us()
        self._lock = threading.RLock()  # configuration changes and the camera table
        self.users = UserStore(db)
        for u in cfg.users:
            self.users.upsert_from_config(u)
        self.alarms = AlarmManager(db, cfg.alarms)
        self.hub = EventHub()
        self.engine = _core.IngestEngine(queue_frames=8192)
        self.recorder = Recorder(self.engine, self.data_dir / "recordings.db", list(cfg.storage))
        self.live = LiveService(self.engine)
        self.rules = RuleEngine(
            cfg.rules, cfg.time_profiles, camera=self._camera_info, is_armed=self.is_armed
        )
        self.webhooks = WebhookSender()
        threads = cfg.station.analysis_threads or (os.cpu_count() or 1)
        self.pool = AnalysisPool(threads)
        self._armed = {s.name: s.armed for s in cfg.sites}
        self._armed.update({k: v for k, v in self.store.armed().items() if k in self._armed})
        self._events: queue.Queue[StationEvent | Callable[[], None] | None] = queue.Queue(
            maxsize=100_000
        )
        self.events_dropped = 0
        self._motion: list[MotionSample] = []
        self._motion_lock = threading.Lock()
        self._snapshots: dict[tuple[str, int, int], bytes] = {}  # oldest first
        self._snapshot_lock = threading.Lock()
        self._usage: tuple[int, dict[str, dict[str, int | None]]] | None = None
        self._open: dict[str, _OpenRecording] = {}
        self._alarm_ids: dict[str, int] = {}  # alarm key -> the alarm raised for it
        self._cameras: dict[str, CameraState] = {}
        self._streams: dict[str, tuple[str, str]] = {}  # stream id -> (camera, role)
        self._stopping = threading.Event()
        self.role = role or cfg.station.role or ("both" if cfg.central else "site")
        if self.role != "site" and cfg.central is None:
            from vmscore.station.config import ConfigError

            raise ConfigError(f"role {self.role} needs a 'central' section in the configuration")
        self.central: Central | None = None
        if self.role != "site" and cfg.central is not None:
            self.central = Central(cfg.central, cfg.station.name, self.data_dir, self.hub)
        self.mqtt: Any = None
        if cfg.mqtt is not None and self.role != "central":
            from vmscore.station.mqtt import MqttLink

            self.mqtt = MqttLink(
                cfg.mqtt,
                cfg.station.name,
                sites=lambda: [s.name for s in self.config.sites],
                on_command=self._on_mqtt_command,
            )
        self.alarms.add_listener(self._on_alarm_change)
        self.recorder.add_listener(self._on_recorder_notice)
        for cam in cfg.cameras:
            self._start_camera(cam)
        self._dispatch = threading.Thread(target=self._dispatch_loop, name="vmscore-dispatch")
        self._worker = threading.Thread(target=self._event_loop, name="vmscore-events")
        self._dispatch.start()
        self._worker.start()
        if self.mqtt is not None:
            self.mqtt.start()
            self.publish_site_state(recordings=False)
        if self.central is not None:
            self.central.start()

    # -- configuration ---------------------------------------------------------------------------

    def change(
        self, edit: Callable[[dict[str, Any]], Any], *, user: str, reason: str
    ) -> StationConfig:
        """Applies ``edit`` to a copy of the configuration document, validates the result as a
        whole (ConfigError when invalid: nothing changes), stores it and applies it: cameras
        whose settings changed are restarted, the others are not touched."""
        with self._lock:
            doc = copy.deepcopy(self.document)
            edit(doc)
            cfg = validate_document(doc, origin="the change")
            if [s.name for s in cfg.storage] != [s.name for s in self.config.storage] or any(
                a.path != b.path for a, b in zip(cfg.storage, self.config.storage, strict=True)
            ):
                from vmscore.station.config import ConfigError

                raise ConfigError("storage locations are changed by restarting the station")
            self.store.save_config(doc, user=user, reason=reason)
            old = self.config
            self.document, self.config = doc, cfg
            before = {c.name: c for c in old.cameras}
            after = {c.name: c for c in cfg.cameras}
            for name in before.keys() - after.keys():
                self._stop_camera(name)
            for name, cam in after.items():
                prev = before.get(name)
                if prev is None:
                    self._start_camera(cam)
                elif prev != cam or prev.site != cam.site:
                    self._stop_camera(name)
                    self._start_camera(cam)
            for s in cfg.sites:
                self._armed.setdefault(s.name, s.armed)
            for gone in {s.name for s in old.sites} - {s.name for s in cfg.sites}:
                self._armed.pop(gone, None)
            self.rules.update(cfg.rules, cfg.time_profiles)
            if self.mqtt is not None:
                self.mqtt.refresh_sites()
                self.publish_site_state(recordings=False)
        self.hub.publish(HubMessage("station", {"config_changed": reason, "by": user}))
        return cfg

    # -- cameras ---------------------------------------------------------------------------------

    def _camera_info(self, name: str) -> CameraInfo | None:
        cam = self._cameras.get(name)
        if cam is None:
            return None
        return CameraInfo(name=name, site=cam.config.site, group=cam.config.group)

    def camera_state(self, name: str) -> CameraState:
        with self._lock:
            cam = self._cameras.get(name)
        if cam is None:
            raise KeyError(name)
        return cam

    def camera_names(self) -> list[str]:
        with self._lock:
            return list(self._cameras)

    def _start_camera(self, cam: CameraConfig) -> None:
        state = CameraState(cam, added_us=now_us())
        self._cameras[cam.name] = state
        if not cam.enabled:
            return
        password = cam.password.get_secret_value() if cam.password else None
        streams = {"main": cam.main_url}
        if cam.sub_url:
            streams["sub"] = cam.sub_url
        analysis_role = "sub" if cam.sub_url else "main"
        for role, url in streams.items():
            sid = f"{cam.name}@{role}"
            deliver = cam.analysis and role == analysis_role
            try:
                self.engine.add_stream(
                    sid,
                    url,
                    username=cam.username,
                    password=password,
                    transport=cam.transport,
                    deliver=deliver,
                    stall_timeout_s=max(2.0, self.config.station.offline_after_s / 2),
                    reconnect_max_s=10.0,
                )
            except Exception as e:
                state.last_error = str(e)
                log.warning("camera %s: %s stream not started: %s", cam.name, role, e)
                continue
            state.streams[role] = sid
            self._streams[sid] = (cam.name, role)
            self.live.add_stream(sid)
        rec = cam.recording
        if "main" in state.streams:
            settings = RecordingSettings(
                storage=self.config.storage_for(cam),
                mode=rec.mode,
                pre_roll_s=rec.pre_roll_s,
                post_roll_s=rec.post_roll_s,
                segment_s=rec.segment_s,
                max_age_s=rec.max_age_s,
                max_bytes=rec.max_bytes,
                no_event_max_age_s=rec.no_event_max_age_s,
                ring_s=max(30.0, rec.pre_roll_s + 10),
            )
            self.recorder.add_camera(cam.name, state.streams["main"], settings)
            if rec.record_sub and "sub" in state.streams:
                self.recorder.add_camera(cam.name, state.streams["sub"], settings, role="sub")
        if cam.analysis and analysis_role in state.streams:
            state.analysis = CameraAnalysis(
                cam.name,
                cam.site,
                cam.motion,
                analysis_fps=cam.analysis_fps,
                off_delay_s=self.config.defaults.motion_off_delay_s,
                emit=self.post,
                motion_sink=self._motion_sample,
            )

    def _stop_camera(self, name: str) -> None:
        state = self._cameras.pop(name, None)
        if state is None:
            return
        for role, sid in state.streams.items():
            self._streams.pop(sid, None)
            self.live.remove_stream(sid)
            with contextlib.suppress(KeyError):
                self.recorder.remove_camera(name, role=role)
            try:
                self.engine.remove_stream(sid)
            except Exception as e:
                log.debug("camera %s: removing %s: %s", name, sid, e)
        if state.analysis is not None:
            state.analysis.close()
        if state.offline_reported:
            # A removed camera's offline condition ends with it (its alarm may close).
            self.post(
                StationEvent(
                    "camera_online",
                    now_us(),
                    site=state.config.site,
                    camera=name,
                    detail="removed",
                )
            )

    def camera_now_us(self, camera: str) -> int:
        """Now on the camera's recorded timeline: the wall time of its latest frame. Recordings
        and pre-roll are cut by the frames' wall times, which follow the camera's sender reports
        (slewed, so they can differ from this machine's clock by up to a GOP for a while after
        connecting); an event from outside is placed on that timeline, so its pre-roll is
        exact. This machine's clock when the camera has no frames."""
        try:
            units = self.recorder.units_from(camera, 0)
        except KeyError:
            units = []
        return units[-1].wall_time_us if units else now_us()

    def snapshot(self, camera: str, *, max_width: int = 0) -> bytes:
        """A JPEG of the camera's latest keyframe from its ring (main stream)."""
        state = self.camera_state(camera)
        if "main" not in state.streams:
            raise NoPictureError(f"camera {camera!r} is not running")
        try:
            units = self.recorder.units_from(camera, 0)
        except KeyError:
            raise NoPictureError(f"camera {camera!r} is not running") from None
        # The picture of a keyframe does not change: tiles that show stills (a codec the
        # browser cannot play) ask every second, and decode only once per keyframe.
        key = next(((u.stream_id, u.dts_90k) for u in units if u.is_keyframe), None)
        if key is None:
            return jpeg_from_units(units, max_width=max_width)
        with self._snapshot_lock:
            cached = self._snapshots.get((*key, max_width))
        if cached is not None:
            return cached
        jpeg = jpeg_from_units(units, max_width=max_width)
        with self._snapshot_lock:
            self._snapshots[(*key, max_width)] = jpeg
            while len(self._snapshots) > SNAPSHOT_CACHE:
                self._snapshots.pop(next(iter(self._snapshots)))
        return jpeg

    def recent_clip(self, camera: str, start_us: int, end_us: int, *, role: str = "main") -> bytes:
        """Fragmented MP4 of ``[start, end)`` from the recorder's ring: the footage of the last
        seconds, which is on disk but not yet indexed while its segment is still open (an alarm
        that just fired). Starts at the keyframe at or before ``start`` (or the oldest the ring
        holds); stops at ``end`` or at a change of parameter sets. NoPictureError when the ring
        holds nothing of the range."""
        try:
            units = self.recorder.units_from(camera, start_us, role=role)
        except KeyError:
            raise NoPictureError(f"camera {camera!r} is not recorded") from None
        units = [u for u in units if u.kind == "video" and u.wall_time_us < end_us]
        if not units or not units[0].is_keyframe or units[-1].wall_time_us < start_us:
            raise NoPictureError("the camera's recent footage does not cover the range")
        muxer = _core.Fmp4Muxer(
            "h265" if units[0].codec == "h265" else "h264", units[0].parameter_sets, annexb=False
        )
        out = bytearray()
        for u in units:
            try:
                out += muxer.add(u, u.pts_90k, u.dts_90k, u.is_keyframe)
            except ParametersChangedError:
                break
        out += muxer.flush()
        return bytes(out)

    # -- sites -----------------------------------------------------------------------------------

    def is_armed(self, site: str) -> bool:
        return self._armed.get(site, False)

    def set_armed(self, site: str, armed: bool, *, by: str) -> None:
        if self.config.site(site) is None:
            raise KeyError(site)
        self._armed[site] = armed
        self.store.set_armed(site, armed, by=by)
        self.hub.publish(HubMessage("site", {"site": site, "armed": armed, "by": by}, site=site))
        log.info("site %s %s by %s", site, "armed" if armed else "disarmed", by)
        self.publish_site_state(recordings=False)

    # -- events ----------------------------------------------------------------------------------

    def post(self, item: StationEvent | Callable[[], None]) -> None:
        """Hands an event (or a function to run) to the events thread. Thread-safe, never
        blocks: when the queue is full (100k waiting), the event is dropped and counted."""
        try:
            self._events.put_nowait(item)
        except queue.Full:
            self.events_dropped += 1

    def external_event(
        self,
        name: str,
        *,
        camera: str | None = None,
        site: str | None = None,
        data: Mapping[str, Any] | None = None,
        at_us: int | None = None,
    ) -> StationEvent:
        if camera is not None:
            state = self.camera_state(camera)
            site = site or state.config.site
            if at_us is None:
                at_us = self.camera_now_us(camera)
        ev = StationEvent(
            "external",
            at_us or now_us(),
            site=site,
            camera=camera,
            detail=name,
            data=dict(data or {}),
        )
        self.post(ev)
        return ev

    def _motion_sample(self, sample: MotionSample) -> None:
        with self._motion_lock:
            if len(self._motion) < 100_000:
                self._motion.append(sample)

    def _on_recorder_notice(self, n: RecorderNotice) -> None:
        cam = self._cameras.get(n.camera)
        site = cam.config.site if cam else None
        if n.kind == "gap":
            self.post(
                StationEvent(
                    "recording_gap",
                    now_us(),
                    site=site,
                    camera=n.camera,
                    detail=n.reason,
                    data={"start_us": n.start_wall_us, "end_us": n.end_wall_us, "stream": n.stream},
                )
            )
        elif n.kind in ("storage_error", "storage_full"):
            self.post(
                StationEvent(
                    "disk_trouble",
                    now_us(),
                    detail=n.stream or n.camera,
                    data={"reason": n.kind, "message": n.reason},
                )
            )
        elif n.kind == "storage_ok":
            self.post(StationEvent("disk_ok", now_us(), detail=n.stream or n.camera))

    def _on_alarm_change(self, change: AlarmChange) -> None:
        alarm = change.alarm
        payload = alarm.model_dump(mode="json")
        self.hub.publish(
            HubMessage(
                "alarm",
                {"type": change.kind, "alarm": payload},
                id=str(change.seq),
                camera=alarm.camera,
                site=alarm.site,
            )
        )
        if self.mqtt is not None:
            before = change.before.model_dump(mode="json") if change.before else None
            self.mqtt.publish_alarm(alarm.site, change.kind, payload, before, seq=change.seq)

    def _on_mqtt_command(self, cmd: Any) -> None:
        self.post(lambda: self._mqtt_command(cmd))

    def _mqtt_command(self, cmd: Any) -> None:
        p = cmd.payload
        user = f"mqtt:{p.get('user') or 'integration'}"
        # The command's model fills in an absent comment as None; the alarm manager takes text.
        comment = p.get("comment") or ""
        try:
            if "alarm_id" in p and cmd.site is not None:
                # A school's broker bridges only its own site's topics: they reach its alarms.
                site = self.alarms.get(int(p["alarm_id"])).site
                if site != cmd.site:
                    raise LookupError(f"alarm {p['alarm_id']} is not of site {cmd.site}")
            if cmd.name == "ack":
                self.alarms.acknowledge(int(p["alarm_id"]), user)
            elif cmd.name == "close":
                self.alarms.close(int(p["alarm_id"]), user, comment, p.get("category") or None)
            elif cmd.name == "comment":
                self.alarms.comment(int(p["alarm_id"]), user, str(p.get("comment", "")))
            elif cmd.name == "hold":
                self.alarms.hold(int(p["alarm_id"]), user, comment)
            elif cmd.name == "assign":
                self.alarms.assign(int(p["alarm_id"]), user, p.get("to"))
            elif cmd.name in ("arm", "disarm"):
                sites = [cmd.site] if cmd.site else [s.name for s in self.config.sites]
                for s in sites:
                    self.set_armed(s, cmd.name == "arm", by=user)
            elif cmd.name == "event":
                camera = p.get("camera")
                owner = self.camera_state(camera).config.site if camera is not None else None
                if cmd.site is not None and owner not in (None, cmd.site):
                    raise LookupError(f"camera {camera} is not of site {cmd.site}")
                self.external_event(
                    str(p.get("name", "mqtt")),
                    camera=camera,
                    site=cmd.site,
                    data=p.get("data") or {},
                )
            self.users.audit(user, f"mqtt.{cmd.name}", str(p.get("alarm_id", cmd.site or "")))
        except (KeyError, ValueError, LookupError) as e:
            log.warning("MQTT command %s refused: %s", cmd.name, e)

    def _dispatch_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                items = self.engine.poll(timeout=0.2)
            except Exception:
                if self._stopping.is_set():
                    return
                log.exception("ingest poll failed")
                time.sleep(0.2)
                continue
            for item in items:
                where = self._streams.get(item.stream_id)
                if where is None:
                    continue
                state = self._cameras.get(where[0])
                if state is None:
                    continue
                if isinstance(item, _core.StreamEvent):
                    if where[1] == "main":
                        self._stream_event(state, item)
                    continue
                an = state.analysis
                if an is not None and an.offer(item):
                    self.pool.schedule(an)

    def _stream_event(self, state: CameraState, e: _core.StreamEvent) -> None:
        t = e.wall_time_us or now_us()
        if e.kind == "playing":
            state.online = True
            state.playing_since_us = t
            state.last_error = ""
            online = StationEvent(
                "camera_online", t, site=state.config.site, camera=state.config.name
            )
            if state.offline_reported:
                state.offline_reported = False
                self.post(online)
            elif self.mqtt is not None:
                # Not an event for the rules (nothing went offline), but integrators watching the
                # camera's retained status topic must see it online from the start.
                self.mqtt.publish_event(online)
            self.hub.publish(self._camera_message(state))
        elif e.kind in ("stalled", "disconnected", "error", "reconnecting"):
            if e.reason:
                state.last_error = e.reason
            if state.online:
                state.online = False
                state.down_since_us = t
                self.hub.publish(self._camera_message(state))

    def _camera_message(self, state: CameraState) -> HubMessage:
        c = state.config
        return HubMessage(
            "camera",
            {"camera": c.name, "site": c.site, "online": state.online, "error": state.last_error},
            camera=c.name,
            site=c.site,
        )

    def _event_loop(self) -> None:
        next_tick = time.monotonic()
        next_minute = time.monotonic() + 5
        while True:
            timeout = max(0.0, next_tick - time.monotonic())
            try:
                item = self._events.get(timeout=timeout)
            except queue.Empty:
                item = ...  # type: ignore[assignment]
            if item is None:
                return
            try:
                if isinstance(item, StationEvent):
                    self._handle(item)
                elif callable(item):
                    item()
            except Exception:
                log.exception("station event failed")
            if time.monotonic() >= next_tick:
                next_tick = time.monotonic() + TICK_S
                try:
                    self._tick(now_us())
                except Exception:
                    log.exception("station tick failed")
            if time.monotonic() >= next_minute:
                next_minute = time.monotonic() + 60
                try:
                    self._minute()
                except Exception:
                    log.exception("station housekeeping failed")

    def _handle(self, ev: StationEvent) -> None:
        if ev.kind in (
            "motion",
            "motion_end",
            "tamper",
            "tamper_end",
            "camera_offline",
            "camera_online",
        ):
            self.hub.publish(
                HubMessage(
                    "motion"
                    if ev.kind.startswith("motion")
                    else "tamper"
                    if ev.kind.startswith("tamper")
                    else "camera_event",
                    ev.to_json(),
                    camera=ev.camera,
                    site=ev.site,
                )
            )
        else:
            self.hub.publish(HubMessage("event", ev.to_json(), camera=ev.camera, site=ev.site))
        if self.mqtt is not None:
            # Events without a site (storage trouble, a station-wide external event) go to the
            # station's own events topic.
            self.mqtt.publish_event(ev)
            if ev.kind in ("camera_online", "camera_offline"):
                self.publish_site_state(recordings=False)  # the codec and size are known now
        self._apply(self.rules.on_event(ev))

    def _tick(self, t: int) -> None:
        offline_after = round(self.config.station.offline_after_s * 1e6)
        for state in list(self._cameras.values()):
            if not state.config.enabled or state.offline_reported:
                continue
            since = state.down_since_us if state.playing_since_us else state.added_us
            if not state.online and since and t - since >= offline_after:
                state.offline_reported = True
                self._handle(
                    StationEvent(
                        "camera_offline",
                        t,
                        site=state.config.site,
                        camera=state.config.name,
                        detail=state.last_error or "no video",
                    )
                )
            an = state.analysis
            if an is not None:
                self.pool.call(lambda an=an: an.tick(t))  # type: ignore[misc]
        with self._motion_lock:
            samples, self._motion = self._motion, []
        if samples:
            self.store.add_motion(samples)
        self._apply(self.rules.tick(t))
        for key, rec in list(self._open.items()):
            # Keep the recording of a condition that is still going on.
            for camera, event_id in rec.cameras:
                self._trigger(camera, rec.start_us, t + 2_000_000, event_id=event_id, kind=key)

    def _minute(self) -> None:
        self.alarms.housekeeping()
        for k, alarm_id in list(self._alarm_ids.items()):
            try:
                still_open = self.alarms.get(alarm_id).is_open
            except LookupError:
                still_open = False
            if not still_open:
                del self._alarm_ids[k]
        if self.mqtt is not None:
            for state in list(self._cameras.values()):
                self.mqtt.publish_camera_state(
                    state.config.site, state.config.name, self.camera_health(state.config.name)
                )
            self.publish_site_state()

    def site_inventory(self) -> dict[str, list[dict[str, Any]]]:
        """Per site, its cameras as the site publishes them to a central station (no URLs or
        credentials): name, display name, group, enabled, online, streams, codec and size."""
        out: dict[str, list[dict[str, Any]]] = {s.name: [] for s in self.config.sites}
        with self._lock:
            states = list(self._cameras.values())
        for state in states:
            c = state.config
            video: dict[str, Any] = {}
            main = state.streams.get("main")
            if main is not None:
                with contextlib.suppress(Exception):  # the stream is gone or not known yet
                    st = self.engine.stats(main)
                    video = {"codec": st.codec, "width": st.width, "height": st.height}
            out.setdefault(c.site, []).append(
                {
                    "name": c.name,
                    "display_name": c.display_name,
                    "group": c.group,
                    "enabled": c.enabled,
                    "online": state.online,
                    "streams": sorted(state.streams) or ["main"],
                    **video,
                }
            )
        return out

    def recording_summary(self) -> dict[str, dict[str, dict[str, int]]]:
        """Per site and camera: the first and last recorded wall time, bytes and segments."""
        sites = {c.name: c.site for c in self.config.cameras}
        out: dict[str, dict[str, dict[str, int]]] = {s.name: {} for s in self.config.sites}
        try:
            db = sqlite3.connect(f"{self.recorder.index.path.resolve().as_uri()}?mode=ro", uri=True)
            with contextlib.closing(db):
                rows = db.execute(
                    "SELECT camera, MIN(start_wall_us), MAX(end_wall_us), SUM(bytes), COUNT(*)"
                    " FROM recording GROUP BY camera"
                ).fetchall()
        except sqlite3.Error as e:
            log.warning("no recording summary from the index: %s", e)
            return out
        for camera, first, last, size, count in rows:
            site = sites.get(camera)
            if site is not None:
                out.setdefault(site, {})[camera] = {
                    "first_us": first,
                    "last_us": last,
                    "bytes": size,
                    "segments": count,
                }
        return out

    def publish_site_state(self, *, recordings: bool = True) -> None:
        """Publishes every site's camera inventory (and recording summary) over MQTT."""
        if self.mqtt is None:
            return
        for s in self.config.sites:
            info = {
                "display_name": s.display_name,
                "address": s.address,
                "armed": self.is_armed(s.name),
            }
            self.mqtt.publish_site_state(s.name, "info", info)
        for site, cameras in self.site_inventory().items():
            self.mqtt.publish_site_state(site, "cameras", cameras)
        if recordings:
            for site, summary in self.recording_summary().items():
                self.mqtt.publish_site_state(site, "recordings", summary)

    # -- actions ---------------------------------------------------------------------------------

    def _apply(self, outputs: list[Firing | Ending]) -> None:
        for out in outputs:
            try:
                if isinstance(out, Firing):
                    self._fire(out)
                else:
                    self._end(out)
            except Exception:
                log.exception("rule %s: action failed", out.rule.name)

    def _fire(self, f: Firing) -> None:
        a, ev, rule = f.action, f.event, f.rule
        key = f"{rule.name}|{f.key}"
        cam = self._cameras.get(ev.camera) if ev.camera else None
        pre_s = cam.config.recording.pre_roll_s if cam else 0.0
        post_s = cam.config.recording.post_roll_s if cam else 0.0
        if isinstance(a, AlarmAction):
            title = a.title or _title(rule.name, ev)
            alarm = self.alarms.raise_alarm(
                title=title,
                priority=a.priority,
                source_key=_alarm_key(rule.name, ev),
                site=ev.site,
                camera=ev.camera,
                zone=ev.zone,
                rule=rule.name,
                category=a.category,
                related_cameras=a.related_cameras,
                record_start_us=ev.at_us - round(pre_s * 1e6) if cam else None,
                data={"event": ev.to_json()},
                at_us=ev.at_us,
            )
            self._alarm_ids[_alarm_key(rule.name, ev)] = alarm.id
            rec = self._open.get(key)
            if rec is not None:
                rec.alarm_ids.append(alarm.id)
                self.alarms.set_recording(
                    alarm.id,
                    rec.start_us - round(pre_s * 1e6),
                    ev.at_us + round(post_s * 1e6),
                    rec.cameras[0][1] if rec.cameras else None,
                )
            if cam is not None and alarm.count == 1 and ev.camera:
                self.pool.call(lambda: self._alarm_snapshot(alarm.id, ev.camera or ""))
        elif isinstance(a, RecordAction):
            cams = [c for c in [ev.camera, *a.cameras] if c and c in self._cameras]
            start = ev.at_us
            if a.pre_roll_s is not None and cam is not None:
                start -= round((a.pre_roll_s - pre_s) * 1e6)
            rec = self._open.get(key)
            if rec is None:
                # A condition (motion, tamper, offline) is recorded until it ends; an instant
                # (an external event, a gap) for its pre- and post-roll.
                lasting = ev.kind in _LASTING
                rec = _OpenRecording([], start)
                if lasting:
                    self._open[key] = rec
                end = max(f.at_us, ev.at_us) + (2_000_000 if lasting else 0)
                if a.post_roll_s is not None and not lasting:
                    end += round((a.post_roll_s - post_s) * 1e6)
                for c in dict.fromkeys(cams):
                    eid = self._trigger(c, start, end, kind=key)
                    if eid is not None:
                        rec.cameras.append((c, eid))
            for alarm_id in self._alarms_for(_alarm_key(rule.name, ev)):
                if alarm_id in rec.alarm_ids:
                    continue
                # Until the condition ends, the recording is known to reach its post-roll.
                self.alarms.set_recording(
                    alarm_id,
                    start - round(pre_s * 1e6),
                    ev.at_us + round(post_s * 1e6),
                    rec.cameras[0][1] if rec.cameras else None,
                )
                rec.alarm_ids.append(alarm_id)
        elif isinstance(a, BookmarkAction):
            if ev.camera:
                self.store.add_bookmark(
                    ev.camera,
                    ev.at_us,
                    ev.at_us,
                    a.text or _title(rule.name, ev),
                    user=f"rule:{rule.name}",
                )
        elif isinstance(a, SnapshotAction):
            if ev.camera:
                camera = ev.camera
                self.pool.call(lambda: self._store_snapshot(camera, ev.at_us, rule.name))
        elif isinstance(a, MqttAction):
            if self.mqtt is not None:
                fields = {
                    "site": ev.site or "",
                    "camera": ev.camera or "",
                    "zone": ev.zone or "",
                    "rule": rule.name,
                    "kind": ev.kind,
                    "detail": ev.detail,
                }
                topic = a.topic.format_map(_Blank(fields))
                payload = a.payload.format_map(_Blank(fields)) if a.payload else None
                import json

                self.mqtt.publish(
                    topic,
                    payload
                    if payload is not None
                    else json.dumps({"rule": rule.name, "event": ev.to_json()}),
                    qos=a.qos,
                    retain=a.retain,
                )
        elif isinstance(a, WebhookAction):
            self.webhooks.send(
                a, {"rule": rule.name, "event": ev.to_json(), "station": self.config.station.name}
            )
        elif isinstance(a, ArmAction):
            # A schedule edge has no site: it arms the sites its trigger names, or all.
            sites = (
                a.sites
                or ([ev.site] if ev.site else rule.trigger.sites)
                or [s.name for s in self.config.sites]
            )
            for site in sites:
                if self.config.site(site) is not None:
                    self.set_armed(site, a.armed, by=f"rule:{rule.name}")

    def _alarms_for(self, alarm_key: str) -> list[int]:
        """The open alarm raised for a condition, if any (to link its recording)."""
        alarm_id = self._alarm_ids.get(alarm_key)
        return [alarm_id] if alarm_id is not None else []

    def _end(self, e: Ending) -> None:
        key = f"{e.rule.name}|{e.key}"
        rec = self._open.pop(key, None)
        if rec is not None:
            for camera, event_id in rec.cameras:
                self._trigger(camera, rec.start_us, e.event.at_us, event_id=event_id, kind=key)
        for a in e.rule.actions:
            if isinstance(a, AlarmAction):
                alarm = self.alarms.condition_ended(
                    _alarm_key(e.rule.name, e.event),
                    e.event.at_us,
                    close=a.close_on_end,
                    reason=e.event.kind,
                )
                if alarm is not None and rec is not None:
                    cam = self._cameras.get(alarm.camera or "")
                    post = cam.config.recording.post_roll_s if cam else 0.0
                    pre = cam.config.recording.pre_roll_s if cam else 0.0
                    self.alarms.set_recording(
                        alarm.id,
                        rec.start_us - round(pre * 1e6),
                        e.event.at_us + round(post * 1e6),
                        rec.cameras[0][1] if rec.cameras else None,
                    )

    def _trigger(
        self, camera: str, start_us: int, end_us: int, *, kind: str, event_id: int | None = None
    ) -> int | None:
        try:
            return self.recorder.trigger(
                camera, start_us, max(start_us, end_us), kind=kind, event_id=event_id
            )
        except (KeyError, ValueError) as e:
            log.warning("camera %s: event recording not started: %s", camera, e)
            return None

    def _alarm_snapshot(self, alarm_id: int, camera: str) -> None:
        try:
            self.alarms.set_snapshot(alarm_id, self.snapshot(camera, max_width=1280))
        except (NoPictureError, KeyError, ValueError) as e:
            log.info("alarm %d: no snapshot of %s: %s", alarm_id, camera, e)

    def _store_snapshot(self, camera: str, at_us: int, reason: str) -> None:
        try:
            self.store.add_snapshot(camera, at_us, self.snapshot(camera), reason)
        except (NoPictureError, KeyError) as e:
            log.info("no snapshot of %s: %s", camera, e)

    # -- health ----------------------------------------------------------------------------------

    def camera_health(self, name: str) -> dict[str, Any]:
        state = self.camera_state(name)
        out: dict[str, Any] = {
            "camera": name,
            "site": state.config.site,
            "enabled": state.config.enabled,
            "online": state.online,
            "last_error": state.last_error,
            "streams": {},
        }
        for role, sid in state.streams.items():
            try:
                st = self.engine.stats(sid)
            except Exception:
                continue
            out["streams"][role] = {
                "state": st.state,
                "codec": st.codec,
                "width": st.width,
                "height": st.height,
                "fps": round(st.fps, 2),
                "bitrate_bps": round(st.bitrate_bps),
                "packets": st.packets,
                "packets_lost": st.packets_lost,
                "loss": round(st.packets_lost / st.packets, 5) if st.packets else 0.0,
                "frames_dropped": st.frames_dropped + st.frames_dropped_queue,
                "reconnects": st.reconnects,
                "last_error": st.last_error,
            }
        if state.analysis is not None:
            out["analysis"] = state.analysis.stats.to_json()
        try:
            rs = self.recorder.stats(name)
            out["recording"] = {
                k: getattr(rs, k)
                for k in dir(rs)
                if not k.startswith("_") and isinstance(getattr(rs, k), int | float | str | bool)
            }
        except KeyError:
            pass
        return out

    def health(self) -> dict[str, Any]:
        usage = self._recording_usage()
        cams = []
        for n in self.camera_names():
            with contextlib.suppress(KeyError):  # removed since the names were taken
                cams.append(self.camera_health(n))
        return {
            "station": self.config.station.name,
            "started_us": self.started_us,
            "cameras_total": len(cams),
            "cameras_online": sum(1 for c in cams if c["online"]),
            "alarms_open": self.alarms.open_count_by_priority(),
            "events_dropped": self.events_dropped,
            "event_queue": self._events.qsize(),
            "analysis_threads": self.pool.threads,
            "storage": [
                self._storage_health(s, usage.get(s.name, {}))
                for s in self.recorder.storage_stats()
            ],
            "mqtt": None
            if self.mqtt is None
            else {"connected": self.mqtt.connected, **self.mqtt.stats()},
            "role": self.role,
            "central": None if self.central is None else self.central.stats(),
            "sse_subscribers": self.hub.subscribers,
            "live_viewers": self.live.viewers(),
            "live_streams": [s for s in self.live.stats() if s["viewers"]],
            "cameras": cams,
        }

    def _recording_usage(self) -> dict[str, dict[str, int | None]]:
        """:func:`_recording_usage` of the index, at most once per :data:`USAGE_REFRESH_US`."""
        t = now_us()
        cached = self._usage
        if cached is None or not 0 <= t - cached[0] < USAGE_REFRESH_US:
            cached = (t, _recording_usage(self.recorder.index.path, t))
            self._usage = cached
        return cached[1]

    def _storage_health(
        self, stats: _core.StorageStats, usage: dict[str, int | None]
    ) -> dict[str, Any]:
        """A storage location's writer figures, free space and footage, and its retention
        forecast: ``days_until_floor``, how long the free space above ``min_free_bytes`` lasts
        at ``write_bytes_per_day``, after which retention deletes the oldest footage (None
        without a rate or a free-space figure)."""
        out: dict[str, Any] = {
            k: getattr(stats, k)
            for k in dir(stats)
            if not k.startswith("_") and isinstance(getattr(stats, k), int | float | str | bool)
        }
        # The writer's figures have no free space; /metrics reports it from here.
        out.update(_free_space(stats.path))
        floor = next((s.min_free_bytes for s in self.config.storage if s.name == stats.name), 0)
        rate = usage.get("write_bytes_per_day")
        days = None
        if rate and "free_bytes" in out:
            days = round(max(0, out["free_bytes"] - floor) / rate, 2)
        out.update(
            min_free_bytes=floor,
            recorded_bytes=usage.get("recorded_bytes") or 0,
            write_bytes_per_day=rate,
            days_until_floor=days,
        )
        return out

    # -- life ------------------------------------------------------------------------------------

    def close(self) -> None:
        """Stops everything the station started; bounded in time."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        self._events.put(None)
        self._worker.join(timeout=10)
        self.engine.wake()
        self._dispatch.join(timeout=10)
        if self.mqtt is not None:
            self.mqtt.stop()
        if self.central is not None:
            self.central.close()
        self.hub.close()
        self.live.close()
        with self._lock:
            for name in list(self._cameras):
                self._stop_camera(name)
        self.pool.close()
        self.webhooks.close(5.0)
        self.recorder.close()
        self.engine.close()
        with self._motion_lock:
            samples, self._motion = self._motion, []
        self.store.add_motion(samples)
        self.alarms.close()
        self.users.close()
        self.store.close()

    def __enter__(self) -> Station:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _free_space(path: str) -> dict[str, int]:
    """``free_bytes`` of the file system holding ``path`` (nothing when it cannot be read)."""
    try:
        return {"free_bytes": shutil.disk_usage(path).free}
    except OSError:
        return {}


def _recording_usage(database: Path, at_us: int) -> dict[str, dict[str, int | None]]:
    """Per storage location: ``recorded_bytes``, the bytes of its indexed recordings, and
    ``write_bytes_per_day``, the bytes of its recordings that started in the last
    :data:`RATE_WINDOW_US` over the time they span (a station up for an hour is measured over
    that hour), None when they span less than :data:`RATE_MIN_SPAN_US`. Empty when the index
    cannot be read.

    Aggregates in SQL on a read-only connection of its own: the index's connection belongs to
    the index thread's batched commits, and WAL lets this read while they write."""
    since = at_us - RATE_WINDOW_US
    out: dict[str, dict[str, int | None]] = {}
    try:
        db = sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True)
        with contextlib.closing(db):
            totals = db.execute("SELECT storage, SUM(bytes) FROM recording GROUP BY storage")
            for storage, total in totals.fetchall():
                recent, first, last = db.execute(
                    "SELECT SUM(bytes), MIN(start_wall_us), MAX(end_wall_us) FROM recording"
                    " WHERE storage = ? AND start_wall_us >= ?",
                    (storage, since),
                ).fetchone()
                rate = None
                if recent and last - first >= RATE_MIN_SPAN_US:
                    rate = round(recent * DAY_US / (last - first))
                out[str(storage)] = {"recorded_bytes": int(total or 0), "write_bytes_per_day": rate}
    except sqlite3.Error as e:
        log.warning("no storage figures from the recording index: %s", e)
        return {}
    return out


class _Blank(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return ""


_LASTING = frozenset({"motion", "tamper", "camera_offline", "disk_trouble"})
"""Event kinds that begin a condition which a later event ends."""


def _alarm_key(rule: str, ev: StationEvent) -> str:
    """The condition an alarm stands for. Motion is one alarm per camera and rule, whatever
    zones the intruder crosses (gate, then court, then entrance: one alarm that counts three
    triggers, not three alarms for the operator)."""
    if ev.kind in ("motion", "motion_end"):
        return f"{rule}|motion/{ev.site or ''}/{ev.camera or ''}"
    return f"{rule}|{ev.key}"


def _title(rule: str, ev: StationEvent) -> str:
    what = {
        "motion": "Motion",
        "tamper": f"Tampering ({ev.detail.replace('_', ' ')})",
        "camera_offline": "Camera offline",
        "recording_gap": "Recording gap",
        "disk_trouble": "Storage trouble",
        "external": f"External event {ev.detail}",
        "schedule": f"Schedule {ev.detail}",
    }.get(ev.kind, ev.kind)
    where = ev.camera or ev.site or ""
    zone = f", zone {ev.zone}" if ev.zone else ""
    return f"{what}: {where}{zone}" if where else what
