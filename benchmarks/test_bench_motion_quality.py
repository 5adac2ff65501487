"""Motion quality: vmscore's motion detector against two baselines (a MOG2 pipeline and a
Frigate-style running-average detector) on every synthetic scene type, scored at event level
against the scenes' ground truth: recall, precision, false alarms per camera-hour, detection delay,
and tamper reports for detectors that give them. Rules: motion_quality/scoring.py; the baselines:
motion_quality/baselines.py.

Each clip (640x360 luma at 5 fps) is rendered once and every frame goes to all detectors in the
same pass; ms/frame is the time spent in each detector's ``process`` call (OpenCV on one thread).
Without ``vmscore.motion`` only the baselines run. The table is printed and written to
benchmarks/.results/motion_quality.md, with the false alarms and misses of every clip (times in
seconds) in motion_quality.json beside it. The test asserts only that the run is sound; whether the
goal (fewer false alarms than both baselines at equal or better recall, per scene type) holds is
printed.

Run: pytest benchmarks/test_bench_motion_quality.py -s
     VMSCORE_QUALITY_MINUTES (5): camera-minutes per scene type, split over the seeds
     VMSCORE_QUALITY_SEEDS (4): clips (seeds 1..N) per scene type
     VMSCORE_QUALITY_SCENES (all): comma-separated scene names
     VMSCORE_QUALITY_ZONES (1): 0 lets the whole picture count (detectors and ground truth)
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from conftest import machine
from motion_quality import (
    DetectorSpec,
    Results,
    baseline_detectors,
    goal_check,
    markdown,
    run,
    vmscore_detector,
    vmscore_motion_missing,
)
from vmscore.sim import scene_names

MINUTES = float(os.environ.get("VMSCORE_QUALITY_MINUTES", "5"))
SEEDS = list(range(1, int(os.environ.get("VMSCORE_QUALITY_SEEDS", "4")) + 1))
SCENES = [
    s.strip() for s in os.environ.get("VMSCORE_QUALITY_SCENES", ",".join(scene_names())).split(",")
]
ZONES = os.environ.get("VMSCORE_QUALITY_ZONES", "1") != "0"
CLIP_S = MINUTES * 60.0 / len(SEEDS)
WIDTH, HEIGHT, FPS = 640, 360, 5.0
RESULTS = (
    Path(__file__).parent
    / ".results"
    / ("motion_quality.md" if ZONES else "motion_quality-whole-picture.md")
)
# A run takes about 1 s per camera-minute (all detectors); the limit leaves a wide margin.
TIMEOUT_S = max(600, round(MINUTES * len(SCENES) * 30))


def check_sound(results: Results) -> None:
    """Every detector judged every frame, and the counts add up."""
    frames = round(CLIP_S * FPS) * len(SEEDS)
    for scene in results.scenes:
        tallies = [results.tally(scene, d) for d in results.detectors]
        for d, t in zip(results.detectors, tallies, strict=True):
            assert t.frames == frames, (scene, d, t.frames)
            assert t.busy_s > 0, (scene, d)
            assert t.score.consistent(), (scene, d, t.score)
        # The ground truth is the detectors' common yardstick.
        assert len({t.score.gt_events for t in tallies}) == 1, scene
        assert len({t.score.seconds for t in tallies}) == 1, scene


@pytest.mark.timeout(TIMEOUT_S)
def test_motion_quality_vs_baselines(benchmark: BenchmarkFixture) -> None:
    benchmark.group = "motion-quality"
    missing = vmscore_motion_missing()
    detectors: list[DetectorSpec] = [
        *([] if missing else [vmscore_detector()]),
        *baseline_detectors(),
    ]
    results = benchmark.pedantic(
        run,
        args=(SCENES,),
        kwargs={
            "seconds": CLIP_S,
            "seeds": SEEDS,
            "detectors": detectors,
            "width": WIDTH,
            "height": HEIGHT,
            "fps": FPS,
            "zones": ZONES,
            "progress": lambda line: print(f"  {line}", flush=True),
        },
        rounds=1,
        iterations=1,
    )
    check_sound(results)

    notes: list[str] = []
    if missing:
        notes.append(f"vmscore not measured: {missing}.")
    else:
        _met, notes = goal_check(results, "vmscore")
    text = markdown(results, machine=machine(), notes=notes)
    RESULTS.parent.mkdir(exist_ok=True)
    (RESULTS.parent / ".gitignore").write_text("*\n")  # run output, not part of the repository
    RESULTS.write_text(text)
    findings = RESULTS.with_suffix(".json")
    findings.write_text("[\n" + ",\n".join(json.dumps(f) for f in results.findings) + "\n]\n")
    where = RESULTS.relative_to(Path(__file__).parent.parent)
    print(f"\n{text}\nWritten to {where}; false alarms and misses per clip in {findings.name}")

    benchmark.extra_info.update(
        {
            "machine": machine(),
            "camera_minutes_per_scene": results.camera_minutes_per_scene,
            **{
                d: {
                    "recall": results.total(d).score.recall,
                    "precision": results.total(d).score.precision,
                    "false_alarms": results.total(d).score.false_alarms,
                    "false_per_camera_hour": results.total(d).score.false_per_hour,
                    "ms_per_frame": results.total(d).ms_per_frame,
                }
                for d in results.detectors
            },
        }
    )
