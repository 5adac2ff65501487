"""End to end: how many cameras one core carries. Each camera has a 1920x1080 H.264 main stream,
recorded continuously, and a 640x360 sub-stream, decoded and analysed for motion at the station's
default analysis rate (10 fps): a whole `Station` (ingest, recorder with its index thread,
dispatcher, one analysis thread, events thread), against the same job done by FFmpeg the way
Frigate does it, in the same run.

The cameras are served by `vmscore sim serve` in its own process (its CPU is not counted), from
one rendered clip (schoolyard scene, 25 fps, 2 s GOP, main about 4 Mbit/s, sub about 0.5 Mbit/s),
each camera at its own offset in the loop. Every sub-stream frame must be decoded (H.264 P-frames
depend on the previous ones); the rate the station actually analyses is measured and printed.
Three measured runs on the same cameras, one after the other:

1. vmscore, end to end: a `Station` with the cameras, main streams recorded continuously in 10 s
   segments to the machine's disk, sub-streams decoded (PyAV) and analysed (MotionDetector) on
   one analysis thread (``analysis_threads: 1``), no rules.
2. vmscore, recording only: the same with ``analysis: false`` on every camera (the sub-stream is
   still received, not decoded).
3. FFmpeg as Frigate runs it, two processes per camera:
   ``ffmpeg -rtsp_transport tcp -i MAIN -c copy -f segment -segment_time 10 -segment_format mp4
   -reset_timestamps 1 OUT%05d.mp4`` records, and
   ``ffmpeg -threads 2 -rtsp_transport tcp -i SUB -vf fps=10 -f rawvideo -pix_fmt yuv420p -``
   decodes (Frigate's detect process), its frames read by a thread of this process that only
   counts them. Frigate's motion detection on those frames (Python/OpenCV) is not counted: the
   peer's figure is a lower bound of Frigate's cost.

CPU is user + system time from /proc (the station's: this whole process, which does nothing else
while it is measured; FFmpeg's: the sum of its processes), over a steady window of SECONDS after
the warm-up (the recorder's rings full, so buffers are recycled). A camera's share of a core is
CPU seconds per wall second divided by the cameras; cameras per core = 1 / share. The station's
CPU is broken down by thread (/proc/self/task); the analysis thread's share is split into decoding
and motion detection at their CPU cost a frame measured alone on the same sub-stream (thread CPU
clock), the remainder being what surrounds them. The machine may be shared: CPU time, not wall
time, is what is compared, and the machine's other load during each window is reported.

Run: pytest benchmarks/test_bench_station.py -s
     VMSCORE_BENCH_CAMERAS (8), VMSCORE_BENCH_SECONDS (30), VMSCORE_BENCH_WARMUP (36: the
     rings full and recycling; shorter only to try the benchmark out),
     VMSCORE_BENCH_CACHE (the rendered clip, kept between runs; default: a directory under the
     system's temporary directory; only the current clip is kept there)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from conftest import TICKS, cpu_seconds, machine, rss_kib, serve_cameras
from vmscore.cameras.snapshot import decoder
from vmscore.motion import MotionDetector, MotionSettings
from vmscore.sim.files import Clip, load_clip, write_clip
from vmscore.station.station import Station

CAMERAS = int(os.environ.get("VMSCORE_BENCH_CAMERAS", "8"))
SECONDS = float(os.environ.get("VMSCORE_BENCH_SECONDS", "30"))
CACHE = Path(
    os.environ.get("VMSCORE_BENCH_CACHE") or Path(tempfile.gettempdir()) / "vmscore-bench-cache"
)
SCENE, SEED = "schoolyard", 1
CLIP_S = 20.0  # looped by the camera server
FPS = 25.0
GOP = 50  # 2 s
MAIN, SUB = (1920, 1080), (640, 360)
MAIN_BPS, SUB_BPS = 4_000_000, 512_000
SEGMENT_S = 10.0  # as Frigate's default segment_time
ANALYSIS_FPS = 10.0  # the station's default
RING_S = 30.0  # the station's ring (at least 30 s): warm up until it recycles its buffers
WARMUP_S = float(os.environ.get("VMSCORE_BENCH_WARMUP", RING_S + 6.0))
FFMPEG_WARMUP_S = 8.0
FRAME_BYTES = SUB[0] * SUB[1] * 3 // 2  # yuv420p


def clip_dir() -> Path:
    """The cameras' clip, rendered once and kept in CACHE (only the current parameters' clip is
    kept there, so the cache holds one clip, about 11 MB)."""
    name = (
        f"station-{SCENE}-{SEED}-{CLIP_S:g}s-{FPS:g}fps-gop{GOP}-{MAIN[0]}x{MAIN[1]}-{MAIN_BPS}"
        f"-{SUB[0]}x{SUB[1]}-{SUB_BPS}"
    )
    out = CACHE / name
    if (out / "clip.json").is_file():
        try:
            load_clip(out)
            return out
        except (OSError, ValueError):
            shutil.rmtree(out, ignore_errors=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    for old in CACHE.glob("station-*"):
        shutil.rmtree(old, ignore_errors=True)
    partial = CACHE / f"{name}.partial-{os.getpid()}"
    try:
        write_clip(
            partial,
            SCENE,
            CLIP_S,
            seed=SEED,
            main=MAIN,
            sub=SUB,
            fps=FPS,
            gop=GOP,
            codec="h264",
            bitrate=MAIN_BPS,
            sub_bitrate=SUB_BPS,
        )
        partial.rename(out)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return out


@pytest.fixture(scope="module")
def station_clip() -> Path:
    return clip_dir()


@pytest.fixture(scope="module")
def cameras(station_clip: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    with serve_cameras(station_clip, CAMERAS) as served:
        yield served


@pytest.fixture
def disk(tmp_path: Path) -> Path:
    """A directory on the machine's disk, not tmpfs (the recordings: a few hundred MB a run)."""
    kinds = {
        mount: fstype
        for _dev, mount, fstype, *_ in (
            line.split() for line in Path("/proc/mounts").read_text().splitlines()
        )
    }
    best = max((m for m in kinds if str(tmp_path).startswith(m.rstrip("/") + "/")), key=len)
    assert kinds[best] not in ("tmpfs", "ramfs"), f"{tmp_path} is not on a disk"
    return tmp_path


# -- counters --------------------------------------------------------------------------------------


def machine_busy_s() -> float:
    """CPU seconds the whole machine spent busy so far (all cores; /proc/stat, idle and iowait
    excluded)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / TICKS  # up to steal; guest is in user


def thread_io(tid: int) -> dict[str, int]:
    lines = Path(f"/proc/self/task/{tid}/io").read_text().splitlines()
    return {k: int(v) for k, v in (line.split(":") for line in lines)}


def thread_cpu(tid: int) -> float | None:
    try:
        return cpu_seconds(os.getpid(), tid)
    except FileNotFoundError:
        return None


@dataclass
class Sample:
    """Counters at one instant: this process (all threads and each), the camera server, the
    machine, and any other processes measured."""

    t: float
    cpu: float
    server: float
    machine: float
    threads: dict[int, float] = field(default_factory=dict)
    others: float = 0.0

    @staticmethod
    def take(server: int, others: Sequence[int] = ()) -> Sample:
        me = os.getpid()
        threads = {
            tid: c
            for tid in map(int, os.listdir(f"/proc/{me}/task"))
            if (c := thread_cpu(tid)) is not None
        }
        return Sample(
            time.monotonic(),
            cpu_seconds(me),
            cpu_seconds(server),
            machine_busy_s(),
            threads,
            sum(cpu_seconds(p) for p in others),
        )


def thread_groups(before: set[int]) -> dict[str, set[int]]:
    """The station's threads by job. Python threads by name; the native ones (started by the
    ingest engine and the recorder, unnamed) by what they do: the ingest loop reads the sockets
    (the most read calls), the segment writer writes the files (the most write calls)."""
    me = os.getpid()
    new = {int(t) for t in os.listdir(f"/proc/{me}/task")} - before
    python = {t.native_id: t.name for t in threading.enumerate() if t.native_id in new}
    groups: dict[str, set[int]] = {
        "ingest loop": set(),
        "segment writer": set(),
        "index thread": set(),
        "dispatcher": set(),
        "analysis thread": set(),
        "events thread": set(),
        "other": set(),
    }
    names = {
        "vmscore-index": "index thread",
        "vmscore-dispatch": "dispatcher",
        "vmscore-events": "events thread",
    }
    for tid, name in python.items():
        if name.startswith("vmscore-analysis"):
            groups["analysis thread"].add(tid)
        else:
            groups[names.get(name, "other")].add(tid)
    native = [t for t in new if t not in python]
    io = {t: thread_io(t) for t in native if Path(f"/proc/{me}/task/{t}").exists()}
    if io:
        loop = max(io, key=lambda t: io[t]["syscr"])
        groups["ingest loop"].add(loop)
        rest = {t: v for t, v in io.items() if t != loop}
        if rest:
            writer = max(rest, key=lambda t: rest[t]["syscw"])
            groups["segment writer"].add(writer)
            groups["other"] |= set(rest) - {writer}
    groups["other"] |= {t for t in native if t not in io}
    return groups


def per_camera(a: Sample, b: Sample, cameras: int) -> dict[str, float]:
    wall = b.t - a.t
    return {
        "wall_s": wall,
        "cpu_s": b.cpu - a.cpu,
        "core_share_per_camera": (b.cpu - a.cpu) / wall / cameras,
        "server_core_share": (b.server - a.server) / wall,
        "other_load_cores": (b.machine - a.machine - (b.cpu - a.cpu) - (b.server - a.server)
                             - (b.others - a.others)) / wall,
    }  # fmt: skip


# -- 1 and 2: the station ------------------------------------------------------------------------


def station_document(home: Path, base: str, cameras: int, *, analysis: bool) -> dict[str, Any]:
    return {
        "station": {"name": "bench", "data_dir": str(home / "data"), "analysis_threads": 1},
        "storage": [{"name": "disk", "path": str(home / "segments")}],
        "defaults": {
            "recording": {"mode": "continuous", "segment_s": SEGMENT_S},
            "analysis_fps": ANALYSIS_FPS,
        },
        "sites": [{"name": "site-1", "armed": True}],
        "cameras": [
            {
                "name": f"cam{i}",
                "site": "site-1",
                "main_url": f"{base}/cam{i}",
                "sub_url": f"{base}/cam{i}/sub",
                "analysis": analysis,
            }
            for i in range(cameras)
        ],
    }


def delta(before: dict[str, Any], after: dict[str, Any], *path: str) -> float:
    a, b = before, after
    for p in path:
        a, b = a[p], b[p]
    return float(b) - float(a)


def run_station(
    base: str, server: subprocess.Popen[str], home: Path, cameras: int, *, analysis: bool
) -> dict[str, Any]:
    """Starts a station on the cameras, waits WARMUP_S, measures SECONDS, closes it."""
    me = os.getpid()
    tids = {int(t) for t in os.listdir(f"/proc/{me}/task")}
    rss0 = rss_kib(me)
    names = [f"cam{i}" for i in range(cameras)]
    started = time.monotonic()
    station = Station(station_document(home, base, cameras, analysis=analysis))
    try:
        deadline = started + 30
        while not all(station.camera_state(n).online for n in names):
            assert time.monotonic() < deadline, "the cameras did not all come online"
            time.sleep(0.2)
        time.sleep(max(0.0, started + WARMUP_S - time.monotonic()))
        groups = thread_groups(tids)
        before = {n: station.camera_health(n) for n in names}
        a = Sample.take(server.pid)
        time.sleep(SECONDS)
        b = Sample.take(server.pid)
        after = {n: station.camera_health(n) for n in names}
        rss = rss_kib(me)
        total = station.health()
    finally:
        station.close()
    shutil.rmtree(home, ignore_errors=True)
    wall = b.t - a.t
    figures: dict[str, Any] = per_camera(a, b, cameras)
    threads = {
        g: sum(b.threads[t] - a.threads[t] for t in tids_ if t in a.threads and t in b.threads)
        / wall
        / cameras
        for g, tids_ in groups.items()
    }
    threads["other"] += figures["core_share_per_camera"] - sum(threads.values())
    recording = {
        "frames_written": sum(delta(before[n], after[n], "recording", "frames_written")
                              for n in names),
        "expected_frames": FPS * wall * cameras,
        "gaps_in_window": sum(delta(before[n], after[n], "recording", "gaps") for n in names),
        "gaps_total": sum(after[n]["recording"]["gaps"] for n in names),
        "segments_closed": sum(delta(before[n], after[n], "recording", "segments") for n in names),
        "packets_lost": sum(s["packets_lost"] for n in names
                            for s in after[n]["streams"].values()),
        "frames_dropped": sum(s["frames_dropped"] for n in names
                              for s in after[n]["streams"].values()),
        "reconnects": sum(s["reconnects"] for n in names for s in after[n]["streams"].values()),
        "playing": sum(s["state"] == "playing" for n in names
                       for s in after[n]["streams"].values()),
        "streams": sum(len(after[n]["streams"]) for n in names),
    }  # fmt: skip
    figures.update(recording)
    figures["rss_per_camera_kib"] = (rss - rss0) / cameras
    figures["events_dropped"] = total["events_dropped"]
    if analysis:
        keys = ("units_in", "frames_decoded", "frames_analysed", "frames_skipped",
                "decode_errors", "decode_s", "analysis_s")  # fmt: skip
        d = {k: sum(delta(before[n], after[n], "analysis", k) for n in names) for k in keys}
        figures["decoded_fps_per_camera"] = d["frames_decoded"] / wall / cameras
        figures["analysed_fps_per_camera"] = d["frames_analysed"] / wall / cameras
        # Python's per-unit cost of handing sub-stream units from the engine to analysis.
        figures["dispatch_us_per_unit"] = (
            1e6 * threads["dispatcher"] * wall * cameras / max(1.0, d["units_in"])
        )
        figures["frames_skipped"] = d["frames_skipped"]
        figures["decode_errors"] = d["decode_errors"]
        figures["skipped_total"] = sum(after[n]["analysis"]["frames_skipped"] for n in names)
        figures["decode_ms_per_frame"] = 1000 * d["decode_s"] / max(1.0, d["frames_decoded"])
        figures["motion_ms_per_frame"] = 1000 * d["analysis_s"] / max(1.0, d["frames_analysed"])
    figures["threads"] = threads
    return figures


# -- 3: FFmpeg as Frigate runs it ------------------------------------------------------------------


def run_ffmpeg(
    base: str, server: subprocess.Popen[str], home: Path, cameras: int
) -> dict[str, Any]:
    """Per camera, one FFmpeg segment muxer on the main stream and one decoder of the sub-stream
    to raw frames at 10 fps, read by a thread that counts them; measured like the station."""
    head = ["ffmpeg", "-nostdin", "-loglevel", "error"]
    rtsp = ["-rtsp_transport", "tcp", "-i"]
    segment = ["-c", "copy", "-f", "segment", "-segment_time", f"{SEGMENT_S:g}",
               "-segment_format", "mp4", "-reset_timestamps", "1"]  # fmt: skip
    detect = ["-vf", f"fps={ANALYSIS_FPS:g}", "-f", "rawvideo", "-pix_fmt", "yuv420p", "-"]
    dirs = [home / f"ffmpeg-cam{i}" for i in range(cameras)]
    for d in dirs:
        d.mkdir(parents=True)
    received = [0] * cameras

    def read(i: int, pipe: Any) -> None:
        buf = bytearray(1 << 20)
        while n := pipe.readinto(buf):
            received[i] += n

    recorders = [
        subprocess.Popen(
            [*head, *rtsp, f"{base}/cam{i}", *segment, str(dirs[i] / "%05d.mp4")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        for i in range(cameras)
    ]  # fmt: skip
    decoders = [
        subprocess.Popen(
            [*head, "-threads", "2", *rtsp, f"{base}/cam{i}/sub", *detect],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )
        for i in range(cameras)
    ]  # fmt: skip
    readers = [
        threading.Thread(target=read, args=(i, p.stdout), daemon=True)
        for i, p in enumerate(decoders)
    ]
    for r in readers:
        r.start()
    procs = recorders + decoders
    try:
        time.sleep(FFMPEG_WARMUP_S)
        assert all(p.poll() is None for p in procs), "an ffmpeg exited early"
        rec_pids, dec_pids = [p.pid for p in recorders], [p.pid for p in decoders]
        rec0, dec0, got0 = (sum(cpu_seconds(p) for p in rec_pids),
                            sum(cpu_seconds(p) for p in dec_pids), sum(received))  # fmt: skip
        a = Sample.take(server.pid, rec_pids + dec_pids)
        time.sleep(SECONDS)
        b = Sample.take(server.pid, rec_pids + dec_pids)
        rec1, dec1, got1 = (sum(cpu_seconds(p) for p in rec_pids),
                            sum(cpu_seconds(p) for p in dec_pids), sum(received))  # fmt: skip
        rss = sum(rss_kib(p) for p in rec_pids + dec_pids)
        running = all(p.poll() is None for p in procs)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=10)
        for r in readers:
            r.join(timeout=10)
        for p in decoders:
            assert p.stdout is not None
            p.stdout.close()
    files = sum(1 for d in dirs for _ in d.iterdir())
    shutil.rmtree(home, ignore_errors=True)
    wall = b.t - a.t
    figures: dict[str, Any] = per_camera(a, b, cameras)
    # This process only counted frames: its CPU is not FFmpeg's.
    figures["cpu_s"] = (rec1 - rec0) + (dec1 - dec0)
    figures["core_share_per_camera"] = figures["cpu_s"] / wall / cameras
    figures["other_load_cores"] -= (b.cpu - a.cpu) / wall
    figures["threads"] = {
        "recording (segment muxer)": (rec1 - rec0) / wall / cameras,
        "decoding to raw frames": (dec1 - dec0) / wall / cameras,
    }
    figures["frames_per_camera_s"] = (got1 - got0) / FRAME_BYTES / wall / cameras
    figures["rss_per_camera_kib"] = rss / cameras
    figures["files"] = files
    figures["running"] = running
    return figures


# -- the analysis work alone ---------------------------------------------------------------------


def analysis_cpu_per_frame(clip: Clip, analyse_every: int) -> dict[str, float]:
    """CPU milliseconds a frame of the analysis work alone, on this thread (CLOCK_THREAD_CPUTIME):
    the sub-stream decoded by PyAV single-threaded (the station's decoder), and the motion detector
    with default settings on every `analyse_every`-th frame, as the station selects them. The
    second of two passes over the clip is measured (the first warms the caches and the detector's
    background); the live figures also pay for cold caches and the Python around each frame."""
    decode_s = motion_s = 0.0
    decoded = analysed = 0
    for rounds in range(2):
        ctx = decoder("h264")
        det = MotionDetector(SUB[0], SUB[1], MotionSettings())
        decode_s = motion_s = 0.0
        decoded = analysed = 0
        for i, unit in enumerate(clip.sub.frames if clip.sub else []):
            t0 = time.thread_time()
            frames = ctx.decode(av.Packet(unit.data))
            decode_s += time.thread_time() - t0
            for frame in frames:
                decoded += 1
                if i % analyse_every == 0:
                    t0 = time.thread_time()
                    det.process(frame, (rounds * CLIP_S) + i / FPS)
                    motion_s += time.thread_time() - t0
                    analysed += 1
    return {
        "decode_ms": 1000 * decode_s / max(1, decoded),
        "motion_ms": 1000 * motion_s / max(1, analysed),
        "frames": decoded,
    }


# -- the benchmark ---------------------------------------------------------------------------------


def test_cameras_per_core_end_to_end_vs_ffmpeg(
    benchmark: BenchmarkFixture,
    cameras: tuple[str, subprocess.Popen[str]],
    station_clip: Path,
    disk: Path,
) -> None:
    base, server = cameras
    clip = load_clip(station_clip)
    full = benchmark.pedantic(
        run_station,
        args=(base, server, disk / "full", CAMERAS),
        kwargs={"analysis": True},
        rounds=1,
        iterations=1,
    )
    rec = run_station(base, server, disk / "rec", CAMERAS, analysis=False)
    peer = run_ffmpeg(base, server, disk / "ffmpeg", CAMERAS)
    every = max(1, round(FPS / max(full["analysed_fps_per_camera"], 1e-9)))
    work = analysis_cpu_per_frame(clip, every)
    # The analysis thread's CPU: decoding and detection at their CPU cost a frame (measured
    # alone, above), and the rest (packets, Python around each frame, events, the pool).
    th = full["threads"]
    th["analysis: decode"] = work["decode_ms"] / 1000 * full["decoded_fps_per_camera"]
    th["analysis: motion"] = work["motion_ms"] / 1000 * full["analysed_fps_per_camera"]
    th["analysis: rest"] = th["analysis thread"] - th["analysis: decode"] - th["analysis: motion"]
    share = full["core_share_per_camera"]
    ratio = peer["core_share_per_camera"] / max(share, 1e-9)
    analysis_share = share - rec["core_share_per_camera"]
    benchmark.extra_info.update(
        {"cameras": CAMERAS, "seconds": SECONDS, "clip": {
            "scene": SCENE, "seconds": CLIP_S, "fps": FPS, "gop": GOP, "main": MAIN,
            "sub": SUB, "main_bps": clip.main.achieved_bitrate_bps,
            "sub_bps": clip.sub.achieved_bitrate_bps if clip.sub else 0},
         "vmscore": full, "vmscore_recording_only": rec, "ffmpeg": peer, "ratio": ratio,
         "analysis_work_alone": work,
         "cameras_per_core": 1 / share, "machine": machine()}
    )  # fmt: skip

    def breakdown(f: dict[str, Any]) -> str:
        return ", ".join(f"{k} {100 * v:.2f}" for k, v in f["threads"].items())

    sub_bps = clip.sub.achieved_bitrate_bps if clip.sub else 0
    print(
        f"\n{CAMERAS} cameras: {SCENE} {FPS:g} fps, 2 s GOP, main {MAIN[0]}x{MAIN[1]} H.264"
        f" {clip.main.achieved_bitrate_bps / 1e6:.2f} Mbit/s recorded in {SEGMENT_S:g} s"
        f" segments, sub {SUB[0]}x{SUB[1]} {sub_bps / 1e6:.2f} Mbit/s decoded and analysed"
        f" (analysis_fps {ANALYSIS_FPS:g}); {SECONDS:g} s windows after {WARMUP_S:g} s"
        f" warm-up (vmscore), {FFMPEG_WARMUP_S:g} s (ffmpeg); % of one core per camera:"
        f"\n  vmscore station:  {100 * share:.2f} % -> {1 / share:.1f} cameras per core"
        f" ({breakdown(full)});"
        f" decoded {full['decoded_fps_per_camera']:.1f} fps, analysed"
        f" {full['analysed_fps_per_camera']:.2f} fps per camera; CPU a frame alone: decode"
        f" {work['decode_ms']:.3f} ms, motion {work['motion_ms']:.3f} ms (the station's own"
        f" wall-time timers: {full['decode_ms_per_frame']:.3f} and"
        f" {full['motion_ms_per_frame']:.3f} ms); dispatch"
        f" {full['dispatch_us_per_unit']:.0f} µs a unit;"
        f" skipped {full['frames_skipped']:.0f} (since start {full['skipped_total']:.0f}),"
        f" frames written {full['frames_written']:.0f}/{full['expected_frames']:.0f}, gaps"
        f" {full['gaps_total']:.0f}, packets lost {full['packets_lost']:.0f}, RSS"
        f" {full['rss_per_camera_kib'] / 1024:.1f} MiB per camera"
        f"\n  recording only:   {100 * rec['core_share_per_camera']:.2f} % ({breakdown(rec)});"
        f" frames written {rec['frames_written']:.0f}/{rec['expected_frames']:.0f}, gaps"
        f" {rec['gaps_total']:.0f} -> decode + analysis add {100 * analysis_share:.2f} %"
        f"\n  ffmpeg (Frigate): {100 * peer['core_share_per_camera']:.2f} % ->"
        f" {1 / peer['core_share_per_camera']:.1f} cameras per core ({breakdown(peer)});"
        f" {peer['frames_per_camera_s']:.1f} raw frames/s per camera, {peer['files']} segment"
        f" files, RSS {peer['rss_per_camera_kib'] / 1024:.1f} MiB per camera"
        f"\n  -> vmscore uses {ratio:.1f}x less CPU per camera than the ffmpeg chain"
        f"\n  camera server {100 * full['server_core_share']:.0f} / "
        f"{100 * rec['server_core_share']:.0f} / {100 * peer['server_core_share']:.0f} % of a core;"
        f" other load on the machine {full['other_load_cores']:.2f} /"
        f" {rec['other_load_cores']:.2f} / {peer['other_load_cores']:.2f} cores"
        f"\n  on {machine()}"
    )
    for f in (full, rec):
        assert f["playing"] == f["streams"] == 2 * CAMERAS
        assert f["gaps_total"] == 0 and f["packets_lost"] == 0
        assert f["frames_written"] >= 0.9 * f["expected_frames"]
    assert full["frames_skipped"] == 0 and full["decode_errors"] == 0
    assert full["decoded_fps_per_camera"] >= 0.95 * FPS
    assert peer["running"] and peer["frames_per_camera_s"] >= 0.9 * ANALYSIS_FPS
    assert ratio > 1
