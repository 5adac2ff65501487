"""H.264 / H.265 encoding of synthetic frames with PyAV (libx264 / libx265), the way cameras do it.

Output is an Annex-B elementary stream split into access units: a fixed GOP with an IDR every
``gop`` frames (no scene-cut keyframes), constant-ish bitrate (VBV max rate and buffer equal to the
target), no B-frames unless asked, parameter sets repeated in-band before every keyframe, VUI
timing in the SPS, and 90 kHz timestamps ``pts = round(i * 90000 / fps)``.

Determinism: the encoder runs with an explicit thread count (default 1), so the same frames give the
same bytes for a given PyAV/FFmpeg build. Not thread-safe: one :class:`Encoder` per thread.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Literal

import av
import av.video.frame
import numpy as np
import numpy.typing as npt

__all__ = [
    "Codec",
    "EncodedFrame",
    "EncodedStream",
    "Encoder",
    "encode_frames",
    "rgb_to_yuv420",
]

Codec = Literal["h264", "h265"]

_ENCODERS: dict[str, str] = {"h264": "libx264", "h265": "libx265"}
_CLOCK_HZ = 90_000


@dataclass(frozen=True, slots=True)
class EncodedFrame:
    """One access unit of an Annex-B elementary stream."""

    data: bytes
    """Annex-B bytes; keyframes start with their (VPS/)SPS/PPS, as cameras send them."""
    pts_90k: int
    dts_90k: int
    is_keyframe: bool


@dataclass(frozen=True)
class EncodedStream:
    """An encoded elementary stream and the settings it was made with."""

    codec: Codec
    width: int
    height: int
    fps: float
    gop: int
    bitrate_bps: int
    """The target bitrate."""
    bframes: int
    frames: list[EncodedFrame] = field(default_factory=list)
    """Access units in decode order."""

    def annexb(self) -> bytes:
        """The whole elementary stream (what a ``.h264`` / ``.h265`` file holds)."""
        return b"".join(f.data for f in self.frames)

    @property
    def keyframe_indices(self) -> list[int]:
        """Decode-order indices of the keyframes."""
        return [i for i, f in enumerate(self.frames) if f.is_keyframe]

    @property
    def duration_s(self) -> float:
        """Number of frames over the frame rate."""
        return len(self.frames) / self.fps

    @property
    def achieved_bitrate_bps(self) -> float:
        """Bits actually produced per second of video."""
        if not self.frames:
            return 0.0
        return 8.0 * sum(len(f.data) for f in self.frames) / self.duration_s


def frame_rate_fraction(fps: float) -> Fraction:
    """``fps`` as an exact fraction (29.97 becomes 2997/100, 30000/1001 stays close to it)."""
    if not np.isfinite(fps) or fps <= 0:
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    return Fraction(fps).limit_denominator(1001)


def pts_90k(index: int, fps: float) -> int:
    """Presentation time of frame ``index`` on the 90 kHz clock: ``round(index * 90000 / fps)``."""
    return round(index * _CLOCK_HZ / frame_rate_fraction(fps))


def rgb_to_yuv420(
    rgb: npt.NDArray[np.uint8],
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
    """Full-range BT.601 conversion of HxWx3 RGB to Y, Cb, Cr planes (chroma 2x2 averaged)."""
    f = rgb.astype(np.float32)
    r, g, b = f[..., 0], f[..., 1], f[..., 2]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = 128.0 - 0.168736 * r - 0.331264 * g + 0.5 * b
    cr = 128.0 + 0.5 * r - 0.418688 * g - 0.081312 * b
    h, w = y.shape

    def sub(c: npt.NDArray[np.float32]) -> npt.NDArray[np.uint8]:
        m = c.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
        out: npt.NDArray[np.uint8] = np.clip(m + 0.5, 0, 255).astype(np.uint8)
        return out

    return np.clip(y + 0.5, 0, 255).astype(np.uint8), sub(cb), sub(cr)


class Encoder:
    """Incremental encoder: feed frames one by one, collect access units as they come out.

    ``frame`` arguments are HxW uint8 luma (chroma is set to neutral grey) or HxWx3 uint8 RGB.
    :meth:`encode_yuv420` takes planes directly (what the scene renderer produces).
    Frames are numbered from 0 in the order they are given; frame ``i`` gets
    ``pts_90k = round(i * 90000 / fps)``. After :meth:`flush` the encoder is finished.
    """

    def __init__(
        self,
        *,
        codec: Codec,
        width: int,
        height: int,
        fps: float,
        gop: int,
        bitrate_bps: int,
        bframes: int = 0,
        preset: str = "veryfast",
        threads: int = 1,
    ) -> None:
        if codec not in _ENCODERS:
            raise ValueError(f"codec must be 'h264' or 'h265', got {codec!r}")
        if width <= 0 or height <= 0 or width % 2 or height % 2:
            raise ValueError(
                f"width and height must be positive and even for 4:2:0 video, got {width}x{height}"
            )
        if gop < 1:
            raise ValueError(f"gop must be at least 1 frame, got {gop}")
        if bitrate_bps <= 0:
            raise ValueError(f"bitrate_bps must be positive, got {bitrate_bps}")
        if not 0 <= bframes <= 16:
            raise ValueError(f"bframes must be between 0 and 16, got {bframes}")
        if threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        self.codec: Codec = codec
        self.width = width
        self.height = height
        self.fps = float(fps)
        self.gop = gop
        self.bitrate_bps = bitrate_bps
        self.bframes = bframes
        self._rate = frame_rate_fraction(fps)
        self._index = 0
        self._finished = False
        self._buf = np.empty(width * height * 3 // 2, np.uint8)
        n = width * height
        self._y = self._buf[:n].reshape(height, width)
        self._u = self._buf[n : n + n // 4].reshape(height // 2, width // 2)
        self._v = self._buf[n + n // 4 :].reshape(height // 2, width // 2)

        kbps = max(1, bitrate_bps // 1000)
        params = [
            f"keyint={gop}",
            f"min-keyint={gop}",
            "scenecut=0",
            f"bframes={bframes}",
            f"vbv-maxrate={kbps}",
            f"vbv-bufsize={kbps}",
        ]
        if codec == "h264":
            # force-cfr: constant frame rate, so the SPS sets fixed_frame_rate_flag as cameras do.
            params += ["force-cfr=1", f"threads={threads}"]
            if bframes:
                params += ["b-adapt=0"]
            key = "x264-params"
        else:
            # repeat-headers: VPS/SPS/PPS before every IRAP, not only in extradata.
            # open-gop=0: IDR keyframes, each one a clean random access point like a camera's.
            params += [
                "repeat-headers=1",
                "log-level=error",
                "open-gop=0",
                "vui-timing-info=1",
                "frame-threads=1",
                "pools=none" if threads == 1 else f"pools={threads}",
            ]
            if bframes:
                params += [f"rc-lookahead={max(bframes + 1, 4)}", "b-adapt=0"]
            key = "x265-params"
        cc = av.CodecContext.create(_ENCODERS[codec], "w")
        assert isinstance(cc, av.VideoCodecContext)
        cc.width = width
        cc.height = height
        cc.pix_fmt = "yuv420p"
        # One tick per frame: the encoders derive the SPS timing (the frame rate) from it.
        cc.time_base = Fraction(self._rate.denominator, self._rate.numerator)
        cc.framerate = self._rate
        cc.bit_rate = bitrate_bps
        cc.gop_size = gop
        cc.thread_count = threads
        # The renderer's luma is 0..255; signal full range as most IP cameras do.
        cc.color_range = 2
        options = {"preset": preset, key: ":".join(params)}
        if bframes == 0:
            # No look-ahead: each access unit leaves as soon as its frame is in, like a camera.
            options["tune"] = "zerolatency"
        cc.options = options
        self._cc = cc

    @property
    def frame_count(self) -> int:
        """Frames given so far."""
        return self._index

    def _to_90k(self, ticks: int) -> int:
        return round(ticks * _CLOCK_HZ / self._rate)

    def _packets(self, frame: av.VideoFrame | None) -> list[EncodedFrame]:
        out: list[EncodedFrame] = []
        for pkt in self._cc.encode(frame):
            if pkt.pts is None or pkt.dts is None:
                raise RuntimeError("the encoder produced a packet without timestamps")
            out.append(
                EncodedFrame(
                    data=bytes(pkt),
                    pts_90k=self._to_90k(pkt.pts),
                    dts_90k=self._to_90k(pkt.dts),
                    is_keyframe=bool(pkt.is_keyframe),
                )
            )
        return out

    def _submit(self) -> list[EncodedFrame]:
        if self._finished:
            raise RuntimeError("the encoder was flushed; create a new one")
        frame = av.VideoFrame.from_ndarray(
            self._buf.reshape(self.height * 3 // 2, self.width), format="yuv420p"
        )
        frame.pts = self._index
        self._index += 1
        return self._packets(frame)

    def encode(self, frame: npt.NDArray[np.uint8]) -> list[EncodedFrame]:
        """Encodes one HxW luma or HxWx3 RGB frame; returns the access units now complete."""
        a = np.asarray(frame)
        if a.dtype != np.uint8:
            raise ValueError(f"frames must be uint8, got {a.dtype}")
        if a.shape == (self.height, self.width):
            self._y[...] = a
            self._u.fill(128)
            self._v.fill(128)
        elif a.shape == (self.height, self.width, 3):
            y, u, v = rgb_to_yuv420(a)
            self._y[...] = y
            self._u[...] = u
            self._v[...] = v
        else:
            raise ValueError(
                f"frame shape {a.shape} does not match the encoder's {self.height}x{self.width} "
                "(HxW luma or HxWx3 RGB)"
            )
        return self._submit()

    def encode_yuv420(
        self,
        y: npt.NDArray[np.uint8],
        cb: npt.NDArray[np.uint8],
        cr: npt.NDArray[np.uint8],
    ) -> list[EncodedFrame]:
        """Encodes one frame given as full-range Y (HxW) and Cb, Cr (H/2 x W/2) planes."""
        half = (self.height // 2, self.width // 2)
        if y.shape != (self.height, self.width) or cb.shape != half or cr.shape != half:
            raise ValueError(
                f"plane shapes {y.shape}, {cb.shape}, {cr.shape} do not match "
                f"{self.height}x{self.width} 4:2:0"
            )
        self._y[...] = y
        self._u[...] = cb
        self._v[...] = cr
        return self._submit()

    def flush(self) -> list[EncodedFrame]:
        """Drains the encoder (delayed frames, B-frame reordering); the encoder is then finished."""
        if self._finished:
            return []
        out = self._packets(None)
        self._finished = True
        return out

    def stream(self, frames: list[EncodedFrame]) -> EncodedStream:
        """Wraps access units produced by this encoder with its settings."""
        return EncodedStream(
            codec=self.codec,
            width=self.width,
            height=self.height,
            fps=self.fps,
            gop=self.gop,
            bitrate_bps=self.bitrate_bps,
            bframes=self.bframes,
            frames=frames,
        )


def encode_frames(
    frames: Iterable[npt.NDArray[np.uint8]],
    *,
    codec: Codec,
    width: int,
    height: int,
    fps: float,
    gop: int,
    bitrate_bps: int,
    bframes: int = 0,
    preset: str = "veryfast",
    threads: int = 1,
) -> EncodedStream:
    """Encodes a sequence of luma or RGB frames into one :class:`EncodedStream`."""
    enc = Encoder(
        codec=codec,
        width=width,
        height=height,
        fps=fps,
        gop=gop,
        bitrate_bps=bitrate_bps,
        bframes=bframes,
        preset=preset,
        threads=threads,
    )
    out: list[EncodedFrame] = []
    for f in frames:
        out += enc.encode(f)
    out += enc.flush()
    return enc.stream(out)
