"""The recorder against real parts: simulated cameras over RTSP, the native ring and writer threads,
segment files checked with PyAV, SQLite, real fsync, and a small tmpfs for a full disk."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from record_helpers import check_recording, now_us, recording_station, wait_for
from vmscore.record import RecorderNotice, RecordingIndex, RecordingSettings, StorageLocation
from vmscore.sim.encode import EncodedStream

SEC = 1_000_000


@pytest.fixture(scope="module")
def clip(encode: Callable[..., EncodedStream]) -> EncodedStream:
    """4 s of 320x240 at 25 fps, a keyframe every second."""
    return encode("h264", 320, 240, 100, 25)


def address(au: object) -> int:
    return int(np.frombuffer(au, dtype=np.uint8).ctypes.data)  # type: ignore[call-overload]


def test_continuous_segments_rotate_at_keyframes_and_are_indexed(
    tmp_path: Path, clip: EncodedStream
) -> None:
    settings = RecordingSettings(storage="disk1", segment_s=2.0)
    with recording_station(tmp_path, clip, {"cam1": settings}, flush_interval=0.5) as (_, _, rec):
        wait_for(lambda: len(rec.recordings("cam1")) >= 3, 20, "three finished segments")
        rec.flush()
        rows = rec.recordings("cam1")
    for r in rows:
        check_recording(tmp_path / "disk1", r)
        # One directory per camera and day; rotated at the first keyframe after the target.
        day = time.strftime("%Y-%m-%d", time.gmtime(r.start_wall_us / SEC))
        assert r.path.startswith(f"cam1/{day}/") and r.path.endswith("-main.mp4")
        if r.end_reason == "rotated":
            # (the first is 1-3 s to reach its stream's rotation grid, plus up to a GOP)
            assert 0.9 * SEC <= r.end_wall_us - r.start_wall_us <= 4.1 * SEC
    # Consecutive segments join without a hole: each starts where the previous ended.
    for a, b in itertools.pairwise(rows):
        assert abs(b.start_wall_us - a.end_wall_us) < 50_000
        assert b.start_90k == a.end_90k
    # A fragment at least every flush interval: 0.5 s at 25 fps is 13 frames or fewer.
    assert all(len(r.keyframe_positions()) >= 1 for r in rows)


def test_rotation_is_staggered_across_cameras(tmp_path: Path, clip: EncodedStream) -> None:
    """Eight cameras showing the same clip, started together: each rotates on its own grid
    (its offset modulo the segment length, from its id), at the first keyframe after it, so their
    segments do not all close and fsync in the same instant."""
    seg = 4 * SEC
    names = [f"cam{i}" for i in range(8)]
    cameras = {n: RecordingSettings(storage="disk1", segment_s=seg / SEC) for n in names}
    with recording_station(tmp_path, clip, cameras, flush_interval=0.5) as (_, _, rec):

        def rotated() -> dict[str, list[int]]:
            out = {n: [r.end_wall_us for r in rec.recordings(n) if r.end_reason == "rotated"]
                   for n in names}  # fmt: skip
            return out if all(out.values()) else {}

        ends = wait_for(rotated, 30, "a rotation of every camera")
        offsets = {n: rec.stats(n).rotation_offset_us for n in names}
    assert all(0 <= o < seg for o in offsets.values()), offsets
    # Spread: the offsets fall in at least three of the segment's four seconds.
    assert len({o // SEC for o in offsets.values()}) >= 3, offsets
    for n in names:
        for end in ends[n]:
            # The first keyframe (one a second) at or after the stream's grid line.
            late = (end - offsets[n]) % seg
            assert late <= 1.1 * SEC, (n, end, offsets[n], late)
    # And so the cameras' rotations are not one burst: they cover at least three seconds.
    phases = {((e % seg) // SEC) for v in ends.values() for e in v}
    assert len(phases) >= 3, phases


def test_ring_shares_buffers_starts_at_keyframes_and_is_bounded(
    tmp_path: Path, clip: EncodedStream
) -> None:
    settings = RecordingSettings(storage="disk1", mode="event", ring_s=2.0, pre_roll_s=0)
    with recording_station(tmp_path, clip, {"cam1": settings}) as (_, _, rec):
        wait_for(lambda: rec.stats("cam1").ring.trimmed_units > 0, 15, "a full ring")
        a = rec.units_from("cam1", 1)  # from the oldest keyframe
        b = rec.units_from("cam1", 1)
        assert a[0].is_keyframe and len(a) >= 25
        # Readers share the bytes: the same buffer, not a copy (the ring may have moved on
        # between the two reads; compare the units both hold).
        first = {x.wall_time_us: address(x) for x in a}
        shared = [(first[x.wall_time_us], address(x)) for x in b if x.wall_time_us in first]
        assert len(shared) >= 10 and all(p == q for p, q in shared)
        for _ in range(50):  # a snapshot taken while the ring did not change
            stats = rec.stats("cam1").ring
            units = rec.units_from("cam1", 1)
            if rec.stats("cam1").ring.end_seq == stats.end_seq:
                break
        span = stats.last_wall_us - stats.first_wall_us
        # At least ring_s (2 s) is kept, plus at most one GOP (1 s) beyond it.
        assert 2 * SEC <= span <= 3.2 * SEC
        assert stats.bytes == sum(x.size for x in units) and stats.units == len(units)
        latest = rec.units_from("cam1", 0)
        assert latest[0].is_keyframe and len(latest) <= 26


def test_global_memory_cap_bounds_the_rings(tmp_path: Path, clip: EncodedStream) -> None:
    cams = {f"cam{i}": RecordingSettings(storage="disk1", mode="event") for i in range(3)}
    cap = 200_000
    with recording_station(tmp_path, clip, cams, memory_cap=cap) as (_, _, rec):
        wait_for(lambda: all(rec.stats(c).ring.units >= 30 for c in cams), 15, "rings filling")
        time.sleep(3)
        # Each ring keeps its newest GOP whatever the cap; beyond that the cap holds.
        gops = sum(len(rec.units_from(c, 0)) for c in cams)
        assert gops > 0
        largest_gop = max(sum(u.size for u in rec.units_from(c, 0)) for c in cams)
        assert rec.memory_used <= cap + 3 * 2 * largest_gop
        assert all(rec.stats(c).ring.trimmed_units > 0 for c in cams)


def test_event_recording_starts_exactly_at_the_keyframe_before_pre_roll(
    tmp_path: Path, clip: EncodedStream
) -> None:
    settings = RecordingSettings(storage="disk1", mode="event", pre_roll_s=1.5, post_roll_s=1.0)
    with recording_station(tmp_path, clip, {"cam1": settings}) as (_, _, rec):
        wait_for(lambda: rec.stats("cam1").ring.keyframes >= 4, 15, "pre-roll in the ring")
        assert rec.recordings("cam1") == []  # nothing recorded without an event
        trigger = rec.units_from("cam1", 0)[-1].wall_time_us - 200_000
        expected_first = rec.units_from("cam1", trigger - int(1.5 * SEC))[0]
        assert expected_first.is_keyframe
        event_id = rec.trigger("cam1", trigger, trigger + SEC, kind="motion")
        wait_for(lambda: len(rec.recordings("cam1")) >= 1, 15, "the event recording")
        rec.flush()
        rows = rec.recordings("cam1")
        events = rec.events("cam1")
    assert len(rows) == 1
    r = rows[0]
    check_recording(tmp_path / "disk1", r)
    assert r.start_wall_us == expected_first.wall_time_us
    assert r.start_90k == expected_first.dts_90k
    assert r.end_reason == "event_end"
    # Ends at the first keyframe after the event's end plus post-roll (GOP 1 s).
    assert trigger + 2 * SEC <= r.end_wall_us <= trigger + 3 * SEC + 80_000
    assert [e.id for e in events if e.kind == "motion"] == [event_id]


def test_extended_event_keeps_one_recording(tmp_path: Path, clip: EncodedStream) -> None:
    settings = RecordingSettings(storage="disk1", mode="event", pre_roll_s=0.5, post_roll_s=0.5)
    with recording_station(tmp_path, clip, {"cam1": settings}) as (_, _, rec):
        wait_for(lambda: rec.stats("cam1").ring.keyframes >= 2, 15, "frames")
        start = now_us()
        event = rec.trigger("cam1", start, start + SEC)
        time.sleep(0.8)
        rec.trigger("cam1", start, start + 3 * SEC, event_id=event)
        wait_for(lambda: len(rec.recordings("cam1")) >= 1, 15, "the recording")
        rec.flush()
        rows = rec.recordings("cam1")
        events = rec.events("cam1")
    assert len(rows) == 1 and rows[0].end_wall_us >= start + 3.5 * SEC - 80_000
    assert events[0].end_wall_us == start + 3 * SEC


def test_back_to_back_events_lose_nothing_in_between(tmp_path: Path, clip: EncodedStream) -> None:
    """A second event whose pre-roll reaches into footage after the first recording ended is
    recorded from the keyframe before that point (at most one GOP twice, never a hole)."""
    settings = RecordingSettings(storage="disk1", mode="event", pre_roll_s=1.5, post_roll_s=0.3)
    with recording_station(tmp_path, clip, {"cam1": settings}) as (_, _, rec):
        wait_for(lambda: rec.stats("cam1").ring.keyframes >= 3, 15, "frames")
        t = rec.units_from("cam1", 0)[-1].wall_time_us
        rec.trigger("cam1", t, t)
        wait_for(lambda: len(rec.recordings("cam1")) >= 1, 15, "the first recording")
        wait_for(lambda: rec.units_from("cam1", 0)[-1].wall_time_us > t + 1_900_000, 15, "time")
        rec.trigger("cam1", t + 1_900_000, t + 1_900_000)
        wait_for(lambda: len(rec.recordings("cam1")) >= 2, 15, "the second recording")
        rec.flush()
        rows = rec.recordings("cam1")
    first, second = rows
    assert first.start_wall_us <= t - 1.5 * SEC and first.end_wall_us >= t + 0.3 * SEC
    # The second event asked for footage from t + 0.4 s: together the two recordings cover it
    # from there without a hole, and no frame is in both (the first ended at a keyframe, the
    # second starts at the keyframe at or before its pre-roll, or at that one).
    assert second.start_wall_us <= max(t + 0.4 * SEC, first.end_wall_us + 20_000)
    assert second.start_wall_us >= first.end_wall_us - 20_000
    assert second.end_wall_us >= t + 2.2 * SEC


def test_camera_disconnect_closes_the_segment_and_records_a_gap(
    tmp_path: Path, clip: EncodedStream
) -> None:
    settings = RecordingSettings(storage="disk1", segment_s=30.0)
    notices: list[RecorderNotice] = []
    with recording_station(tmp_path, clip, {"cam1": settings}) as (server, _, rec):
        rec.add_listener(notices.append)
        wait_for(lambda: rec.stats("cam1").frames_written >= 25, 15, "recording")
        server.drop_connections("cam1")
        wait_for(lambda: len(rec.recordings("cam1")) >= 1, 15, "the segment closed on disconnect")
        wait_for(lambda: len(rec.gaps("cam1")) >= 1, 20, "the gap when the camera is back")
        rec.flush()
        rows = rec.recordings("cam1")
        gaps = rec.gaps("cam1")
    assert rows[0].end_reason == "camera_disconnected"
    check_recording(tmp_path / "disk1", rows[0])
    assert gaps[0].reason == "camera disconnected"
    assert gaps[0].start_wall_us == pytest.approx(rows[0].end_wall_us, abs=100_000)
    assert any(n.kind == "gap" for n in notices)


def test_cameras_record_to_their_own_storage_locations(tmp_path: Path, clip: EncodedStream) -> None:
    storages = [
        StorageLocation(name="disk1", path=tmp_path / "disk1"),
        StorageLocation(name="disk2", path=tmp_path / "disk2"),
    ]
    cams = {
        "gate": RecordingSettings(storage="disk1", segment_s=1.0),
        "gym": RecordingSettings(storage="disk2", segment_s=1.0),
        "hall": RecordingSettings(storage="disk2", segment_s=1.0),
    }
    with recording_station(tmp_path, clip, cams, storages=storages) as (_, _, rec):
        wait_for(lambda: all(len(rec.recordings(c)) >= 2 for c in cams), 30, "segments")
        rec.flush()
        stats = {s.name: s for s in rec.storage_stats()}
        for camera, settings in cams.items():
            for r in rec.recordings(camera):
                assert r.storage == settings.storage and r.path.startswith(f"{camera}/")
                check_recording(tmp_path / settings.storage, r)
    assert not (tmp_path / "disk1" / "gym").exists() and not (tmp_path / "disk2" / "gate").exists()
    assert stats["disk2"].bytes_written > stats["disk1"].bytes_written > 0


def test_close_indexes_the_open_segment_and_nothing_is_left_unindexed(
    tmp_path: Path, clip: EncodedStream
) -> None:
    with recording_station(tmp_path, clip) as (_, _, rec):
        wait_for(lambda: rec.stats("cam1").frames_written >= 30, 15, "recording")
    # close() happened: reopen the index and compare with the disk.
    index = RecordingIndex(tmp_path / "index.db")
    rows = index.recordings("cam1")
    files = sorted(p.relative_to(tmp_path / "disk1").as_posix() for p in tmp_path.rglob("*.mp4"))
    assert [r.path for r in rows] == files and rows[-1].end_reason == "stopped"
    index.close()


def test_a_disk_that_falls_behind_gets_gaps_not_a_stalled_camera(
    tmp_path: Path, clip: EncodedStream
) -> None:
    # The camera sends about 25 kB/s; the storage takes 6 kB/s.
    storage = StorageLocation(name="slow", path=tmp_path / "slow", max_write_bytes_per_s=6000)
    settings = RecordingSettings(storage="slow", segment_s=2.0, ring_s=1.0, pre_roll_s=0)
    notices: list[RecorderNotice] = []
    with recording_station(
        tmp_path, clip, {"cam1": settings}, storages=[storage], flush_interval=0.5
    ) as (_, engine, rec):
        rec.add_listener(notices.append)
        wait_for(lambda: any(n.kind == "gap" for n in notices), 30, "a gap")
        frames = engine.stats("cam1").frames
        time.sleep(2)
        # Ingest did not slow down: 25 frames a second still arrive.
        assert engine.stats("cam1").frames - frames >= 40
        assert rec.stats("cam1").ring.trimmed_units > 0
    gap = next(n for n in notices if n.kind == "gap")
    assert "storage too slow" in gap.reason and gap.end_wall_us > gap.start_wall_us
    index = RecordingIndex(tmp_path / "index.db")
    assert any("storage too slow" in g.reason for g in index.gaps("cam1"))
    for r in index.recordings("cam1"):
        check_recording(tmp_path / "slow", r)
    index.close()


# -- retention, locks --------------------------------------------------------------------------


def test_retention_by_bytes_keeps_locked_footage_until_the_lock_is_lifted(
    tmp_path: Path, clip: EncodedStream
) -> None:
    settings = RecordingSettings(storage="disk1", segment_s=1.0)
    with recording_station(tmp_path, clip, {"cam1": settings}) as (_, _, rec):
        wait_for(lambda: len(rec.recordings("cam1")) >= 5, 30, "five segments")
        rec.flush()
        rows = rec.recordings("cam1")
        first, second = rows[0], rows[1]
        # Inside the first segment only (a lock that touches a neighbour keeps it too).
        lock = rec.lock(
            "cam1", first.start_wall_us, first.end_wall_us - 100_000, reason="case 2026-114",
            owner="ops",
        )  # fmt: skip
        rec.remove_camera("cam1")
        rec.flush()
        rows = rec.recordings("cam1")
        budget = rows[-1].bytes + rows[-2].bytes
        rec.add_camera("cam1", "cam1", settings.model_copy(update={"max_bytes": budget}))
        plan = rec.apply_retention()
        kept = {r.path for r in rec.recordings("cam1")}
        assert first.path in kept and second.path not in kept
        assert plan.kept_for_locks >= 1
        assert not (tmp_path / "disk1" / second.path).exists()
        assert rec.index.garbage() == []
        assert [lk.id for lk in rec.locks("cam1")] == [lock]
        rec.unlock(lock, by="ops")
        assert rec.locks("cam1") == [] and len(rec.locks("cam1", include_inactive=True)) == 1
        rec.remove_camera("cam1")
        rec.add_camera("cam1", "cam1", settings.model_copy(update={"max_bytes": 1}))
        rec.apply_retention()
        assert first.path not in {r.path for r in rec.recordings("cam1")}
        assert not (tmp_path / "disk1" / first.path).exists()


def test_retention_by_age_and_expired_locks(tmp_path: Path, clip: EncodedStream) -> None:
    settings = RecordingSettings(storage="disk1", segment_s=1.0, max_age_s=3600)
    with recording_station(tmp_path, clip, {"cam1": settings}) as (_, _, rec):
        wait_for(lambda: len(rec.recordings("cam1")) >= 3, 30, "segments")
        rec.flush()
        rows = rec.recordings("cam1")
        rec.lock("cam1", rows[0].start_wall_us, rows[0].end_wall_us - 100_000, reason="r",
                 owner="o", expires_wall_us=now_us() + 4 * 3600 * SEC)  # fmt: skip
        assert rec.apply_retention().delete == []  # nothing is an hour old
        plan = rec.apply_retention(at_us=now_us() + 3 * 3600 * SEC)
        assert rows[0].id not in {r.id for r in plan.delete}  # locked for one more hour
        assert {r.id for r in rows[1:]} <= {r.id for r in plan.delete}
        plan = rec.apply_retention(at_us=now_us() + 5 * 3600 * SEC)  # the lock has expired
        assert rows[0].id in {r.id for r in plan.delete}


# -- disk full ----------------------------------------------------------------------------------


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 3 MiB tmpfs (needs root, as CI and the test machine have)."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_full_disk_raises_an_event_and_recording_resumes_when_space_returns(
    tmp_path: Path, small_tmpfs: Path, clip: EncodedStream
) -> None:
    storage = StorageLocation(name="small", path=small_tmpfs)
    settings = RecordingSettings(storage="small", segment_s=1.0)
    notices: list[RecorderNotice] = []
    filler = small_tmpfs / "filler"
    with recording_station(
        tmp_path, clip, {"cam1": settings}, storages=[storage], retry_interval=0.3
    ) as (_, _, rec):
        rec.add_listener(notices.append)
        wait_for(lambda: len(rec.recordings("cam1")) >= 1, 20, "a first segment")
        # Fill the disk.
        try:
            with filler.open("wb") as f:
                while True:
                    f.write(b"\0" * 65536)
        except OSError:
            pass
        wait_for(lambda: any(n.kind == "storage_error" for n in notices), 20, "storage_error")
        assert "No space left" in next(n for n in notices if n.kind == "storage_error").reason
        filler.unlink()
        wait_for(lambda: any(n.kind == "storage_ok" for n in notices), 20, "storage_ok")
        after = now_us()
        wait_for(
            lambda: any(r.start_wall_us > after for r in rec.recordings("cam1")), 20,
            "a segment after the disk had space again",
        )  # fmt: skip
        gaps = rec.gaps("cam1")
    # The index is intact: every row's file is whole and decodes; nothing unindexed is left.
    index = RecordingIndex(tmp_path / "index.db")
    rows = index.recordings("cam1")
    index.close()
    for r in rows:
        check_recording(small_tmpfs, r)
    assert {r.path for r in rows} == {
        p.relative_to(small_tmpfs).as_posix() for p in small_tmpfs.rglob("*.mp4")
    }
    assert any("No space left" in g.reason for g in gaps)
