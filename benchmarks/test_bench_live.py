"""Live view CPU: serving fragmented MP4 to browsers (Media Source Extensions) from vmscore's
`LiveHub` against one FFmpeg per viewer, on the same simulated cameras, in the same run.

vmscore: one process with an `IngestEngine` (`deliver=False`) and a `LiveHub` subscribed to every
camera; V viewers per camera; one Python thread polls `hub.poll(0.5)` and acknowledges every chunk
at once (a fast network: what the station's live-view thread does, without the WebSockets),
counting the fragments and bytes each viewer got. The hub muxes each access unit once into a
fragment of its own (moof+mdat per frame, shared by the stream's viewers), so a frame reaches a
viewer about when it arrived: the latency of a frame. The same process is first measured with the
hub subscribed and nobody watching (what the station does anyway), so the cost of live view alone
is the difference.

Peer: what FFmpeg-based NVRs do for MSE live view, one FFmpeg per viewer,
    ffmpeg -rtsp_transport tcp -i URL -c copy -f mp4
           -movflags frag_keyframe+empty_moov+default_base_moof pipe:1
its stdout read and discarded by a thread here (bytes and moof boxes counted). `frag_keyframe`
cuts a fragment per GOP, so a browser gets a GOP's frames (2 s here) only once the next keyframe
arrived: the latency of a GOP. The second peer adds `-frag_duration 40000` (40 ms: one fragment
per frame at 25 fps), which is what matching our latency costs FFmpeg. The same FFmpeg with
`-f null -` (receiving, writing nothing) is measured as well, as a reference: what it spends on
live view itself is the difference, to set beside ours.

The cameras (1080p25 H.264 about 4 Mbit/s, 2 s GOPs, RTP over loopback TCP) are served by
`vmscore sim serve` in its own process, so its CPU is not counted. CPU is user + system time from
/proc over the same wall time: our whole process (engine loop, hub, the polling thread), the sum
of the FFmpeg processes. The threads reading FFmpeg's pipes are not counted (they are in this
process, outside the measured windows of ours); their CPU is reported beside.

Run: pytest benchmarks/test_bench_live.py -s
     VMSCORE_BENCH_CAMERAS (8), VMSCORE_BENCH_VIEWERS (viewers per camera, "1,4"),
     VMSCORE_BENCH_SECONDS (15 per window; five windows per viewer count)
"""

from __future__ import annotations

import os
import statistics
import subprocess
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

import vmscore
from conftest import cpu_seconds, ffmpeg_per_stream, machine, rss_kib, serve_cameras
from vmscore import _core

SECONDS = float(os.environ.get("VMSCORE_BENCH_SECONDS", "15"))
CAMERAS = int(os.environ.get("VMSCORE_BENCH_CAMERAS", "8"))
VIEWERS = [int(n) for n in os.environ.get("VMSCORE_BENCH_VIEWERS", "1,4").split(",")]
WARMUP_S = 3.0
FPS = 25

FMP4 = ["-c", "copy", "-f", "mp4", "-movflags", "frag_keyframe+empty_moov+default_base_moof"]
PER_GOP, PER_FRAME = "ffmpeg, a fragment per GOP", "ffmpeg, a fragment per frame"
PEERS = {
    PER_GOP: [*FMP4, "pipe:1"],
    PER_FRAME: [*FMP4, "-frag_duration", "40000", "pipe:1"],
}
# The same FFmpeg receiving without writing anything: what its ingest alone costs, so that its
# part for live view can be set beside ours (a reference, not a peer).
INGEST_ONLY = "ffmpeg, ingest only (-f null)"
NULL = ["-c", "copy", "-f", "null", "-"]


@pytest.fixture(scope="module")
def cameras(camera_clip: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    with serve_cameras(camera_clip, CAMERAS) as served:
        yield served


@dataclass
class Got:
    """What one viewer received."""

    fragments: int = 0
    bytes: int = 0
    skipped: int = 0
    latencies_ms: list[float] = field(default_factory=list)


class Feeder(threading.Thread):
    """The station's live-view thread with a fast network: polls the hub and acknowledges every
    chunk at once, counting what each viewer got and how old its newest frame was on arrival
    (receipt time less the frame's wall time, both from this machine's clock)."""

    def __init__(self, hub: _core.LiveHub) -> None:
        super().__init__(name="live-feeder", daemon=True)
        self.hub = hub
        self.got: defaultdict[int, Got] = defaultdict(Got)
        self.chunks = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            for chunk in self.hub.poll(0.5):
                got = self.got[chunk.viewer]
                got.fragments += chunk.fragments
                got.bytes += len(chunk.media) + len(chunk.init or b"")
                got.skipped += chunk.skipped
                if chunk.last_wall_time_us > 0:
                    now_us = time.time_ns() // 1000
                    got.latencies_ms.append((now_us - chunk.last_wall_time_us) / 1000)
                self.hub.ack(chunk.viewer)
                self.chunks += 1

    def snapshot(self) -> dict[int, tuple[int, int, int, int]]:
        """Per viewer: fragments, bytes, frames skipped, latencies recorded so far."""
        got = dict(self.got)
        return {v: (g.fragments, g.bytes, g.skipped, len(g.latencies_ms)) for v, g in got.items()}

    def stop(self) -> None:
        self.stopping.set()
        self.hub.wake()
        self.join(timeout=10)


class PipeReader(threading.Thread):
    """Reads an FFmpeg's fragmented MP4 from its stdout and discards it, counting bytes and
    fragments (top-level moof boxes): a WebSocket forwarder that sends nothing."""

    def __init__(self, stream: IO[bytes]) -> None:
        super().__init__(name="ffmpeg-reader", daemon=True)
        self.stream = stream
        self.bytes = 0
        self.fragments = 0

    def _read(self, n: int) -> bytes:
        data = self.stream.read(n)
        self.bytes += len(data)
        return data

    def run(self) -> None:
        buf = memoryview(bytearray(1 << 16))
        while len(head := self._read(8)) == 8:
            size, kind = int.from_bytes(head[:4], "big"), head[4:]
            if size == 1:  # a 64-bit size follows the type
                size = int.from_bytes(self._read(8), "big") - 8
            left = size - 8 if size else 1 << 62  # size 0: the box runs to the end
            if kind == b"moof":
                self.fragments += 1
            while left > 0:
                n = self.stream.readinto(buf[: min(left, len(buf))])  # type: ignore[attr-defined]
                if not n:
                    return
                self.bytes += n
                left -= n


def core_share(cpu_s: float, wall_s: float) -> float:
    return cpu_s / wall_s


def measure_vmscore(base: str, cameras: int, viewers: int) -> dict[str, float]:
    """The baseline window (hub subscribed, nobody watching), then the window with `viewers`
    viewers per camera, in one process on the same connections."""
    me = os.getpid()
    ids = [f"cam{i}" for i in range(cameras)]
    with vmscore.IngestEngine() as engine:
        for sid in ids:
            engine.add_stream(sid, f"{base}/{sid}", deliver=False)
        hub = _core.LiveHub(engine)
        for sid in ids:
            hub.add_stream(sid)
        feeder = Feeder(hub)
        feeder.start()
        assert feeder.native_id is not None
        try:
            time.sleep(WARMUP_S)
            cpu0, t0 = cpu_seconds(me), time.monotonic()
            time.sleep(SECONDS)
            cpu1, t1 = cpu_seconds(me), time.monotonic()
            baseline = {"cpu_s": cpu1 - cpu0, "wall_s": t1 - t0}

            rss0 = rss_kib(me)
            watching = {hub.open(sid): sid for sid in ids for _ in range(viewers)}
            time.sleep(WARMUP_S)
            got0 = feeder.snapshot()
            chunks0 = feeder.chunks
            muxed0 = sum(s.muxed for s in hub.source_stats())
            cpu0, poll0, t0 = cpu_seconds(me), cpu_seconds(me, feeder.native_id), time.monotonic()
            time.sleep(SECONDS)
            cpu1, poll1, t1 = cpu_seconds(me), cpu_seconds(me, feeder.native_id), time.monotonic()
            got1 = feeder.snapshot()
            chunks1 = feeder.chunks
            sources = hub.source_stats()
            rss1 = rss_kib(me)
            streams = [engine.stats(sid) for sid in ids]
            for v in watching:
                hub.close(v)
        finally:
            feeder.stop()
            for sid in ids:
                hub.remove_stream(sid)
    wall = t1 - t0
    fragments = [got1[v][0] - got0[v][0] for v in watching]
    ages = [feeder.got[v].latencies_ms[got0[v][3] : got1[v][3]] for v in watching]
    latencies = sorted(ms for per_viewer in ages for ms in per_viewer)
    nan = float("nan")
    return {
        "cpu_s": cpu1 - cpu0,
        "poll_thread_cpu_s": poll1 - poll0,
        "wall_s": wall,
        "baseline_cpu_s": baseline["cpu_s"],
        "baseline_wall_s": baseline["wall_s"],
        "viewers": len(watching),
        "min_fragments_per_viewer": min(fragments),
        "fragments": sum(fragments),
        "bytes": sum(got1[v][1] - got0[v][1] for v in watching),
        "skipped": sum(got1[v][2] - got0[v][2] for v in watching),
        "chunks": chunks1 - chunks0,
        "muxed": sum(s.muxed for s in sources) - muxed0,
        "mux_errors": sum(s.mux_errors for s in sources),
        "kept_bytes": sum(s.bytes for s in sources),
        "latency_ms_median": statistics.median(latencies) if latencies else nan,
        "latency_ms_p99": latencies[int(0.99 * len(latencies))] if latencies else nan,
        "rss_growth_kib": rss1 - rss0,
        "lost": sum(s.packets_lost for s in streams),
        "playing": sum(s.state == "playing" for s in streams),
    }


def measure_ffmpeg(base: str, cameras: int, viewers: int, args: list[str]) -> dict[str, float]:
    """`viewers` FFmpeg processes per camera with the output arguments `args`; what they write to
    stdout is read by threads here."""
    me = os.getpid()
    with ExitStack() as stack:
        procs = [
            p
            for _ in range(viewers)
            for p in stack.enter_context(
                ffmpeg_per_stream(base, cameras, lambda _: args, subprocess.PIPE)
            )
        ]
        readers = [PipeReader(p.stdout) for p in procs]  # type: ignore[arg-type]
        for r in readers:
            r.start()
        try:
            time.sleep(WARMUP_S)
            assert all(p.poll() is None for p in procs), "an ffmpeg exited early"
            pids = [p.pid for p in procs]
            tids = [r.native_id for r in readers]

            def sample() -> tuple[float, float, list[int], list[int], float]:
                return (
                    sum(cpu_seconds(pid) for pid in pids),
                    sum(cpu_seconds(me, tid) for tid in tids if tid is not None),
                    [r.bytes for r in readers],
                    [r.fragments for r in readers],
                    time.monotonic(),
                )

            cpu0, read0, bytes0, frags0, t0 = sample()
            time.sleep(SECONDS)
            cpu1, read1, bytes1, frags1, t1 = sample()
            rss = sum(rss_kib(pid) for pid in pids)
        finally:
            stack.close()  # SIGTERM and wait: the readers then reach the end of their pipes
            for r, p in zip(readers, procs, strict=True):
                r.join(timeout=10)
                assert p.stdout is not None
                p.stdout.close()
    per_viewer_bytes = [b - a for a, b in zip(bytes0, bytes1, strict=True)]
    per_viewer_frags = [b - a for a, b in zip(frags0, frags1, strict=True)]
    return {
        "cpu_s": cpu1 - cpu0,
        "readers_cpu_s": read1 - read0,
        "wall_s": t1 - t0,
        "viewers": len(procs),
        "bytes": sum(per_viewer_bytes),
        "min_bytes_per_viewer": min(per_viewer_bytes),
        "fragments": sum(per_viewer_frags),
        "min_fragments_per_viewer": min(per_viewer_frags),
        "rss_kib": rss,
    }


@pytest.mark.parametrize("viewers", VIEWERS)
def test_live_view_cpu_vs_ffmpeg(
    benchmark: BenchmarkFixture, cameras: tuple[str, subprocess.Popen[str]], viewers: int
) -> None:
    base, _ = cameras
    ours = benchmark.pedantic(
        measure_vmscore, args=(base, CAMERAS, viewers), rounds=1, iterations=1
    )
    peers = {name: measure_ffmpeg(base, CAMERAS, viewers, args) for name, args in PEERS.items()}
    ingest_only = measure_ffmpeg(base, CAMERAS, viewers, NULL)

    n = CAMERAS * viewers
    ours_share = core_share(ours["cpu_s"], ours["wall_s"])
    baseline_share = core_share(ours["baseline_cpu_s"], ours["baseline_wall_s"])
    null_share = core_share(ingest_only["cpu_s"], ingest_only["wall_s"])
    shares = {name: core_share(p["cpu_s"], p["wall_s"]) for name, p in peers.items()}
    ratios = {name: share / ours_share for name, share in shares.items()}
    benchmark.extra_info.update(
        {"cameras": CAMERAS, "viewers_per_camera": viewers, "vmscore": ours, "ffmpeg": peers,
         "ffmpeg_ingest_only": ingest_only, "ratios": ratios,
         "live_only_core_share": ours_share - baseline_share, "machine": machine()}
    )  # fmt: skip

    def row(name: str, share: float, alone: float | None, extra: str = "") -> str:
        part = f"{alone:9.2%} {alone / n:9.3%}" if alone is not None else " " * 19
        return f"  {name:<30} {share:7.2%} {share / n:9.3%}  {part}  {extra}"

    def per_viewer(r: dict[str, float]) -> str:
        fps = r["fragments"] / r["wall_s"] / r["viewers"]
        mbps = r["bytes"] * 8 / r["wall_s"] / r["viewers"] / 1e6
        return f"{fps:.1f} fragments/s and {mbps:.2f} Mbit/s a viewer"

    poll_share = core_share(ours["poll_thread_cpu_s"], ours["wall_s"])
    ours_extra = (
        f"{per_viewer(ours)}; poll thread {poll_share:.2%},"
        f" {ours['chunks'] / ours['wall_s']:.0f} chunks/s, {ours['skipped']:.0f} frames skipped;"
        f" newest frame's age on arrival: median {ours['latency_ms_median']:.1f} ms,"
        f" p99 {ours['latency_ms_p99']:.1f} ms; RSS +{ours['rss_growth_kib'] / 1024:.1f} MiB"
        f" (fragments kept {ours['kept_bytes'] / 2**20:.1f} MiB)"
    )
    lines = [
        f"\n{CAMERAS} cameras x {viewers} viewer(s) (1080p25 H.264 ~4 Mbit/s over TCP),"
        f" {SECONDS:.0f} s windows. % of a core: in all, per camera-viewer; live view alone"
        f" (less receiving the streams): in all, per camera-viewer",
        row("vmscore, nobody watching", baseline_share, None, "ingest + subscribed hub"),
        row("vmscore with viewers", ours_share, ours_share - baseline_share, ours_extra),
        row(INGEST_ONLY, null_share, None, "one process per viewer"),
    ]
    for name, p in peers.items():
        readers = core_share(p["readers_cpu_s"], p["wall_s"])
        extra = (
            f"{ratios[name]:.1f}x ours; {per_viewer(p)};"
            f" RSS {p['rss_kib'] / p['viewers'] / 1024:.1f} MiB a viewer;"
            f" reading its pipes here {readers:.2%} (not counted)"
        )
        lines.append(row(name, shares[name], shares[name] - null_share, extra))
    print("\n".join([*lines, f"  on {machine()}"]))

    assert ours["playing"] == CAMERAS and ours["lost"] == 0 and ours["mux_errors"] == 0
    expected = 0.9 * FPS * ours["wall_s"]
    assert ours["min_fragments_per_viewer"] >= expected, "a viewer fell short of the frame rate"
    ours_per_viewer = ours["bytes"] / ours["viewers"]
    for name, p in peers.items():
        assert p["min_bytes_per_viewer"] >= 0.5 * ours_per_viewer, f"{name}: a viewer got little"
    per_frame = peers[PER_FRAME]
    assert per_frame["min_fragments_per_viewer"] >= 0.9 * FPS * per_frame["wall_s"]
    assert all(r > 1 for r in ratios.values()), f"FFmpeg used less CPU than vmscore: {ratios}"
