"""The analysis pipeline: each camera's analysis stream (its sub-stream, or the main stream when
there is none) is decoded with PyAV and fed to its motion detector at the configured rate; the
results become station events (motion per zone with an off-delay, tamper) and a per-second motion
grid for timeline search.

Threads: the station's dispatcher thread calls :meth:`CameraAnalysis.offer` with each access unit
(it never blocks: the queue is bounded, and when analysis falls behind the queue is emptied and
frames are skipped up to the next keyframe, counted). A pool of threads sized to the cores runs
:meth:`CameraAnalysis.process`; one camera is processed by one thread at a time (its decoder and
detector are not shared), different cameras in parallel (decode and detection release the GIL).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import av

from vmscore import _core
from vmscore.cameras.snapshot import annexb, decoder
from vmscore.motion import MotionDetector, MotionResult, MotionSettings
from vmscore.station.events import StationEvent
from vmscore.station.store import MotionSample

log = logging.getLogger("vmscore.station.analysis")

Emit = Callable[[StationEvent], None]


@dataclass
class AnalysisStats:
    units_in: int = 0
    frames_decoded: int = 0
    frames_analysed: int = 0
    frames_skipped: int = 0
    """Skipped to catch up (analysis fell behind) or after a decode error."""
    decode_errors: int = 0
    analysis_s: float = 0.0
    decode_s: float = 0.0
    last_score: float = 0.0
    last_motion: bool = False
    tamper: list[str] = field(default_factory=list)
    noise: float = 0.0
    active_zones: list[str] = field(default_factory=list)
    width: int = 0
    height: int = 0

    def to_json(self) -> dict[str, Any]:
        out = self.__dict__.copy()
        out["analysis_ms_per_frame"] = round(
            1000 * self.analysis_s / self.frames_analysed if self.frames_analysed else 0.0, 3
        )
        out["decode_ms_per_frame"] = round(
            1000 * self.decode_s / self.frames_decoded if self.frames_decoded else 0.0, 3
        )
        return out


class _Condition:
    """A condition reported with an off-delay: begins at once, ends after ``off_delay_us``
    without being seen (no flapping motion or tamper events)."""

    __slots__ = ("active", "last_seen_us")

    def __init__(self) -> None:
        self.active = False
        self.last_seen_us = 0


class CameraAnalysis:
    """Decode and motion analysis of one camera."""

    def __init__(
        self,
        camera: str,
        site: str,
        settings: MotionSettings,
        *,
        analysis_fps: float,
        off_delay_s: float,
        emit: Emit,
        motion_sink: Callable[[MotionSample], None] | None = None,
        max_queue: int = 64,
    ) -> None:
        self.camera = camera
        self.site = site
        self.settings = settings
        self._interval_90k = round(90_000 / analysis_fps)
        self._off_delay_us = round(off_delay_s * 1e6)
        self._emit = emit
        self._motion_sink = motion_sink
        self._max_queue = max_queue
        self._queue: deque[_core.AccessUnit] = deque()
        self._lock = threading.Lock()  # guards the queue and the scheduling flag
        self.scheduled = False
        self._skipping = True  # until the first keyframe
        self._work = threading.Lock()  # one thread in process() at a time
        self._ctx: Any = None
        self._codec = ""
        self._detector: MotionDetector | None = None
        self._last_analysed_90k = -(1 << 62)
        self._due_90k: int | None = None
        self._walls: dict[int, int] = {}
        self._zones = [z.name for z in settings.zones if z.kind == "include"]
        self._conditions: dict[tuple[str, str], _Condition] = {}
        self._second_us = -1
        self._second_score = 0.0
        self._second_grid = bytearray(32)
        self.stats = AnalysisStats()
        self.last_result: MotionResult | None = None

    # -- dispatcher side ---------------------------------------------------------------------

    def offer(self, unit: _core.AccessUnit) -> bool:
        """Queues a unit; True when the camera needs scheduling. Never blocks."""
        if unit.kind != "video":
            return False
        with self._lock:
            self.stats.units_in += 1
            if unit.gap or unit.parameters_changed:
                # Lost frames or new parameter sets: the decoder must restart at a keyframe.
                self._skipping = True
            if self._skipping:
                if not unit.is_keyframe:
                    self.stats.frames_skipped += 1
                    return False
                self._skipping = False
            if len(self._queue) >= self._max_queue:
                # Fallen behind: drop what waits and resume at the next keyframe, so analysis
                # stays current instead of working through old frames.
                self.stats.frames_skipped += len(self._queue)
                self._queue.clear()
                if not unit.is_keyframe:
                    self._skipping = True
                    self.stats.frames_skipped += 1
                    return False
            self._queue.append(unit)
            if self.scheduled:
                return False
            self.scheduled = True
            return True

    def finish_run(self) -> bool:
        """Called by the pool after :meth:`process`: True when there is more to do (the camera
        stays scheduled)."""
        with self._lock:
            if self._queue:
                return True
            self.scheduled = False
            return False

    # -- pool side ---------------------------------------------------------------------------

    def process(self, max_units: int = 16) -> None:
        with self._work:
            for _ in range(max_units):
                with self._lock:
                    if not self._queue:
                        return
                    unit = self._queue.popleft()
                self._decode(unit)

    def _decode(self, unit: _core.AccessUnit) -> None:
        if (
            self._ctx is None
            or unit.codec != self._codec
            or (unit.is_keyframe and unit.parameters_changed)
        ):
            if not unit.is_keyframe:
                self.stats.frames_skipped += 1
                return
            try:
                self._ctx = decoder(unit.codec)
            except ValueError as e:
                log.warning("camera %s: %s", self.camera, e)
                return
            self._codec = unit.codec
        self._walls[unit.pts_90k] = unit.wall_time_us
        if len(self._walls) > 64:
            for k in sorted(self._walls)[:-32]:
                del self._walls[k]
        t0 = time.perf_counter()
        try:
            packet = av.Packet(annexb(unit))
            packet.pts = unit.pts_90k
            packet.dts = unit.dts_90k
            frames = self._ctx.decode(packet)
        except av.error.FFmpegError as e:
            self.stats.decode_errors += 1
            log.debug("camera %s: decode error %s", self.camera, e)
            self._ctx = None
            with self._lock:
                self._skipping = True
            return
        self.stats.decode_s += time.perf_counter() - t0
        for frame in frames:
            self.stats.frames_decoded += 1
            pts = frame.pts if frame.pts is not None else unit.pts_90k
            due = self._due_90k
            backwards = pts < self._last_analysed_90k
            if due is not None and not backwards and pts < due - 450:
                continue
            # The next frame due is one interval later, so a 25 fps stream analysed at 10 gives
            # 10 frames a second on average (not every third); after a gap, from this frame.
            if due is None or backwards or pts - due > self._interval_90k:
                self._due_90k = pts + self._interval_90k
            else:
                self._due_90k = due + self._interval_90k
            self._last_analysed_90k = pts
            self._analyse(frame, pts, self._walls.get(pts, unit.wall_time_us))

    def _analyse(self, frame: av.VideoFrame, pts_90k: int, wall_us: int) -> None:
        det = self._detector
        if det is None or det.width != frame.width or det.height != frame.height:
            det = self._detector = MotionDetector(frame.width, frame.height, self.settings)
            self.stats.width, self.stats.height = frame.width, frame.height
        t0 = time.perf_counter()
        try:
            result = det.process(frame, pts_90k / 90_000)
        except ValueError:
            # Time went backwards (a stream restarted from an older point): learn anew.
            det.reset()
            self._last_analysed_90k = pts_90k
            result = det.process(frame, pts_90k / 90_000)
        self.stats.analysis_s += time.perf_counter() - t0
        self.stats.frames_analysed += 1
        self.stats.last_score = result.score
        self.stats.last_motion = result.motion
        self.stats.noise = result.noise
        self.last_result = result
        self._record_motion(result, wall_us)
        if self._zones:
            seen = {(("zone", z.name)) for z in result.zones if z.hit and z.name in self._zones}
            for name in self._zones:
                self._observe(("zone", name), ("zone", name) in seen, wall_us, result)
        else:
            self._observe(("zone", ""), result.motion, wall_us, result)
        flags = set(result.tamper)
        for flag in flags | {k[1] for k in self._conditions if k[0] == "tamper"}:
            self._observe(("tamper", flag), flag in flags, wall_us, result)
        self.stats.tamper = sorted(flags)
        self.stats.active_zones = sorted(
            k[1] for k, c in self._conditions.items() if k[0] == "zone" and c.active and k[1]
        )

    def _observe(
        self, key: tuple[str, str], present: bool, at_us: int, result: MotionResult | None
    ) -> None:
        cond = self._conditions.get(key)
        if cond is None:
            if not present:
                return
            cond = self._conditions[key] = _Condition()
        if present:
            cond.last_seen_us = at_us
            if not cond.active:
                cond.active = True
                self._emit(self._event(key, True, at_us, result))
        elif cond.active and at_us - cond.last_seen_us >= self._off_delay_us:
            cond.active = False
            self._emit(self._event(key, False, at_us, result))

    def _event(
        self, key: tuple[str, str], begin: bool, at_us: int, result: MotionResult | None
    ) -> StationEvent:
        data: dict[str, Any] = {}
        if result is not None and begin:
            data = {
                "score": round(result.score, 4),
                "changed_fraction": round(result.changed_fraction, 5),
                "blobs": [
                    {"box": [b.x, b.y, b.width, b.height], "area": b.area} for b in result.blobs[:8]
                ],
            }
        if key[0] == "zone":
            return StationEvent(
                "motion" if begin else "motion_end",
                at_us,
                site=self.site,
                camera=self.camera,
                zone=key[1] or None,
                data=data,
            )
        return StationEvent(
            "tamper" if begin else "tamper_end",
            at_us,
            site=self.site,
            camera=self.camera,
            detail=key[1],
            data=data,
        )

    def _record_motion(self, result: MotionResult, wall_us: int) -> None:
        second = wall_us - wall_us % 1_000_000
        if second != self._second_us:
            self._flush_motion()
            self._second_us = second
        if result.motion:
            self._second_score = max(self._second_score, result.score)
            grid = result.grid
            for i in range(min(32, len(grid))):
                self._second_grid[i] |= grid[i]

    def _flush_motion(self) -> None:
        if self._second_score > 0 and self._motion_sink is not None:
            self._motion_sink(
                MotionSample(
                    self.camera, self._second_us, self._second_score, bytes(self._second_grid)
                )
            )
        self._second_score = 0.0
        self._second_grid = bytearray(32)

    def tick(self, now_us: int) -> None:
        """Ends conditions whose frames stopped coming (a camera that went offline during
        motion). Called by the pool, serialised with :meth:`process`."""
        with self._work:
            for key in list(self._conditions):
                self._observe(key, False, now_us, None)
            if self._second_us >= 0 and now_us - self._second_us > 2_000_000:
                self._flush_motion()
                self._second_us = -1

    def close(self) -> None:
        with self._work:
            self._flush_motion()
            self._ctx = None
            self._detector = None


class AnalysisPool:
    """Threads that run cameras' analysis; a camera is on at most one thread at a time."""

    def __init__(self, threads: int) -> None:
        self._ex = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="vmscore-analysis")
        self.threads = threads
        self._closed = False

    def schedule(self, cam: CameraAnalysis) -> None:
        if not self._closed:
            self._ex.submit(self._run, cam)

    def call(self, fn: Callable[[], None]) -> None:
        if not self._closed:
            self._ex.submit(fn)

    def _run(self, cam: CameraAnalysis) -> None:
        try:
            cam.process()
        except Exception:
            log.exception("camera %s: analysis failed", cam.camera)
        if cam.finish_run():
            self.schedule(cam)

    def close(self) -> None:
        self._closed = True
        self._ex.shutdown(wait=True, cancel_futures=True)
