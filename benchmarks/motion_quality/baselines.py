"""Two baseline motion detectors built from OpenCV, to compare vmscore's detector against.

Both take full-resolution luma frames (``process(luma, time_s) -> bool``) and restrict motion to
the scene's zones the way vmscore does: a blob (or box) counts only when it overlaps the union of
the zone polygons, rasterised with ``cv2.fillPoly`` at the detector's analysis resolution (no zones:
the whole picture). Nothing is tuned per scene.

- :class:`Mog2Detector`, a typical background-subtraction pipeline: the frame area-downscaled to the
  analysis resolution vmscore uses (``analysis_width`` 320 with the same aspect, so 320x180 for a
  640x360 frame; smaller frames are used as they are), ``cv2.createBackgroundSubtractorMOG2``
  (history 500, varThreshold 16, no shadow detection, automatic learning rate), a 3x3 morphological
  opening, 8-connected components, blobs of at least ``MIN_AREA_FRACTION`` (0.0015) of the analysis
  image (vmscore's default ``min_area``), and motion only after 2 consecutive frames with such a
  blob in the zones.
- :class:`FrigateStyleDetector`, the improved motion detector of the Frigate NVR as described by its
  parameters: luma resized to 100 rows (nearest neighbour, same aspect), contrast stretched between
  the running means of the 4th and 96th percentiles of the last 50 frames, an optional motion mask
  (pixels set to 0), a 3x3 Gaussian blur (sigma 1), the absolute difference against a float32
  running average of past frames (``cv2.accumulateWeighted``, alpha 0.01, 0.2 while calibrating),
  threshold 30, a 3x3 dilation, external contours, boxes around contours of area above 10 (resized
  pixels), ``pct_motion`` = total contour area / pixels. It calibrates while ``pct_motion`` exceeds
  the lightning threshold 0.8 and until ``pct_motion`` < 0.05 with at most 4 boxes, ignoring boxes
  meanwhile. The average takes in every frame without boxes, and frames with boxes only after 10
  consecutive ones. Motion: at least one box overlapping the zones, not calibrating. Two start-up
  choices so that a clip is judged on steady-state behaviour: the running average starts from the
  first frame (not from black), and the contrast history holds only frames seen so far.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import cv2
import numpy as np
import numpy.typing as npt

from motion_quality.scoring import MIN_AREA_FRACTION, zone_mask
from vmscore.sim import Zone

__all__ = ["FrigateStyleDetector", "Mog2Detector", "analysis_size"]

U8 = npt.NDArray[np.uint8]
F32 = npt.NDArray[np.float32]

_KERNEL3 = np.ones((3, 3), np.uint8)


def analysis_size(width: int, height: int, analysis_width: int = 320) -> tuple[int, int]:
    """The (width, height) a detector analyses frames at: ``analysis_width`` wide with the frame's
    aspect (the frame's own size when it is not wider)."""
    if width <= analysis_width:
        return width, height
    return analysis_width, max(1, round(height * analysis_width / width))


class Mog2Detector:
    """MOG2 background subtraction with blob filtering (see the module docstring)."""

    def __init__(
        self,
        width: int,
        height: int,
        zones: Sequence[Zone] = (),
        *,
        analysis_width: int = 320,
        min_area_fraction: float = MIN_AREA_FRACTION,
        persistence: int = 2,
        history: int = 500,
        var_threshold: float = 16.0,
    ) -> None:
        self.size = analysis_size(width, height, analysis_width)
        aw, ah = self.size
        self._resize = self.size != (width, height)
        self._mog = cv2.createBackgroundSubtractorMOG2(
            history=history, varThreshold=var_threshold, detectShadows=False
        )
        self._zone = zone_mask(zones, aw, ah)
        self._min_area = min_area_fraction * aw * ah
        self._persistence = persistence
        self._run = 0

    def process(self, luma: U8, time_s: float) -> bool:
        """True when this frame ends a run of ``persistence`` frames with a blob in the zones."""
        small = cv2.resize(luma, self.size, interpolation=cv2.INTER_AREA) if self._resize else luma
        fg = self._mog.apply(small)
        fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, _KERNEL3)
        count, labels, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
        large = stats[1:, cv2.CC_STAT_AREA] >= self._min_area
        hit = False
        if large.any():
            in_zone = np.zeros(count, np.bool_)
            in_zone[labels[self._zone]] = True
            hit = bool((large & in_zone[1:]).any())
        self._run = self._run + 1 if hit else 0
        return self._run >= self._persistence


class FrigateStyleDetector:
    """Running-average frame differencing in the manner of Frigate (see the module docstring)."""

    def __init__(
        self,
        width: int,
        height: int,
        zones: Sequence[Zone] = (),
        *,
        frame_height: int = 100,
        threshold: int = 30,
        contour_area: float = 10.0,
        frame_alpha: float = 0.01,
        calibrating_alpha: float = 0.2,
        lightning_threshold: float = 0.8,
        contrast_frames: int = 50,
        mask: npt.NDArray[np.bool_] | None = None,
    ) -> None:
        self.size = (frame_height * width // height, frame_height)
        w, h = self.size
        self._zone = zone_mask(zones, w, h)
        self._mask = (
            None
            if mask is None
            else cv2.resize(mask.astype(np.uint8), self.size, interpolation=cv2.INTER_NEAREST) > 0
        )
        self._threshold = threshold
        self._contour_area = contour_area
        self._alpha = frame_alpha
        self._calibrating_alpha = calibrating_alpha
        self._lightning = lightning_threshold
        self._contrast: deque[tuple[float, float]] = deque(maxlen=contrast_frames)
        self._avg: F32 | None = None
        self._calibrating = True
        self._motion_frames = 0

    @property
    def calibrating(self) -> bool:
        """True while the detector re-learns after a sudden global change."""
        return self._calibrating

    def _stretch(self, small: U8) -> U8:
        lo, hi = (float(v) for v in np.percentile(small, (4.0, 96.0)))
        if lo >= hi:  # one flat colour: leave it
            return small
        self._contrast.append((lo, hi))
        lo_avg, hi_avg = (float(v) for v in np.mean(self._contrast, axis=0))
        if hi_avg <= lo_avg:
            return small
        span = np.float32(255.0 / (hi_avg - lo_avg))
        scaled = (np.clip(small, lo_avg, hi_avg).astype(np.float32) - np.float32(lo_avg)) * span
        out: U8 = scaled.astype(np.uint8)
        return out

    def boxes(self, luma: U8) -> list[tuple[int, int, int, int]]:
        """One frame: updates the state, returns the motion boxes ``(x, y, w, h)`` in resized
        pixels (empty while calibrating)."""
        small: U8 = np.asarray(cv2.resize(luma, self.size, interpolation=cv2.INTER_NEAREST))
        frame = self._stretch(small)
        if self._mask is not None:
            frame = frame.copy()
            frame[self._mask] = 0
        frame = np.asarray(cv2.GaussianBlur(frame, (3, 3), 1.0))
        if self._avg is None:
            self._avg = frame.astype(np.float32)
        delta = cv2.absdiff(frame, cv2.convertScaleAbs(self._avg))
        _, thresh = cv2.threshold(delta, self._threshold, 255, cv2.THRESH_BINARY)
        thresh = cv2.dilate(thresh, _KERNEL3, iterations=1)
        contours, _ = cv2.findContours(thresh, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        total = 0.0
        found: list[tuple[int, int, int, int]] = []
        for c in contours:
            area = float(cv2.contourArea(c))
            total += area
            if area > self._contour_area:
                x, y, w, h = cv2.boundingRect(c)
                found.append((int(x), int(y), int(w), int(h)))
        pct = total / (self.size[0] * self.size[1])
        if pct < 0.05 and len(found) <= 4:
            self._calibrating = False
        if pct > self._lightning:
            self._calibrating = True
        alpha = self._calibrating_alpha if self._calibrating else self._alpha
        if found:
            self._motion_frames += 1
            if self._motion_frames >= 10:
                cv2.accumulateWeighted(frame, self._avg, alpha)
        else:
            self._motion_frames = 0
            cv2.accumulateWeighted(frame, self._avg, alpha)
        return [] if self._calibrating else found

    def process(self, luma: U8, time_s: float) -> bool:
        """True when a motion box overlaps the zones."""
        return any(self._zone[y : y + h, x : x + w].any() for x, y, w, h in self.boxes(luma))
