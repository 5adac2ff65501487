"""Synthetic surveillance scenes: the catalogue, the renderer and the ground truth it produces.

A :class:`Scene` is a seeded, deterministic clip: a backdrop (:mod:`vmscore.sim.backdrops`), actors
walking and driving on paths (:mod:`vmscore.sim.actors`) and a nuisance timeline
(:mod:`vmscore.sim.nuisance`). Everything is decided at construction from ``seed``, so any frame can
be rendered on its own (:meth:`Scene.render`), frames can be streamed in order
(:meth:`Scene.frames`), and the events of the whole clip are known before a pixel is drawn.

Frames are 4:2:0 planes (full-range luma and half-resolution chroma) ready for the encoder. Night
scenes are monochrome, as infrared cameras are. A scene object keeps work buffers: render from one
thread at a time, or make one scene per thread.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from vmscore.sim._raster import (
    F32,
    U8,
    Bool,
    area_resize,
    box_blur,
    fractal_noise,
    point_in_polygon,
    shift_bilinear,
    to_u8,
)
from vmscore.sim.actors import Actor, ActorState, PathSpec, Sprite, make_actor, render_sprite
from vmscore.sim.backdrops import (
    ASPECT,
    CAMERAS,
    CORRIDOR_LEN,
    FENCE_X,
    GATE_Z,
    SCHOOL_DOOR_X,
    SCHOOL_WALL_Z,
    Backdrop,
    GroundCamera,
    build_backdrop,
)
from vmscore.sim.nuisance import (
    Episode,
    Particles,
    Shake,
    Sway,
    daylight_gain,
    light_level,
    progress,
)
from vmscore.sim.truth import Detail, Event, EventKind, FrameTruth, ObjectBox, PlacedMask, Zone

__all__ = [
    "SCENES",
    "Scene",
    "SceneFrame",
    "SceneSpec",
    "render_scene",
    "scene_names",
]

Timeline = Callable[[float, np.random.Generator], list[Episode]]


def _no_timeline(duration: float, rng: np.random.Generator) -> list[Episode]:
    return []


@dataclass(frozen=True)
class SceneSpec:
    """What a catalogue scene is made of."""

    name: str
    description: str
    layout: Literal["schoolyard", "carpark", "corridor", "garden"]
    lighting: Literal["day", "night"] = "day"
    """``night``: lit by the backdrop's night light (infrared, or a room's daylight) plus lamps."""
    color: bool = True
    gain: float = 1.0
    """Overall illumination (0.75 for an overcast day)."""
    noise_sigma: float = 2.0
    """Sensor noise, standard deviation in luma steps."""
    lamps: dict[str, float] = field(default_factory=dict)
    """Initial level of each lamp (0 off, 1 on); unlisted lamps are off."""
    paths: tuple[PathSpec, ...] = ()
    actors_per_min: float = 0.0
    scheduled: tuple[tuple[str, float], ...] = ()
    """Actors at fixed times: (path name, fraction of the clip)."""
    zones: tuple[Zone, ...] = ()
    timeline: Timeline = _no_timeline
    world: float = 1.0
    """Width of the place in view widths (more than 1 when the camera gets turned)."""
    parked_after_s: float = 10.0


@dataclass(frozen=True)
class SceneFrame:
    """One rendered frame: 4:2:0 planes and its ground truth."""

    index: int
    time_s: float
    luma: U8
    """H x W full-range luma."""
    cb: U8
    """H/2 x W/2 Cb."""
    cr: U8
    """H/2 x W/2 Cr."""
    truth: FrameTruth

    @property
    def width(self) -> int:
        """Frame width in pixels."""
        return int(self.luma.shape[1])

    @property
    def height(self) -> int:
        """Frame height in pixels."""
        return int(self.luma.shape[0])

    def to_rgb(self) -> U8:
        """An H x W x 3 RGB copy (full-range BT.601, chroma upsampled by repetition)."""
        y = self.luma.astype(np.float32)
        cb = np.repeat(np.repeat(self.cb, 2, axis=0), 2, axis=1).astype(np.float32) - 128.0
        cr = np.repeat(np.repeat(self.cr, 2, axis=0), 2, axis=1).astype(np.float32) - 128.0
        rgb = np.stack((y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb), axis=-1)
        out: U8 = np.clip(rgb + 0.5, 0, 255).astype(np.uint8)
        return out

    def downscaled(self, width: int, height: int) -> SceneFrame:
        """The frame as a camera's sub-stream sees it: area-averaged to ``width`` x ``height``,
        with the truth rescaled to match."""
        _check_size(width, height)
        luma = np.empty((height, width), np.uint8)
        cb = np.empty((height // 2, width // 2), np.uint8)
        cr = np.empty((height // 2, width // 2), np.uint8)
        to_u8(area_resize(self.luma, height, width), luma)
        to_u8(area_resize(self.cb, height // 2, width // 2), cb)
        to_u8(area_resize(self.cr, height // 2, width // 2), cr)
        return SceneFrame(self.index, self.time_s, luma, cb, cr, self.truth.scaled(width, height))


def _check_size(width: int, height: int) -> None:
    if width < 16 or height < 16 or width % 2 or height % 2:
        raise ValueError(
            f"frame size must be even (4:2:0 chroma) and at least 16x16, got {width}x{height}"
        )


# --------------------------------------------------------------------------------------------------
# Catalogue


def _zones(cam: GroundCamera, items: dict[str, list[tuple[float, float]]]) -> tuple[Zone, ...]:
    return tuple(
        Zone(name, tuple((round(x, 4), round(y, 4)) for x, y in cam.ground_polygon(pts)))
        for name, pts in items.items()
    )


_SY = CAMERAS["schoolyard"]
SCHOOLYARD_ZONES = _zones(
    _SY,
    {
        "gate": [
            (FENCE_X - 3.0, GATE_Z[0] - 0.5),
            (FENCE_X + 3.0, GATE_Z[0] - 0.5),
            (FENCE_X + 3.0, GATE_Z[1] + 0.5),
            (FENCE_X - 3.0, GATE_Z[1] + 0.5),
        ],
        "entrance": [
            (SCHOOL_DOOR_X - 2.5, 21.5),
            (SCHOOL_DOOR_X + 2.5, 21.5),
            (SCHOOL_DOOR_X + 2.5, SCHOOL_WALL_Z),
            (SCHOOL_DOOR_X - 2.5, SCHOOL_WALL_Z),
        ],
        "court": [(-6.0, 11.5), (6.0, 11.5), (6.0, 20.5), (-6.0, 20.5)],
        "fence": [
            (FENCE_X, 9.0),
            (FENCE_X + 1.5, 9.0),
            (FENCE_X + 1.5, SCHOOL_WALL_Z),
            (FENCE_X, SCHOOL_WALL_Z),
        ],
    },
)
_DOOR_IN = (SCHOOL_DOOR_X, SCHOOL_WALL_Z - 0.05)
_GATE_MID = 0.5 * (GATE_Z[0] + GATE_Z[1])
SCHOOLYARD_PATHS = (
    PathSpec(
        "gate-to-entrance",
        "person",
        ((-11.5, _GATE_MID), (FENCE_X, _GATE_MID), (-4.0, 20.5), _DOOR_IN),
        weight=2.0,
    ),
    PathSpec(
        "entrance-to-gate",
        "person",
        (_DOOR_IN, (-4.0, 20.5), (FENCE_X, _GATE_MID), (-16.0, _GATE_MID)),
        weight=2.0,
    ),
    PathSpec("across", "person", ((-7.0, 9.5), (2.0, 13.0), (10.0, 12.5))),
    PathSpec("across-back", "person", ((12.0, 17.0), (0.0, 19.0), (-6.5, 11.0), (-5.0, 7.5))),
    PathSpec("in-from-below", "person", ((0.5, 7.0), (-7.5, _GATE_MID), (-16.0, _GATE_MID))),
    PathSpec(
        "loiter-bench",
        "person",
        ((13.0, 19.0), (4.0, 21.8), (0.0, 7.0)),
        dwell_s=((0.0, 0.0), (6.0, 15.0)),
        weight=0.8,
    ),
    PathSpec(
        "child-running",
        "person",
        ((-6.5, 10.0), (8.0, 16.0), (12.0, 17.0)),
        speed_mps=(2.5, 3.5),
        weight=0.6,
    ),
)

_CP = CAMERAS["carpark"]
CARPARK_ZONES = _zones(
    _CP,
    {
        "entrance": [(6.0, 12.0), (12.0, 12.0), (12.0, 15.5), (6.0, 15.5)],
        "exit": [(-12.0, 12.0), (-6.0, 12.0), (-6.0, 15.5), (-12.0, 15.5)],
        "loading": [(-9.0, 10.0), (3.0, 10.0), (3.0, 11.8), (-9.0, 11.8)],
        "bays": [(-30.0, 16.0), (30.0, 16.0), (30.0, 21.0), (-30.0, 21.0)],
        "aisle": [(-30.0, 21.2), (30.0, 21.2), (30.0, 29.0), (-30.0, 29.0)],
    },
)
CARPARK_PATHS = (
    PathSpec(
        "car-aisle-east",
        "vehicle",
        ((-22.0, 24.5), (26.0, 24.5)),
        speed_mps=(3.0, 6.0),
        jitter_m=0.3,
        weight=1.5,
    ),
    PathSpec(
        "car-aisle-west",
        "vehicle",
        ((23.0, 26.5), (-26.0, 26.5)),
        speed_mps=(3.0, 6.0),
        jitter_m=0.3,
        weight=1.5,
    ),
    PathSpec(
        "car-lane-west",
        "vehicle",
        ((13.5, 13.6), (-15.0, 13.6)),
        speed_mps=(4.0, 7.0),
        jitter_m=0.2,
    ),
    PathSpec(
        "car-parks",
        "vehicle",
        ((13.5, 13.8), (1.5, 13.8), (-2.5, 10.9)),
        speed_mps=(3.0, 4.0),
        jitter_m=0.1,
        parks=True,
        weight=0.0,
    ),
    PathSpec("walk-to-car", "person", ((-2.0, 7.5), (-6.5, 15.5), (-6.6, 17.5))),
    PathSpec("walk-from-car", "person", ((7.8, 17.5), (8.0, 15.5), (3.0, 7.5))),
    PathSpec("walk-aisle", "person", ((-18.5, 22.0), (22.0, 22.0)), speed_mps=(1.0, 1.5)),
    PathSpec(
        "loiter",
        "person",
        ((12.0, 14.8), (2.0, 15.2), (-3.0, 9.0), (-1.0, 7.5)),
        dwell_s=((0.0, 0.0), (5.0, 12.0)),
        weight=0.7,
    ),
)

_CO = CAMERAS["corridor"]
CORRIDOR_ZONES = _zones(
    _CO,
    {
        "door-left": [(-1.5, 7.6), (-0.6, 7.6), (-0.6, 9.6), (-1.5, 9.6)],
        "door-right": [(0.6, 13.6), (1.5, 13.6), (1.5, 15.6), (0.6, 15.6)],
        "end": [(-1.5, 24.0), (1.5, 24.0), (1.5, CORRIDOR_LEN - 0.1), (-1.5, CORRIDOR_LEN - 0.1)],
        "near": [(-1.5, 4.7), (1.5, 4.7), (1.5, 7.0), (-1.5, 7.0)],
    },
)
CORRIDOR_PATHS = (
    PathSpec("from-end", "person", ((0.3, 29.5), (0.2, 0.4)), jitter_m=0.25, weight=1.5),
    PathSpec("to-end", "person", ((-0.3, 0.4), (-0.2, 29.5)), jitter_m=0.25, weight=1.5),
    PathSpec(
        "door-to-door", "person", ((-1.3, 8.5), (-0.5, 9.5), (1.0, 14.0), (1.3, 14.6)), jitter_m=0.1
    ),
    PathSpec("out-of-door", "person", ((-1.3, 21.5), (0.0, 19.0), (0.1, 0.4)), jitter_m=0.1),
    PathSpec(
        "reads-notices",
        "person",
        ((0.2, 0.4), (-0.9, 12.7), (0.0, 20.0), (-1.3, 21.5)),
        dwell_s=((0.0, 0.0), (4.0, 10.0)),
        jitter_m=0.1,
        weight=0.7,
    ),
)

_GA = CAMERAS["garden"]
GARDEN_ZONES = _zones(
    _GA,
    {
        "path": [(-0.6, 4.0), (0.6, 4.0), (-4.4, 18.0), (-5.6, 18.0)],
        "shed": [(-8.0, 18.0), (-4.5, 18.0), (-4.5, 19.5), (-8.0, 19.5)],
        "lawn": [(-20.0, 4.9), (20.0, 4.9), (20.0, 25.0), (-20.0, 25.0)],
    },
)
GARDEN_PATHS = (PathSpec("to-shed", "person", ((0.0, 3.5), (-6.25, 18.9)), jitter_m=0.1),)


def _breeze(amplitude: float) -> Timeline:
    def tl(d: float, rng: np.random.Generator) -> list[Episode]:
        return [Episode("tree_sway", 0.0, d, {"amplitude": amplitude})]

    return tl


def _schoolyard_day(d: float, rng: np.random.Generator) -> list[Episode]:
    return [
        Episode("tree_sway", 0.0, d, {"amplitude": 1.2}),
        Episode("daylight_change", 0.55 * d, 0.9 * d, {"to": 0.8, "back": True}),
    ]


def _schoolyard_night(d: float, rng: np.random.Generator) -> list[Episode]:
    return [
        Episode("tree_sway", 0.0, d, {"amplitude": 0.8}),
        Episode("light_switch", 0.35 * d, 0.35 * d, {"lamp": "yard-lamp-2", "on": True}),
        Episode("light_switch", 0.7 * d, 0.7 * d, {"lamp": "hall-windows", "on": False}),
    ]


def _rain(d: float, rng: np.random.Generator) -> list[Episode]:
    return [
        Episode("rain", 0.0, d, {"intensity": 1.0}),
        Episode("tree_sway", 0.0, d, {"amplitude": 2.0}),
    ]


def _snow(d: float, rng: np.random.Generator) -> list[Episode]:
    return [
        Episode("snow", 0.0, d, {"intensity": 1.0}),
        Episode("daylight_change", 0.4 * d, d, {"to": 0.7, "back": False}),
    ]


def _lights(d: float, rng: np.random.Generator) -> list[Episode]:
    return [
        Episode("light_switch", 0.25 * d, 0.25 * d, {"lamp": "lights-far", "on": False}),
        Episode("light_switch", 0.45 * d, 0.45 * d + 0.1, {"lamp": "lights-near", "on": False}),
        Episode("light_switch", 0.65 * d, 0.65 * d + 0.4, {"lamp": "lights-near", "on": True}),
        Episode("light_switch", 0.85 * d, 0.85 * d, {"lamp": "lights-far", "on": True}),
    ]


def _wind(d: float, rng: np.random.Generator) -> list[Episode]:
    return [Episode("tree_sway", 0.0, d, {"amplitude": 9.0})]


def _shake(d: float, rng: np.random.Generator) -> list[Episode]:
    return [
        Episode("shake", 0.2 * d, 0.35 * d, {"amplitude": 2.0}),
        Episode("shake", 0.6 * d, 0.72 * d, {"amplitude": 3.0}),
        Episode("tree_sway", 0.0, d, {"amplitude": 1.0}),
    ]


def _tamper(d: float, rng: np.random.Generator) -> list[Episode]:
    ramp = min(1.0, 0.04 * d)
    return [
        Episode("tamper_defocus", 0.12 * d, 0.32 * d, {"ramp": ramp}),
        Episode("tamper_cover", 0.42 * d, 0.62 * d, {"ramp": ramp}),
        Episode("tamper_turned", 0.75 * d, d, {"ramp": min(1.5, 0.06 * d)}),
    ]


SCENES: dict[str, SceneSpec] = {
    s.name: s
    for s in (
        SceneSpec(
            "schoolyard",
            "School yard by day: pupils and adults crossing, using the gate and the entrance; "
            "a light breeze and a passing cloud.",
            "schoolyard",
            paths=SCHOOLYARD_PATHS,
            actors_per_min=5.0,
            zones=SCHOOLYARD_ZONES,
            timeline=_schoolyard_day,
        ),
        SceneSpec(
            "schoolyard-night",
            "School yard at night on infrared: dark and noisy, lamp pools, a lamp switching on and "
            "the hall lights going off; occasional intruders.",
            "schoolyard",
            lighting="night",
            color=False,
            noise_sigma=7.0,
            lamps={"yard-lamp-1": 1.0, "hall-windows": 1.0, "entrance-light": 1.0},
            paths=SCHOOLYARD_PATHS,
            actors_per_min=2.5,
            zones=SCHOOLYARD_ZONES,
            timeline=_schoolyard_night,
        ),
        SceneSpec(
            "schoolyard-rain",
            "School yard on an overcast day in steady rain, trees moving in the wind, people "
            "crossing.",
            "schoolyard",
            gain=0.72,
            noise_sigma=3.0,
            paths=SCHOOLYARD_PATHS,
            actors_per_min=3.0,
            zones=SCHOOLYARD_ZONES,
            timeline=_rain,
        ),
        SceneSpec(
            "rain-empty",
            "The school yard at night in heavy rain with the trees moving; nobody there (every "
            "alarm is false).",
            "schoolyard",
            lighting="night",
            color=False,
            noise_sigma=6.0,
            lamps={"yard-lamp-1": 1.0, "entrance-light": 1.0},
            paths=SCHOOLYARD_PATHS,
            zones=SCHOOLYARD_ZONES,
            timeline=_rain,
        ),
        SceneSpec(
            "corridor",
            "Office corridor with the lights on: people walking towards and away from the camera, "
            "through side doors, one stopping at the notice board.",
            "corridor",
            lighting="night",
            noise_sigma=3.0,
            lamps={"lights-near": 1.0, "lights-far": 1.0},
            paths=CORRIDOR_PATHS,
            actors_per_min=5.0,
            zones=CORRIDOR_ZONES,
        ),
        SceneSpec(
            "lights",
            "The corridor, empty, while its two light sections switch off and on "
            "(global luma steps, no intruder).",
            "corridor",
            lighting="night",
            noise_sigma=3.0,
            lamps={"lights-near": 1.0, "lights-far": 1.0},
            zones=CORRIDOR_ZONES,
            timeline=_lights,
        ),
        SceneSpec(
            "carpark",
            "Car park by day: cars driving along the aisle and the lane, one arriving and parking "
            "(it becomes background), people walking to and from their cars.",
            "carpark",
            paths=CARPARK_PATHS,
            actors_per_min=6.0,
            scheduled=(("car-parks", 0.08),),
            zones=CARPARK_ZONES,
            timeline=_breeze(0.8),
        ),
        SceneSpec(
            "carpark-night",
            "Car park at night on infrared with its lamps on: cars with head and tail lamps, a car "
            "parking, a few people.",
            "carpark",
            lighting="night",
            color=False,
            noise_sigma=6.5,
            lamps={"carpark-lights": 1.0},
            paths=CARPARK_PATHS,
            actors_per_min=3.0,
            scheduled=(("car-parks", 0.1),),
            zones=CARPARK_ZONES,
        ),
        SceneSpec(
            "carpark-snow",
            "Car park on a grey afternoon in falling snow, dusk setting in, with traffic and "
            "pedestrians.",
            "carpark",
            gain=0.85,
            noise_sigma=3.0,
            paths=CARPARK_PATHS,
            actors_per_min=4.0,
            zones=CARPARK_ZONES,
            timeline=_snow,
        ),
        SceneSpec(
            "trees-wind",
            "Garden with big trees in strong, gusty wind; nobody there (every alarm is false).",
            "garden",
            zones=GARDEN_ZONES,
            paths=GARDEN_PATHS,
            timeline=_wind,
        ),
        SceneSpec(
            "shake",
            "Car park seen from a pole that shakes in two gusts (1-3 px), with some traffic "
            "(a car crosses during the first gust).",
            "carpark",
            paths=CARPARK_PATHS,
            actors_per_min=3.0,
            scheduled=(("car-lane-west", 0.17),),
            zones=CARPARK_ZONES,
            timeline=_shake,
        ),
        SceneSpec(
            "tamper",
            "Empty car park, then tampering: the lens defocused, covered by a hand, and the camera "
            "turned away for good.",
            "carpark",
            zones=CARPARK_ZONES,
            timeline=_tamper,
            world=1.8,
        ),
        SceneSpec(
            "empty",
            "The school yard with nothing happening: only sensor noise.",
            "schoolyard",
            zones=SCHOOLYARD_ZONES,
        ),
    )
}


def scene_names() -> list[str]:
    """Names of the catalogue scenes."""
    return list(SCENES)


# --------------------------------------------------------------------------------------------------
# Scene


@dataclass(frozen=True, slots=True)
class _Placed:
    """An actor's state in one frame and where it lands in the view (without shake)."""

    actor: Actor
    st: ActorState
    foot_x: float
    foot_y: float
    px_per_m: float
    sideways: float
    facing: float
    zones: tuple[str, ...]
    listed: bool
    """Still ground truth (a parked vehicle stops being listed after ``parked_after_s``)."""


_STREAMS = {"backdrop": 1, "actors": 2, "timeline": 3, "noise": 4, "effects": 5}


def _rng(seed: int, stream: str) -> np.random.Generator:
    # One independent stream per part, so adding an actor does not change the backdrop, etc.
    return np.random.default_rng([seed, _STREAMS[stream]])


class Scene:
    """A seeded synthetic clip of a catalogue scene at a given size, frame rate and length.

    ``seconds`` fixes the timeline: nuisances are placed at fractions of it, actors arrive from a
    seeded process after a quiet start (about 15% of the clip, at most 2 s, so a detector can learn
    the background). The same arguments always give the same frames and truth.
    """

    def __init__(
        self,
        name: str,
        *,
        width: int,
        height: int,
        fps: float,
        seconds: float,
        seed: int = 0,
    ) -> None:
        if name not in SCENES:
            raise ValueError(
                f"unknown scene {name!r}; the catalogue has: {', '.join(scene_names())}"
            )
        _check_size(width, height)
        if not math.isfinite(fps) or fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        if not math.isfinite(seconds) or seconds <= 0:
            raise ValueError(f"seconds must be positive, got {seconds}")
        self.spec = SCENES[name]
        self.name = name
        self.width = width
        self.height = height
        self.fps = float(fps)
        self.seconds = float(seconds)
        self.seed = int(seed)
        self.frame_count = max(1, round(seconds * fps))
        self._scale = height / 1080.0
        spec = self.spec

        self.backdrop: Backdrop = build_backdrop(
            spec.layout, _rng(seed, "backdrop"), width, height, spec.world
        )
        bd = self.backdrop
        self.camera = bd.camera
        self.zones: tuple[Zone, ...] = spec.zones
        self._zone_px = [(z.name, z.to_pixels(width, height)) for z in self.zones]

        tl_rng = _rng(seed, "timeline")
        self.episodes: list[Episode] = sorted(
            spec.timeline(self.seconds, tl_rng), key=lambda e: (e.start_s, e.kind)
        )
        eff = _rng(seed, "effects")
        self._switches: dict[str, list[Episode]] = {}
        for ep in self.episodes:
            if ep.kind == "light_switch":
                self._switches.setdefault(str(ep.params["lamp"]), []).append(ep)
        self._daylight = [e for e in self.episodes if e.kind == "daylight_change"]
        self._shakes = [Shake(e, eff, self._scale) for e in self.episodes if e.kind == "shake"]
        self._weather = [
            Particles(str(e.kind), e, eff, width, height)
            for e in self.episodes
            if e.kind in ("rain", "snow")
        ]
        sway_eps = [e for e in self.episodes if e.kind == "tree_sway"]
        self._sway = (
            Sway(
                sway_eps,
                eff,
                [(t.x0, t.y0, t.x1, t.y1, t.base_y, t.phase, t.weight) for t in bd.trees],
                self._scale,
            )
            if sway_eps and bd.trees
            else None
        )
        self._tampers = [e for e in self.episodes if e.kind.startswith("tamper_")]

        # Base picture: the albedo under the scene's steady light, with lamps that never switch
        # baked in, so a frame costs one multiply unless something changes.
        base = bd.albedo * (bd.night_light if spec.lighting == "night" else np.float32(1.0))
        base = (base * np.float32(spec.gain)).astype(np.float32)
        self._illum = (
            bd.night_light * np.float32(spec.gain)
            if spec.lighting == "night"
            else np.full((1, 1), spec.gain, np.float32)
        )
        self._live_lamps: list[str] = []
        for lname, lamp in bd.lamps.items():
            level = spec.lamps.get(lname, 0.0)
            if lname in self._switches:
                self._live_lamps.append(lname)
            elif level > 0:
                h, w = lamp.add.shape
                base[lamp.y0 : lamp.y0 + h, lamp.x0 : lamp.x0 + w] += np.float32(level) * lamp.add
        self._base = base
        full = base[:, :width].copy()
        for lname in self._live_lamps:
            lamp = bd.lamps[lname]
            h, w = lamp.add.shape
            x1 = min(width, lamp.x0 + w)
            if x1 > lamp.x0:
                full[lamp.y0 : lamp.y0 + h, lamp.x0 : x1] += lamp.add[:, : x1 - lamp.x0]
        self._full_mean = max(1.0, float(full.mean()))
        self._base_cb = bd.cb
        self._base_cr = bd.cr

        # Cover tamper: a soft dark shape closing in from outside a corner.
        self._cover_dist: F32 | None = None
        self._cover_tex: F32 | None = None
        if any(e.kind == "tamper_cover" for e in self._tampers):
            corner = eff.integers(4)
            cx = (1.25 if corner % 2 else -0.25) * width
            cy = (1.2 if corner // 2 else -0.2) * height
            yy = np.arange(height, dtype=np.float32)[:, None] + 0.5
            xx = np.arange(width, dtype=np.float32)[None, :] + 0.5
            self._cover_dist = np.sqrt((xx - np.float32(cx)) ** 2 + (yy - np.float32(cy)) ** 2)
            self._cover_tex = (
                np.float32(22.0)
                + np.float32(8.0) * fractal_noise(eff, height, width, cells=(3, 5), octaves=2)
            ).astype(np.float32)

        # Sensor noise bank: one big field, read at a different offset each frame.
        nrng = _rng(seed, "noise")
        self._pad = 24
        self._bank = nrng.standard_normal(
            (height + 2 * self._pad, width + 2 * self._pad), dtype=np.float32
        )
        self._noise_off = nrng.integers(0, 2 * self._pad + 1, size=(self.frame_count, 4))

        self.actors: list[Actor] = self._make_actors(_rng(seed, "actors"))
        self._acc = np.empty((height, width), np.float32)
        self._acc2 = np.empty((height, width), np.float32)
        self._cacc = np.empty((2, height // 2, width // 2), np.float32)
        self._cacc2 = np.empty((height // 2, width // 2), np.float32)
        self._gray = np.full((height // 2, width // 2), 128, np.uint8)
        self._gray.setflags(write=False)
        self.events: list[Event] = self._make_events()

    # ---------------------------------------------------------------- timeline

    def time_of(self, index: int) -> float:
        """Time in seconds of frame ``index``."""
        return index / self.fps

    def _make_actors(self, rng: np.random.Generator) -> list[Actor]:
        spec = self.spec
        actors: list[Actor] = []
        by_name = {p.name: p for p in spec.paths}
        for path_name, frac in spec.scheduled:
            actors.append(make_actor(rng, len(actors) + 1, by_name[path_name], frac * self.seconds))
        random_paths = [p for p in spec.paths if p.weight > 0]
        if spec.actors_per_min > 0 and random_paths:
            weights = np.array([p.weight for p in random_paths])
            weights /= weights.sum()
            t = min(2.0, 0.15 * self.seconds)
            mean_gap = 60.0 / spec.actors_per_min
            while t < self.seconds:
                p = random_paths[int(rng.choice(len(random_paths), p=weights))]
                actors.append(make_actor(rng, len(actors) + 1, p, t))
                t += max(1.0, float(rng.exponential(mean_gap)))
        actors.sort(key=lambda a: (a.spawn_s, a.id))
        return actors

    def _gain(self, t: float) -> float:
        return daylight_gain(t, self._daylight)

    def _pan_px(self, t: float) -> int:
        extra = self.backdrop.world_width - self.width
        p = 0.0
        for e in self._tampers:
            if e.kind == "tamper_turned":
                p = max(p, progress(t, e.start_s, e.end_s, e.num("ramp", 1.5), False))
        return 2 * round(0.5 * p * extra * 0.95)

    def _shift(self, t: float) -> tuple[float, float]:
        dx = dy = 0.0
        for s in self._shakes:
            a, b = s.offset(t)
            dx += a
            dy += b
        return dx, dy

    def _tamper_at(self, t: float) -> str | None:
        for e in self._tampers:
            if e.start_s <= t < e.end_s:
                return e.kind.removeprefix("tamper_")
        return None

    def _place(self, a: Actor, st: ActorState, t: float, pan: int) -> _Placed:
        cam = self.camera
        w, h = self.width, self.height
        fx, fy = cam.to_image(st.x_m, st.z_m)
        foot_x = fx * w - pan
        foot_y = fy * h
        ppm = cam.px_per_m(st.z_m, h)
        # Direction of travel on the image decides side or front view and facing.
        ax, ay = cam.to_image(st.x_m + st.heading[0] * 0.5, st.z_m + st.heading[1] * 0.5)
        vx, vy = (ax - fx) * ASPECT, ay - fy
        n = math.hypot(vx, vy)
        sideways = abs(vx) / n if n > 0 else 1.0
        facing = 1.0 if vx >= 0 else -1.0
        zones = tuple(
            name for name, poly in self._zone_px if point_in_polygon(foot_x, foot_y, poly)
        )
        listed = not (
            st.parked_since_s is not None and t - st.parked_since_s >= self.spec.parked_after_s
        )
        return _Placed(a, st, foot_x, foot_y, ppm, sideways, facing, zones, listed)

    def _placements(self, index: int) -> list[_Placed]:
        t = self.time_of(index)
        pan = self._pan_px(t)
        out: list[_Placed] = []
        for a in self.actors:
            if a.spawn_s > t:
                break
            st = a.state(t)
            if st is not None:
                out.append(self._place(a, st, t, pan))
        # Far ones first: nearer actors are drawn over them.
        out.sort(key=lambda p: -p.st.z_m)
        return out

    def _sprite(self, p: _Placed) -> Sprite | None:
        return render_sprite(
            p.actor,
            p.st,
            p.foot_x,
            p.foot_y,
            p.px_per_m,
            p.sideways,
            p.facing,
            self.width,
            self.height,
        )

    def _visible_fast(self, p: _Placed, shift: tuple[int, int]) -> bool | None:
        """True or False when the box alone decides visibility, None when the mask must."""
        hp = p.actor.look.height_m * p.px_per_m
        if hp < 12:
            return None
        half = 0.5 * p.actor.look.width_m * p.px_per_m if p.actor.kind == "vehicle" else 0.3 * hp
        m = abs(shift[0]) + abs(shift[1]) + 2
        x0, x1 = p.foot_x - half, p.foot_x + half
        y0, y1 = p.foot_y - hp, p.foot_y
        if x0 >= m and x1 <= self.width - m and y0 >= m and y1 <= self.height - m:
            return True
        # Points that are always part of the silhouette: torso and head centres of a person, the
        # middle of a vehicle's body. One of them in the frame is enough.
        core: tuple[tuple[float, float], ...]
        if p.actor.kind == "person":
            core = ((p.foot_x, p.foot_y - 0.35 * hp), (p.foot_x, p.foot_y - 0.925 * hp))
        else:
            core = ((p.foot_x, p.foot_y - 0.37 * hp),)
        for cx, cy in core:
            if m <= cx < self.width - m and m <= cy < self.height - m:
                return True
        if x1 < -m - hp or x0 > self.width + m + hp or y1 < -m or y0 > self.height + m:
            return False
        return None

    def _placed_mask(self, sp: Sprite, shift: tuple[int, int]) -> tuple[int, int, Bool] | None:
        """The sprite's mask moved by the whole-pixel shake and clipped to the frame."""
        x0, y0 = sp.x0 + shift[0], sp.y0 + shift[1]
        h, w = sp.mask.shape
        cx0, cy0 = max(0, x0), max(0, y0)
        cx1, cy1 = min(self.width, x0 + w), min(self.height, y0 + h)
        if cx1 <= cx0 or cy1 <= cy0:
            return None
        m = sp.mask[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
        rows = np.flatnonzero(m.any(axis=1))
        if rows.size == 0:
            return None
        cols = np.flatnonzero(m.any(axis=0))
        r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
        return cx0 + c0, cy0 + r0, m[r0:r1, c0:c1]

    def _make_events(self) -> list[Event]:
        fps = self.fps
        n = self.frame_count
        events: list[Event] = []

        def add(kind: EventKind, f0: int, f1: int, detail: Detail) -> None:
            if f1 > f0:
                events.append(Event(kind, f0, f1, f0 / fps, f1 / fps, detail))

        # Actor presence, zones and stops, from the listed frames.
        open_present: dict[int, int] = {}
        open_zone: dict[tuple[int, str], int] = {}
        open_stop: dict[int, int] = {}
        kinds = {a.id: a.kind for a in self.actors}
        parked = {a.id: a.parks for a in self.actors}
        for i in range(n + 1):
            seen: set[int] = set()
            zones_now: set[tuple[int, str]] = set()
            stopped: set[int] = set()
            if i < n:
                t = self.time_of(i)
                dx, dy = self._shift(t)
                shift = (round(dx), round(dy))
                for p in self._placements(i):
                    if not p.listed:
                        continue
                    vis = self._visible_fast(p, shift)
                    if vis is None:
                        sp = self._sprite(p)
                        vis = sp is not None and self._placed_mask(sp, shift) is not None
                    if not vis:
                        continue
                    aid = p.actor.id
                    seen.add(aid)
                    zones_now.update((aid, z) for z in p.zones)
                    if not p.st.moving:
                        stopped.add(aid)
            for aid in list(open_present):
                if aid not in seen:
                    add(
                        "object_present",
                        open_present.pop(aid),
                        i,
                        {"object": aid, "kind": kinds[aid], "parks": parked[aid]},
                    )
            for aid in seen - open_present.keys():
                open_present[aid] = i
            for key in list(open_zone):
                if key not in zones_now:
                    add("zone_enter", open_zone.pop(key), i, {"object": key[0], "zone": key[1]})
            for key in zones_now - open_zone.keys():
                open_zone[key] = i
            for aid in list(open_stop):
                if aid not in stopped:
                    add("object_stopped", open_stop.pop(aid), i, {"object": aid})
            for aid in stopped - open_stop.keys():
                open_stop[aid] = i

        # Nuisances: the frames each episode affects.
        frame_s = 1.0 / fps
        for ep in self.episodes:
            frames = [i for i in range(n) if ep.active(self.time_of(i), frame_s)]
            if not frames:
                continue
            detail: Detail = dict(ep.params)
            # Contiguous by construction: an episode is one interval.
            add(ep.kind, frames[0], frames[-1] + 1, detail)
        events.sort(key=lambda e: (e.start_frame, e.kind, e.end_frame, str(e.detail)))
        return events

    # ---------------------------------------------------------------- truth

    def _truth(
        self, index: int, placements: list[_Placed], sprites: dict[int, Sprite | None]
    ) -> FrameTruth:
        t = self.time_of(index)
        dx, dy = self._shift(t)
        shift = (round(dx), round(dy))
        boxes: list[ObjectBox] = []
        masks: list[PlacedMask] = []
        for p in placements:
            if not p.listed:
                continue
            sp = sprites.get(p.actor.id)
            if sp is None:
                continue
            pm = self._placed_mask(sp, shift)
            if pm is None:
                continue
            x, y, m = pm
            masks.append(PlacedMask(p.actor.id, x, y, m))
            boxes.append(
                ObjectBox(
                    id=p.actor.id,
                    kind=p.actor.kind,
                    x=x,
                    y=y,
                    w=int(m.shape[1]),
                    h=int(m.shape[0]),
                    zones=p.zones,
                    moving=p.st.moving,
                    foot=(p.foot_x, p.foot_y),
                )
            )
        frame_s = 1.0 / self.fps
        nuis = tuple(sorted({e.kind for e in self.episodes if e.active(t, frame_s)}))
        frozen = tuple(masks)
        boxes.sort(key=lambda b: b.id)
        return FrameTruth(
            index=index,
            time_s=t,
            width=self.width,
            height=self.height,
            objects=tuple(boxes),
            nuisances=nuis,
            tamper=self._tamper_at(t),
            shift_px=(dx, dy),
            _masks=lambda: frozen,
        )

    def truth(self, index: int) -> FrameTruth:
        """Ground truth of frame ``index`` without rendering the picture."""
        self._check_index(index)
        placements = self._placements(index)
        sprites = {p.actor.id: self._sprite(p) for p in placements if p.listed}
        return self._truth(index, placements, sprites)

    def _check_index(self, index: int) -> None:
        if not 0 <= index < self.frame_count:
            raise IndexError(f"frame {index} is outside the clip (0..{self.frame_count - 1})")

    # ---------------------------------------------------------------- rendering

    def render(self, index: int) -> SceneFrame:
        """Renders frame ``index`` (any order; the result depends only on the index)."""
        self._check_index(index)
        t = self.time_of(index)
        w, h = self.width, self.height
        spec = self.spec
        color = spec.color
        pan = self._pan_px(t)
        gain = np.float32(self._gain(t))
        acc = self._acc
        np.multiply(self._base[:, pan : pan + w], gain, out=acc)
        cacc = self._cacc
        levels: dict[str, float] = {}
        for lname in self._live_lamps:
            lamp = self.backdrop.lamps[lname]
            level = light_level(t, spec.lamps.get(lname, 0.0), self._switches[lname])
            levels[lname] = level
            if level <= 0:
                continue
            self._add_window(acc, lamp.add, lamp.x0 - pan, lamp.y0, np.float32(level))
        if color:
            # Colour fades with the light: in a dark room a camera sees hardly any chroma.
            if self._live_lamps:
                sat = np.float32(min(1.0, float(acc.mean()) / self._full_mean))
            else:
                sat = np.float32(min(1.0, float(gain) * spec.gain))
            np.multiply(self._base_cb[:, pan // 2 : pan // 2 + w // 2], sat, out=cacc[0])
            np.multiply(self._base_cr[:, pan // 2 : pan // 2 + w // 2], sat, out=cacc[1])

        if self._sway is not None:
            amp = self._sway.amplitude(t)
            if amp > 0.05:
                for k, tree in enumerate(self.backdrop.trees):
                    self._sway_tree(acc, k, tree.x0 - pan, tree.y0, tree.phase, t, amp)

        placements = self._placements(index)
        sprites: dict[int, Sprite | None] = {}
        for p in placements:
            sp = self._sprite(p)
            sprites[p.actor.id] = sp
            if sp is None:
                continue
            light = self._light_at(p, t, float(gain), pan, levels)
            self._composite(acc, cacc if color else None, sp, light, spec.lighting == "night")

        for wx in self._weather:
            wx.apply(acc, t)

        dx, dy = self._shift(t)
        if dx != 0.0 or dy != 0.0:
            shift_bilinear(acc, dx, dy, self._acc2)
            acc, self._acc2 = self._acc2, acc
            self._acc = acc
            if color:
                for c in range(2):
                    shift_bilinear(cacc[c], dx / 2, dy / 2, self._cacc2)
                    cacc[c] = self._cacc2

        for e in self._tampers:
            ramp = e.num("ramp", 1.0)
            releases = e.end_s < self.seconds
            strength = progress(t, e.start_s, e.end_s, ramp, releases)
            if strength <= 0.0:
                continue
            if e.kind == "tamper_defocus":
                r = strength * 0.014 * h
                k = round(r / 2)
                if k >= 1:
                    box_blur(box_blur(acc, k), k, out=acc)
                    if color:
                        kc = max(1, k // 2)
                        for c in range(2):
                            cacc[c] = box_blur(box_blur(cacc[c], kc), kc)
            elif e.kind == "tamper_cover":
                assert self._cover_dist is not None and self._cover_tex is not None
                dist = self._cover_dist
                soft = 0.25 * h
                r_full = float(dist.max()) + soft
                r_none = float(dist.min())
                radius = r_none + strength * (r_full - r_none)
                alpha = np.clip((np.float32(radius) - dist) / np.float32(soft), 0.0, 1.0)
                acc += alpha * (self._cover_tex - acc)
                if color:
                    a2 = alpha[::2, ::2]
                    cacc *= np.float32(1.0) - a2

        nz = self._noise_off[index]
        sigma = np.float32(spec.noise_sigma)
        np.multiply(self._bank[nz[0] : nz[0] + h, nz[1] : nz[1] + w], sigma, out=self._acc2)
        acc += self._acc2
        luma = to_u8(acc, np.empty((h, w), np.uint8))
        if color:
            cs = np.float32(0.5) * sigma
            for c in range(2):
                cacc[c] += (
                    cs * self._bank[nz[2 + c] : nz[2 + c] + h // 2, nz[3 - c] : nz[3 - c] + w // 2]
                )
                cacc[c] += np.float32(128.0)
            cb = to_u8(cacc[0], np.empty((h // 2, w // 2), np.uint8))
            cr = to_u8(cacc[1], np.empty((h // 2, w // 2), np.uint8))
        else:
            cb = cr = self._gray
        truth = self._truth(index, placements, sprites)
        return SceneFrame(index, t, luma, cb, cr, truth)

    def frames(self, start: int = 0, stop: int | None = None) -> Iterator[SceneFrame]:
        """Renders frames ``start`` .. ``stop - 1`` in order (the whole clip by default)."""
        end = self.frame_count if stop is None else min(stop, self.frame_count)
        for i in range(start, end):
            yield self.render(i)

    def __iter__(self) -> Iterator[SceneFrame]:
        return self.frames()

    def __len__(self) -> int:
        return self.frame_count

    # ---------------------------------------------------------------- helpers

    def _add_window(self, acc: F32, add: F32, x0: int, y0: int, level: np.float32) -> None:
        h, w = add.shape
        ax0, ax1 = max(0, x0), min(self.width, x0 + w)
        ay0, ay1 = max(0, y0), min(self.height, y0 + h)
        if ax1 <= ax0 or ay1 <= ay0:
            return
        acc[ay0:ay1, ax0:ax1] += level * add[ay0 - y0 : ay1 - y0, ax0 - x0 : ax1 - x0]

    def _sway_tree(
        self, acc: F32, k: int, x0: int, y0: int, phase: float, t: float, amp: float
    ) -> None:
        assert self._sway is not None
        d = self._sway.displacement(k, t, phase, amp)
        h, w = d.shape
        ax0, ax1 = max(0, x0), min(self.width, x0 + w)
        ay0, ay1 = max(0, y0), min(self.height, y0 + h)
        if ax1 - ax0 < 2 or ay1 <= ay0:
            return
        d = d[ay0 - y0 : ay1 - y0, ax0 - x0 : ax1 - x0]
        src = acc[ay0:ay1, ax0:ax1].copy()
        n = ax1 - ax0
        xs = np.arange(n, dtype=np.float32)[None, :] - d
        np.clip(xs, 0.0, n - 1.001, out=xs)
        i0 = xs.astype(np.intp)
        f = xs - i0
        a = np.take_along_axis(src, i0, axis=1)
        b = np.take_along_axis(src, i0 + 1, axis=1)
        acc[ay0:ay1, ax0:ax1] = a + f * (b - a)

    def _light_at(
        self, p: _Placed, t: float, gain: float, pan: int, levels: dict[str, float]
    ) -> float:
        """Illumination of an actor: the scene's light at its feet, plus lamp pools."""
        fy = min(self.height - 1, max(0, int(p.foot_y)))
        fx = min(self.width - 1, max(0, int(p.foot_x)))
        il = self._illum
        light = float(il[fy, fx + pan]) if il.shape != (1, 1) else float(il[0, 0])
        light *= gain
        for lname, lamp in self.backdrop.lamps.items():
            level = levels.get(lname, self.spec.lamps.get(lname, 0.0))
            if level <= 0:
                continue
            ly, lx = fy - lamp.y0, fx + pan - lamp.x0
            if 0 <= ly < lamp.pool.shape[0] and 0 <= lx < lamp.pool.shape[1]:
                light += level * float(lamp.pool[ly, lx])
        return light

    def _composite(self, acc: F32, cacc: F32 | None, sp: Sprite, light: float, night: bool) -> None:
        h, w = sp.mask.shape
        region = acc[sp.y0 : sp.y0 + h, sp.x0 : sp.x0 + w]
        lit = sp.luma * np.float32(light)
        if sp.lamps.any():
            lit[sp.lamps] = np.maximum(lit[sp.lamps], np.float32(250.0 if night else 200.0))
        np.copyto(region, lit, where=sp.mask)
        if cacc is None:
            return
        ry, rx = sp.y0 % 2, sp.x0 % 2
        m = sp.mask[ry::2, rx::2]
        cy0, cx0 = (sp.y0 + ry) // 2, (sp.x0 + rx) // 2
        mh, mw = m.shape
        sat = np.float32(min(1.0, light))
        for c, plane in enumerate((sp.cb, sp.cr)):
            reg = cacc[c, cy0 : cy0 + mh, cx0 : cx0 + mw]
            mm = m[: reg.shape[0], : reg.shape[1]]
            np.copyto(reg, plane[ry::2, rx::2][: reg.shape[0], : reg.shape[1]] * sat, where=mm)


def render_scene(
    name: str, *, width: int, height: int, fps: float, seconds: float, seed: int = 0
) -> Iterator[SceneFrame]:
    """Renders a catalogue scene frame by frame (see :class:`Scene`)."""
    return Scene(name, width=width, height=height, fps=fps, seconds=seconds, seed=seed).frames()
