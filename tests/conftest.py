"""Shared fixtures: encoded streams made with the project's own encoder (PyAV) and helpers to read
what the muxer writes with independent tools (PyAV's demuxer, ffprobe)."""

from __future__ import annotations

import functools
import io
import json
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

import av
import numpy as np
import pytest

from vmscore.sim.encode import EncodedStream, encode_frames

DATA = Path(__file__).parent / "data"

Codec = Literal["h264", "h265"]


def moving_frames(width: int, height: int, count: int, seed: int = 0) -> Iterator[np.ndarray]:
    """Frames with texture and motion, so the encoder makes real P and B frames."""
    rng = np.random.default_rng(seed)
    texture = rng.integers(0, 256, (height, width), dtype=np.uint8)
    yy, xx = np.mgrid[0:height, 0:width]
    for i in range(count):
        frame = ((xx + 3 * i) % 256 // 2 + (yy // 8) * 4 + texture // 4).astype(np.uint8)
        x0 = (i * max(1, width // 40)) % max(1, width - width // 5)
        frame[height // 3 : height // 3 + height // 5, x0 : x0 + width // 5] = 230
        yield frame


@functools.lru_cache(maxsize=64)
def encoded(
    codec: Codec, width: int, height: int, frames: int, gop: int, bframes: int = 0
) -> EncodedStream:
    return encode_frames(
        moving_frames(width, height, frames),
        codec=codec,
        width=width,
        height=height,
        fps=25.0,
        gop=gop,
        bitrate_bps=max(200_000, width * height * 2),
        bframes=bframes,
        preset="ultrafast" if width * height > 640 * 360 else "veryfast",
    )


@pytest.fixture(scope="session")
def encode() -> Callable[..., EncodedStream]:
    return encoded


def decode_luma(data: bytes, fmt: str | None = None) -> list[np.ndarray]:
    """Decodes every frame's luma plane with PyAV (FFmpeg's decoder, not ours)."""
    with av.open(io.BytesIO(data), mode="r", format=fmt) as container:
        return [frame.to_ndarray(format="gray") for frame in container.decode(video=0)]


def es_format(codec: Codec) -> str:
    return "h264" if codec == "h264" else "hevc"


def ffprobe(path: Path, *args: str) -> tuple[dict[str, object], str]:
    """Runs ffprobe with warnings on; returns its JSON and whatever it printed to stderr."""
    exe = shutil.which("ffprobe")
    assert exe, "ffprobe is missing: run scripts/install-test-deps"
    proc = subprocess.run(
        [exe, "-v", "warning", "-of", "json", *args, str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return json.loads(proc.stdout), proc.stderr


def golden_stream(name: str) -> tuple[bytes, list[tuple[int, int, bool]]]:
    """A small committed elementary stream and its (pts, dts, keyframe) per access unit."""
    data = (DATA / "golden" / name).read_bytes()
    stamps = json.loads((DATA / "golden" / f"{name}.json").read_text())
    return data, [(int(p), int(d), bool(k)) for p, d, k in stamps]
