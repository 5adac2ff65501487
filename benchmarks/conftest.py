"""Inputs shared by the benchmarks: camera-like streams, encoded once per session; simulated
cameras served by `vmscore sim serve` in its own process; CPU, memory and I/O of processes from
/proc."""

from __future__ import annotations

import os
import platform
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from vmscore.sim import write_clip
from vmscore.sim.encode import EncodedStream, encode_frames

TICKS = os.sysconf("SC_CLK_TCK")


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


def cpu_seconds(pid: int, tid: int | None = None) -> float:
    """User + system CPU time of a process (all its threads), or of one of its threads."""
    stat = Path(f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat")
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def rss_kib(pid: int) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", text).group(1))  # type: ignore[union-attr]


@pytest.fixture(scope="session")
def camera_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The simulated cameras' clip: 10 s of the carpark scene, 1080p25 H.264 at about 4 Mbit/s
    with 2 s GOPs."""
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


@contextmanager
def serve_cameras(clip: Path, count: int) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """`count` cameras (cam0, cam1, ...) showing `clip`, served over RTSP/TCP by `vmscore sim
    serve` in its own process; yields the base URL and the process."""
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


def _textured(width: int, height: int, frames: int) -> Iterator[npt.NDArray[np.uint8]]:
    # Fine texture that pans, plus a moving block: enough detail for realistic frame sizes.
    rng = np.random.default_rng(1)
    base = rng.integers(0, 256, (height, width), dtype=np.uint8)
    for i in range(frames):
        frame = np.roll(base, i * 3, axis=1)
        x = (i * 7) % (width - width // 16)
        frame[height // 3 : height // 2, x : x + width // 16] = 200
        yield frame


@contextmanager
def ffmpeg_per_stream(
    base: str, streams: int, output: Callable[[int], list[str]], stdout: int = subprocess.DEVNULL
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """One `ffmpeg -rtsp_transport tcp -i URL ...` per camera cam0..cam{streams-1}, with the
    output arguments `output(i)`; terminated (SIGTERM, so a muxer finishes its file) on exit.
    `stdout=subprocess.PIPE` to read what they write there (the caller reads and closes it)."""
    head = ["ffmpeg", "-nostdin", "-loglevel", "error", "-rtsp_transport", "tcp", "-i"]
    procs = [
        subprocess.Popen(
            [*head, f"{base}/cam{i}", *output(i)],
            stdout=stdout,
            stderr=subprocess.DEVNULL,
        )
        for i in range(streams)
    ]
    try:
        yield procs
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=10)


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
