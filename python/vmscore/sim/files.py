"""Synthetic clips on disk: encoded main and sub-streams plus ground truth, written and read back.

A clip directory holds:

- ``main.h264`` (or ``.h265``): the main stream, Annex-B, parameter sets before every keyframe;
- ``sub.h264``: the matching lower-resolution sub-stream (optional);
- ``truth.json``: scene, seed, sizes, zones, events and per-frame object boxes for both streams;
- ``clip.json``: codec settings, bitrates, frame counts, keyframe indices and the timestamps of
  every access unit, so a camera simulator can serve the files in a loop without re-parsing them.

:func:`write_clip` renders and encodes frame by frame, so memory does not grow with the clip's
length. :func:`load_clip` returns the streams as :class:`EncodedStream` and the truth; object masks
are re-rendered from the scene on demand (they are not stored).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import vmscore
from vmscore.errors import BitstreamError
from vmscore.sim.encode import Codec, EncodedFrame, EncodedStream, Encoder
from vmscore.sim.scenes import SCENES, Scene
from vmscore.sim.truth import Event, FrameTruth, PlacedMask, Zone, events_from_json, events_to_json

__all__ = ["Clip", "ClipInfo", "ClipTruth", "StreamInfo", "load_clip", "write_clip"]

CLIP_FORMAT = "vmscore-sim-clip"
TRUTH_FORMAT = "vmscore-sim-truth"
FORMAT_VERSION = 1

CONVENTIONS = {
    "coordinates": "pixels of the stream, origin top-left; boxes are [x, y, w, h], the tightest "
    "box around the object's mask pixels inside the frame",
    "listed": "an object is listed in a frame exactly when at least one of its mask pixels is in "
    "the frame",
    "end_frame": "exclusive: an event covers frames start_frame .. end_frame - 1",
    "zones": "an object is in a zone when its ground point (bottom centre, shake excluded) is "
    "inside the polygon",
    "parked": "a vehicle that stops for good stays listed (moving=false) for parked_after_s, then "
    "it is background: its object_present and zone_enter events end",
    "tamper": "objects stay listed during tampering; frames have tamper set",
    "shake": "boxes and masks move with the image by the shift rounded to whole pixels",
}


@dataclass(frozen=True)
class StreamInfo:
    """What was written for one stream."""

    path: Path
    width: int
    height: int
    frame_count: int
    keyframes: list[int]
    bitrate_bps: int
    achieved_bitrate_bps: float


@dataclass(frozen=True)
class ClipInfo:
    """Summary of a written clip."""

    directory: Path
    scene: str
    seed: int
    fps: float
    codec: Codec
    gop: int
    frame_count: int
    main: StreamInfo
    sub: StreamInfo | None
    events: list[Event]


@dataclass
class ClipTruth:
    """Ground truth of a clip read back from ``truth.json``."""

    scene: str
    seed: int
    fps: float
    seconds: float
    frame_count: int
    zones: list[Zone]
    events: list[Event]
    frames: list[FrameTruth]
    """Per frame, in main-stream pixels."""
    sub_frames: list[FrameTruth] | None
    """Per frame, in sub-stream pixels (None without a sub-stream)."""
    parked_after_s: float = 10.0


@dataclass
class Clip:
    """A clip read back from disk."""

    directory: Path
    main: EncodedStream
    sub: EncodedStream | None
    truth: ClipTruth
    meta: dict[str, Any] = field(default_factory=dict)
    """The parsed ``clip.json``."""


def _even_size(size: Sequence[int], what: str) -> tuple[int, int]:
    if len(size) != 2:
        raise ValueError(f"{what} must be (width, height), got {size!r}")
    w, h = int(size[0]), int(size[1])
    if w < 16 or h < 16 or w % 2 or h % 2:
        raise ValueError(
            f"{what} {w}x{h} is not usable: width and height must be even (4:2:0 chroma) "
            "and at least 16"
        )
    return w, h


def write_clip(
    out_dir: str | Path,
    scene: str,
    seconds: float,
    *,
    seed: int = 0,
    main: tuple[int, int] = (1920, 1080),
    sub: tuple[int, int] | None = (640, 360),
    fps: float = 15.0,
    gop: int | None = None,
    codec: Codec = "h264",
    bitrate: int = 4_000_000,
    sub_bitrate: int = 512_000,
    bframes: int = 0,
    preset: str = "veryfast",
    on_frame: Callable[[int, int], None] | None = None,
) -> ClipInfo:
    """Renders ``scene`` for ``seconds`` and writes its streams and ground truth to ``out_dir``.

    ``gop`` defaults to two seconds of frames. The sub-stream is the main picture area-averaged to
    ``sub`` (None for no sub-stream), so it matches the main stream geometrically.
    ``on_frame(done, total)`` is called after each frame (for progress display).
    """
    if scene not in SCENES:
        raise ValueError(f"unknown scene {scene!r}; the catalogue has: {', '.join(SCENES)}")
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"seconds must be positive, got {seconds}")
    mw, mh = _even_size(main, "main size")
    sub_size = _even_size(sub, "sub size") if sub is not None else None
    if sub_size is not None and (sub_size[0] > mw or sub_size[1] > mh):
        raise ValueError(f"sub size {sub_size[0]}x{sub_size[1]} is larger than main {mw}x{mh}")
    if gop is None:
        gop = max(1, round(2 * fps))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sc = Scene(scene, width=mw, height=mh, fps=fps, seconds=seconds, seed=seed)
    enc_main = Encoder(
        codec=codec,
        width=mw,
        height=mh,
        fps=fps,
        gop=gop,
        bitrate_bps=bitrate,
        bframes=bframes,
        preset=preset,
    )
    enc_sub = (
        Encoder(
            codec=codec,
            width=sub_size[0],
            height=sub_size[1],
            fps=fps,
            gop=gop,
            bitrate_bps=sub_bitrate,
            bframes=bframes,
            preset=preset,
        )
        if sub_size is not None
        else None
    )
    ext = "h264" if codec == "h264" else "h265"
    main_sink = _Sink(enc_main, out / f"main.{ext}")
    sub_sink = _Sink(enc_sub, out / f"sub.{ext}") if enc_sub is not None else None
    rows: list[dict[str, Any]] = []
    try:
        for frame in sc.frames():
            main_sink.put(enc_main.encode_yuv420(frame.luma, frame.cb, frame.cr))
            row = frame.truth.to_json()
            if sub_sink is not None and enc_sub is not None and sub_size is not None:
                small = frame.downscaled(*sub_size)
                sub_sink.put(enc_sub.encode_yuv420(small.luma, small.cb, small.cr))
                row["sub"] = [
                    {"id": o.id, "box": [o.x, o.y, o.w, o.h]} for o in small.truth.objects
                ]
            rows.append(row)
            if on_frame is not None:
                on_frame(frame.index + 1, sc.frame_count)
        main_sink.put(enc_main.flush())
        if sub_sink is not None and enc_sub is not None:
            sub_sink.put(enc_sub.flush())
    finally:
        main_sink.close()
        if sub_sink is not None:
            sub_sink.close()

    streams = {"main": main_sink.meta(fps)}
    if sub_sink is not None:
        streams["sub"] = sub_sink.meta(fps)
    clip_meta = {
        "format": CLIP_FORMAT,
        "version": FORMAT_VERSION,
        "scene": scene,
        "seed": seed,
        "seconds": seconds,
        "fps": fps,
        "codec": codec,
        "gop": gop,
        "bframes": bframes,
        "preset": preset,
        "frame_count": sc.frame_count,
        "streams": streams,
    }
    truth_meta = {
        "format": TRUTH_FORMAT,
        "version": FORMAT_VERSION,
        "scene": scene,
        "description": sc.spec.description,
        "seed": seed,
        "seconds": seconds,
        "fps": fps,
        "frame_count": sc.frame_count,
        "parked_after_s": sc.spec.parked_after_s,
        "conventions": CONVENTIONS,
        "sizes": {"main": [mw, mh], **({"sub": list(sub_size)} if sub_size else {})},
        "zones": [
            {
                "name": z.name,
                "polygon": [list(p) for p in z.polygon],
                "main": [[round(x, 2), round(y, 2)] for x, y in z.to_pixels(mw, mh)],
                **(
                    {"sub": [[round(x, 2), round(y, 2)] for x, y in z.to_pixels(*sub_size)]}
                    if sub_size
                    else {}
                ),
            }
            for z in sc.zones
        ],
        "events": events_to_json(sc.events),
        "frames": rows,
    }
    (out / "clip.json").write_text(json.dumps(clip_meta, indent=1) + "\n")
    (out / "truth.json").write_text(json.dumps(truth_meta, separators=(",", ":")) + "\n")

    def info(meta: dict[str, Any], path: Path) -> StreamInfo:
        return StreamInfo(
            path=path,
            width=meta["width"],
            height=meta["height"],
            frame_count=meta["frame_count"],
            keyframes=meta["keyframes"],
            bitrate_bps=meta["bitrate_bps"],
            achieved_bitrate_bps=meta["achieved_bitrate_bps"],
        )

    return ClipInfo(
        directory=out,
        scene=scene,
        seed=seed,
        fps=fps,
        codec=codec,
        gop=gop,
        frame_count=sc.frame_count,
        main=info(streams["main"], main_sink.path),
        sub=info(streams["sub"], sub_sink.path) if sub_sink is not None else None,
        events=sc.events,
    )


class _Sink:
    """Writes one stream's access units to its file and keeps only their metadata."""

    def __init__(self, enc: Encoder, path: Path) -> None:
        self.enc = enc
        self.path = path
        self._f = open(path, "wb")  # noqa: SIM115 - closed by close(), used across a loop
        self.pts: list[int] = []
        self.dts: list[int] = []
        self.keys: list[bool] = []
        self.sizes: list[int] = []

    def put(self, aus: list[EncodedFrame]) -> None:
        for au in aus:
            self._f.write(au.data)
            self.pts.append(au.pts_90k)
            self.dts.append(au.dts_90k)
            self.keys.append(au.is_keyframe)
            self.sizes.append(len(au.data))

    def close(self) -> None:
        self._f.close()

    def meta(self, fps: float) -> dict[str, Any]:
        n = len(self.sizes)
        return {
            "file": self.path.name,
            "width": self.enc.width,
            "height": self.enc.height,
            "bitrate_bps": self.enc.bitrate_bps,
            "achieved_bitrate_bps": round(8.0 * sum(self.sizes) * fps / max(1, n), 1),
            "frame_count": n,
            "keyframes": [i for i, k in enumerate(self.keys) if k],
            "pts_90k": self.pts,
            "dts_90k": self.dts,
            "sizes": self.sizes,
        }


def _read_stream(directory: Path, meta: dict[str, Any], clip: dict[str, Any]) -> EncodedStream:
    codec: Codec = clip["codec"]
    data = (directory / meta["file"]).read_bytes()
    units = vmscore.access_units(data, codec)
    n = int(meta["frame_count"])
    if len(units) != n:
        raise BitstreamError(f"{meta['file']}: found {len(units)} access units, clip.json says {n}")
    frames = [
        EncodedFrame(
            data=data[off : off + size],
            pts_90k=int(meta["pts_90k"][i]),
            dts_90k=int(meta["dts_90k"][i]),
            is_keyframe=bool(key),
        )
        for i, (off, size, key) in enumerate(units)
    ]
    return EncodedStream(
        codec=codec,
        width=int(meta["width"]),
        height=int(meta["height"]),
        fps=float(clip["fps"]),
        gop=int(clip["gop"]),
        bitrate_bps=int(meta["bitrate_bps"]),
        bframes=int(clip["bframes"]),
        frames=frames,
    )


class _SceneMasks:
    """Re-renders silhouettes for truth read from a file (the scene is built on first use)."""

    def __init__(
        self, scene: str, width: int, height: int, fps: float, seconds: float, seed: int
    ) -> None:
        self._args = (scene, width, height, fps, seconds, seed)
        self._scene: Scene | None = None

    def masks(self, index: int, size: tuple[int, int] | None) -> Sequence[PlacedMask]:
        if self._scene is None:
            name, w, h, fps, seconds, seed = self._args
            self._scene = Scene(name, width=w, height=h, fps=fps, seconds=seconds, seed=seed)
        truth = self._scene.truth(index)
        if size is not None:
            truth = truth.scaled(*size)
        return truth.masks()


def load_clip(directory: str | Path) -> Clip:
    """Reads a clip written by :func:`write_clip`: both streams split into access units with their
    timestamps, and the ground truth."""
    d = Path(directory)
    try:
        clip = json.loads((d / "clip.json").read_text())
        truth = json.loads((d / "truth.json").read_text())
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{d} is not a clip directory: {exc.filename} is missing") from exc
    for doc, fmt, name in ((clip, CLIP_FORMAT, "clip.json"), (truth, TRUTH_FORMAT, "truth.json")):
        if doc.get("format") != fmt or doc.get("version") != FORMAT_VERSION:
            raise ValueError(f"{d / name}: not a version {FORMAT_VERSION} {fmt} file")
    main = _read_stream(d, clip["streams"]["main"], clip)
    sub = _read_stream(d, clip["streams"]["sub"], clip) if "sub" in clip["streams"] else None
    mw, mh = truth["sizes"]["main"]
    sub_size = tuple(truth["sizes"]["sub"]) if "sub" in truth["sizes"] else None
    source = _SceneMasks(
        truth["scene"], mw, mh, float(truth["fps"]), float(truth["seconds"]), int(truth["seed"])
    )

    def masks_for(i: int, size: tuple[int, int] | None) -> Callable[[], Sequence[PlacedMask]]:
        return lambda: source.masks(i, size)

    frames: list[FrameTruth] = []
    sub_frames: list[FrameTruth] | None = [] if sub_size is not None else None
    for row in truth["frames"]:
        i = int(row["index"])
        frames.append(FrameTruth.from_json(row, mw, mh, masks_for(i, None)))
        if sub_frames is not None and sub_size is not None:
            sw, sh = int(sub_size[0]), int(sub_size[1])
            by_id = {o["id"]: o for o in row.get("objects", [])}
            sub_row = dict(row)
            sub_row["objects"] = [
                {
                    **by_id[o["id"]],
                    "box": o["box"],
                    "foot": [
                        by_id[o["id"]]["foot"][0] * sw / mw,
                        by_id[o["id"]]["foot"][1] * sh / mh,
                    ],
                }
                for o in row.get("sub", [])
            ]
            sub_row["shift_px"] = [row["shift_px"][0] * sw / mw, row["shift_px"][1] * sh / mh]
            sub_frames.append(FrameTruth.from_json(sub_row, sw, sh, masks_for(i, (sw, sh))))
    ct = ClipTruth(
        scene=truth["scene"],
        seed=int(truth["seed"]),
        fps=float(truth["fps"]),
        seconds=float(truth["seconds"]),
        frame_count=int(truth["frame_count"]),
        zones=[
            Zone(z["name"], tuple((float(x), float(y)) for x, y in z["polygon"]))
            for z in truth["zones"]
        ],
        events=events_from_json(truth["events"]),
        frames=frames,
        sub_frames=sub_frames,
        parked_after_s=float(truth.get("parked_after_s", 10.0)),
    )
    return Clip(directory=d, main=main, sub=sub, truth=ct, meta=clip)
