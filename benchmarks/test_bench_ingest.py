"""Ingest CPU: vmscore's IngestEngine (one native event loop) against one
`ffmpeg -rtsp_transport tcp -i URL -c copy -f null -` per stream (how FFmpeg-based NVRs ingest),
on the same simulated 1080p25 H.264 4 Mbit/s cameras over loopback TCP, in the same run.

The cameras are served by `vmscore sim serve` in its own process, so its CPU is not counted. CPU is
read from /proc (user + system time of the measured processes over the same wall time).

Run: pytest benchmarks/test_bench_ingest.py -s
     VMSCORE_BENCH_STREAMS=32,100,250,500 sets the scaling run (each count needs the camera
     server to keep up: its own CPU is reported so a saturated server is visible).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

import vmscore
from conftest import machine
from vmscore.sim import write_clip

SECONDS = float(os.environ.get("VMSCORE_BENCH_SECONDS", "20"))
COMPARE_STREAMS = int(os.environ.get("VMSCORE_BENCH_COMPARE", "32"))
SCALE = [int(n) for n in os.environ.get("VMSCORE_BENCH_STREAMS", "32,100,250,500").split(",")]
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def rss_kib(pid: int) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", text).group(1))  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("clip-1080p")
    write_clip(
        out,
        "carpark",
        10,
        seed=2,
        main=(1920, 1080),
        sub=None,
        fps=25,
        gop=50,
        codec="h264",
        bitrate=4_000_000,
        preset="ultrafast",
    )
    return out


@pytest.fixture(scope="module")
def cameras(clip: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    count = max([COMPARE_STREAMS, *SCALE])
    proc = subprocess.Popen(
        [sys.executable, "-m", "vmscore", "sim", "serve", "--clip", str(clip),
         "--cameras", str(count), "--port", "0", "--tcp"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert proc.stdout is not None
    base = ""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not base:
        line = proc.stdout.readline()
        match = re.search(r"(rtsp://127\.0\.0\.1:\d+)/", line)
        if match:
            base = match.group(1)
    assert base, "the camera server did not start"
    try:
        yield base, proc
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        for pipe in (proc.stdout, proc.stderr):
            if pipe:
                pipe.close()


def measure_engine(base: str, server: subprocess.Popen[str], streams: int) -> dict[str, float]:
    me = os.getpid()
    rss_before = rss_kib(me)
    with vmscore.IngestEngine() as engine:
        for i in range(streams):
            # deliver=False: the units go to C++ subscribers only, as for the recorder.
            engine.add_stream(f"cam{i}", f"{base}/cam{i}", deliver=False)
        time.sleep(3)  # connect and reach steady state
        frames0 = sum(engine.stats(f"cam{i}").frames for i in range(streams))
        cpu0, srv0, t0 = cpu_seconds(me), cpu_seconds(server.pid), time.monotonic()
        time.sleep(SECONDS)
        cpu1, srv1, t1 = cpu_seconds(me), cpu_seconds(server.pid), time.monotonic()
        stats = [engine.stats(f"cam{i}") for i in range(streams)]
        rss = rss_kib(me)
    wall = t1 - t0
    frames = sum(s.frames for s in stats) - frames0
    return {
        "cpu_s": cpu1 - cpu0,
        "server_cpu_s": srv1 - srv0,
        "wall_s": wall,
        "frames": frames,
        "expected_frames": 25 * wall * streams,
        "lost": sum(s.packets_lost for s in stats),
        "reconnects": sum(s.reconnects for s in stats),
        "playing": sum(s.state == "playing" for s in stats),
        "rss_per_stream_kib": (rss - rss_before) / streams,
        "cpu_s_per_stream_minute": (cpu1 - cpu0) / streams / (wall / 60),
    }


def measure_ffmpeg(base: str, streams: int) -> dict[str, float]:
    procs = [
        subprocess.Popen(
            [
                "ffmpeg",
                "-nostdin",
                "-loglevel",
                "error",
                "-rtsp_transport",
                "tcp",
                "-i",
                f"{base}/cam{i}",
                "-c",
                "copy",
                "-f",
                "null",
                "-",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for i in range(streams)
    ]
    try:
        time.sleep(3)
        assert all(p.poll() is None for p in procs), "an ffmpeg exited early"
        cpu0, t0 = sum(cpu_seconds(p.pid) for p in procs), time.monotonic()
        time.sleep(SECONDS)
        cpu1, t1 = sum(cpu_seconds(p.pid) for p in procs), time.monotonic()
        rss = sum(rss_kib(p.pid) for p in procs)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=10)
    wall = t1 - t0
    return {
        "cpu_s": cpu1 - cpu0,
        "wall_s": wall,
        "rss_per_stream_kib": rss / streams,
        "cpu_s_per_stream_minute": (cpu1 - cpu0) / streams / (wall / 60),
    }


def test_ingest_cpu_per_stream_vs_ffmpeg(
    benchmark: BenchmarkFixture, cameras: tuple[str, subprocess.Popen[str]]
) -> None:
    base, server = cameras
    ours = benchmark.pedantic(
        measure_engine, args=(base, server, COMPARE_STREAMS), rounds=1, iterations=1
    )
    theirs = measure_ffmpeg(base, COMPARE_STREAMS)
    ratio = theirs["cpu_s_per_stream_minute"] / max(ours["cpu_s_per_stream_minute"], 1e-9)
    benchmark.extra_info.update(
        {"streams": COMPARE_STREAMS, "vmscore": ours, "ffmpeg": theirs, "ratio": ratio,
         "machine": machine()}
    )  # fmt: skip
    print(
        f"\n{COMPARE_STREAMS} x 1080p25 H.264 4 Mbit/s over TCP, {SECONDS:.0f} s:"
        f" vmscore {ours['cpu_s_per_stream_minute']:.3f} CPU s per stream-minute"
        f" ({ours['rss_per_stream_kib']:.0f} KiB/stream),"
        f" ffmpeg {theirs['cpu_s_per_stream_minute']:.3f}"
        f" ({theirs['rss_per_stream_kib']:.0f} KiB/stream) -> {ratio:.1f}x less CPU;"
        f" frames {ours['frames']:.0f}/{ours['expected_frames']:.0f},"
        f" lost packets {ours['lost']:.0f}"
        f"\n  on {machine()}"
    )
    assert ours["playing"] == COMPARE_STREAMS and ours["lost"] == 0
    assert ours["frames"] >= 0.97 * ours["expected_frames"]
    assert ratio > 1


@pytest.mark.parametrize("streams", SCALE)
def test_ingest_scaling_on_one_loop(
    benchmark: BenchmarkFixture, cameras: tuple[str, subprocess.Popen[str]], streams: int
) -> None:
    base, server = cameras
    r = benchmark.pedantic(measure_engine, args=(base, server, streams), rounds=1, iterations=1)
    core_share = r["cpu_s"] / r["wall_s"]
    benchmark.extra_info.update({"streams": streams, **r, "core_share": core_share,
                                 "machine": machine()})  # fmt: skip
    print(
        f"\n{streams} streams: engine {core_share:.1%} of one core"
        f" ({r['cpu_s_per_stream_minute']:.3f} CPU s per stream-minute,"
        f" {r['rss_per_stream_kib']:.0f} KiB/stream), server {r['server_cpu_s'] / r['wall_s']:.1%};"
        f" frames {r['frames']:.0f}/{r['expected_frames']:.0f}, lost {r['lost']:.0f},"
        f" reconnects {r['reconnects']:.0f}, playing {r['playing']:.0f}"
    )
    assert r["playing"] == streams
