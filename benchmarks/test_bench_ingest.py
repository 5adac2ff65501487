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
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

import vmscore
from conftest import cpu_seconds, ffmpeg_per_stream, machine, rss_kib, serve_cameras

SECONDS = float(os.environ.get("VMSCORE_BENCH_SECONDS", "20"))
COMPARE_STREAMS = int(os.environ.get("VMSCORE_BENCH_COMPARE", "32"))
SCALE = [int(n) for n in os.environ.get("VMSCORE_BENCH_STREAMS", "32,100,250,500").split(",")]


@pytest.fixture(scope="module")
def cameras(camera_clip: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    with serve_cameras(camera_clip, max([COMPARE_STREAMS, *SCALE])) as served:
        yield served


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
    with ffmpeg_per_stream(base, streams, lambda _: ["-c", "copy", "-f", "null", "-"]) as procs:
        time.sleep(3)
        assert all(p.poll() is None for p in procs), "an ffmpeg exited early"
        cpu0, t0 = sum(cpu_seconds(p.pid) for p in procs), time.monotonic()
        time.sleep(SECONDS)
        cpu1, t1 = sum(cpu_seconds(p.pid) for p in procs), time.monotonic()
        rss = sum(rss_kib(p.pid) for p in procs)
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
