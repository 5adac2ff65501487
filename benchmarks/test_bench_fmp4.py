"""fMP4 muxing throughput: vmscore's muxer against FFmpeg's fragmented-MP4 muxer (libavformat
through PyAV, stream copy) on the same access units in the same run, with a memcpy bound.

Run: pytest benchmarks/test_bench_fmp4.py --benchmark-only -s
"""

from __future__ import annotations

import fractions
import io
import time
from collections.abc import Callable

import av
import pytest
from vmscore.sim.encode import EncodedStream

import vmscore
from conftest import machine

ROUNDS = 7


def best_of(fn: Callable[[], object], rounds: int = ROUNDS) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def mux_vmscore(units: list[tuple[bytes, int, int, bool]]) -> bytes:
    muxer = vmscore.Fmp4Muxer("h264")
    parts = [muxer.add(au, pts, dts, key) for au, pts, dts, key in units]
    parts.append(muxer.flush())
    return b"".join(parts)


def mux_ffmpeg(units: list[tuple[bytes, int, int, bool]], template: EncodedStream) -> bytes:
    """libavformat's mp4 muxer in fragmented mode, as NVRs built on FFmpeg use it."""
    out = io.BytesIO()
    with av.open(
        out,
        mode="w",
        format="mp4",
        options={"movflags": "frag_keyframe+empty_moov+default_base_moof"},
    ) as container:
        stream = container.add_stream("h264")
        stream.width = template.width
        stream.height = template.height
        stream.time_base = fractions.Fraction(1, 90000)
        # Parameter sets in-band; libavformat builds avcC from the first keyframe.
        for au, pts, dts, key in units:
            packet = av.Packet(au)
            packet.pts = pts
            packet.dts = dts
            packet.time_base = stream.time_base
            packet.is_keyframe = key
            packet.stream = stream
            container.mux(packet)
    return out.getvalue()


def copy_bound(units: list[tuple[bytes, int, int, bool]]) -> bytes:
    """Touching every byte once: the memory-speed floor any muxer has to pay."""
    return b"".join(au for au, _, _, _ in units)


@pytest.mark.benchmark(group="fmp4-mux")
def test_fmp4_mux_throughput_vs_ffmpeg(benchmark, camera_1080p: EncodedStream) -> None:  # type: ignore[no-untyped-def]
    units = [(f.data, f.pts_90k, f.dts_90k, f.is_keyframe) for f in camera_1080p.frames]
    payload = sum(len(u[0]) for u in units)

    ours = mux_vmscore(units)
    theirs = mux_ffmpeg(units, camera_1080p)
    # Correctness first: both files hold the same number of decodable frames.
    for data in (ours, theirs):
        with av.open(io.BytesIO(data), mode="r") as container:
            assert sum(1 for _ in container.demux(video=0) if _.size) == len(units)

    benchmark.pedantic(mux_vmscore, args=(units,), rounds=ROUNDS, iterations=1)
    t_ours = benchmark.stats.stats.min
    t_ffmpeg = best_of(lambda: mux_ffmpeg(units, camera_1080p))
    t_copy = best_of(lambda: copy_bound(units))
    ratio = t_ffmpeg / t_ours
    mb = payload / 1e6
    benchmark.extra_info.update(
        {
            "payload_mb": round(mb, 2),
            "access_units": len(units),
            "vmscore_mb_s": round(mb / t_ours, 1),
            "ffmpeg_mb_s": round(mb / t_ffmpeg, 1),
            "memcpy_mb_s": round(mb / t_copy, 1),
            "ratio_vs_ffmpeg": round(ratio, 1),
            "fraction_of_memcpy": round(t_copy / t_ours, 2),
            "machine": machine(),
        }
    )
    print(
        f"\nfMP4 mux of {len(units)} AUs ({mb:.1f} MB, 1080p25 H.264 4 Mbit/s):"
        f" vmscore {mb / t_ours:.0f} MB/s, FFmpeg {mb / t_ffmpeg:.0f} MB/s,"
        f" memcpy {mb / t_copy:.0f} MB/s -> {ratio:.1f}x FFmpeg,"
        f" {t_copy / t_ours:.0%} of memcpy speed\n  on {machine()}"
    )
    assert ratio > 1.0
