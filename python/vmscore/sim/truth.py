"""Ground truth of synthetic scenes: object boxes and masks per frame, events per clip, zones.

Conventions (the motion detector's evaluation relies on them):

- Pixel coordinates, origin top-left. Boxes are integer ``x, y, w, h``, the tightest box around the
  object's mask pixels inside the frame; an object is listed in a frame exactly when at least one of
  its mask pixels is in the frame.
- Events cover frames ``[start_frame, end_frame)``: ``end_frame`` is exclusive, ``end_s`` is
  ``end_frame / fps``. An event still running at the end of a clip ends at the frame count.
- An object belongs to a zone when its ground point (the bottom centre of its silhouette, without
  camera shake) is inside the zone's polygon.
- A vehicle that stops and never moves again is *parked*: it stays listed (``moving=False``) for
  ``parked_after_s`` seconds after it stopped, then it is part of the background: no box, no mask,
  and its ``object_present`` / ``zone_enter`` events end there, so a detector that learns it into
  the background is not penalised.
- During camera shake, boxes and masks move with the image (by the shift rounded to whole pixels).
- During tampering (cover, defocus, turned camera) objects stay listed with their geometric boxes;
  ``FrameTruth.tamper`` says which tampering is active so an evaluation can set those frames aside.

Immutable values; safe to share between threads.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from vmscore.sim._raster import Bool, area_resample

__all__ = [
    "Event",
    "EventKind",
    "FrameTruth",
    "ObjectBox",
    "ObjectKind",
    "PlacedMask",
    "Zone",
    "events_from_json",
    "events_to_json",
]

ObjectKind = Literal["person", "vehicle"]

EventKind = Literal[
    "object_present",
    "object_stopped",
    "zone_enter",
    "light_switch",
    "daylight_change",
    "rain",
    "snow",
    "shake",
    "tree_sway",
    "tamper_cover",
    "tamper_defocus",
    "tamper_turned",
]

Detail = dict[str, str | int | float | bool]


@dataclass(frozen=True, slots=True)
class Zone:
    """A named polygon in relative image coordinates (0..1 of the width and of the height)."""

    name: str
    polygon: tuple[tuple[float, float], ...]

    def to_pixels(self, width: int, height: int) -> list[tuple[float, float]]:
        """The polygon in pixel coordinates of a ``width`` x ``height`` frame."""
        return [(x * width, y * height) for x, y in self.polygon]


@dataclass(frozen=True, slots=True)
class ObjectBox:
    """One visible moving object in one frame."""

    id: int
    kind: ObjectKind
    x: int
    y: int
    w: int
    h: int
    zones: tuple[str, ...] = ()
    moving: bool = True
    """False while the object stands still (loitering, or a vehicle that has just parked)."""
    foot: tuple[float, float] = (0.0, 0.0)
    """Ground point in pixels (bottom centre of the silhouette, shake excluded)."""

    @property
    def x1(self) -> int:
        """Right edge (exclusive)."""
        return self.x + self.w

    @property
    def y1(self) -> int:
        """Bottom edge (exclusive)."""
        return self.y + self.h


@dataclass(frozen=True, slots=True)
class PlacedMask:
    """An object's silhouette: a boolean patch whose top-left pixel is at ``(x, y)``."""

    id: int
    x: int
    y: int
    mask: Bool


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happens over frames ``[start_frame, end_frame)`` of a clip."""

    kind: EventKind
    start_frame: int
    end_frame: int
    start_s: float
    end_s: float
    detail: Detail = field(default_factory=dict)

    def covers(self, frame: int) -> bool:
        """True when ``frame`` is inside the event."""
        return self.start_frame <= frame < self.end_frame

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "kind": self.kind,
            "start_frame": self.start_frame,
            "end_frame": self.end_frame,
            "start_s": round(self.start_s, 6),
            "end_s": round(self.end_s, 6),
            "detail": dict(self.detail),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Event:
        """Reads :meth:`to_json` output."""
        return cls(
            kind=d["kind"],
            start_frame=int(d["start_frame"]),
            end_frame=int(d["end_frame"]),
            start_s=float(d["start_s"]),
            end_s=float(d["end_s"]),
            detail=dict(d.get("detail", {})),
        )


def events_to_json(events: Sequence[Event]) -> list[dict[str, Any]]:
    """Serialises events."""
    return [e.to_json() for e in events]


def events_from_json(items: Sequence[dict[str, Any]]) -> list[Event]:
    """Deserialises events."""
    return [Event.from_json(d) for d in items]


MaskSource = Callable[[], Sequence[PlacedMask]]


@dataclass(frozen=True)
class FrameTruth:
    """Ground truth of one frame.

    The per-pixel mask is not stored: :meth:`mask` builds it on demand from the objects'
    silhouettes (for a truth read back from a file it re-renders them from the scene).
    """

    index: int
    time_s: float
    width: int
    height: int
    objects: tuple[ObjectBox, ...] = ()
    nuisances: tuple[str, ...] = ()
    """Names of the nuisances active in this frame (``rain``, ``shake``, ``light_switch``, ...)."""
    tamper: str | None = None
    """``cover``, ``defocus`` or ``turned`` while the camera is tampered with."""
    shift_px: tuple[float, float] = (0.0, 0.0)
    """Camera shake: how far the image content moved (dx, dy) in pixels."""
    _masks: MaskSource | None = field(default=None, repr=False, compare=False)

    def masks(self) -> list[PlacedMask]:
        """The silhouette of every listed object (patches clipped to the frame)."""
        if self._masks is None:
            raise ValueError("this frame truth carries no silhouettes")
        return list(self._masks())

    def mask(self) -> Bool:
        """Boolean HxW mask of the moving-object pixels (the union of the silhouettes)."""
        out = np.zeros((self.height, self.width), np.bool_)
        if not self.objects:
            return out
        for pm in self.masks():
            h, w = pm.mask.shape
            out[pm.y : pm.y + h, pm.x : pm.x + w] |= pm.mask
        return out

    def scaled(self, width: int, height: int) -> FrameTruth:
        """The same truth for a ``width`` x ``height`` rescaled copy of the frame (a sub-stream).

        Silhouettes are area-averaged onto the smaller grid and kept where they cover at least half
        a pixel; boxes are recomputed from them, so the conventions above still hold exactly.
        """
        sx, sy = width / self.width, height / self.height
        placed: list[PlacedMask] = []
        boxes: list[ObjectBox] = []
        by_id = {o.id: o for o in self.objects}
        for pm in self.masks() if self.objects else []:
            h, w = pm.mask.shape
            x0, y0 = int(np.floor(pm.x * sx)), int(np.floor(pm.y * sy))
            x1, y1 = int(np.ceil((pm.x + w) * sx)), int(np.ceil((pm.y + h) * sy))
            x1, y1 = min(x1, width), min(y1, height)
            if x1 <= x0 or y1 <= y0:
                continue
            xe = np.arange(x0, x1 + 1, dtype=np.float64) / sx - pm.x
            ye = np.arange(y0, y1 + 1, dtype=np.float64) / sy - pm.y
            cover = _covered(pm.mask, ye, xe)
            m = cover >= 0.5
            if not m.any():
                continue
            rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
            r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
            placed.append(PlacedMask(pm.id, x0 + c0, y0 + r0, m[r0:r1, c0:c1]))
            o = by_id[pm.id]
            boxes.append(
                ObjectBox(
                    id=o.id,
                    kind=o.kind,
                    x=x0 + c0,
                    y=y0 + r0,
                    w=c1 - c0,
                    h=r1 - r0,
                    zones=o.zones,
                    moving=o.moving,
                    foot=(o.foot[0] * sx, o.foot[1] * sy),
                )
            )
        frozen = tuple(placed)
        return FrameTruth(
            index=self.index,
            time_s=self.time_s,
            width=width,
            height=height,
            objects=tuple(boxes),
            nuisances=self.nuisances,
            tamper=self.tamper,
            shift_px=(self.shift_px[0] * sx, self.shift_px[1] * sy),
            _masks=lambda: frozen,
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (without the silhouettes)."""
        return {
            "index": self.index,
            "time_s": round(self.time_s, 6),
            "objects": [
                {
                    "id": o.id,
                    "kind": o.kind,
                    "box": [o.x, o.y, o.w, o.h],
                    "zones": list(o.zones),
                    "moving": o.moving,
                    "foot": [round(o.foot[0], 2), round(o.foot[1], 2)],
                }
                for o in self.objects
            ],
            "nuisances": list(self.nuisances),
            "tamper": self.tamper,
            "shift_px": [round(self.shift_px[0], 3), round(self.shift_px[1], 3)],
        }

    @classmethod
    def from_json(
        cls, d: dict[str, Any], width: int, height: int, masks: MaskSource | None = None
    ) -> FrameTruth:
        """Reads :meth:`to_json` output; ``masks`` supplies silhouettes when they are wanted."""
        objs = tuple(
            ObjectBox(
                id=int(o["id"]),
                kind=o["kind"],
                x=int(o["box"][0]),
                y=int(o["box"][1]),
                w=int(o["box"][2]),
                h=int(o["box"][3]),
                zones=tuple(o.get("zones", ())),
                moving=bool(o.get("moving", True)),
                foot=(float(o["foot"][0]), float(o["foot"][1])) if "foot" in o else (0.0, 0.0),
            )
            for o in d.get("objects", [])
        )
        return cls(
            index=int(d["index"]),
            time_s=float(d["time_s"]),
            width=width,
            height=height,
            objects=objs,
            nuisances=tuple(d.get("nuisances", ())),
            tamper=d.get("tamper"),
            shift_px=(float(d["shift_px"][0]), float(d["shift_px"][1]))
            if "shift_px" in d
            else (0.0, 0.0),
            _masks=masks,
        )


def _covered(mask: Bool, y_edges: npt.NDArray[np.float64], x_edges: npt.NDArray[np.float64]) -> Any:
    """Fraction of each output cell covered by ``mask`` (cells may reach outside the patch)."""
    h, w = mask.shape
    pad = np.zeros((h + 2, w + 2), np.float32)
    pad[1:-1, 1:-1] = mask
    # Shift edges by the one-pixel border; cells beyond the patch integrate zeros.
    return area_resample(pad, y_edges + 1.0, x_edges + 1.0)
