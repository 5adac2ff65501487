"""Export from the recorder (exact range across segments, HTTP-style range reads, signed export
checked by `vmscore verify`) and start-up recovery of every kind of leftover on disk."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import av
import pytest

from record_helpers import check_recording, decoded_frames, recording_station, wait_for
from vmscore.record import RecordingIndex, RecordingSettings
from vmscore.record.recovery import recover
from vmscore.record.signing import StationKey, verify_export
from vmscore.sim.encode import EncodedStream

SEC = 1_000_000


@pytest.fixture(scope="module")
def clip(encode: Callable[..., EncodedStream]) -> EncodedStream:
    return encode("h264", 320, 240, 100, 25)


def test_export_across_segments_starts_exactly_at_the_requested_time(
    tmp_path: Path, clip: EncodedStream
) -> None:
    settings = RecordingSettings(storage="disk1", segment_s=1.0)
    with recording_station(tmp_path, clip, {"cam1": settings}) as (_, _, rec):
        wait_for(lambda: len(rec.recordings("cam1")) >= 4, 30, "four segments")
        rec.flush()
        rows = rec.recordings("cam1")
        # From inside the first segment (not on a keyframe) to inside the fourth.
        start = rows[0].start_wall_us + 520_000
        end = rows[3].start_wall_us + 300_000
        out = tmp_path / "export.mp4"
        seen: list[tuple[int, int]] = []
        plan = rec.export(
            "cam1", start, end, out, progress=lambda done, total: seen.append((done, total))
        )
        data = out.read_bytes()
        assert len(data) == plan.size and seen and seen[-1][0] == seen[-1][1] == plan.size
        # The same bytes through range reads (what an HTTP Range request gets).
        plan2 = rec.export_plan("cam1", start, end)
        for offset, length in [(0, 100), (plan.size // 3, 65536), (plan.size - 10, 10)]:
            assert plan2.read(offset, length) == data[offset : offset + length]
        assert plan.segments_used >= 4
        assert plan.first_sample_wall_us <= start < plan.first_sample_wall_us + SEC
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        frames = [f for f in container.decode(stream) if f.pts is not None and f.pts >= 0]
        assert stream.time_base is not None
        duration = float(container.duration or 0) / 1e6
    # Playback begins at the requested start and lasts until the end (25 fps: 40 ms frames).
    assert duration == pytest.approx((end - start) / 1e6, abs=0.05)
    assert len(frames) == pytest.approx((end - start) / 40_000, abs=2)


def test_signed_export_verifies_and_a_flipped_byte_is_found(
    tmp_path: Path, clip: EncodedStream
) -> None:
    key = StationKey.create(tmp_path / "station.key")
    settings = RecordingSettings(storage="disk1", segment_s=1.0)
    out = tmp_path / "evidence.mp4"
    with recording_station(tmp_path, clip, {"cam1": settings}) as (_, _, rec):
        wait_for(lambda: len(rec.recordings("cam1")) >= 3, 30, "segments")
        rec.flush()
        rows = rec.recordings("cam1")
        start, end = rows[0].start_wall_us + 100_000, rows[2].end_wall_us - 100_000
        manifest = rec.export_signed(
            "cam1", start, end, out, key=key, exporter="operator 7", station="central"
        )
    assert verify_export(out, trusted_keys=[key.public_key]).valid
    doc = json.loads(manifest.read_text())
    assert doc["camera"] == "cam1" and doc["exporter"] == "operator 7"
    cli = [sys.executable, "-m", "vmscore", "verify", str(out)]
    assert subprocess.run(cli, capture_output=True, check=False).returncode == 0
    # Flip one byte in the middle of the media data.
    data = bytearray(out.read_bytes())
    data[len(data) * 2 // 3] ^= 0x40
    out.write_bytes(bytes(data))
    report = verify_export(out)
    assert not report.valid and report.damage
    assert subprocess.run(cli, capture_output=True, check=False).returncode == 1


def test_recovery_trims_indexes_removes_orphans_and_finishes_deletions(
    tmp_path: Path, clip: EncodedStream
) -> None:
    settings = RecordingSettings(storage="disk1", segment_s=1.0)
    root = tmp_path / "disk1"
    # Fragments every 0.3 s: a cut in the last one leaves the others.
    with recording_station(tmp_path, clip, {"cam1": settings}, flush_interval=0.3) as (_, _, rec):
        wait_for(lambda: len(rec.recordings("cam1")) >= 5, 30, "segments")
    index = RecordingIndex(tmp_path / "index.db")
    rows = index.recordings("cam1")
    crashed, deleting, missing = rows[1], rows[2], rows[3]
    # A segment that was being written: not in the index, cut in its last fragment.
    index.forget_recordings([crashed.id])
    os.truncate(root / crashed.path, crashed.bytes - 700)
    # A deletion interrupted after the garbage row was committed.
    index.move_to_garbage([deleting], "test", 0)
    # A file that vanished, and a file that is not a segment.
    (root / missing.path).unlink()
    junk = root / "cam1" / rows[0].path.split("/")[1] / "20260101T000000.000Z-main.mp4"
    junk.write_bytes(b"\0" * 5000)
    report = recover(index, {"disk1": root}, lambda *_: None)
    assert report.recovered == [f"disk1/{crashed.path}"] and report.trimmed_bytes > 0
    assert report.garbage_removed == 1 and not (root / deleting.path).exists()
    assert report.missing == [f"disk1/{missing.path}"]
    assert len(report.orphans_removed) == 1 and not junk.exists()
    after = index.recordings("cam1")
    assert {r.path for r in after} == {p.relative_to(root).as_posix() for p in root.rglob("*.mp4")}
    again = next(r for r in after if r.path == crashed.path)
    assert again.recovered and again.start_wall_us == crashed.start_wall_us
    assert again.frames < crashed.frames and decoded_frames(root / again.path) == again.frames
    for r in after:
        check_recording(root, r)
    assert any("missing" in g.reason for g in index.gaps("cam1"))
    assert index.garbage() == []
    index.close()
