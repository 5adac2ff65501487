"""Helpers for the ingest tests: an RTSP peer process (GStreamer's server), collecting what the
engine delivers, and decoding it with FFmpeg (PyAV) to compare with the source."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

import vmscore

PEERS = Path(__file__).parent / "peers"
SYSTEM_PYTHON = "/usr/bin/python3"


@contextmanager
def gst_rtsp_server(**files: Path) -> Iterator[str]:
    """Starts GStreamer's RTSP server (tests/peers/gst_rtsp_server.py); yields rtsp://127.0.0.1:PORT."""
    probe = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import gi; gi.require_version('GstRtspServer', '1.0')"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert probe.returncode == 0, (
        "GStreamer's RTSP server for Python is missing (Debian: gstreamer1.0-rtsp "
        "gir1.2-gst-rtsp-server-1.0 python3-gi); run scripts/install-test-deps:\n" + probe.stderr
    )
    args = [SYSTEM_PYTHON, str(PEERS / "gst_rtsp_server.py")]
    for name, path in files.items():
        args += [f"--{name.replace('_', '-')}", str(path)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("PORT "), (
            f"GStreamer server did not start: {line}{proc.stderr.read() if proc.stderr else ''}"
        )
        yield f"rtsp://127.0.0.1:{int(line.split()[1])}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe:
                pipe.close()


@dataclass
class Collected:
    units: list[vmscore.AccessUnit] = field(default_factory=list)
    events: list[vmscore.StreamEvent] = field(default_factory=list)
    items: list[vmscore.AccessUnit | vmscore.StreamEvent] = field(default_factory=list)

    def after(self, stream_id: str, kind: str) -> list[vmscore.AccessUnit]:
        """The stream's video units delivered after its first event of `kind`."""
        seen = False
        out = []
        for item in self.items:
            if isinstance(item, vmscore.StreamEvent):
                seen = seen or (item.stream_id == stream_id and item.kind == kind)
            elif seen and item.stream_id == stream_id and item.kind == "video":
                out.append(item)
        return out

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]

    def video(self) -> list[vmscore.AccessUnit]:
        return [u for u in self.units if u.kind == "video"]


def collect(
    engine: vmscore.IngestEngine,
    *,
    frames: int = 0,
    seconds: float = 10.0,
    until_event: str | None = None,
    into: Collected | None = None,
) -> Collected:
    """Polls until `frames` video units (or the event) arrived, or `seconds` passed."""
    out = into if into is not None else Collected()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for item in engine.poll(timeout=0.1):
            out.items.append(item)
            if isinstance(item, vmscore.StreamEvent):
                out.events.append(item)
            else:
                out.units.append(item)
        if frames and len(out.video()) >= frames:
            break
        if until_event and until_event in out.kinds():
            break
    return out


def to_annexb(au: vmscore.AccessUnit) -> bytes:
    """The unit with start codes, with its parameter sets first on keyframes (for a decoder that
    starts there)."""
    data = au.to_annexb()
    if au.is_keyframe:
        data = b"".join(b"\0\0\0\1" + p for p in au.parameter_sets) + data
    return data


def decode_units(units: list[vmscore.AccessUnit]) -> list[np.ndarray]:
    """Decodes the engine's units with FFmpeg (PyAV) to luma planes."""
    codec = units[0].codec
    ctx = av.CodecContext.create("h264" if codec == "h264" else "hevc", "r")
    ctx.thread_count = 1
    frames: list[np.ndarray] = []
    for au in units:
        for frame in ctx.decode(av.Packet(to_annexb(au))):
            frames.append(frame.to_ndarray(format="gray"))
    for frame in ctx.decode(None):
        frames.append(frame.to_ndarray(format="gray"))
    return frames


def decode_file(data: bytes, codec: str, container: str | None = None) -> list[np.ndarray]:
    """Decodes an elementary stream (or, with `container`, a file of that format) with FFmpeg."""
    fmt = container or ("h264" if codec == "h264" else "hevc")
    with av.open(io.BytesIO(data), mode="r", format=fmt) as c:
        return [f.to_ndarray(format="gray") for f in c.decode(video=0)]


def digest(frame: np.ndarray) -> str:
    return hashlib.sha256(frame.tobytes()).hexdigest()


def ffmpeg_exe() -> str:
    exe = shutil.which("ffmpeg")
    assert exe, "ffmpeg is missing: run scripts/install-test-deps"
    return exe


def rss_kib(pid: int | None = None) -> int:
    status = Path(f"/proc/{pid or os.getpid()}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1])
