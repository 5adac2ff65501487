"""Retention rules, decided from index rows alone: deterministic, each rule checked exactly."""

from __future__ import annotations

from vmscore.record.index import Event, EvidenceLock, Recording
from vmscore.record.retention import CameraRetention, plan_retention

MIN = 60_000_000
NOW = 1_000_000 * MIN


def rec(id: int, camera: str, start_min: int, size: int = 100, storage: str = "a") -> Recording:
    return Recording(
        id=id, camera=camera, stream="main", storage=storage, path=f"{camera}/{id}.mp4",
        start_wall_us=NOW - start_min * MIN, end_wall_us=NOW - (start_min - 1) * MIN,
        start_90k=0, end_90k=90000 * 60, bytes=size, frames=1500, codec="avc1.64001f",
        width=1920, height=1080, keyframes=b"", sha256="0" * 64, end_reason="rotated",
    )  # fmt: skip


def lock(camera: str, start_min: int, end_min: int, expires: int | None = None) -> EvidenceLock:
    return EvidenceLock(
        1, camera, NOW - start_min * MIN, NOW - end_min * MIN, "case", "ops", NOW, expires, None,
        None,
    )  # fmt: skip


def ids(plan_delete: list[Recording]) -> list[int]:
    return sorted(r.id for r in plan_delete)


# Ten one-minute recordings per camera, oldest first: id 1 started 10 minutes ago.
ROWS = [rec(i, "cam1", 11 - i) for i in range(1, 11)] + [
    rec(10 + i, "cam2", 11 - i) for i in range(1, 11)
]


def test_age_limit_per_camera() -> None:
    plan = plan_retention(ROWS, {"cam1": CameraRetention(max_age_us=5 * MIN)}, [], [], {}, {}, NOW)
    # Recordings that ended more than 5 minutes ago: ids 1..5 (ended 9..5 minutes ago, id 5 at
    # exactly 5 is kept).
    assert ids(plan.delete) == [1, 2, 3, 4]
    assert set(plan.reasons.values()) == {"age"}


def test_byte_budget_deletes_oldest_first() -> None:
    plan = plan_retention(ROWS, {"cam2": CameraRetention(max_bytes=350)}, [], [], {}, {}, NOW)
    assert ids(plan.delete) == list(range(11, 18))  # 3 newest kept


def test_locks_keep_footage_and_expire() -> None:
    rules = {"cam1": CameraRetention(max_age_us=2 * MIN)}
    locked = [lock("cam1", 9, 8 + 0)]  # overlaps ids 2 and 3 (minutes 9..8 ago)
    plan = plan_retention(ROWS, rules, locked, [], {}, {}, NOW)
    assert 2 not in ids(plan.delete) and plan.kept_for_locks >= 1
    expired = [lock("cam1", 9, 8, expires=NOW - 1)]
    plan = plan_retention(ROWS, rules, expired, [], {}, {}, NOW)
    assert 2 in ids(plan.delete)
    other_camera = [lock("cam2", 9, 8)]
    assert 2 in ids(plan_retention(ROWS, rules, other_camera, [], {}, {}, NOW).delete)


def test_footage_without_events_is_kept_shorter() -> None:
    rules = {"cam1": CameraRetention(no_event_max_age_us=3 * MIN, event_pre_us=MIN // 2)}
    # An event 6.2 minutes ago: with its pre-roll it touches the recording of minutes 7..6.
    event = Event(1, "cam1", "motion", NOW - int(6.2 * MIN), NOW - int(6.1 * MIN), "{}")
    plan = plan_retention(ROWS, rules, [], [event], {}, {}, NOW)
    kept_for_event = next(
        r.id for r in ROWS if r.start_wall_us <= event.start_wall_us < r.end_wall_us
    )
    assert kept_for_event not in ids(plan.delete)
    assert ids(plan.delete) == [i for i in range(1, 7) if i != kept_for_event]
    assert set(plan.reasons.values()) == {"no events"}


def test_free_space_floor_deletes_oldest_on_that_storage_across_cameras() -> None:
    rows = sorted(
        [rec(i, "cam1", 11 - i, storage="a") for i in range(1, 6)]
        + [rec(10 + i, "cam2", 11 - i - 0, storage="b") for i in range(1, 6)]
        + [rec(20 + i, "cam3", 11 - i, storage="a", size=50) for i in range(1, 6)],
        key=lambda r: r.start_wall_us,
    )
    plan = plan_retention(
        rows, {}, [lock("cam3", 11, 9)], [], {"a": 100, "b": 0}, {"a": 300, "b": 0}, NOW
    )
    # 200 bytes needed on "a": the oldest there are cam1's id 1 (100) and cam3's id 21 (locked),
    # then cam1's id 2 (100). Nothing on "b" is touched.
    assert ids(plan.delete) == [1, 2] and plan.kept_for_locks == 1
    assert set(plan.reasons.values()) == {"free space floor"}
    assert plan.storage_short == {}


def test_floor_that_cannot_be_met_is_reported() -> None:
    rows = [rec(1, "cam1", 3), rec(2, "cam1", 2)]
    plan = plan_retention(rows, {}, [lock("cam1", 4, 0)], [], {"a": 0}, {"a": 1000}, NOW)
    assert plan.delete == [] and plan.storage_short == {"a": 1000}
