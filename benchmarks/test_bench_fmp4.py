"""fMP4 muxing throughput: vmscore's muxer against FFmpeg's fragmented-MP4 muxer (libavformat
through PyAV, stream copy) on the same access units in the same run, with a memcpy bound.

Two outputs: bytes in memory (what a live viewer gets) and a file (what the recorder writes; here
/dev/null so the disk does not dominate). Two streams: a 1080p main stream and a 360p sub-stream.

Run: pytest benchmarks/test_bench_fmp4.py -s
"""

from __future__ import annotations

import fractions
import io
import os
import time
from collections.abc import Callable

import av
import pytest
from pytest_benchmark.fixture import BenchmarkFixture

import vmscore
from conftest import machine
from vmscore.sim.encode import EncodedStream

Units = list[tuple[bytes, int, int, bool]]
ROUNDS = 9


def best_of(fn: Callable[[], object], rounds: int = ROUNDS) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def vmscore_bytes(units: Units) -> bytes:
    muxer = vmscore.Fmp4Muxer("h264")
    parts = [muxer.add(au, pts, dts, key) for au, pts, dts, key in units]
    parts.append(muxer.flush())
    return b"".join(parts)


def vmscore_file(units: Units) -> int:
    fd = os.open(os.devnull, os.O_WRONLY)
    try:
        writer = vmscore.Fmp4Writer(fd, "h264")
        for au, pts, dts, key in units:
            writer.add(au, pts, dts, key)
        writer.flush()
        return writer.bytes_out
    finally:
        os.close(fd)


def ffmpeg_mux(units: Units, stream: EncodedStream, target: object) -> None:
    """libavformat's mp4 muxer in fragmented mode, as FFmpeg-based NVRs use it."""
    with av.open(
        target,  # type: ignore[call-overload]
        mode="w",
        format="mp4",
        options={"movflags": "frag_keyframe+empty_moov+default_base_moof"},
    ) as container:
        out = container.add_stream("h264")
        out.width = stream.width
        out.height = stream.height
        out.time_base = fractions.Fraction(1, 90000)
        for au, pts, dts, key in units:
            packet = av.Packet(au)
            packet.pts = pts
            packet.dts = dts
            packet.time_base = out.time_base
            packet.is_keyframe = key
            packet.stream = out
            container.mux(packet)


def ffmpeg_bytes(units: Units, stream: EncodedStream) -> bytes:
    buffer = io.BytesIO()
    ffmpeg_mux(units, stream, buffer)
    return buffer.getvalue()


def frames_in(data: bytes) -> int:
    with av.open(io.BytesIO(data), mode="r") as container:
        return sum(1 for _ in container.decode(video=0))


@pytest.mark.parametrize("which", ["main_stream", "sub_stream"])
@pytest.mark.parametrize("output", ["bytes", "file"])
def test_fmp4_mux_throughput_vs_ffmpeg(
    benchmark: BenchmarkFixture, request: pytest.FixtureRequest, which: str, output: str
) -> None:
    stream: EncodedStream = request.getfixturevalue(which)
    units = [(f.data, f.pts_90k, f.dts_90k, f.is_keyframe) for f in stream.frames]
    payload = sum(len(u[0]) for u in units)
    benchmark.group = f"fmp4-mux-{output}"

    # Correctness first: both muxers' output decodes to every frame.
    assert frames_in(vmscore_bytes(units)) == len(units)
    assert frames_in(ffmpeg_bytes(units, stream)) == len(units)

    if output == "bytes":
        ours_fn: Callable[[], object] = lambda: vmscore_bytes(units)  # noqa: E731
        theirs_fn: Callable[[], object] = lambda: ffmpeg_bytes(units, stream)  # noqa: E731
    else:
        ours_fn = lambda: vmscore_file(units)  # noqa: E731
        theirs_fn = lambda: ffmpeg_mux(units, stream, os.devnull)  # noqa: E731
    benchmark.pedantic(ours_fn, rounds=ROUNDS, iterations=1, warmup_rounds=1)
    t_ours = benchmark.stats.stats.min
    t_ffmpeg = best_of(theirs_fn)
    t_copy = best_of(lambda: b"".join(u[0] for u in units))
    ratio = t_ffmpeg / t_ours
    mb = payload / 1e6
    benchmark.extra_info.update(
        {
            "stream": f"{stream.width}x{stream.height}@{stream.fps:g} {stream.codec}",
            "payload_mb": round(mb, 2),
            "access_units": len(units),
            "vmscore_mb_s": round(mb / t_ours),
            "ffmpeg_mb_s": round(mb / t_ffmpeg),
            "memcpy_mb_s": round(mb / t_copy),
            "ratio_vs_ffmpeg": round(ratio, 1),
            "vmscore_us_per_au": round(t_ours / len(units) * 1e6, 2),
            "ffmpeg_us_per_au": round(t_ffmpeg / len(units) * 1e6, 2),
            "machine": machine(),
        }
    )
    print(
        f"\n[{output}] {len(units)} AUs of {stream.width}x{stream.height} ({mb:.1f} MB):"
        f" vmscore {t_ours / len(units) * 1e6:.2f} us/AU ({mb / t_ours:.0f} MB/s),"
        f" FFmpeg {t_ffmpeg / len(units) * 1e6:.2f} us/AU ({mb / t_ffmpeg:.0f} MB/s),"
        f" one memcpy {mb / t_copy:.0f} MB/s -> {ratio:.1f}x FFmpeg"
    )
    assert ratio > 1.0
