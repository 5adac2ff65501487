"""Still images and stream reports from access units: a JPEG from a keyframe (decoded with PyAV,
encoded with its MJPEG encoder, no other imaging library), and the "test a camera" check that
connects to a camera's streams and reports codec, resolution, frame rate and bitrate.

Threading: every function here blocks (decode, network) and is meant for a worker thread.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Literal

import av
from av.video.codeccontext import VideoCodecContext

from vmscore import _core
from vmscore.errors import VmsError

__all__ = ["CameraTest", "NoPictureError", "StreamReport", "jpeg_from_units", "probe_streams"]


class NoPictureError(VmsError, LookupError):
    """There is no decodable keyframe (the camera is offline or has not sent one yet)."""


def annexb(unit: _core.AccessUnit) -> bytes:
    """The unit with start codes, its parameter sets first on a keyframe (a decoder can start
    there)."""
    data = unit.to_annexb()
    if unit.is_keyframe:
        data = b"".join(b"\0\0\0\1" + p for p in unit.parameter_sets) + data
    return data


def decoder(codec: str) -> VideoCodecContext:
    """A single-threaded PyAV decoder for an access unit's codec (the station runs one per
    camera on a pool sized to the cores, so FFmpeg's own threads would oversubscribe it)."""
    if codec not in ("h264", "h265"):
        raise NoPictureError(f"cannot decode {codec!r} video")
    ctx = av.CodecContext.create("h264" if codec == "h264" else "hevc", "r")
    assert isinstance(ctx, VideoCodecContext)
    ctx.thread_count = 1
    return ctx


def encode_jpeg(frame: av.VideoFrame, *, max_width: int = 0, quality: int = 4) -> bytes:
    """A JPEG of the frame, scaled down (aspect kept, even size) to ``max_width`` when wider.
    ``quality``: MJPEG's qscale, 2 (best) to 31."""
    width, height = frame.width, frame.height
    if max_width and width > max_width:
        height = max(2, round(height * max_width / width / 2) * 2)
        width = max_width
    enc = av.CodecContext.create("mjpeg", "w")
    enc.width = width
    enc.height = height
    enc.pix_fmt = "yuvj420p"
    enc.time_base = Fraction(1, 25)
    enc.options = {"qmin": str(quality), "qmax": str(quality)}
    enc.open()
    img = frame.reformat(width=width, height=height, format="yuvj420p")
    img.pts = 0
    packets = enc.encode(img) + enc.encode(None)
    if not packets:
        raise NoPictureError("the JPEG encoder produced nothing")
    return b"".join(bytes(p) for p in packets)


def jpeg_from_units(units: Sequence[_core.AccessUnit], *, max_width: int = 0) -> bytes:
    """Decodes from the first keyframe in ``units`` until a picture comes out; JPEG of it."""
    start = next((i for i, u in enumerate(units) if u.is_keyframe and u.kind == "video"), None)
    if start is None:
        raise NoPictureError("no keyframe received yet")
    ctx = decoder(units[start].codec)
    try:
        for unit in units[start:]:
            if unit.kind != "video":
                continue
            for frame in ctx.decode(av.Packet(annexb(unit))):
                return encode_jpeg(frame, max_width=max_width)
        for frame in ctx.decode(None):
            return encode_jpeg(frame, max_width=max_width)
    except av.error.FFmpegError as e:
        raise NoPictureError(f"the keyframe could not be decoded: {e}") from None
    raise NoPictureError("the keyframe could not be decoded")


@dataclass(frozen=True)
class StreamReport:
    role: Literal["main", "sub"]
    url: str
    """Without credentials."""
    ok: bool
    codec: str = ""
    width: int = 0
    height: int = 0
    fps: float = 0.0
    bitrate_bps: float = 0.0
    keyframe_interval_s: float = 0.0
    error: str = ""

    def to_json(self) -> dict[str, Any]:
        return self.__dict__.copy()


@dataclass(frozen=True)
class CameraTest:
    streams: list[StreamReport] = field(default_factory=list)
    snapshot_jpeg: bytes | None = None

    @property
    def ok(self) -> bool:
        return bool(self.streams) and all(s.ok for s in self.streams)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "streams": [s.to_json() for s in self.streams],
            "has_snapshot": self.snapshot_jpeg is not None,
        }


def redact(url: str) -> str:
    """The URL without its credentials (for reports and logs)."""
    try:
        return _core.parse_url(url).redacted()
    except ValueError:
        # Not a URL the client reads (rtsps://, odd characters): still never show credentials.
        return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/@]*@", r"\1", url)


def probe_streams(
    main_url: str,
    sub_url: str | None = None,
    *,
    username: str | None = None,
    password: str | None = None,
    transport: Literal["tcp", "udp"] = "tcp",
    timeout_s: float = 10.0,
    sample_s: float = 3.0,
) -> CameraTest:
    """Connects to each stream, measures it for ``sample_s`` after its first keyframe, and takes
    a snapshot from the main stream. Never raises for a camera fault: each stream's report says
    what went wrong (wrong password, refused, no video...)."""
    roles: list[tuple[Literal["main", "sub"], str]] = [("main", main_url)]
    if sub_url:
        roles.append(("sub", sub_url))
    units: dict[str, list[_core.AccessUnit]] = {r: [] for r, _ in roles}
    errors: dict[str, str] = {}
    first_key: dict[str, float] = {}
    with _core.IngestEngine(queue_frames=2048) as engine:
        for role, url in roles:
            try:
                engine.add_stream(
                    role,
                    url,
                    username=username,
                    password=password,
                    transport=transport,
                    connect_timeout_s=timeout_s,
                    stall_timeout_s=timeout_s,
                    reconnect_min_s=timeout_s,
                    reconnect_max_s=timeout_s,
                )
            except (ValueError, VmsError) as e:
                errors[role] = str(e)
        deadline = time.monotonic() + timeout_s + sample_s
        while time.monotonic() < deadline:
            pending = [
                r
                for r, _ in roles
                if r not in errors
                and (r not in first_key or time.monotonic() - first_key[r] < sample_s)
            ]
            if not pending:
                break
            for item in engine.poll(timeout=0.2):
                sid = item.stream_id
                if isinstance(item, _core.StreamEvent):
                    if item.kind in ("error", "disconnected", "stalled") and sid not in first_key:
                        errors.setdefault(sid, item.reason or item.kind)
                    continue
                if item.kind != "video":
                    continue
                if sid not in first_key:
                    if not item.is_keyframe:
                        continue
                    first_key[sid] = time.monotonic()
                units[sid].append(item)
        stats = {r: engine.stats(r) for r, _ in roles if r not in errors or r in first_key}
    reports = []
    for role, url in roles:
        got = units[role]
        safe = redact(url)
        if len(got) < 2:
            reason = errors.get(role) or (
                stats[role].last_error if role in stats and stats[role].last_error else ""
            )
            reports.append(
                StreamReport(role, safe, False, error=reason or "no video within the timeout")
            )
            continue
        span = (got[-1].pts_90k - got[0].pts_90k) / 90_000
        frames = len(got) - 1
        keys = [u.pts_90k for u in got if u.is_keyframe]
        key_iv = (keys[-1] - keys[0]) / 90_000 / (len(keys) - 1) if len(keys) > 1 else 0.0
        st = stats.get(role)
        reports.append(
            StreamReport(
                role,
                safe,
                True,
                codec=got[0].codec,
                width=st.width if st else 0,
                height=st.height if st else 0,
                fps=round(frames / span, 2) if span > 0 else 0.0,
                bitrate_bps=round(sum(u.size for u in got[:-1]) * 8 / span) if span > 0 else 0,
                keyframe_interval_s=round(key_iv, 3),
            )
        )
    snapshot = None
    if len(units["main"]) >= 1:
        try:
            snapshot = jpeg_from_units(units["main"])
        except NoPictureError:
            snapshot = None
    return CameraTest(reports, snapshot)
