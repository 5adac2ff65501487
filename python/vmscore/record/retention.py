"""Retention: which recordings to delete, decided from the index alone (pure, deterministic), and
the deletion itself through the garbage table.

Rules, applied in this order:
- per camera, recordings that ended longer ago than the camera's maximum age;
- per camera in ``continuous_events`` mode, recordings without events (an event's window with
  its pre- and post-roll) older than the shorter age for footage without events;
- per camera, the oldest recordings while the camera's footage exceeds its byte budget;
- per storage location, while free space is below the location's floor, the oldest recordings
  on it across cameras (Milestone's thresholds; Frigate's emergency cleanup).
A recording overlapping an active evidence lock of its camera is never deleted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vmscore.record.files import fsync_directory
from vmscore.record.index import Event, EvidenceLock, Recording, RecordingIndex


@dataclass(frozen=True)
class CameraRetention:
    max_age_us: int | None = None
    max_bytes: int | None = None
    # Footage without events is kept only this long (continuous_events mode); None: as long as
    # the rest.
    no_event_max_age_us: int | None = None
    event_pre_us: int = 0
    event_post_us: int = 0


@dataclass
class RetentionPlan:
    delete: list[Recording] = field(default_factory=list)
    reasons: dict[int, str] = field(default_factory=dict)
    kept_for_locks: int = 0  # recordings a rule would delete but a lock keeps
    storage_short: dict[str, int] = field(default_factory=dict)  # bytes still missing per location

    def add(self, r: Recording, reason: str) -> None:
        if r.id not in self.reasons:
            self.delete.append(r)
            self.reasons[r.id] = reason


def _overlaps(r: Recording, start: int, end: int) -> bool:
    return r.start_wall_us < end and start < r.end_wall_us


def locked(r: Recording, locks: Iterable[EvidenceLock], now_us: int) -> bool:
    return any(
        lk.camera == r.camera
        and lk.active(now_us)
        and _overlaps(r, lk.start_wall_us, lk.end_wall_us)
        for lk in locks
    )


def plan_retention(
    recordings: Sequence[Recording],
    rules: dict[str, CameraRetention],
    locks: Sequence[EvidenceLock],
    events: Sequence[Event],
    free_bytes: dict[str, int],
    floors: dict[str, int],
    now_us: int,
) -> RetentionPlan:
    """Decides what to delete. ``recordings`` oldest first; ``free_bytes`` and ``floors`` per
    storage location."""
    plan = RetentionPlan()

    def consider(r: Recording, reason: str) -> None:
        if r.id in plan.reasons:
            return
        if locked(r, locks, now_us):
            plan.kept_for_locks += 1
            return
        plan.add(r, reason)

    by_camera: dict[str, list[Recording]] = {}
    for r in recordings:
        by_camera.setdefault(r.camera, []).append(r)
    for camera, rows in by_camera.items():
        rule = rules.get(camera)
        if rule is None:
            continue
        if rule.max_age_us is not None:
            for r in rows:
                if r.end_wall_us < now_us - rule.max_age_us:
                    consider(r, "age")
        if rule.no_event_max_age_us is not None:
            windows = [
                (e.start_wall_us - rule.event_pre_us, e.end_wall_us + rule.event_post_us)
                for e in events
                if e.camera == camera
            ]
            for r in rows:
                if r.end_wall_us < now_us - rule.no_event_max_age_us and not any(
                    _overlaps(r, a, b) for a, b in windows
                ):
                    consider(r, "no events")
        if rule.max_bytes is not None:
            total = sum(r.bytes for r in rows if r.id not in plan.reasons)
            for r in rows:
                if total <= rule.max_bytes:
                    break
                if r.id in plan.reasons:
                    continue
                before = len(plan.reasons)
                consider(r, "camera byte budget")
                if len(plan.reasons) > before:
                    total -= r.bytes

    for storage, floor in floors.items():
        free = free_bytes.get(storage)
        if free is None or floor <= 0:
            continue
        need = floor - free - sum(r.bytes for r in plan.delete if r.storage == storage)
        for r in recordings:
            if need <= 0:
                break
            if r.storage != storage or r.id in plan.reasons:
                continue
            before = len(plan.reasons)
            consider(r, "free space floor")
            if len(plan.reasons) > before:
                need -= r.bytes
        if need > 0:
            plan.storage_short[storage] = need
    return plan


def collect_garbage(
    index: RecordingIndex,
    roots: dict[str, Path],
    on_error: Callable[[str], None] | None = None,
) -> tuple[int, int]:
    """Unlinks every file listed in the garbage table, fsyncs their directories, then forgets
    the rows. Returns (files, bytes). Also used at start-up: a crash in the middle of a deletion
    is finished here."""
    rows = index.garbage()
    dirs: set[Path] = set()
    done: list[int] = []
    total = 0
    for g in rows:
        root = roots.get(g.storage)
        if root is None:
            continue  # a storage location no longer configured: keep the row
        path = root / g.path
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError as err:
            if on_error:
                on_error(f"cannot delete {path}: {err.strerror}")
            continue
        dirs.add(path.parent)
        done.append(g.id)
        total += g.bytes
    for d in dirs:
        try:
            fsync_directory(d)
            if d.is_dir() and not any(d.iterdir()):
                d.rmdir()  # an emptied day directory
                fsync_directory(d.parent)
        except OSError as err:
            if on_error:
                on_error(f"cannot sync {d}: {err.strerror}")
    index.forget_garbage(done)
    return len(done), total


def delete_recordings(
    index: RecordingIndex,
    roots: dict[str, Path],
    plan: RetentionPlan,
    now_us: int,
    on_error: Callable[[str], None] | None = None,
) -> tuple[int, int]:
    """Carries out a plan: rows to garbage (one transaction per reason), files unlinked,
    directories synced, garbage rows dropped."""
    by_reason: dict[str, list[Recording]] = {}
    for r in plan.delete:
        by_reason.setdefault(plan.reasons[r.id], []).append(r)
    for reason, rows in by_reason.items():
        index.move_to_garbage(rows, reason, now_us)
    return collect_garbage(index, roots, on_error)
