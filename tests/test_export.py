"""Export: one progressive MP4 for a wall-clock range across recorded segments.

Segments come from a simulated camera clip (vmscore.sim), cut into segment files the way the
recorder writes them. The output is judged by FFmpeg: ffprobe for the duration and the box tree,
PyAV for the frames (their times after the edit list, and their pixels against the segments'
own), ffmpeg for a stream whose parameter sets change between segments; tests/isobmff.py checks the
tables independently.
"""

from __future__ import annotations

import errno
import itertools
import os
import random
import shutil
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

import vmscore
from conftest import decode_luma, encoded, ffprobe
from isobmff import full_box, parse
from segments import metadata_text, segment_bytes, write_segment
from vmscore.sim import load_clip, write_clip
from vmscore.sim.encode import EncodedFrame, EncodedStream

T0 = 1_764_169_445_000_000  # a UTC microsecond wall time
S = 1_000_000  # one second in microseconds
FPS = 10


@dataclass
class Frame:
    wall_us: int
    luma: np.ndarray


@dataclass
class Segment:
    path: Path
    start_wall_us: int
    frames: list[Frame]  # decoded from the segment file itself, in display order


def make_segment(
    path: Path, codec: str, frames: list[EncodedFrame], start_wall_us: int, fps: float
) -> Segment:
    data = write_segment(path, codec, frames, metadata=metadata_text("cam1", start_wall_us, codec))
    lumas = decode_luma(data)
    step = round(S / fps)
    return Segment(
        path, start_wall_us, [Frame(start_wall_us + i * step, y) for i, y in enumerate(lumas)]
    )


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[EncodedStream, EncodedStream]:
    """6 s of a simulated camera at 10 fps: a 320x180 main stream and a 160x90 sub-stream."""
    out = tmp_path_factory.mktemp("clip")
    write_clip(
        out,
        "carpark",
        6.0,
        seed=4,
        main=(320, 180),
        sub=(160, 90),
        fps=FPS,
        gop=10,
        codec="h264",
        bitrate=600_000,
        sub_bitrate=200_000,
        preset="ultrafast",
    )
    loaded = load_clip(out)
    assert loaded.sub is not None
    return loaded.main, loaded.sub


@pytest.fixture(scope="module")
def segments(
    tmp_path_factory: pytest.TempPathFactory, clip: tuple[EncodedStream, EncodedStream]
) -> list[Segment]:
    """Three 2 s segments: A at T0, B right after it, C after a 1 s gap (the camera was off)."""
    main, _ = clip
    d = tmp_path_factory.mktemp("segments")
    starts = [T0, T0 + 2 * S, T0 + 5 * S]
    return [
        make_segment(d / f"{i}.mp4", "h264", main.frames[20 * i : 20 * i + 20], start, FPS)
        for i, start in enumerate(starts)
    ]


def plan_of(segs: list[Segment], start: int, end: int) -> vmscore.ExportPlan:
    return vmscore.ExportPlan([(s.path, s.start_wall_us) for s in segs], start, end)


def decoded_frames(path: Path) -> list[tuple[float, np.ndarray]]:
    """(time in seconds after the edit list, luma) of every frame FFmpeg shows."""
    with av.open(str(path)) as container:
        return [
            (float(f.time), f.to_ndarray(format="gray"))
            for f in container.decode(video=0)
            if f.time is not None
        ]


def expected_frames(segs: list[Segment], start: int, end: int) -> list[Frame]:
    return [f for s in segs for f in s.frames if start <= f.wall_us < end]


def check_frames(path: Path, segs: list[Segment], start: int, end: int) -> int:
    """Every source frame of [start, end) is shown, at its wall time, with its pixels."""
    got = decoded_frames(path)
    want = expected_frames(segs, start, end)
    assert len(got) == len(want)
    for (t, luma), frame in zip(got, want, strict=True):
        assert t == pytest.approx((frame.wall_us - start) / S, abs=0.002)
        assert np.array_equal(luma, frame.luma)
    return len(got)


def test_export_across_segments_with_a_gap_starts_at_the_requested_time(
    tmp_path: Path, segments: list[Segment]
) -> None:
    # 1.3 s is no keyframe (they are at whole seconds): the file starts at the keyframe at 1.0 s
    # and the edit list hides 0.3 s. The gap from 4 s to 5 s stays in the timeline.
    start, end = T0 + 1_300_000, T0 + 6_550_000
    plan = plan_of(segments, start, end)
    assert plan.first_sample_wall_us == T0 + S
    assert plan.lead_in_90k == 27_000
    assert plan.start_wall_us == start and plan.end_wall_us == end
    assert plan.duration_90k == 472_500  # 5.25 s
    assert plan.frames == 10 + 20 + 16
    assert plan.segments_used == 3 and plan.sample_descriptions == 1
    assert (plan.codec, plan.width, plan.height) == ("h264", 320, 180)

    out = tmp_path / "export.mp4"
    reports: list[tuple[int, int]] = []
    assert plan.write(out, progress=lambda done, total: reports.append((done, total))) == plan.size
    assert out.stat().st_size == plan.size
    assert reports and reports[-1] == (plan.size, plan.size)
    assert [d for d, _ in reports] == sorted(d for d, _ in reports)

    info, warnings = ffprobe(
        out,
        "-count_frames",
        "-show_entries",
        "stream=codec_name,width,height,nb_read_frames:format=duration",
    )
    assert warnings == ""
    (stream,) = info["streams"]  # type: ignore[misc]
    assert (stream["codec_name"], stream["width"], stream["height"]) == ("h264", 320, 180)
    assert float(info["format"]["duration"]) == pytest.approx(5.25, abs=1e-3)  # type: ignore[index]
    assert int(stream["nb_read_frames"]) == 7 + 20 + 16
    got = decoded_frames(out)
    assert got[0][0] == pytest.approx(0.0, abs=1 / FPS)  # playback begins at the start
    assert check_frames(out, segments, start, end) == 43
    times = [t for t, _ in got]
    gap = [b - a for a, b in itertools.pairwise(times) if b - a > 0.15]
    assert gap == [pytest.approx(1.1, abs=0.002)]  # frame at 3.9 s shown until 5.0 s


def test_the_box_tree_is_a_fast_start_mp4_with_one_chunk_per_segment(
    tmp_path: Path, segments: list[Segment]
) -> None:
    start, end = T0 + 1_300_000, T0 + 6_550_000
    plan = plan_of(segments, start, end)
    data = plan.read(0, plan.size)
    boxes = parse(data)
    assert [b.type for b in boxes] == [b"ftyp", b"moov", b"mdat"]
    assert boxes[0].data[:4] == b"isom" and b"avc1" in boxes[0].data[8:]
    stbl = boxes[1].find("trak/mdia/minf/stbl")
    assert [c.type for c in stbl.children] == [b"stsd", b"stts", b"stss", b"stsz", b"stsc", b"co64"]
    _, _, elst = full_box(boxes[1].find("trak/edts/elst"))
    count, duration, media_time = (int.from_bytes(elst[i : i + 4], "big") for i in (0, 4, 8))
    assert (count, duration, media_time) == (1, 472_500, 27_000)
    _, _, co64 = full_box(stbl.find("co64"))
    offsets = [int.from_bytes(co64[4 + 8 * i : 12 + 8 * i], "big") for i in range(3)]
    _, _, stsc = full_box(stbl.find("stsc"))
    assert int.from_bytes(stsc[:4], "big") >= 2  # 10 samples in the first chunk, then 20 and 16
    # Each chunk starts with the bytes of its segment's first exported sample.
    firsts = [
        vmscore.scan_segment(segments[0].path, samples=True).samples[10],
        vmscore.scan_segment(segments[1].path, samples=True).samples[0],
        vmscore.scan_segment(segments[2].path, samples=True).samples[0],
    ]
    for offset, sample, seg in zip(offsets, firsts, segments, strict=True):
        source = seg.path.read_bytes()[sample.offset : sample.offset + sample.size]
        assert data[offset : offset + sample.size] == source
    assert boxes[2].offset + boxes[2].header == offsets[0]
    assert boxes[2].offset + boxes[2].size == plan.size


def test_read_returns_any_byte_range_of_the_written_file(
    tmp_path: Path, segments: list[Segment]
) -> None:
    # HTTP Range requests will be served from read(): it must agree with write() byte for byte.
    plan = plan_of(segments, T0 + 500_000, T0 + 5_500_000)
    out = tmp_path / "export.mp4"
    plan.write(str(out))
    data = out.read_bytes()
    assert plan.read(0, plan.size) == data
    rng = random.Random(11)
    for _ in range(300):
        offset = rng.randrange(plan.size)
        length = rng.choice([1, 7, 4096, rng.randrange(1, plan.size)])
        assert plan.read(offset, length) == data[offset : offset + length]
    assert plan.read(plan.size - 5, 100) == data[-5:]
    assert plan.read(plan.size, 10) == b"" and plan.read(plan.size + 99, 10) == b""
    assert plan.read(3, 0) == b""
    with pytest.raises(ValueError, match="negative"):
        plan.read(-1, 5)


def test_a_start_between_frames_shows_the_next_frame_at_time_zero(
    tmp_path: Path, segments: list[Segment]
) -> None:
    start, end = T0 + 1_250_000, T0 + 3 * S
    plan = plan_of(segments, start, end)
    assert plan.lead_in_90k == 22_500 and plan.duration_90k == 157_500
    out = tmp_path / "export.mp4"
    plan.write(out)
    got = decoded_frames(out)
    # FFmpeg drops the frame that straddles the start and shows the next one at 0.
    first_wall = (start - T0) / S + got[0][0]
    assert abs(first_wall - 1.25) <= 1 / FPS
    want = expected_frames(segments, start - S // FPS, end)
    assert np.array_equal(got[0][1], want[0].luma) or np.array_equal(got[0][1], want[1].luma)
    info, _ = ffprobe(out, "-show_entries", "format=duration")
    assert float(info["format"]["duration"]) == pytest.approx(1.75, abs=1e-3)  # type: ignore[index]


def test_a_start_in_the_gap_begins_at_the_next_segment(
    tmp_path: Path, segments: list[Segment]
) -> None:
    plan = plan_of(segments, T0 + 4_500_000, T0 + 6 * S)
    assert plan.start_wall_us == T0 + 5 * S == plan.first_sample_wall_us
    assert plan.lead_in_90k == 0 and plan.segments_used == 1 and plan.frames == 10
    out = tmp_path / "export.mp4"
    plan.write(out)
    assert check_frames(out, segments, T0 + 5 * S, T0 + 6 * S) == 10


def test_parameter_sets_that_change_between_segments_get_their_own_sample_entry(
    tmp_path: Path, clip: tuple[EncodedStream, EncodedStream]
) -> None:
    # The camera switched from 320x180 to 160x90 between two segments.
    main, sub = clip
    a = make_segment(tmp_path / "a.mp4", "h264", main.frames[:20], T0, FPS)
    b = make_segment(tmp_path / "b.mp4", "h264", sub.frames[20:40], T0 + 2 * S, FPS)
    c = make_segment(tmp_path / "c.mp4", "h264", main.frames[40:50], T0 + 4 * S, FPS)
    segs = [a, b, c]
    plan = plan_of(segs, T0, T0 + 5 * S)
    assert plan.sample_descriptions == 2 and plan.frames == 50
    out = tmp_path / "export.mp4"
    plan.write(out)
    stsd = parse(out.read_bytes())[1].find("trak/mdia/minf/stbl/stsd")
    assert int.from_bytes(stsd.data[4:8], "big") == 2
    ffmpeg = shutil.which("ffmpeg")
    assert ffmpeg
    proc = subprocess.run(
        [ffmpeg, "-v", "error", "-i", str(out), "-f", "null", "-"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    got = decoded_frames(out)
    assert [y.shape for _, y in got] == [(180, 320)] * 20 + [(90, 160)] * 20 + [(180, 320)] * 10
    assert check_frames(out, segs, T0, T0 + 5 * S) == 50


@pytest.mark.parametrize(("codec", "bframes"), [("h264", 2), ("h265", 3)])
def test_b_frames_are_shown_in_order_from_the_start(
    tmp_path: Path, codec: str, bframes: int
) -> None:
    # Composition offsets: the edit list must hide the reorder delay as well as the lead-in.
    stream = encoded(codec, 192, 108, 48, 12, bframes)  # type: ignore[arg-type]
    assert any(f.pts_90k != f.dts_90k for f in stream.frames)
    a = make_segment(tmp_path / "a.mp4", codec, stream.frames[:24], T0, 25)
    b = make_segment(tmp_path / "b.mp4", codec, stream.frames[24:], T0 + 960_000, 25)
    start, end = T0 + 600_000, T0 + 1_600_000
    plan = plan_of([a, b], start, end)
    out = tmp_path / "export.mp4"
    plan.write(out)
    assert check_frames(out, [a, b], start, end) == 25
    info, warnings = ffprobe(out, "-show_entries", "format=duration")
    assert warnings == ""
    assert float(info["format"]["duration"]) == pytest.approx(1.0, abs=1e-3)  # type: ignore[index]


def test_overlapping_segments_never_go_back_in_time(
    tmp_path: Path, segments: list[Segment]
) -> None:
    # The clock stepped back: B claims to start 0.5 s before A ended. B is moved after A.
    a, b, _ = segments
    plan = vmscore.ExportPlan([(a.path, T0), (b.path, T0 + 1_500_000)], T0, T0 + 10 * S)
    assert plan.frames == 40 and plan.duration_90k == 4 * 90_000
    out = tmp_path / "export.mp4"
    plan.write(out)
    got = decoded_frames(out)
    assert len(got) == 40
    assert all(t2 > t1 for (t1, _), (t2, _) in itertools.pairwise(got))
    assert all(
        np.array_equal(y, f.luma) for (_, y), f in zip(got, a.frames + b.frames, strict=True)
    )


def test_a_crashed_segment_contributes_its_complete_fragments(
    tmp_path: Path, segments: list[Segment]
) -> None:
    a, b, _ = segments
    data = b.path.read_bytes()
    cut = tmp_path / "crashed.mp4"
    cut.write_bytes(data[: len(data) - 500])  # the last GOP is incomplete
    plan = vmscore.ExportPlan([(a.path, a.start_wall_us), (cut, b.start_wall_us)], T0, T0 + 4 * S)
    assert plan.frames == 30
    out = tmp_path / "export.mp4"
    plan.write(out)
    assert check_frames(out, [a, b], T0, T0 + 3 * S) == 30


def test_ranges_without_footage_and_bad_segments_are_clear_errors(
    tmp_path: Path, segments: list[Segment]
) -> None:
    with pytest.raises(vmscore.MuxError, match="empty"):
        plan_of(segments, T0 + S, T0 + S)
    with pytest.raises(ValueError, match="empty"):
        plan_of(segments, T0 + 2 * S, T0 + S)
    for start, end in [
        (T0 - 10 * S, T0),
        (T0 + 7 * S, T0 + 9 * S),
        (T0 + 4_100_000, T0 + 4_900_000),
    ]:
        with pytest.raises(vmscore.NoFootageError, match="no recorded video"):
            plan_of(segments, start, end)
    with pytest.raises(LookupError):
        vmscore.ExportPlan([], T0, T0 + S)

    missing = [(tmp_path / "gone.mp4", T0)]
    with pytest.raises(vmscore.StorageError) as info:
        vmscore.ExportPlan(missing, T0, T0 + S)
    assert info.value.errno == errno.ENOENT

    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypisom" + os.urandom(500))
    with pytest.raises(vmscore.BitstreamError, match=r"corrupt\.mp4"):
        vmscore.ExportPlan([(segments[0].path, T0), (corrupt, T0 + 2 * S)], T0, T0 + 3 * S)

    h265 = tmp_path / "h265.mp4"
    write_segment(h265, "h265", encoded("h265", 160, 96, 10, 10).frames)
    with pytest.raises(vmscore.MuxError, match="different codecs"):
        vmscore.ExportPlan([(segments[0].path, T0), (h265, T0 + 2 * S)], T0, T0 + 3 * S)
    # Only the segments that are exported must agree: the camera changed codec an hour earlier.
    earlier = [(h265, T0 - 3600 * S), (segments[0].path, T0)]
    assert vmscore.ExportPlan(earlier, T0, T0 + S).frames == 10


def test_a_segment_removed_or_replaced_after_planning_fails_cleanly(
    tmp_path: Path, segments: list[Segment]
) -> None:
    copy = tmp_path / "copy.mp4"
    shutil.copyfile(segments[0].path, copy)
    plan = vmscore.ExportPlan([(copy, T0)], T0, T0 + 2 * S)
    header = plan.read(0, 100)
    assert len(header) == 100  # the header is in memory
    copy.unlink()
    with pytest.raises(vmscore.StorageError) as info:
        plan.read(0, plan.size)
    assert info.value.errno == errno.ENOENT
    out = tmp_path / "export.mp4"
    with pytest.raises(vmscore.StorageError):
        plan.write(out)
    assert not out.exists(), "a failed export leaves no partial file"
    shutil.copyfile(segments[1].path, tmp_path / "new.mp4")
    os.replace(tmp_path / "new.mp4", copy)  # another file under the same name
    with pytest.raises(vmscore.StorageError, match="replaced"):
        plan.read(0, plan.size)


def test_a_progress_callback_that_raises_stops_the_write(
    tmp_path: Path, segments: list[Segment]
) -> None:
    plan = plan_of(segments, T0, T0 + 7 * S)
    out = tmp_path / "export.mp4"

    class CancelledError(Exception):
        pass

    def cancel(done: int, total: int) -> None:
        raise CancelledError

    with pytest.raises(CancelledError):
        plan.write(out, progress=cancel)
    assert not out.exists()
    with pytest.raises(vmscore.StorageError):
        plan.write(tmp_path / "no" / "such" / "dir.mp4")


def test_frame_times_are_exact_on_the_90khz_clock(tmp_path: Path) -> None:
    # 30000/1001 fps: sample durations alternate, and a segment starting at a wall time that is no
    # whole number of ticks must not drift. Packets keep their bytes and their 90 kHz times.
    stream = encoded("h264", 160, 96, 60, 30)
    frames = [
        EncodedFrame(f.data, round(i * 3003), round(i * 3003), f.is_keyframe)
        for i, f in enumerate(stream.frames)
    ]
    step = Fraction(1_001_000, 30)  # microseconds per frame
    start_b = T0 + round(30 * step) + 3  # 3 us off the tick grid
    a, _ = segment_bytes("h264", frames[:30])
    b, _ = segment_bytes("h264", frames[30:])
    (tmp_path / "a.mp4").write_bytes(a)
    (tmp_path / "b.mp4").write_bytes(b)
    plan = vmscore.ExportPlan(
        [(tmp_path / "a.mp4", T0), (tmp_path / "b.mp4", start_b)], T0, T0 + 3 * S
    )
    out = tmp_path / "export.mp4"
    plan.write(out)
    with av.open(str(out)) as container:
        packets = [p for p in container.demux(video=0) if p.size]
    assert [p.pts for p in packets] == [i * 3003 for i in range(60)]
    sources = [
        s
        for path in ("a.mp4", "b.mp4")
        for s in vmscore.scan_segment(tmp_path / path, samples=True).samples
    ]
    data = {"a.mp4": a, "b.mp4": b}
    raw = [
        data["a.mp4" if i < 30 else "b.mp4"][s.offset : s.offset + s.size]
        for i, s in enumerate(sources)
    ]
    assert [bytes(p) for p in packets] == raw
