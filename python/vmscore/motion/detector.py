"""Settings (pydantic) and the per-camera detector wrapping the native `MotionDetectorCore`."""

from __future__ import annotations

from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from vmscore._core import (
    MotionBlob,
    MotionConfig,
    MotionDetectorCore,
    MotionKernels,
    MotionResult,
    MotionZoneConfig,
    MotionZoneHit,
)

__all__ = [
    "MotionBlob",
    "MotionDetector",
    "MotionKernels",
    "MotionResult",
    "MotionSettings",
    "MotionZoneHit",
    "TamperKind",
    "ZoneSettings",
    "grid_cells",
]

TamperKind = Literal["too_dark", "too_bright", "covered", "defocused", "scene_changed"]

GRID = 16


class ZoneSettings(BaseModel):
    """A zone (where motion is reported) or a mask (never analysed: a road, a flag, a tree).

    The polygon is in coordinates relative to the image (0..1 of the width and of the height), so
    a zone drawn on a snapshot of the main stream fits the sub-stream too. Unset values take the
    detector's.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=100)
    polygon: list[tuple[float, float]] = Field(min_length=3, max_length=256)
    kind: Literal["include", "exclude"] = "include"
    sensitivity: float | None = Field(default=None, ge=0, le=1)
    min_area: float | None = Field(default=None, ge=0, lt=1)
    """Smallest blob that counts, as a fraction of the image."""
    min_fraction: float = Field(default=0.0, ge=0, le=1)
    """Fraction of the zone's own area that must change."""
    persistence: int | None = Field(default=None, ge=1, le=1000)
    """Consecutive analysed frames with motion before the zone reports it."""

    @field_validator("polygon")
    @classmethod
    def _inside(cls, pts: list[tuple[float, float]]) -> list[tuple[float, float]]:
        for x, y in pts:
            # A zone may reach past the edges (a ground area seen in part); not far past them.
            if not (-10 <= x <= 10 and -10 <= y <= 10):
                raise ValueError(
                    f"point ({x}, {y}) is far outside the image: coordinates are relative, 0..1"
                )
        return pts


class MotionSettings(BaseModel):
    """How a camera's motion is analysed. The defaults suit a camera watched at night by a
    monitoring station: sensitive to a person, deaf to light switches, rain and trees."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    analysis_width: int = Field(default=320, ge=0, le=16384)
    """The frame is box-downscaled by an integer factor to at most this width (0: full size)."""
    sensitivity: float = Field(default=0.6, ge=0, le=1)
    """0..1; the pixel threshold is max(min_threshold, (6 - 4 * sensitivity) * noise)."""
    min_threshold: int = Field(default=8, ge=1, le=254)
    min_area: float = Field(default=0.0005, ge=0, lt=1)
    """Smallest blob that counts, as a fraction of the image."""
    persistence: int = Field(default=2, ge=1, le=1000)
    background_s: float = Field(default=4.0, gt=0, le=3600)
    static_s: float = Field(default=10.0, gt=0, le=86400)
    """Something that arrives and stays still this long becomes background (a parked car)."""
    learn_s: float = Field(default=2.0, ge=0, le=600)
    global_change: float = Field(default=0.45, gt=0, le=1)
    """Changed fraction above which the whole view is re-learnt (lights, IR switch)."""
    illumination: float = Field(default=0.1, ge=0, le=10)
    """A blob whose ratio to the background is this smooth (gradient of the ratio per unit of its
    deviation from 1) is a change of light, not an object; 0 turns the test off."""
    despeckle: bool = False
    """A 3x3 opening of the mask (removes specks narrower than 3 analysis pixels)."""
    temporal_filter: bool = True
    flicker_filter: bool = True
    shake_compensation: bool = True
    tamper_s: float = Field(default=3.0, gt=0, le=3600)
    scene_adopt_s: float = Field(default=60.0, gt=0, le=86400)
    zones: list[ZoneSettings] = Field(default_factory=list, max_length=200)

    @model_validator(mode="after")
    def _unique_zone_names(self) -> MotionSettings:
        names = [z.name for z in self.zones]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"zone names must be unique: {', '.join(sorted(dup))}")
        return self

    def native(self) -> MotionConfig:
        """The settings as the native core takes them."""
        c = MotionConfig()
        for name in (
            "analysis_width",
            "sensitivity",
            "min_threshold",
            "min_area",
            "persistence",
            "background_s",
            "static_s",
            "learn_s",
            "global_change",
            "illumination",
            "despeckle",
            "temporal_filter",
            "flicker_filter",
            "shake_compensation",
            "tamper_s",
            "scene_adopt_s",
        ):
            setattr(c, name, getattr(self, name))
        zones = []
        for z in self.zones:
            nz = MotionZoneConfig()
            nz.name = z.name
            nz.polygon = list(z.polygon)
            nz.exclude = z.kind == "exclude"
            nz.sensitivity = -1.0 if z.sensitivity is None else z.sensitivity
            nz.min_area = -1.0 if z.min_area is None else z.min_area
            nz.min_fraction = z.min_fraction
            nz.persistence = -1 if z.persistence is None else z.persistence
            zones.append(nz)
        c.zones = zones
        return c


class _VideoPlane(Protocol):
    line_size: int
    width: int
    height: int

    def __buffer__(self, flags: int, /) -> memoryview: ...


class MotionDetector:
    """One camera's motion detector. Feed it the luma of every analysed frame, in time order.

    ``process`` accepts a 2-D uint8 array (rows may be padded, as in a decoder's buffer), a 1-D
    buffer with ``stride``, a PyAV ``VideoPlane`` or a PyAV ``VideoFrame`` in a YUV or gray format
    (its luma plane is read in place). The native work runs without the GIL, so detectors of
    different cameras run in parallel threads. A detector must not be used by two threads at once.
    """

    def __init__(self, width: int, height: int, settings: MotionSettings | None = None) -> None:
        self.settings = settings or MotionSettings()
        self._core = MotionDetectorCore(width, height, self.settings.native())

    @property
    def width(self) -> int:
        return self._core.width

    @property
    def height(self) -> int:
        return self._core.height

    @property
    def analysis_size(self) -> tuple[int, int]:
        """Width and height of the downscaled image the analysis runs on."""
        return self._core.analysis_size

    def process(self, plane: Any, time_s: float, stride: int = 0) -> MotionResult:
        """Analyses one frame taken at ``time_s`` seconds (any monotonic clock)."""
        planes = getattr(plane, "planes", None)
        if planes is not None:  # a PyAV VideoFrame: its first plane is the luma
            plane = planes[0]
        line_size = getattr(plane, "line_size", None)
        if isinstance(line_size, int):
            return self._core.process(plane, time_s, line_size)
        return self._core.process(plane, time_s, stride)

    def reset(self) -> None:
        """Forgets the background and every state (after a camera was moved on purpose)."""
        self._core.reset()

    def images(self) -> tuple[Any, Any, Any]:
        """Copies of the analysis images: the frame, the background and the final mask."""
        return self._core.images()


def grid_cells(grid: bytes) -> list[tuple[int, int]]:
    """The (column, row) cells set in a result's 16x16 motion grid."""
    if len(grid) != GRID * GRID // 8:
        raise ValueError(f"a motion grid has {GRID * GRID // 8} bytes, got {len(grid)}")
    return [(i % GRID, i // GRID) for i in range(GRID * GRID) if grid[i >> 3] & (0x80 >> (i & 7))]
