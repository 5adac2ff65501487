"""vmscore.sim: synthetic surveillance cameras with ground truth.

Seeded, deterministic scenes (a school yard by day and night, a car park, a corridor, a windy
garden, and nuisance or tamper scenes), rendered at any resolution with per-frame object boxes and
masks and the list of events of the clip, then encoded like a camera's main and sub-streams with
PyAV (libx264 / libx265). Tests, benchmarks, the motion detector's evaluation, the camera simulator
and the demo all use it.

Example::

    from vmscore.sim import Scene, encode_frames

    scene = Scene("schoolyard-night", width=640, height=360, fps=15, seconds=10, seed=1)
    frames = list(scene)                       # SceneFrame: luma, cb, cr, truth
    stream = encode_frames((f.luma for f in frames), codec="h264", width=640, height=360,
                           fps=15, gop=30, bitrate_bps=500_000)
    scene.events                               # zone entries, light switches, ...
"""

from __future__ import annotations

from vmscore.sim.encode import (
    Codec,
    EncodedFrame,
    EncodedStream,
    Encoder,
    encode_frames,
    pts_90k,
    rgb_to_yuv420,
)
from vmscore.sim.files import Clip, ClipInfo, ClipTruth, StreamInfo, load_clip, write_clip
from vmscore.sim.nuisance import Episode
from vmscore.sim.scenes import SCENES, Scene, SceneFrame, SceneSpec, render_scene, scene_names
from vmscore.sim.server import FAULTS, CameraServer, CameraStats, SimClip, render_scene_streams
from vmscore.sim.truth import (
    Event,
    EventKind,
    FrameTruth,
    ObjectBox,
    ObjectKind,
    PlacedMask,
    Zone,
)

__all__ = [
    "FAULTS",
    "SCENES",
    "CameraServer",
    "CameraStats",
    "Clip",
    "ClipInfo",
    "ClipTruth",
    "Codec",
    "EncodedFrame",
    "EncodedStream",
    "Encoder",
    "Episode",
    "Event",
    "EventKind",
    "FrameTruth",
    "ObjectBox",
    "ObjectKind",
    "PlacedMask",
    "Scene",
    "SceneFrame",
    "SceneSpec",
    "SimClip",
    "StreamInfo",
    "Zone",
    "encode_frames",
    "load_clip",
    "pts_90k",
    "render_scene",
    "render_scene_streams",
    "rgb_to_yuv420",
    "scene_names",
    "write_clip",
]
