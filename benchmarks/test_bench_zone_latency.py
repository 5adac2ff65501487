"""How soon motion in a zone is reported after a person enters it: the detector's part of the
station's "alarm within 2 s of the intruder entering the zone", over many seeded night scenes.

For every ``zone_enter`` of the ground truth (a person's foot point entering a zone, after the
first 4 s so the background is learnt), the latency is the time from the entry to the first frame
in which that zone reports a hit, within the person's stay (plus 1 s). Entries never reported are
counted as missed. The analysis rates compared are the station's default (10 fps) and half of it.

    VMSCORE_LATENCY_SEEDS=40 pytest benchmarks/test_bench_zone_latency.py -s
"""

from __future__ import annotations

import os
import statistics

import pytest

from vmscore.motion import MotionDetector, MotionSettings, ZoneSettings
from vmscore.sim import Scene

SEEDS = int(os.environ.get("VMSCORE_LATENCY_SEEDS", "24"))
SCENES = ("schoolyard-night", "schoolyard", "carpark-night")


def latencies(scene: str, seed: int, fps: float) -> list[float | None]:
    sc = Scene(scene, width=640, height=360, fps=fps, seconds=30, seed=seed)
    zones = [ZoneSettings(name=z.name, polygon=list(z.polygon)) for z in sc.zones]
    det = MotionDetector(640, 360, MotionSettings(zones=zones))
    hits: dict[str, list[float]] = {}
    for f in sc.frames():
        r = det.process(f.luma, f.time_s)
        for z in r.zones:
            if z.hit:
                hits.setdefault(z.name, []).append(f.time_s)
    out: list[float | None] = []
    for e in sc.events:
        if e.kind != "zone_enter" or e.start_s < 4:
            continue
        zone = str(e.detail["zone"])
        seen = [t for t in hits.get(zone, []) if e.start_s - 1 <= t <= e.end_s + 1]
        out.append(max(0.0, seen[0] - e.start_s) if seen else None)
    return out


@pytest.mark.parametrize("fps", [10.0, 5.0])
@pytest.mark.parametrize("scene", SCENES)
def test_zone_entry_latency(scene: str, fps: float) -> None:
    got = [x for seed in range(SEEDS) for x in latencies(scene, seed, fps)]
    found = sorted(x for x in got if x is not None)
    missed = len(got) - len(found)
    assert got, "the scenes must contain zone entries"
    within_2s = sum(1 for x in found if x <= 2.0)
    q = statistics.quantiles(found, n=10) if len(found) >= 2 else [0.0] * 9
    print(
        f"\n{scene} at {fps:g} fps: {len(got)} zone entries, reported {len(found)} "
        f"({within_2s} within 2 s = {within_2s / len(got):.0%}), missed {missed}; "
        f"latency median {statistics.median(found):.2f} s, p90 {q[8]:.2f} s"
    )
