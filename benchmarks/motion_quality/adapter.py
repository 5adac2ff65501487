"""vmscore's motion detector behind the benchmark's detector interface.

``vmscore.motion`` is imported only when a detector is made, so the benchmark runs with the
baselines alone where the module is not built (:func:`vmscore_motion_missing` says why).
The detector gets its default settings plus the scene's zones: the same settings for every scene.
Zone polygons are first cut to the image (:func:`clip_to_image`): the scenes' ground polygons may
reach far beyond the picture, which the detector's settings reject; inside the picture they cover
the same pixels.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from vmscore.sim import Zone

__all__ = ["Outcome", "VmscoreDetector", "clip_to_image", "vmscore_motion_missing"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """A detector's verdict on one frame, when it says more than motion yes/no."""

    motion: bool
    tamper: tuple[str, ...] = ()
    """Tamper conditions reported for the frame (any of them flags the frame)."""
    note: str = ""
    """Why motion was suppressed, if it was (counted per scene as a diagnostic)."""


def vmscore_motion_missing() -> str | None:
    """None when ``vmscore.motion`` can be imported, otherwise why not."""
    try:
        importlib.import_module("vmscore.motion")
    except ImportError as exc:
        if isinstance(exc, ModuleNotFoundError) and exc.name == "vmscore.motion":
            return "vmscore.motion is not installed (vmscore built without the motion detector)"
        return f"vmscore.motion cannot be imported: {exc}"
    return None


Point = tuple[float, float]


def _cut(pts: list[Point], axis: int, bound: float, keep_below: bool) -> list[Point]:
    """The part of the closed outline ``pts`` on one side of the line ``p[axis] == bound``, with
    the points where the outline crosses it."""

    def inside(p: Point) -> bool:
        return p[axis] <= bound if keep_below else p[axis] >= bound

    def crossing(a: Point, b: Point) -> Point:
        t = (bound - a[axis]) / (b[axis] - a[axis])
        return (a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1]))

    out: list[Point] = []
    for i, cur in enumerate(pts):
        prev = pts[i - 1]
        if inside(cur):
            if not inside(prev):
                out.append(crossing(prev, cur))
            out.append(cur)
        elif inside(prev):
            out.append(crossing(prev, cur))
    return out


def clip_to_image(polygon: Sequence[Point]) -> list[Point]:
    """``polygon`` (relative coordinates) cut to the image, 0..1 on both axes: the same pixels,
    without vertices far outside the picture (which the detector's zone settings reject). Empty when
    the polygon lies outside the image."""
    pts = [(float(x), float(y)) for x, y in polygon]
    for axis in (0, 1):
        pts = _cut(pts, axis, 0.0, keep_below=False)
        pts = _cut(pts, axis, 1.0, keep_below=True)
    return [(min(1.0, max(0.0, x)), min(1.0, max(0.0, y))) for x, y in pts]


class VmscoreDetector:
    """``vmscore.motion.MotionDetector`` with default settings and the scene's zones."""

    def __init__(self, width: int, height: int, zones: Sequence[Zone] = ()) -> None:
        motion = importlib.import_module("vmscore.motion")
        clipped = [(z.name, clip_to_image(z.polygon)) for z in zones]
        settings = motion.MotionSettings(
            zones=[motion.ZoneSettings(name=name, polygon=poly) for name, poly in clipped if poly]
        )
        self._detector = motion.MotionDetector(width, height, settings)

    def process(self, luma: npt.NDArray[np.uint8], time_s: float) -> Outcome:
        """One frame's verdict: motion, tamper conditions, suppression reason."""
        res = self._detector.process(luma, time_s)
        return Outcome(
            motion=bool(res.motion),
            tamper=tuple(str(t) for t in res.tamper),
            note=str(res.suppressed),
        )
