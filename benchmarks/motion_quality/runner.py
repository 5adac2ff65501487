"""Runs motion detectors over synthetic clips and scores them.

Every clip is rendered once and each frame goes to every detector in the same pass, so rendering is
paid once and all detectors see identical frames; each detector's ``process`` call is timed. A
fresh detector is made for every clip. OpenCV runs on one thread during a run, so the per-frame
costs compare single-core work.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Protocol

import cv2
import numpy as np
import numpy.typing as npt

from motion_quality.adapter import Outcome, VmscoreDetector
from motion_quality.baselines import FrigateStyleDetector, Mog2Detector
from motion_quality.scoring import Score, TruthBuilder, judge_clip
from vmscore.sim import Scene, SceneFrame, Zone

__all__ = [
    "Detector",
    "DetectorSpec",
    "Results",
    "Tally",
    "baseline_detectors",
    "run",
    "vmscore_detector",
]


class Detector(Protocol):
    """Anything that judges frames one by one: motion yes/no, or an :class:`Outcome`."""

    def process(self, luma: npt.NDArray[np.uint8], time_s: float, /) -> bool | Outcome: ...


@dataclass(frozen=True)
class DetectorSpec:
    """A named detector and how to make one for a clip."""

    name: str
    make: Callable[[int, int, Sequence[Zone]], Detector]
    """Makes a detector for frames of (width, height) and the zones motion must overlap."""
    reports_tamper: bool = False
    """Its outcomes carry tamper conditions, and tampering is scored."""


def baseline_detectors() -> list[DetectorSpec]:
    """The two baselines, as :mod:`motion_quality.baselines` describes them."""
    return [
        DetectorSpec("MOG2", Mog2Detector),
        DetectorSpec("Frigate-style", FrigateStyleDetector),
    ]


def vmscore_detector() -> DetectorSpec:
    """vmscore's motion detector (needs ``vmscore.motion``)."""
    return DetectorSpec("vmscore", VmscoreDetector, reports_tamper=True)


@dataclass
class Tally:
    """One detector on one scene type, over all of its clips."""

    score: Score = field(default_factory=Score)
    frames: int = 0
    busy_s: float = 0.0
    """Time spent in the detector's ``process``."""
    notes: Counter[str] = field(default_factory=Counter)
    """Frames per suppression reason the detector gave."""

    @property
    def ms_per_frame(self) -> float:
        """Mean cost of one frame in milliseconds."""
        return 1000.0 * self.busy_s / self.frames if self.frames else 0.0


@dataclass
class Results:
    """Everything a run measured."""

    scenes: list[str]
    detectors: list[str]
    width: int
    height: int
    fps: float
    clip_s: float
    seeds: list[int]
    zones: bool = True
    """Detectors and ground truth used the scenes' zones (otherwise the whole picture)."""
    tallies: dict[tuple[str, str], Tally] = field(default_factory=dict)
    """By (scene, detector)."""
    findings: list[dict[str, object]] = field(default_factory=list)
    """Per clip and detector: false alarms and misses (times in seconds), JSON-ready."""
    clips: int = 0
    render_s: float = 0.0
    wall_s: float = 0.0

    def tally(self, scene: str, detector: str) -> Tally:
        """The tally of ``detector`` on ``scene``."""
        return self.tallies[(scene, detector)]

    def total(self, detector: str) -> Tally:
        """``detector`` over all scenes."""
        out = Tally()
        for scene in self.scenes:
            t = self.tallies[(scene, detector)]
            out.score = out.score + t.score
            out.frames += t.frames
            out.busy_s += t.busy_s
            out.notes.update(t.notes)
        return out

    @property
    def camera_minutes_per_scene(self) -> float:
        """Camera-minutes rendered per scene."""
        return self.clip_s * len(self.seeds) / 60.0


def _timed_frames(scene: Scene, results: Results) -> Iterator[SceneFrame]:
    frames = scene.frames()
    while True:
        t0 = time.perf_counter()
        frame = next(frames, None)
        results.render_s += time.perf_counter() - t0
        if frame is None:
            return
        yield frame


def run(
    scenes: Sequence[str],
    *,
    seconds: float,
    seeds: Sequence[int],
    detectors: Sequence[DetectorSpec],
    width: int = 640,
    height: int = 360,
    fps: float = 5.0,
    zones: bool = True,
    progress: Callable[[str], None] | None = None,
) -> Results:
    """Renders every scene for each seed (clips of ``seconds``), feeds each frame to a fresh
    instance of every detector, and scores them per scene. ``zones=False``: the whole picture
    counts, for the detectors and for the ground truth."""
    names = [d.name for d in detectors]
    if len(set(names)) != len(names):
        raise ValueError(f"detector names must differ: {names}")
    results = Results(list(scenes), names, width, height, fps, seconds, list(seeds), zones)
    for scene_name in scenes:
        for d in names:
            results.tallies[(scene_name, d)] = Tally()
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    start = time.perf_counter()
    try:
        for scene_name in scenes:
            for seed in seeds:
                scene = Scene(
                    scene_name, width=width, height=height, fps=fps, seconds=seconds, seed=seed
                )
                _run_clip(scene, scene.zones if zones else (), detectors, results)
                if progress is not None:
                    progress(f"{scene_name} seed {seed}: {scene.frame_count} frames")
    finally:
        cv2.setNumThreads(threads)
    results.wall_s = time.perf_counter() - start
    return results


def _run_clip(
    scene: Scene, zones: Sequence[Zone], detectors: Sequence[DetectorSpec], results: Results
) -> None:
    n = scene.frame_count
    instances = [d.make(scene.width, scene.height, zones) for d in detectors]
    motion = np.zeros((len(detectors), n), np.bool_)
    tamper = np.zeros((len(detectors), n), np.bool_)
    busy = [0.0] * len(detectors)
    notes: list[Counter[str]] = [Counter() for _ in detectors]
    truth = TruthBuilder(scene.width, scene.height, scene.fps, zones)
    clock = time.perf_counter
    for frame in _timed_frames(scene, results):
        i = frame.index
        truth.add(frame.truth)
        luma, t = frame.luma, frame.time_s
        for k, det in enumerate(instances):
            t0 = clock()
            out = det.process(luma, t)
            busy[k] += clock() - t0
            if isinstance(out, Outcome):
                motion[k, i] = out.motion
                tamper[k, i] = bool(out.tamper)
                if out.note:
                    notes[k][out.note] += 1
            else:
                motion[k, i] = bool(out)
    clip = truth.finish()
    results.clips += 1
    for k, spec in enumerate(detectors):
        tally = results.tallies[(scene.name, spec.name)]
        score, found = judge_clip(clip, motion[k], tamper[k] if spec.reports_tamper else None)
        tally.score = tally.score + score
        results.findings.append(
            {"scene": scene.name, "seed": scene.seed, "detector": spec.name, **asdict(found)}
        )
        tally.frames += n
        tally.busy_s += busy[k]
        tally.notes.update(notes[k])
