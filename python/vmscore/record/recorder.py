"""The Recorder: records ingest streams to segment files (native writer threads), indexes them in
SQLite, applies retention, honours evidence locks, recovers after a crash and exports ranges.

One ``Recorder`` per station. The native ``RecorderCore`` writes; a Python thread drains its
completions (hashes each finished file, commits index rows in batches, records gaps and events)
and runs retention periodically. Nothing here sits on the path from camera to disk.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from vmscore import _core
from vmscore.errors import NoFootageError
from vmscore.record.files import free_bytes, sha256_file
from vmscore.record.index import (
    Event,
    EvidenceLock,
    Gap,
    NewRecording,
    Recording,
    RecordingIndex,
    pack_keyframes,
)
from vmscore.record.recovery import RecoveryReport, recover
from vmscore.record.retention import (
    CameraRetention,
    RetentionPlan,
    delete_recordings,
    plan_retention,
)
from vmscore.record.signing import StationKey, sign_export

log = logging.getLogger("vmscore.record")

Mode = Literal["continuous", "event", "continuous_events"]


class StorageLocation(BaseModel):
    """A directory that holds segment files; ``min_free_bytes`` is the free-space floor below
    which the oldest unlocked recordings on it are deleted."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    path: Path
    min_free_bytes: int = Field(default=0, ge=0)
    # Caps the write rate (0: none), e.g. for a disk shared with playback; streams producing more
    # fall behind and get gaps rather than stalling ingest.
    max_write_bytes_per_s: int = Field(default=0, ge=0)


class RecordingSettings(BaseModel):
    """How one camera stream is recorded and kept."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    storage: str
    mode: Mode = "continuous"
    pre_roll_s: float = Field(default=5.0, ge=0, le=600)
    post_roll_s: float = Field(default=5.0, ge=0, le=3600)
    segment_s: float = Field(default=60.0, ge=1, le=3600)
    max_age_s: float | None = Field(default=None, gt=0)
    max_bytes: int | None = Field(default=None, gt=0)
    # continuous_events: footage without events is kept this long
    no_event_max_age_s: float = Field(default=86400.0, gt=0)
    ring_bytes: int = Field(default=32 << 20, ge=1 << 20)
    ring_s: float = Field(default=30.0, ge=1, le=3600)


@dataclass(frozen=True)
class RecorderNotice:
    """A recorder event for listeners (the station's rules and health): gap, storage_error,
    storage_ok, preroll_short, segment_error, recovered, orphan_removed, file_missing,
    retention, storage_full."""

    kind: str
    camera: str
    stream: str
    start_wall_us: int
    end_wall_us: int
    reason: str


def now_us() -> int:
    return time.time_ns() // 1000


@dataclass
class _Camera:
    camera: str
    role: str
    stream_id: str
    settings: RecordingSettings


class Recorder:
    """Records streams of an :class:`vmscore.IngestEngine`.

    ``flush_interval``: a fragment reaches its file at least this often (what a crash of the
    process can lose). ``sync_interval``: open files are fdatasync'ed this often (what a power
    cut can lose beyond that). ``commit_interval``: finished segments are committed to the index
    in batches at least this often. Start-up recovery runs in the constructor.
    """

    def __init__(
        self,
        engine: _core.IngestEngine,
        database: str | Path,
        storages: list[StorageLocation],
        *,
        flush_interval: float = 2.0,
        sync_interval: float = 30.0,
        commit_interval: float = 5.0,
        retention_interval: float = 60.0,
        memory_cap: int = 1 << 30,
        retry_interval: float = 2.0,
        camera_gap: float = 5.0,
    ) -> None:
        if not storages:
            raise ValueError("a recorder needs at least one storage location")
        self._engine = engine
        self._storages = {s.name: s for s in storages}
        if len(self._storages) != len(storages):
            raise ValueError("storage location names must be unique")
        for s in storages:
            if not s.path.is_dir():
                raise ValueError(f"storage '{s.name}': {s.path} is not a directory")
        self._roots = {s.name: s.path for s in storages}
        self.index = RecordingIndex(database)
        self._commit_interval = commit_interval
        self._retention_interval = retention_interval
        self._cameras: dict[tuple[str, str], _Camera] = {}
        self._listeners: list[Callable[[RecorderNotice], None]] = []
        self._lock = threading.Lock()
        self._pending: list[NewRecording] = []
        self._flush_requested = threading.Event()
        self._flushed = threading.Condition()
        self._flush_generation = 0
        self._stopping = threading.Event()
        self.recovery = self._recover()
        self._core = _core.RecorderCore(
            memory_cap=memory_cap,
            flush_interval=flush_interval,
            sync_interval=sync_interval,
            retry_interval=retry_interval,
            camera_gap=camera_gap,
        )
        for s in storages:
            self._core.add_storage(
                s.name, str(s.path), max_write_bytes_per_s=s.max_write_bytes_per_s
            )
        self._thread = threading.Thread(target=self._run, name="vmscore-index", daemon=True)
        self._thread.start()

    # -- cameras -----------------------------------------------------------------------------

    def add_camera(
        self, camera: str, stream_id: str, settings: RecordingSettings, *, role: str = "main"
    ) -> None:
        """Records the engine's stream ``stream_id`` as ``camera``/``role``."""
        if settings.storage not in self._storages:
            raise ValueError(f"camera '{camera}': no storage location '{settings.storage}'")
        key = (camera, role)
        with self._lock:
            if key in self._cameras:
                raise ValueError(f"camera '{camera}' stream '{role}' is already recorded")
            self._cameras[key] = _Camera(camera, role, stream_id, settings)
        try:
            self._core.add_stream(
                self._engine,
                stream_id,
                camera=camera,
                role=role,
                storage=settings.storage,
                mode="event" if settings.mode == "event" else "continuous",
                pre_roll=settings.pre_roll_s,
                post_roll=settings.post_roll_s,
                segment_seconds=settings.segment_s,
                ring_bytes=settings.ring_bytes,
                ring_seconds=settings.ring_s,
            )
        except Exception:
            with self._lock:
                del self._cameras[key]
            raise

    def remove_camera(self, camera: str, *, role: str = "main") -> None:
        with self._lock:
            cam = self._cameras.pop((camera, role), None)
        if cam is None:
            raise KeyError(f"camera '{camera}' stream '{role}' is not recorded")
        self._core.remove_stream(cam.stream_id)

    def cameras(self) -> list[tuple[str, str]]:
        with self._lock:
            return sorted(self._cameras)

    def stats(self, camera: str, *, role: str = "main") -> _core.RecordStats:
        return self._core.stats(self._camera(camera, role).stream_id)

    def storage_stats(self) -> list[_core.StorageStats]:
        return self._core.storage_stats()

    @property
    def memory_used(self) -> int:
        return self._core.memory_used

    def units_from(
        self, camera: str, wall_us: int = 0, *, role: str = "main"
    ) -> list[_core.AccessUnit]:
        """The ring's units from the keyframe at or before ``wall_us`` (latest GOP for 0)."""
        return self._core.units_from(self._camera(camera, role).stream_id, wall_us)

    def add_listener(self, fn: Callable[[RecorderNotice], None]) -> None:
        """``fn`` is called on the index thread for every notice; it must not block."""
        self._listeners.append(fn)

    def _camera(self, camera: str, role: str) -> _Camera:
        with self._lock:
            cam = self._cameras.get((camera, role))
        if cam is None:
            raise KeyError(f"camera '{camera}' stream '{role}' is not recorded")
        return cam

    # -- events ------------------------------------------------------------------------------

    def trigger(
        self,
        camera: str,
        start_wall_us: int,
        end_wall_us: int,
        *,
        kind: str = "event",
        data: dict[str, object] | None = None,
        event_id: int | None = None,
    ) -> int:
        """Records an event of ``camera`` (all its streams): a row in the events table and, for
        streams in event mode, a recording from the keyframe at or before start - pre-roll to
        end + post-roll. Pass the returned ``event_id`` again with a later end to extend it."""
        if end_wall_us < start_wall_us:
            raise ValueError("an event must not end before it starts")
        with self._lock:
            streams = [c for c in self._cameras.values() if c.camera == camera]
        if not streams:
            raise KeyError(f"camera '{camera}' is not recorded")
        if event_id is None:
            event_id = self.index.add_event(
                camera, kind, start_wall_us, end_wall_us, json.dumps(data or {})
            )
        else:
            self.index.extend_event(event_id, end_wall_us)
        for c in streams:
            if c.settings.mode == "event":
                self._core.record_event(c.stream_id, start_wall_us, end_wall_us)
        return event_id

    # -- queries -----------------------------------------------------------------------------

    def recordings(
        self,
        camera: str,
        start_wall_us: int | None = None,
        end_wall_us: int | None = None,
        *,
        role: str = "main",
    ) -> list[Recording]:
        return self.index.recordings(camera, role, start_wall_us, end_wall_us)

    def gaps(self, camera: str | None = None) -> list[Gap]:
        return self.index.gaps(camera)

    def events(self, camera: str | None = None) -> list[Event]:
        return self.index.events(camera)

    def path_of(self, recording: Recording) -> Path:
        return self._roots[recording.storage] / recording.path

    # -- evidence locks ----------------------------------------------------------------------

    def lock(
        self,
        camera: str,
        start_wall_us: int,
        end_wall_us: int,
        *,
        reason: str,
        owner: str,
        expires_wall_us: int | None = None,
    ) -> int:
        """Locks a range of ``camera``'s footage against retention; returns the lock id."""
        if end_wall_us <= start_wall_us:
            raise ValueError("a lock must cover a non-empty range")
        if not reason.strip() or not owner.strip():
            raise ValueError("a lock needs a reason and an owner")
        return self.index.add_lock(
            camera, start_wall_us, end_wall_us, reason, owner, now_us(), expires_wall_us
        )

    def locks(
        self, camera: str | None = None, *, include_inactive: bool = False
    ) -> list[EvidenceLock]:
        t = now_us()
        return [lk for lk in self.index.locks(camera) if include_inactive or lk.active(t)]

    def unlock(self, lock_id: int, *, by: str) -> None:
        if not self.index.lift_lock(lock_id, by, now_us()):
            raise KeyError(f"no active evidence lock {lock_id}")

    # -- retention ---------------------------------------------------------------------------

    def apply_retention(self, at_us: int | None = None) -> RetentionPlan:
        """Runs the retention rules once (the index thread also does, periodically)."""
        t = now_us() if at_us is None else at_us
        with self._lock:
            rules = {
                c.camera: CameraRetention(
                    max_age_us=None
                    if c.settings.max_age_s is None
                    else int(c.settings.max_age_s * 1e6),
                    max_bytes=c.settings.max_bytes,
                    no_event_max_age_us=int(c.settings.no_event_max_age_s * 1e6)
                    if c.settings.mode == "continuous_events"
                    else None,
                    event_pre_us=int(c.settings.pre_roll_s * 1e6),
                    event_post_us=int(c.settings.post_roll_s * 1e6),
                )
                for c in self._cameras.values()
                if c.role == "main" or (c.camera, "main") not in self._cameras
            }
        plan = plan_retention(
            self.index.recordings(),
            rules,
            self.index.locks(),
            self.index.events(),
            {name: free_bytes(s.path) for name, s in self._storages.items()},
            {name: s.min_free_bytes for name, s in self._storages.items()},
            t,
        )
        if plan.delete:
            files, size = delete_recordings(self.index, self._roots, plan, t, self._error)
            log.info("retention deleted %d files, %d bytes", files, size)
            self._notify("retention", "", "", t, t, f"deleted {files} recordings ({size} bytes)")
        for storage, short in plan.storage_short.items():
            self._notify(
                "storage_full", "", "", t, t,
                f"storage '{storage}' is {short} bytes below its free-space floor and what is"
                " left is locked or still being written",
            )  # fmt: skip
        return plan

    # -- export ------------------------------------------------------------------------------

    def export_plan(
        self, camera: str, start_wall_us: int, end_wall_us: int, *, role: str = "main"
    ) -> _core.ExportPlan:
        """A virtual MP4 of [start, end): its size, any byte range (HTTP Range), or a file."""
        rows = self.index.recordings(camera, role, start_wall_us, end_wall_us)
        if not rows:
            raise NoFootageError(f"no recordings of '{camera}' between the given times")
        return _core.ExportPlan(
            [(str(self.path_of(r)), r.start_wall_us) for r in rows], start_wall_us, end_wall_us
        )

    def export(
        self,
        camera: str,
        start_wall_us: int,
        end_wall_us: int,
        path: str | Path,
        *,
        role: str = "main",
        progress: Callable[[int, int], None] | None = None,
    ) -> _core.ExportPlan:
        """Writes one MP4 of [start, end) to ``path``: from the keyframe at or before start,
        with an edit list so that playback begins at start exactly."""
        plan = self.export_plan(camera, start_wall_us, end_wall_us, role=role)
        plan.write(str(path), progress)
        return plan

    def export_signed(
        self,
        camera: str,
        start_wall_us: int,
        end_wall_us: int,
        path: str | Path,
        *,
        key: StationKey,
        exporter: str,
        station: str,
        role: str = "main",
        progress: Callable[[int, int], None] | None = None,
    ) -> Path:
        """As :meth:`export`, plus a manifest signed with the station's key next to the file
        (``vmscore verify FILE`` checks both); returns the manifest's path."""
        plan = self.export(camera, start_wall_us, end_wall_us, path, role=role, progress=progress)
        return sign_export(
            Path(path), key=key, camera=camera, start_wall_us=start_wall_us,
            end_wall_us=end_wall_us, exporter=exporter, station=station,
            extra={
                "stream": role,
                "first_frame_wall_us": str(plan.first_sample_wall_us),
                "frames": str(plan.frames),
                "segments": str(plan.segments_used),
            },
        )  # fmt: skip

    # -- index thread ------------------------------------------------------------------------

    def flush(self, timeout: float = 30.0) -> None:
        """Waits until everything the core reported so far is committed to the index."""
        with self._flushed:
            target = self._flush_generation + 1
            self._flush_requested.set()
            if not self._flushed.wait_for(lambda: self._flush_generation >= target, timeout):
                raise TimeoutError("the recording index did not catch up in time")

    def _run(self) -> None:
        last_commit = time.monotonic()
        last_retention = time.monotonic()
        while True:
            stopping = self._stopping.is_set()
            flush = self._flush_requested.is_set()
            if flush:
                self._flush_requested.clear()
            items = self._core.poll(0 if flush or stopping else 0.2)
            for item in items:
                try:
                    if isinstance(item, _core.RecordedSegment):
                        self._pending.append(self._new_recording(item))
                    else:
                        self._on_core_event(item)
                except Exception as err:  # one bad item must not stop indexing
                    self._error(f"indexing {item!r} failed: {err}")
            t = time.monotonic()
            if self._pending and (flush or stopping or t - last_commit >= self._commit_interval):
                try:
                    self.index.add_recordings(self._pending)
                    self._pending.clear()
                except Exception as err:
                    self._error(f"index commit failed (retrying): {err}")
                last_commit = t
            if flush or stopping:
                with self._flushed:
                    self._flush_generation += 1
                    self._flushed.notify_all()
            if stopping and not items:
                return
            if self._retention_interval > 0 and t - last_retention >= self._retention_interval:
                last_retention = t
                try:
                    self.apply_retention()
                except Exception as err:
                    self._error(f"retention failed: {err}")

    def _new_recording(self, s: _core.RecordedSegment) -> NewRecording:
        path = self._roots[s.storage] / s.path
        return NewRecording(
            camera=s.camera,
            stream=s.role,
            storage=s.storage,
            path=s.path,
            start_wall_us=s.start_wall_us,
            end_wall_us=s.end_wall_us,
            start_90k=s.start_90k,
            end_90k=s.end_90k,
            bytes=s.bytes,
            frames=s.frames,
            codec=s.codec,
            width=s.width,
            height=s.height,
            keyframes=pack_keyframes(s.fragments),
            sha256=sha256_file(path),
            end_reason=s.reason,
        )

    def _on_core_event(self, e: _core.RecorderEvent) -> None:
        if e.kind == "gap":
            self.index.add_gap(e.camera, e.role, e.start_wall_us, e.end_wall_us, e.reason)
        else:
            self.index.add_event(
                e.camera, f"recorder.{e.kind}", e.start_wall_us, e.end_wall_us,
                json.dumps({"stream": e.role, "storage": e.storage, "reason": e.reason}),
            )  # fmt: skip
        self._notify(e.kind, e.camera, e.role, e.start_wall_us, e.end_wall_us, e.reason)

    def _notify(
        self, kind: str, camera: str, stream: str, start: int, end: int, reason: str
    ) -> None:
        notice = RecorderNotice(kind, camera, stream, start, end, reason)
        log.info("recorder %s %s/%s: %s", kind, camera, stream, reason)
        for fn in self._listeners:
            try:
                fn(notice)
            except Exception:
                log.exception("recorder listener failed")

    def _error(self, message: str) -> None:
        log.error("%s", message)
        self._notify("error", "", "", now_us(), now_us(), message)

    # -- recovery ----------------------------------------------------------------------------

    def _recover(self) -> RecoveryReport:
        return recover(self.index, self._roots, self._notify)

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Closes every open segment, indexes it, and stops. Idempotent."""
        if self._stopping.is_set():
            return
        self._core.close()
        self._stopping.set()
        self._thread.join()
        self.index.close()

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
