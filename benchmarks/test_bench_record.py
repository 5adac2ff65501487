"""Recording: vmscore's Recorder (one IngestEngine + the native segment writer + the Python index
thread) against one FFmpeg segment muxer per stream, the way Frigate records
(`ffmpeg -rtsp_transport tcp -i URL -c copy -f segment -segment_time 10 -segment_format mp4
-reset_timestamps 1 OUT%05d.mp4`), on the same simulated 1080p25 H.264 cameras over loopback TCP,
in the same run, writing to the real disk. Also: the index's size per camera-hour, export speed
against a plain file copy, and where event recordings start against the requested pre-roll.

The cameras are served by `vmscore sim serve` in its own process (its CPU is not counted). CPU is
user + system time from /proc/PID/stat; write system calls and bytes from /proc/PID/io (`syscw`,
`wchar`: every write, writev and pwrite of the process, files and sockets alike).

Run: pytest benchmarks/test_bench_record.py -s
     VMSCORE_BENCH_RECORD_STREAMS (32), VMSCORE_BENCH_SECONDS (20), VMSCORE_BENCH_EXPORT_GB (1)
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

import vmscore
from conftest import cpu_seconds, ffmpeg_per_stream, machine, serve_cameras
from vmscore.record import Recorder, Recording, RecordingIndex, RecordingSettings, StorageLocation
from vmscore.record.files import sha256_file
from vmscore.record.index import NewRecording, unpack_keyframes

SECONDS = float(os.environ.get("VMSCORE_BENCH_SECONDS", "20"))
STREAMS = int(os.environ.get("VMSCORE_BENCH_RECORD_STREAMS", "32"))
EXPORT_BYTES = int(float(os.environ.get("VMSCORE_BENCH_EXPORT_GB", "1")) * 1e9)
WARMUP = 8.0  # connect, fill the first GOPs, open the first segments
RING_S = RecordingSettings(storage="default").ring_s  # recording warms up until the rings are full
SEGMENT_S = 10.0  # as FFmpeg's -segment_time 10
EVENT_CAMERAS = min(16, STREAMS)
EVENT_ROUNDS = 4
SPREAD = 4.0  # s over which a round's triggers fall
PRE_ROLL_S = 5.0
ROUNDS = 5  # of each export and copy, alternated
INDEX_CAMERAS, INDEX_HOURS = 8, 24
SEC = 1_000_000


def filesystem(path: Path) -> str:
    """The type of the file system holding `path` (longest mount point that contains it)."""
    best, kind = "", "?"
    for line in Path("/proc/mounts").read_text().splitlines():
        _dev, mount, fstype = line.split()[:3]
        mount = mount.replace("\\040", " ")
        if str(path.resolve()).startswith(mount.rstrip("/") + "/") and len(mount) > len(best):
            best, kind = mount, fstype
    return kind


def io_counters(pid: int) -> dict[str, int]:
    """/proc/PID/io: rchar, wchar, syscr, syscw, read_bytes, write_bytes, ..."""
    pairs = (line.split(":") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
    return {k: int(v) for k, v in pairs}


def minor_faults(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[7])


def tasks(pid: int) -> set[int]:
    return {int(t) for t in os.listdir(f"/proc/{pid}/task")}


@pytest.fixture(scope="module")
def cameras(camera_clip: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    with serve_cameras(camera_clip, STREAMS) as served:
        yield served


@pytest.fixture(scope="module")
def disk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A directory on the machine's disk (not tmpfs); emptied afterwards (a few GB)."""
    root = tmp_path_factory.mktemp("record")
    assert filesystem(root) not in ("tmpfs", "ramfs"), f"{root} is not on a disk"
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


# -- 1. sustained recording: CPU, write system calls, bytes ----------------------------------------


@dataclass
class Sample:
    """Counters of the measured processes at one instant."""

    t: float
    cpu: float
    syscw: int
    wchar: int
    faults: int
    threads: dict[str, float] = field(default_factory=dict)

    @staticmethod
    def of(pids: list[int], groups: dict[str, set[int]] | None = None) -> Sample:
        ios = [io_counters(p) for p in pids]
        threads = {
            name: sum(cpu_seconds(pids[0], t) for t in tids if Path(f"/proc/{t}").exists())
            for name, tids in (groups or {}).items()
        }
        return Sample(
            time.monotonic(),
            sum(cpu_seconds(p) for p in pids),
            sum(io["syscw"] for io in ios),
            sum(io["wchar"] for io in ios),
            sum(minor_faults(p) for p in pids),
            threads,
        )


def per_stream(a: Sample, b: Sample, streams: int) -> dict[str, float]:
    wall = b.t - a.t
    return {
        "wall_s": wall,
        "cpu_s": b.cpu - a.cpu,
        "cpu_s_per_stream_minute": (b.cpu - a.cpu) / streams / (wall / 60),
        "writes_per_s_per_stream": (b.syscw - a.syscw) / streams / wall,
        "bytes_per_s_per_stream": (b.wchar - a.wchar) / streams / wall,
        "minor_faults_per_s_per_stream": (b.faults - a.faults) / streams / wall,
    }


@dataclass
class StationRun:
    """What one recording run of vmscore left: figures of its measured window (CPU of the whole
    process and of its threads), the index, the segment files."""

    figures: dict[str, float]
    threads: dict[str, float]
    index: Path
    storage: StorageLocation
    streams: int


def record_streams(base: str, streams: int, root: Path) -> StationRun:
    """Receives `streams` cameras for SECONDS without recording (the engine alone), then records
    them continuously in 10 s segments: WARMUP, the measured window of SECONDS, then on
    (unmeasured) until EXPORT_BYTES are on disk for the export benchmark."""
    me = os.getpid()
    storage = StorageLocation(name="disk", path=root / "segments")
    storage.path.mkdir()
    index = root / "index.db"
    settings = RecordingSettings(storage="disk", segment_s=SEGMENT_S)
    cams = [f"cam{i}" for i in range(streams)]
    tids = tasks(me)
    with vmscore.IngestEngine() as engine:
        for c in cams:
            engine.add_stream(c, f"{base}/{c}", deliver=False)
        engine_threads = tasks(me) - tids
        # The same engine and connections without the recorder first: what recording adds.
        time.sleep(3)
        alone = [Sample.of([me], {"ingest loop": engine_threads})]
        time.sleep(SECONDS)
        alone.append(Sample.of([me], {"ingest loop": engine_threads}))
        with Recorder(engine, index, [storage]) as recorder:
            index_thread = {
                t.native_id or 0 for t in threading.enumerate() if t.name == "vmscore-index"
            }
            groups = {
                "ingest loop": engine_threads,
                "segment writer": tasks(me) - tids - engine_threads - index_thread,
                "index thread": index_thread,
            }
            for c in cams:
                recorder.add_camera(c, c, settings)
            # Steady state: the rings hold ring_s of footage before their first buffers return
            # to the pool; until then every frame takes fresh memory (page faults).
            time.sleep(WARMUP + RING_S)
            before = [recorder.stats(c) for c in cams]
            a = Sample.of([me], groups)
            time.sleep(SECONDS)
            b = Sample.of([me], groups)
            after = [recorder.stats(c) for c in cams]
            lost = sum(engine.stats(c).packets_lost for c in cams)
            deadline = time.monotonic() + 180
            while (
                sum(s.bytes_written for s in recorder.storage_stats()) < EXPORT_BYTES
                and time.monotonic() < deadline
            ):
                time.sleep(1)
    wall = b.t - a.t
    written = sum(y.bytes_written - x.bytes_written for x, y in zip(before, after, strict=True))
    figures = {
        **per_stream(a, b, streams),
        "frames_written": sum(
            y.frames_written - x.frames_written for x, y in zip(before, after, strict=True)
        ),
        "expected_frames": 25 * wall * streams,
        "segments_closed": sum(y.segments - x.segments for x, y in zip(before, after, strict=True)),
        "recorded_bytes_per_s_per_stream": written / streams / wall,
        # of the process's write calls, those of the segment writer to its files
        "file_writes_per_s_per_stream": sum(
            y.write_calls - x.write_calls for x, y in zip(before, after, strict=True)
        )
        / streams
        / wall,
        "gaps": sum(s.gaps for s in after),
        "lost_packets": lost,
        **{f"engine_alone_{k}": v for k, v in per_stream(*alone, streams).items()},
    }
    threads = {k: (b.threads[k] - a.threads[k]) / streams / (wall / 60) for k in groups}
    threads["other"] = max(0.0, figures["cpu_s_per_stream_minute"] - sum(threads.values()))
    return StationRun(figures, threads, index, storage, streams)


class Station:
    """The vmscore recording run, made once per module and shared by the benchmarks below."""

    def __init__(self, base: str, root: Path) -> None:
        self.base, self.root = base, root
        self._run: StationRun | None = None

    def run(self) -> StationRun:
        if self._run is None:
            self._run = record_streams(self.base, STREAMS, self.root)
        return self._run


@pytest.fixture(scope="module")
def station(cameras: tuple[str, subprocess.Popen[str]], disk: Path) -> Station:
    return Station(cameras[0], disk)


def record_with_ffmpeg(base: str, streams: int, root: Path) -> dict[str, float]:
    """One FFmpeg segment muxer per stream, as Frigate runs it, measured like ours."""
    dirs = [root / f"ffmpeg-cam{i}" for i in range(streams)]
    for d in dirs:
        d.mkdir()
    segment = ["-c", "copy", "-f", "segment", "-segment_time", f"{SEGMENT_S:g}"]
    mp4 = ["-segment_format", "mp4", "-reset_timestamps", "1"]
    out = lambda i: [*segment, *mp4, str(dirs[i] / "%05d.mp4")]  # noqa: E731
    with ffmpeg_per_stream(base, streams, out) as procs:
        time.sleep(WARMUP)
        assert all(p.poll() is None for p in procs), "an ffmpeg exited early"
        pids = [p.pid for p in procs]
        a = Sample.of(pids)
        time.sleep(SECONDS)
        b = Sample.of(pids)
    files = [f for d in dirs for f in d.iterdir()]
    figures = {**per_stream(a, b, streams), "files": len(files)}
    for d in dirs:
        shutil.rmtree(d)
    return figures


def test_recording_cpu_and_writes_per_stream_vs_ffmpeg(
    benchmark: BenchmarkFixture,
    cameras: tuple[str, subprocess.Popen[str]],
    station: Station,
    disk: Path,
) -> None:
    base, _ = cameras
    run = benchmark.pedantic(station.run, rounds=1, iterations=1)
    ours = run.figures
    theirs = record_with_ffmpeg(base, STREAMS, disk)
    cpu_ratio = theirs["cpu_s_per_stream_minute"] / max(ours["cpu_s_per_stream_minute"], 1e-9)
    write_ratio = theirs["writes_per_s_per_stream"] / max(ours["writes_per_s_per_stream"], 1e-9)
    # How fast this process hashes a finished segment (from the page cache), for the index thread.
    sample = next(run.storage.path.rglob("*.mp4"))
    t0 = time.perf_counter()
    sha256_file(sample)
    sha_gbps = sample.stat().st_size / (time.perf_counter() - t0) / 1e9
    benchmark.extra_info.update(
        {"streams": STREAMS, "vmscore": ours, "vmscore_threads": run.threads, "ffmpeg": theirs,
         "cpu_ratio": cpu_ratio, "write_ratio": write_ratio, "sha256_gbps": sha_gbps,
         "machine": machine(), "filesystem": filesystem(disk)}
    )  # fmt: skip
    threads = ", ".join(f"{k} {v:.4f}" for k, v in run.threads.items())
    print(
        f"\n{STREAMS} x 1080p25 H.264 ~4.8 Mbit/s over TCP recorded in {SEGMENT_S:g} s segments"
        f" to {filesystem(disk)}, {SECONDS:.0f} s after {WARMUP + RING_S:.0f} s warm-up"
        " (rings full):"
        f"\n  vmscore: {ours['cpu_s_per_stream_minute']:.4f} CPU s per stream-minute"
        f" ({threads}), {ours['writes_per_s_per_stream']:.2f} write calls/s"
        f" ({ours['file_writes_per_s_per_stream']:.2f} to segment files),"
        f" {ours['bytes_per_s_per_stream'] / 1e3:.0f} kB/s per stream;"
        f" frames {ours['frames_written']:.0f}/{ours['expected_frames']:.0f},"
        f" segments closed {ours['segments_closed']:.0f}, gaps {ours['gaps']:.0f};"
        f" before the recorder was added, the engine alone (same connections)"
        f" {ours['engine_alone_cpu_s_per_stream_minute']:.4f}; minor page faults/s per stream"
        f" {ours['minor_faults_per_s_per_stream']:.0f}"
        f" (engine alone {ours['engine_alone_minor_faults_per_s_per_stream']:.0f})"
        f"\n  ffmpeg:  {theirs['cpu_s_per_stream_minute']:.4f} CPU s per stream-minute,"
        f" {theirs['writes_per_s_per_stream']:.2f} write calls/s,"
        f" {theirs['bytes_per_s_per_stream'] / 1e3:.0f} kB/s per stream ({theirs['files']:.0f}"
        f" files)\n  -> {cpu_ratio:.1f}x less CPU, {write_ratio:.0f}x fewer write calls;"
        f" SHA-256 here {sha_gbps:.2f} GB/s"
        f"\n  on {machine()}"
    )
    assert ours["gaps"] == 0 and ours["lost_packets"] == 0
    assert ours["frames_written"] >= 0.95 * ours["expected_frames"]
    assert cpu_ratio > 1 and write_ratio > 1


# -- 2. index size per camera-hour ---------------------------------------------------------------


def shifted(r: Recording, camera: str, start_wall_us: int, salt: int) -> NewRecording:
    """`r` moved to `camera` and `start_wall_us`, with its own path and hash."""
    name = time.strftime("%Y-%m-%d/%Y%m%dT%H%M%S", time.gmtime(start_wall_us // SEC))
    return NewRecording(
        **{k: getattr(r, k) for k in NewRecording.__dataclass_fields__ if k != "recovered"}
        | {
            "camera": camera,
            "path": f"{camera}/{name}.{start_wall_us // 1000 % 1000:03d}Z-main.mp4",
            "start_wall_us": start_wall_us,
            "end_wall_us": start_wall_us + (r.end_wall_us - r.start_wall_us),
            "sha256": hashlib.sha256(salt.to_bytes(8, "little")).hexdigest(),
        }
    )


def joined(rows: list[Recording]) -> Recording:
    """Consecutive recordings as one longer segment: the keyframe entries of each, continued."""
    entries: list[tuple[int, int]] = []
    dts = offset = 0
    for r in rows:
        entries += [(d + dts, o + offset) for d, o in r.keyframe_positions()]
        dts += r.end_90k - r.start_90k
        offset += r.bytes
    first, last = rows[0], rows[-1]
    blob = b"".join(int(d).to_bytes(4, "little") + int(o).to_bytes(4, "little") for d, o in entries)
    assert unpack_keyframes(blob) == entries
    return replace(
        first,
        end_wall_us=last.end_wall_us,
        end_90k=first.start_90k + dts,
        bytes=offset,
        frames=sum(r.frames for r in rows),
        keyframes=blob,
    )


def pages(path: Path) -> dict[str, int]:
    """Bytes of each table and index of a closed SQLite database (its page accounting)."""
    with closing(sqlite3.connect(path)) as db:
        return dict(db.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name"))


def index_bytes(path: Path, rows: list[NewRecording], cameras: int) -> dict[str, float]:
    """Inserts `rows` the way the index thread does (batches in time order, all cameras
    interleaved) into a new index; returns what they added, by table and index."""
    RecordingIndex(path).close()
    empty = pages(path)
    index = RecordingIndex(path)
    for i in range(0, len(rows), cameras):
        index.add_recordings(rows[i : i + cameras])
    index.close()  # the last connection: the WAL is checkpointed into the file
    sizes: dict[str, float] = {k: v - empty.get(k, 0) for k, v in pages(path).items()}
    sizes["file"] = path.stat().st_size
    return sizes


def index_sizes(real: list[Recording], root: Path) -> dict[str, dict[str, float]]:
    """For 60 s and 10 s segments: INDEX_HOURS of rows for each of INDEX_CAMERAS cameras, each row
    a copy of a real recorded one (a 60 s row joins six real 10 s rows of one camera, cycling
    through them), inserted into a new index; its bytes per camera-hour by table and index."""
    by_camera: dict[str, list[Recording]] = {}
    for r in real:
        by_camera.setdefault(r.camera, []).append(r)
    t0 = 1_767_225_600 * SEC  # 2026-01-01T00:00Z
    results: dict[str, dict[str, float]] = {}
    for segment_s in (60, 10):
        join = segment_s // int(SEGMENT_S)
        models = [
            joined([rs[(i + j) % len(rs)] for j in range(join)]) if join > 1 else rs[i]
            for rs in by_camera.values()
            for i in range(len(rs))
        ]
        per_hour = 3600 // segment_s
        rows = [
            shifted(models[(k + c) % len(models)], f"cam{c}", t0 + k * segment_s * SEC, k * 97 + c)
            for k in range(per_hour * INDEX_HOURS)
            for c in range(INDEX_CAMERAS)
        ]
        sizes = index_bytes(root / f"index-{segment_s}.db", rows, INDEX_CAMERAS)
        camera_hours = INDEX_CAMERAS * INDEX_HOURS
        total = sum(v for k, v in sizes.items() if k != "file")
        results[f"{segment_s}s"] = {
            "rows_per_camera_hour": per_hour,
            "keyframe_entries_per_row": statistics.mean(len(r.keyframes) / 8 for r in rows),
            "bytes_per_row": total / len(rows),
            "bytes_per_camera_hour": total / camera_hours,
            **{f"{k}_bytes_per_camera_hour": v / camera_hours for k, v in sizes.items()},
        }
    return results


def test_index_size_per_camera_hour(
    benchmark: BenchmarkFixture, station: Station, tmp_path: Path
) -> None:
    run = station.run()
    index = RecordingIndex(run.index)
    everything = index.recordings()
    index.close()
    real = [r for r in everything if r.end_reason == "rotated"]
    assert real, "the recording run closed no full segment"
    real_file = sum(p.stat().st_size for p in run.index.parent.glob(f"{run.index.name}*"))
    results = benchmark.pedantic(index_sizes, args=(real, tmp_path), rounds=1, iterations=1)
    benchmark.extra_info.update(
        {"index": results, "recorded_rows": len(everything), "recorded_index_bytes": real_file,
         "machine": machine()}
    )  # fmt: skip
    print(
        f"\nindex size: {INDEX_CAMERAS} cameras x {INDEX_HOURS} h of rows copied from the"
        f" {len(real)} full 10 s segments recorded above:"
    )
    for name, r in results.items():
        kib = {k: v / 1024 for k, v in r.items()}
        print(
            f"  {name} segments: {r['rows_per_camera_hour']:.0f} rows/camera-hour,"
            f" {r['keyframe_entries_per_row']:.1f} keyframe entries/row,"
            f" {r['bytes_per_row']:.0f} B/row -> {kib['bytes_per_camera_hour']:.1f} KiB per"
            f" camera-hour (table {kib['recording_bytes_per_camera_hour']:.1f},"
            f" camera-time index {kib['recording_camera_time_bytes_per_camera_hour']:.1f},"
            f" storage-time index {kib['recording_storage_time_bytes_per_camera_hour']:.1f},"
            f" path index {kib['sqlite_autoindex_recording_1_bytes_per_camera_hour']:.1f})"
        )
    print(
        f"  the recording run's own index: {len(everything)} rows, {real_file / 1024:.0f} KiB"
        f" (database and WAL files)\n  on {machine()}"
    )
    assert results["60s"]["bytes_per_camera_hour"] < results["10s"]["bytes_per_camera_hour"]


# -- 3. export speed ---------------------------------------------------------------------------


def test_export_speed_vs_plain_copy(
    benchmark: BenchmarkFixture, station: Station, disk: Path
) -> None:
    run = station.run()
    out = disk / "exports"
    out.mkdir(exist_ok=True)
    with vmscore.IngestEngine() as engine, Recorder(engine, run.index, [run.storage]) as rec:
        ranges = {}
        for c in (f"cam{i}" for i in range(run.streams)):
            rows = rec.recordings(c)
            ranges[c] = (
                rows[0].start_wall_us,
                rows[-1].end_wall_us,
                [rec.path_of(r) for r in rows],
            )
        sources = [p for *_, paths in ranges.values() for p in paths]
        source_bytes = sum(p.stat().st_size for p in sources)

        def export() -> int:
            return sum(
                rec.export(c, start, end, out / f"{c}.mp4").size
                for c, (start, end, _) in ranges.items()
            )

        def copy() -> int:
            for i, p in enumerate(sources):
                dst = out / f"copy-{i}.mp4"
                shutil.copyfile(p, dst)
                fd = os.open(dst, os.O_RDONLY)
                os.fsync(fd)  # the export fsyncs its file too
                os.close(fd)
            return source_bytes

        def clear() -> None:
            for f in out.iterdir():
                f.unlink()

        times: dict[str, list[float]] = {"export": [], "copy": []}
        sizes: dict[str, int] = {}

        def timed(name: str, fn: Callable[[], int]) -> None:
            t0 = time.perf_counter()
            sizes[name] = fn()
            times[name].append(time.perf_counter() - t0)
            clear()

        # Alternated, so that both see the same machine; the first export is pytest-benchmark's.
        benchmark.pedantic(timed, args=("export", export), rounds=1, iterations=1)
        timed("copy", copy)
        for _ in range(ROUNDS - 1):
            timed("export", export)
            timed("copy", copy)
    gbps = {k: sizes[k] / statistics.median(v) / 1e9 for k, v in times.items()}
    benchmark.extra_info.update(
        {"exports": len(ranges), "export_bytes": sizes["export"], "source_files": len(sources),
         "source_bytes": source_bytes, "seconds": times, "gbps": gbps, "machine": machine()}
    )  # fmt: skip
    print(
        f"\nexport of {len(ranges)} cameras' recordings ({len(sources)} segment files,"
        f" {source_bytes / 1e9:.2f} GB) to {len(ranges)} MP4 files"
        f" ({sizes['export'] / 1e9:.2f} GB),"
        f" {filesystem(disk)}, fsynced; median of {ROUNDS}:"
        f"\n  Recorder.export {gbps['export']:.2f} GB/s, shutil.copyfile + fsync of the segment"
        f" files {gbps['copy']:.2f} GB/s -> {gbps['export'] / gbps['copy']:.2f}x copy speed"
        f"\n  on {machine()}"
    )
    assert source_bytes >= 0.9 * EXPORT_BYTES
    assert gbps["export"] > 0.5 * gbps["copy"]


# -- 4. pre-roll accuracy ----------------------------------------------------------------------


def segment_metadata(path: Path) -> dict[str, object]:
    head = path.read_bytes()[:8192]
    start = head.index(b'{"format"')
    return json.loads(head[start : head.index(b"}", start) + 1])  # type: ignore[no-any-return]


def test_event_recording_starts_at_the_keyframe_before_the_pre_roll(
    benchmark: BenchmarkFixture, cameras: tuple[str, subprocess.Popen[str]], tmp_path: Path
) -> None:
    base, _ = cameras
    rng = random.Random(7)
    storage = StorageLocation(name="disk", path=tmp_path / "segments")
    storage.path.mkdir()
    settings = RecordingSettings(
        storage="disk", mode="event", pre_roll_s=PRE_ROLL_S, post_roll_s=1.0
    )
    cams = [f"cam{i}" for i in range(EVENT_CAMERAS)]
    asked: list[tuple[str, int, int, int]] = []  # camera, requested start, keyframe, GOP

    def trigger_all(rec: Recorder) -> None:
        # Each round triggers every camera once at a random instant within SPREAD; rounds are
        # far enough apart that a camera's event recordings (from the keyframe before the
        # pre-roll to 1.5 s after the trigger) neither merge nor touch.
        t = last = time.monotonic()
        for _ in range(EVENT_ROUNDS):
            schedule = sorted((rng.uniform(0, SPREAD), c) for c in cams)
            for offset, c in schedule:
                time.sleep(max(0.0, t + offset - time.monotonic()))
                now = time.time_ns() // 1000
                requested = now - int(PRE_ROLL_S * SEC)
                keyframes = [u.wall_time_us for u in rec.units_from(c, 1) if u.is_keyframe]
                before = [k for k in keyframes if k <= requested]
                gop = statistics.median(b - a for a, b in itertools.pairwise(keyframes))
                asked.append((c, requested, before[-1] if before else -1, int(gop)))
                rec.trigger(c, now, now + SEC // 2, kind="motion")
            last = t
            t += SPREAD + PRE_ROLL_S + 5.0
        time.sleep(max(0.0, last + SPREAD + 3.0 - time.monotonic()))  # the last ones end

    with (
        vmscore.IngestEngine() as engine,
        Recorder(engine, tmp_path / "index.db", [storage], commit_interval=0.5) as rec,
    ):
        for c in cams:
            engine.add_stream(c, f"{base}/{c}", deliver=False)
            rec.add_camera(c, c, settings)
        deadline = time.monotonic() + 60
        while any(
            (s := rec.stats(c).ring).last_wall_us - s.first_wall_us < (PRE_ROLL_S + 3) * SEC
            for c in cams
        ):
            assert time.monotonic() < deadline, "the rings did not fill"
            time.sleep(0.2)
        benchmark.pedantic(trigger_all, args=(rec,), rounds=1, iterations=1)
        rec.flush()
        rows = {c: rec.recordings(c) for c in cams}
        short = [e for e in rec.events() if e.kind == "recorder.preroll_short"]
        root = storage.path
    deltas: list[float] = []
    for c, requested, keyframe, gop in asked:
        mine = [r for r in rows[c] if requested - 2 * gop < r.start_wall_us <= requested + gop]
        assert len(mine) == 1, f"{c}: {len(mine)} recordings for the event at {requested}"
        r = mine[0]
        assert r.start_wall_us == keyframe, f"{c}: starts at {r.start_wall_us}, not {keyframe}"
        assert 0 <= requested - r.start_wall_us < gop, "not the keyframe at or before the start"
        assert segment_metadata(root / r.path)["start_wall_us"] == r.start_wall_us
        assert r.keyframe_positions()[0][0] == 0  # the file begins with that keyframe
        deltas.append((requested - r.start_wall_us) / 1000)
    q = statistics.quantiles(deltas, n=10)
    gop_ms = statistics.median(g for *_, g in asked) / 1000
    figures = {
        "events": len(deltas), "gop_ms": gop_ms, "min_ms": min(deltas), "p10_ms": q[0],
        "median_ms": statistics.median(deltas), "mean_ms": statistics.mean(deltas),
        "p90_ms": q[-1], "max_ms": max(deltas), "preroll_short": len(short),
    }  # fmt: skip
    benchmark.extra_info.update({**figures, "machine": machine()})
    print(
        f"\nevent recordings, pre-roll {PRE_ROLL_S:g} s, {len(deltas)} events on"
        f" {EVENT_CAMERAS} cameras (GOP {gop_ms:.0f} ms): requested start - first frame"
        f" min {figures['min_ms']:.0f} ms, p10 {q[0]:.0f}, median {figures['median_ms']:.0f},"
        f" p90 {q[-1]:.0f}, max {figures['max_ms']:.0f} ms; every one the keyframe at or before"
        f" the requested start; short pre-rolls {len(short)}"
        f"\n  on {machine()}"
    )
    assert not short
    assert min(deltas) >= 0 and max(deltas) < gop_ms
