"""Motion-quality benchmark: motion detectors scored on synthetic scenes with ground truth.

- :mod:`motion_quality.scoring`: ground-truth object events, alarm events, recall, precision,
  false alarms per camera-hour, detection delay, tamper flags (the rules are in its docstring).
- :mod:`motion_quality.baselines`: a MOG2 pipeline and a Frigate-style running-average detector.
- :mod:`motion_quality.adapter`: vmscore's ``MotionDetector`` behind the same interface.
- :mod:`motion_quality.runner`: renders each clip once and feeds every frame to all detectors.
- :mod:`motion_quality.report`: Markdown tables and the goal check.

Run: pytest benchmarks/test_bench_motion_quality.py -s
"""

from __future__ import annotations

from motion_quality.adapter import Outcome, VmscoreDetector, vmscore_motion_missing
from motion_quality.baselines import FrigateStyleDetector, Mog2Detector
from motion_quality.report import goal_check, markdown
from motion_quality.runner import (
    Detector,
    DetectorSpec,
    Results,
    Tally,
    baseline_detectors,
    run,
    vmscore_detector,
)
from motion_quality.scoring import (
    ClipTruth,
    Findings,
    GtEvent,
    Score,
    TamperEpisode,
    TruthBuilder,
    judge_clip,
    score_clip,
)

__all__ = [
    "ClipTruth",
    "Detector",
    "DetectorSpec",
    "Findings",
    "FrigateStyleDetector",
    "GtEvent",
    "Mog2Detector",
    "Outcome",
    "Results",
    "Score",
    "Tally",
    "TamperEpisode",
    "TruthBuilder",
    "VmscoreDetector",
    "baseline_detectors",
    "goal_check",
    "judge_clip",
    "markdown",
    "run",
    "score_clip",
    "vmscore_detector",
    "vmscore_motion_missing",
]
