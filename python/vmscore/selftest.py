"""Checks an installed vmscore in seconds: ``python -m vmscore.selftest``.

It loads the native extension, reports the SIMD level, and makes a tiny round trip through the
parts every later feature stands on: encode a few frames with PyAV (H.264 and, when the FFmpeg
build has it, H.265), mux them with the native fMP4 muxer, and decode the result again, checking it
against a decode of the original elementary stream; then the motion kernels of every SIMD level
against the scalar ones and a detector on a moving square. Exit status 0 means the install works.
"""

from __future__ import annotations

import fractions
import io
import sys
import time
from typing import Literal

import av
import numpy as np

import vmscore

_SIZE = 64
_FRAMES = 12


def _encode(encoder: str) -> list[tuple[bytes, int, int]]:
    ctx = av.CodecContext.create(encoder, "w")
    assert isinstance(ctx, av.VideoCodecContext)
    ctx.width = ctx.height = _SIZE
    ctx.pix_fmt = "yuv420p"
    ctx.time_base = fractions.Fraction(1, 90000)
    ctx.framerate = fractions.Fraction(25)
    ctx.gop_size = 6
    if encoder == "libx265":
        ctx.options = {"x265-params": "keyint=6:min-keyint=6:repeat-headers=1:log-level=error"}
    else:
        ctx.options = {"preset": "ultrafast", "x264-params": "keyint=6:min-keyint=6:scenecut=0"}
    rng = np.random.default_rng(7)
    units: list[tuple[bytes, int, int]] = []
    for i in range(_FRAMES):
        image = rng.integers(0, 256, (_SIZE, _SIZE, 3), dtype=np.uint8)
        frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
        frame.pts = i * 3600
        frame.time_base = ctx.time_base
        units += [(bytes(p), int(p.pts or 0), int(p.dts or 0)) for p in ctx.encode(frame)]
    units += [(bytes(p), int(p.pts or 0), int(p.dts or 0)) for p in ctx.encode(None)]
    return units


def _decode(data: bytes, fmt: str | None) -> list[np.ndarray]:
    with av.open(io.BytesIO(data), mode="r", format=fmt) as container:
        return [f.to_ndarray(format="gray") for f in container.decode(video=0)]


def _round_trip(codec: Literal["h264", "h265"], encoder: str) -> str:
    units = _encode(encoder)
    muxer = vmscore.Fmp4Muxer(codec)
    mp4 = b"".join(muxer.add(au, pts, dts) for au, pts, dts in units) + muxer.flush()
    original = _decode(b"".join(au for au, _, _ in units), "h264" if codec == "h264" else "hevc")
    muxed = _decode(mp4, "mp4")
    if len(muxed) != _FRAMES or len(original) != _FRAMES:
        raise AssertionError(f"{codec}: decoded {len(muxed)} frames, expected {_FRAMES}")
    if not all(np.array_equal(a, b) for a, b in zip(original, muxed, strict=True)):
        raise AssertionError(f"{codec}: frames decoded from fMP4 differ from the original")
    return f"{codec} {muxer.codec_string}: {_FRAMES} frames, {len(mp4)} bytes, identical"


def _motion() -> str:
    """Every SIMD level's kernels against the scalar ones, then a detector finding a square."""
    from vmscore.motion import MotionDetector, MotionKernels, MotionSettings

    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (37, 101), dtype=np.uint8)
    b = rng.integers(0, 256, (37, 101), dtype=np.uint8)
    scalar = MotionKernels("scalar")
    levels = ["scalar"]
    for level in ("sse2", "avx2", "avx512", "neon"):
        try:
            k = MotionKernels(level)
        except ValueError:
            continue
        if k.absdiff_count(a, b, 40) != scalar.absdiff_count(a, b, 40) or k.sad(a, b) != scalar.sad(
            a, b
        ):
            raise AssertionError(f"motion kernels at {level} differ from the scalar ones")
        levels.append(level)
    det = MotionDetector(160, 90, MotionSettings(analysis_width=0, learn_s=0.4))
    base = rng.integers(70, 90, (90, 160), dtype=np.uint8)
    found = False
    for i in range(8):
        frame = base.copy()
        if i >= 4:
            frame[30:60, 20 + 4 * i : 50 + 4 * i] = 220
        found = det.process(frame, i * 0.2).motion
    if not found:
        raise AssertionError("the motion detector missed a moving square")
    return f"motion: kernels at {', '.join(levels)} agree; a moving square is found"


def run() -> int:
    start = time.perf_counter()
    print(f"vmscore {vmscore.__version__}, native core loaded")
    print(f"SIMD: {vmscore.simd_level()} (CPU supports {vmscore.simd_detected()})")
    failures = 0
    pairs: tuple[tuple[Literal["h264", "h265"], str], ...] = (
        ("h264", "libx264"),
        ("h265", "libx265"),
    )
    for codec, encoder in pairs:
        if encoder not in av.codecs_available:
            if codec == "h264":
                print(f"FAIL {codec}: PyAV's FFmpeg has no {encoder}")
                failures += 1
            else:
                print(f"skip {codec}: PyAV's FFmpeg has no {encoder}")
            continue
        try:
            print("ok  ", _round_trip(codec, encoder))
        except Exception as exc:  # report every failure, then exit non-zero
            print(f"FAIL {codec}: {exc!r}")
            failures += 1
    try:
        print("ok  ", _motion())
    except Exception as exc:
        print(f"FAIL motion: {exc!r}")
        failures += 1
    print(f"{'FAILED' if failures else 'passed'} in {time.perf_counter() - start:.2f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(run())
