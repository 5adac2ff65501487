"""Inputs shared by the benchmarks: camera-like streams, encoded once per session."""

from __future__ import annotations

import os
import platform
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from vmscore.sim.encode import EncodedStream, encode_frames


def machine() -> str:
    """One line naming the machine a figure was measured on, for RESULTS.md."""
    cpu = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    system = f"{platform.system()} {platform.release()}"
    return f"{cpu}, {os.cpu_count()} cores, {system}, Python {platform.python_version()}"


def _textured(width: int, height: int, frames: int) -> Iterator[npt.NDArray[np.uint8]]:
    # Fine texture that pans, plus a moving block: enough detail for realistic frame sizes.
    rng = np.random.default_rng(1)
    base = rng.integers(0, 256, (height, width), dtype=np.uint8)
    for i in range(frames):
        frame = np.roll(base, i * 3, axis=1)
        x = (i * 7) % (width - width // 16)
        frame[height // 3 : height // 2, x : x + width // 16] = 200
        yield frame


@pytest.fixture(scope="session")
def main_stream() -> EncodedStream:
    """10 s of a 1080p25 H.264 main stream at about 4 Mbit/s with 2 s GOPs."""
    return encode_frames(
        _textured(1920, 1080, 250),
        codec="h264",
        width=1920,
        height=1080,
        fps=25.0,
        gop=50,
        bitrate_bps=4_000_000,
        preset="ultrafast",
        threads=2,
    )


@pytest.fixture(scope="session")
def sub_stream() -> EncodedStream:
    """60 s of a 640x360 15 fps H.264 sub-stream at about 500 kbit/s with 2 s GOPs."""
    return encode_frames(
        _textured(640, 360, 900),
        codec="h264",
        width=640,
        height=360,
        fps=15.0,
        gop=30,
        bitrate_bps=500_000,
        preset="veryfast",
        threads=2,
    )
