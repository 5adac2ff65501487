"""Inputs shared by the benchmarks: realistic camera streams, encoded once per session."""

from __future__ import annotations

import os
import platform
from pathlib import Path

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


@pytest.fixture(scope="session")
def camera_1080p() -> EncodedStream:
    """10 s of a 1080p25 H.264 camera at about 4 Mbit/s with 2 s GOPs."""
    import numpy as np

    rng = np.random.default_rng(1)
    base = rng.integers(0, 256, (1080, 1920), dtype=np.uint8)

    def frames():  # type: ignore[no-untyped-def]
        for i in range(250):
            frame = np.roll(base, i * 3, axis=1)
            frame[400:600, (i * 7) % 1700 : (i * 7) % 1700 + 120] = 200
            yield frame

    return encode_frames(
        frames(),
        codec="h264",
        width=1920,
        height=1080,
        fps=25.0,
        gop=50,
        bitrate_bps=4_000_000,
        preset="ultrafast",
        threads=2,
    )
