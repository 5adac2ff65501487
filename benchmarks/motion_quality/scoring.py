"""Event-level scoring of a motion detector against the ground truth of a synthetic clip.

Ground truth (the same rule for every detector):

- An *object event* is one object's presence where a zone-restricted detector may report it: the
  frames in which the object is listed in the truth and at least one pixel of its silhouette lies
  inside the union of the scene's zones (a detector counts a blob when it overlaps that union).
  Runs of such frames of the same object separated by less than ``MERGE_GAP_S`` are one event.
  Parked vehicles stop being listed once they belong to the background (the truth's convention),
  so their events end there.
- An object event is *required* (counted in recall and delay) when the object's silhouette is at
  least ``MIN_AREA_FRACTION`` of the frame (the detectors' smallest blob) in frames adding up to at
  least ``MIN_EVENT_S``. Other object events (far-away or tiny objects, objects that only graze a
  zone) are *don't care*: not a miss when unseen, and an alarm they explain is not false.
- Frames set aside: the first ``WARMUP_S`` of a clip (the scene's quiet start, where a detector
  learns its background) and every frame during tampering (``FrameTruth.tamper``). Alarms in them
  are dropped and object presence in them is ignored.

Alarms: a detector's per-frame motion flags, with set-aside frames cleared, form runs; runs
separated by less than ``MERGE_GAP_S`` are one *alarm event*. An alarm event is *true* when it
overlaps a required object event extended by ``TAIL_S`` after its end, *ignored* when it overlaps
only don't-care events (with the same tail), and *false* otherwise. A required event is *detected*
when a motion frame falls inside it; its *delay* runs from its first frame with a silhouette of the
minimum size to that first motion frame (0 when the alarm was already on).

Tampering (when the detector reports it): a tamper episode is *flagged* when the detector reports
any tamper condition during it (delay from its start). Tamper reports outside episodes (extended by
``TAMPER_TAIL_S``, while the detector re-learns the restored view) and after the warm-up form runs
merged like alarms; each is a false tamper event.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import cv2
import numpy as np
import numpy.typing as npt

from vmscore.sim import FrameTruth, Zone

__all__ = [
    "MERGE_GAP_S",
    "MIN_AREA_FRACTION",
    "MIN_EVENT_S",
    "TAIL_S",
    "TAMPER_TAIL_S",
    "WARMUP_S",
    "ClipTruth",
    "Findings",
    "GtEvent",
    "Score",
    "TamperEpisode",
    "TruthBuilder",
    "judge_clip",
    "runs",
    "score_clip",
    "zone_mask",
]

Bools = npt.NDArray[np.bool_]

MERGE_GAP_S = 2.0
"""Runs (of alarms, or of one object's presence) closer than this are one event."""
TAIL_S = 1.0
"""An alarm this long after an object event's end still belongs to it."""
MIN_EVENT_S = 1.0
"""An object event is required when its silhouette has the minimum size for this long."""
MIN_AREA_FRACTION = 0.0015
"""Smallest blob of the detectors (a fraction of the image): 0.0015 of 320x180 is 86 pixels."""
WARMUP_S = 2.0
"""Set aside at the start of every clip: the detectors learn their background."""
TAMPER_TAIL_S = 5.0
"""Tamper reports this long after a tamper episode still belong to it."""


def zone_mask(zones: Sequence[Zone], width: int, height: int) -> Bools:
    """The union of ``zones`` (relative polygons) as a ``height`` x ``width`` boolean mask; all
    true when there are no zones (the whole picture counts)."""
    if not zones:
        return np.ones((height, width), np.bool_)
    out = np.zeros((height, width), np.uint8)
    shift = 4  # sub-pixel vertices: 1/16 pixel
    polys = [
        np.round((np.asarray(z.to_pixels(width, height), np.float64) - 0.5) * (1 << shift))
        .astype(np.int32)
        .reshape(-1, 1, 2)
        for z in zones
    ]
    cv2.fillPoly(out, polys, 1, lineType=cv2.LINE_8, shift=shift)
    return out.astype(np.bool_)


def runs(flags: Bools, fps: float, merge_gap_s: float = MERGE_GAP_S) -> list[tuple[int, int]]:
    """Runs of true frames as ``[start, end)`` frame ranges, runs separated by fewer than
    ``merge_gap_s`` seconds of false frames merged."""
    f = np.asarray(flags, np.bool_)
    if not f.any():
        return []
    edges = np.diff(np.concatenate(([0], f.astype(np.int8), [0])))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    merged: list[tuple[int, int]] = []
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        if merged and (s - merged[-1][1]) / fps < merge_gap_s:
            merged[-1] = (merged[-1][0], e)
        else:
            merged.append((s, e))
    return merged


@dataclass(frozen=True, slots=True)
class GtEvent:
    """One object's presence in the zones over frames ``[start, end)``."""

    start: int
    end: int
    ref: int
    """First frame with a silhouette of the minimum size (the delay runs from it)."""
    required: bool
    label: str = ""


class TamperEpisode(NamedTuple):
    """Tampering over frames ``[start, end)``: ``cover``, ``defocus`` or ``turned``."""

    start: int
    end: int
    kind: str = ""


@dataclass(frozen=True)
class ClipTruth:
    """What the scoring needs to know of a clip."""

    fps: float
    frames: int
    excluded: Bools
    """Frames set aside (warm-up, tampering)."""
    objects: tuple[GtEvent, ...]
    tampers: tuple[TamperEpisode, ...] = ()
    warmup: int = 0
    """Frames of warm-up at the start (also in ``excluded``)."""


class TruthBuilder:
    """Collects a clip's :class:`ClipTruth` from its frames' truth, in order."""

    def __init__(
        self,
        width: int,
        height: int,
        fps: float,
        zones: Sequence[Zone],
        *,
        min_area_fraction: float = MIN_AREA_FRACTION,
        warmup_s: float = WARMUP_S,
    ) -> None:
        self.fps = float(fps)
        self._zone = zone_mask(zones, width, height)
        self._min_px = min_area_fraction * width * height
        self._warmup = round(warmup_s * fps)
        self._excluded: list[bool] = []
        self._tamper: list[str | None] = []
        # object id -> (label, [(frame, large enough)])
        self._seen: dict[int, tuple[str, list[tuple[int, bool]]]] = {}

    def add(self, truth: FrameTruth) -> None:
        """Adds the next frame's truth."""
        i = len(self._excluded)
        if truth.index != i:
            raise ValueError(f"frames must come in order: expected {i}, got {truth.index}")
        excluded = i < self._warmup or truth.tamper is not None
        self._excluded.append(excluded)
        self._tamper.append(truth.tamper)
        if excluded or not truth.objects:
            return
        kinds = {o.id: o.kind for o in truth.objects}
        for pm in truth.masks():
            h, w = pm.mask.shape
            inside = self._zone[pm.y : pm.y + h, pm.x : pm.x + w] & pm.mask
            if not inside.any():
                continue
            large = int(np.count_nonzero(pm.mask)) >= self._min_px
            label = f"{kinds.get(pm.id, 'object')} {pm.id}"
            self._seen.setdefault(pm.id, (label, []))[1].append((i, large))

    def finish(self) -> ClipTruth:
        """The clip's truth (call once all frames are added)."""
        fps = self.fps
        need = max(1, round(MIN_EVENT_S * fps))
        events: list[GtEvent] = []
        for label, frames in self._seen.values():
            groups: list[list[tuple[int, bool]]] = []
            for f, large in frames:
                if groups and (f - groups[-1][-1][0] - 1) / fps < MERGE_GAP_S:
                    groups[-1].append((f, large))
                else:
                    groups.append([(f, large)])
            for g in groups:
                big = [f for f, large in g if large]
                events.append(
                    GtEvent(
                        start=g[0][0],
                        end=g[-1][0] + 1,
                        ref=big[0] if big else g[0][0],
                        required=len(big) >= need,
                        label=label,
                    )
                )
        events.sort(key=lambda e: (e.start, e.end, e.label))
        tampers: list[TamperEpisode] = []
        start = 0
        for i in range(1, len(self._tamper) + 1):
            if i == len(self._tamper) or self._tamper[i] != self._tamper[start]:
                kind = self._tamper[start]
                if kind is not None:
                    tampers.append(TamperEpisode(start, i, kind))
                start = i
        return ClipTruth(
            fps=fps,
            frames=len(self._excluded),
            excluded=np.array(self._excluded, np.bool_),
            objects=tuple(events),
            tampers=tuple(tampers),
            warmup=min(self._warmup, len(self._excluded)),
        )


@dataclass
class Score:
    """Counts of one detector on one or more clips (scores of several clips add up)."""

    seconds: float = 0.0
    """Scored time (frames not set aside)."""
    gt_events: int = 0
    """Required object events."""
    ignored_gt: int = 0
    """Don't-care object events."""
    detected: int = 0
    delays: list[float] = field(default_factory=list)
    alarm_events: int = 0
    true_alarms: int = 0
    false_alarms: int = 0
    ignored_alarms: int = 0
    tamper_scored: bool = False
    """The detector reports tampering (otherwise the tamper counts stay 0)."""
    tamper_episodes: int = 0
    tamper_flagged: int = 0
    tamper_kinds: Counter[str] = field(default_factory=Counter)
    """Tamper episodes by kind."""
    tamper_kinds_flagged: Counter[str] = field(default_factory=Counter)
    tamper_delays: list[float] = field(default_factory=list)
    false_tamper: int = 0
    tamper_seconds: float = 0.0
    """Time over which false tamper reports are counted."""

    def __add__(self, other: Score) -> Score:
        return Score(
            seconds=self.seconds + other.seconds,
            gt_events=self.gt_events + other.gt_events,
            ignored_gt=self.ignored_gt + other.ignored_gt,
            detected=self.detected + other.detected,
            delays=self.delays + other.delays,
            alarm_events=self.alarm_events + other.alarm_events,
            true_alarms=self.true_alarms + other.true_alarms,
            false_alarms=self.false_alarms + other.false_alarms,
            ignored_alarms=self.ignored_alarms + other.ignored_alarms,
            tamper_scored=self.tamper_scored or other.tamper_scored,
            tamper_episodes=self.tamper_episodes + other.tamper_episodes,
            tamper_flagged=self.tamper_flagged + other.tamper_flagged,
            tamper_kinds=self.tamper_kinds + other.tamper_kinds,
            tamper_kinds_flagged=self.tamper_kinds_flagged + other.tamper_kinds_flagged,
            tamper_delays=self.tamper_delays + other.tamper_delays,
            false_tamper=self.false_tamper + other.false_tamper,
            tamper_seconds=self.tamper_seconds + other.tamper_seconds,
        )

    @staticmethod
    def total(scores: Iterable[Score]) -> Score:
        """The sum of ``scores``."""
        out = Score()
        for s in scores:
            out = out + s
        return out

    @property
    def recall(self) -> float | None:
        """Detected / required object events (None without any)."""
        return self.detected / self.gt_events if self.gt_events else None

    @property
    def precision(self) -> float | None:
        """True / (true + false) alarm events (None without any)."""
        judged = self.true_alarms + self.false_alarms
        return self.true_alarms / judged if judged else None

    @property
    def false_per_hour(self) -> float:
        """False alarm events per camera-hour of scored time."""
        return self.false_alarms / (self.seconds / 3600.0) if self.seconds > 0 else 0.0

    @property
    def false_tamper_per_hour(self) -> float:
        """False tamper events per camera-hour."""
        return self.false_tamper / (self.tamper_seconds / 3600.0) if self.tamper_seconds else 0.0

    def delay(self, q: float) -> float | None:
        """The ``q`` quantile (0..1) of the detection delays in seconds (None without any)."""
        return float(np.quantile(self.delays, q)) if self.delays else None

    def tamper_delay(self, q: float) -> float | None:
        """The ``q`` quantile of the tamper flagging delays in seconds."""
        return float(np.quantile(self.tamper_delays, q)) if self.tamper_delays else None

    def consistent(self) -> bool:
        """The counts add up."""
        return (
            self.true_alarms + self.false_alarms + self.ignored_alarms == self.alarm_events
            and 0 <= self.detected <= self.gt_events
            and len(self.delays) == self.detected
            and all(d >= 0 for d in self.delays)
            and 0 <= self.tamper_flagged <= self.tamper_episodes
            and len(self.tamper_delays) == self.tamper_flagged
        )


def _overlaps(a: tuple[int, int], windows: Sequence[tuple[int, int]]) -> bool:
    return any(a[0] < w1 and w0 < a[1] for w0, w1 in windows)


@dataclass
class Findings:
    """What went wrong on one clip, in seconds, for a closer look."""

    false_alarms: list[tuple[float, float]] = field(default_factory=list)
    """False alarm events as (start, end)."""
    missed: list[tuple[str, float, float]] = field(default_factory=list)
    """Required object events without a motion frame: (label, start, end)."""
    missed_tampers: list[tuple[str, float, float]] = field(default_factory=list)
    false_tampers: list[tuple[float, float]] = field(default_factory=list)


def score_clip(truth: ClipTruth, motion: Bools, tamper: Bools | None = None) -> Score:
    """Scores one clip: ``motion`` (and ``tamper``, when the detector reports it) hold one flag
    per frame."""
    return judge_clip(truth, motion, tamper)[0]


def judge_clip(
    truth: ClipTruth, motion: Bools, tamper: Bools | None = None
) -> tuple[Score, Findings]:
    """:func:`score_clip`, and the false alarms and misses behind the score."""
    fps = truth.fps
    n = truth.frames
    motion = np.asarray(motion, np.bool_)
    if motion.shape != (n,):
        raise ValueError(f"expected {n} motion flags, got {motion.shape}")
    kept = ~truth.excluded
    alarms = motion & kept
    tail = round(TAIL_S * fps)
    required = [e for e in truth.objects if e.required]
    dont_care = [e for e in truth.objects if not e.required]
    hard = [(e.start, e.end + tail) for e in required]
    soft = [(e.start, e.end + tail) for e in dont_care]

    score = Score(seconds=float(np.count_nonzero(kept)) / fps)
    found = Findings()
    score.gt_events = len(required)
    score.ignored_gt = len(dont_care)
    for e in required:
        hits = np.flatnonzero(alarms[e.start : e.end])
        if hits.size:
            score.detected += 1
            score.delays.append(max(0, e.start + int(hits[0]) - e.ref) / fps)
        else:
            found.missed.append((e.label, e.start / fps, e.end / fps))
    for ev in runs(alarms, fps):
        score.alarm_events += 1
        if _overlaps(ev, hard):
            score.true_alarms += 1
        elif _overlaps(ev, soft):
            score.ignored_alarms += 1
        else:
            score.false_alarms += 1
            found.false_alarms.append((ev[0] / fps, ev[1] / fps))

    if tamper is not None:
        flags = np.asarray(tamper, np.bool_)
        if flags.shape != (n,):
            raise ValueError(f"expected {n} tamper flags, got {flags.shape}")
        score.tamper_scored = True
        score.tamper_episodes = len(truth.tampers)
        for ep in truth.tampers:
            score.tamper_kinds[ep.kind] += 1
            hits = np.flatnonzero(flags[ep.start : ep.end])
            if hits.size:
                score.tamper_flagged += 1
                score.tamper_kinds_flagged[ep.kind] += 1
                score.tamper_delays.append(int(hits[0]) / fps)
            else:
                found.missed_tampers.append((ep.kind, ep.start / fps, ep.end / fps))
        outside = np.ones(n, np.bool_)
        outside[: truth.warmup] = False
        ttail = round(TAMPER_TAIL_S * fps)
        for ep in truth.tampers:
            outside[ep.start : ep.end + ttail] = False
        score.tamper_seconds = float(np.count_nonzero(outside)) / fps
        false_runs = runs(flags & outside, fps)
        score.false_tamper = len(false_runs)
        found.false_tampers = [(a / fps, b / fps) for a, b in false_runs]
    return score, found
