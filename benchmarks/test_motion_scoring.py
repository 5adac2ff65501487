"""The motion-quality benchmark's own pieces: event scoring on hand-made alarms and ground truth,
the ground truth taken from frame truth, the baselines on tiny synthetic sequences, and the vmscore
adapter against a stand-in module with the detector's interface.

Run: pytest benchmarks/test_motion_scoring.py
"""

from __future__ import annotations

import sys
import types
from collections.abc import Iterable, Sequence
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from motion_quality import (
    ClipTruth,
    FrigateStyleDetector,
    GtEvent,
    Mog2Detector,
    Outcome,
    Score,
    TruthBuilder,
    VmscoreDetector,
    score_clip,
    vmscore_motion_missing,
)
from motion_quality.adapter import clip_to_image
from motion_quality.scoring import TamperEpisode, judge_clip, runs, zone_mask
from vmscore.sim import SCENES, FrameTruth, ObjectBox, PlacedMask, Zone

FPS = 5.0
N = 100


def flags(*spans: tuple[int, int], n: int = N) -> npt.NDArray[np.bool_]:
    out = np.zeros(n, np.bool_)
    for a, b in spans:
        out[a:b] = True
    return out


def clip(
    objects: Sequence[GtEvent],
    excluded: Iterable[tuple[int, int]] = (),
    tampers: Sequence[tuple[int, int]] = (),
) -> ClipTruth:
    return ClipTruth(
        fps=FPS,
        frames=N,
        excluded=flags(*excluded),
        objects=tuple(objects),
        tampers=tuple(TamperEpisode(a, b, "cover") for a, b in tampers),
    )


A = GtEvent(start=10, end=20, ref=10, required=True, label="A")
B = GtEvent(start=50, end=60, ref=52, required=True, label="B")
C = GtEvent(start=80, end=85, ref=80, required=False, label="C")


# -- runs and events -------------------------------------------------------------------------------


def test_runs_merge_gaps_shorter_than_two_seconds() -> None:
    # A gap of 9 frames (1.8 s) merges, one of 10 frames (2 s) does not.
    assert runs(flags((0, 3), (12, 14), (24, 25)), FPS) == [(0, 14), (24, 25)]
    assert runs(flags(), FPS) == []
    assert runs(flags((0, N)), FPS) == [(0, N)]


def test_recall_precision_false_alarms_and_delay() -> None:
    # A detected 0.4 s late (alarm 12..14, and 21 in its tail, one event); B missed; a false
    # alarm at 68..69; an alarm explained by the don't-care event C.
    s = score_clip(clip([A, B, C]), flags((12, 15), (21, 22), (68, 70), (81, 82)))
    assert (s.gt_events, s.ignored_gt, s.detected) == (2, 1, 1)
    assert s.recall == 0.5
    assert s.delays == [pytest.approx(0.4)]
    assert (s.alarm_events, s.true_alarms, s.false_alarms, s.ignored_alarms) == (3, 1, 1, 1)
    assert s.precision == 0.5
    _, found = judge_clip(clip([A, B, C]), flags((12, 15), (21, 22), (68, 70), (81, 82)))
    assert found.false_alarms == [(13.6, 14.0)] and found.missed == [("B", 10.0, 12.0)]
    assert s.seconds == pytest.approx(N / FPS)
    assert s.false_per_hour == pytest.approx(1 / (N / FPS / 3600))
    assert s.consistent()


def test_alarm_within_the_tail_is_true_after_it_false() -> None:
    # A ends at frame 20; the tail is 1 s (5 frames): frames 20..24 still belong to it.
    late = score_clip(clip([A]), flags((23, 24)))
    assert (late.true_alarms, late.false_alarms, late.detected) == (1, 0, 0)
    later = score_clip(clip([A]), flags((26, 27)))
    assert (later.true_alarms, later.false_alarms) == (0, 1)


def test_delay_counts_from_the_first_large_frame_and_is_never_negative() -> None:
    # B is listed from 50 but large from 52: an alarm at 55 is 0.6 s late, one at 50 is on time.
    assert score_clip(clip([B]), flags((55, 56))).delays == [pytest.approx(0.6)]
    assert score_clip(clip([B]), flags((50, 51))).delays == [0.0]
    # An alarm running since before the event: detected at once, and one true alarm event.
    s = score_clip(clip([B]), flags((40, 58)))
    assert s.delays == [0.0] and (s.alarm_events, s.true_alarms) == (1, 1)


def test_no_alarm_and_no_truth() -> None:
    s = score_clip(clip([]), flags())
    assert (s.recall, s.precision, s.false_per_hour, s.delay(0.5)) == (None, None, 0.0, None)
    assert s.consistent()


def test_set_aside_frames_are_neither_false_alarm_nor_scored_time() -> None:
    tampered = [(30, 40)]
    s = score_clip(clip([], excluded=tampered), flags((32, 38)))
    assert (s.alarm_events, s.false_alarms) == (0, 0)
    assert s.seconds == pytest.approx((N - 10) / FPS)
    # An alarm reaching out of the set-aside frames counts only outside them: 40..44.
    s = score_clip(clip([], excluded=tampered), flags((35, 45)))
    assert (s.alarm_events, s.false_alarms) == (1, 1)
    # A detection only inside set-aside frames is no detection.
    inside = GtEvent(start=28, end=45, ref=28, required=True)
    assert score_clip(clip([inside], excluded=tampered), flags((31, 39))).detected == 0


def test_tamper_episodes_flagged_and_false_tamper_reports() -> None:
    truth = clip([], excluded=[(30, 40)], tampers=[(30, 40)])
    tamper = flags((33, 36), (42, 43), (90, 92))  # 42 is within the 5 s after the episode
    s = score_clip(truth, flags(), tamper)
    assert s.tamper_scored and (s.tamper_episodes, s.tamper_flagged) == (1, 1)
    assert s.tamper_delays == [pytest.approx(0.6)]
    assert s.false_tamper == 1
    assert s.tamper_seconds == pytest.approx((N - 10 - 25) / FPS)
    assert (s.tamper_kinds, s.tamper_kinds_flagged) == ({"cover": 1}, {"cover": 1})
    missed, found = judge_clip(truth, flags(), flags())
    assert (missed.tamper_flagged, missed.tamper_delays) == (0, [])
    assert found.missed_tampers == [("cover", 6.0, 8.0)]
    assert not score_clip(truth, flags()).tamper_scored


def test_scores_add_up() -> None:
    a = score_clip(clip([A, B, C]), flags((12, 15), (70, 73)))
    b = score_clip(clip([A]), flags((26, 27)))
    total = Score.total([a, b])
    assert total.gt_events == 3 and total.detected == 1 and total.false_alarms == 2
    assert total.seconds == pytest.approx(2 * N / FPS)
    assert total.delays == a.delays + b.delays
    assert total.consistent()
    with pytest.raises(ValueError, match="motion flags"):
        score_clip(clip([A]), flags(n=N - 1))


# -- ground truth from frame truth -----------------------------------------------------------------

W = H = 100  # minimum silhouette: 0.0015 * 100 * 100 = 15 pixels
LEFT = (Zone("left", ((0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0))),)


def frame(
    index: int, placed: Sequence[tuple[int, int, int, int]], tamper: str | None = None
) -> Any:
    """Frame truth with square silhouettes ``(id, x, y, side)``."""
    masks = tuple(PlacedMask(i, x, y, np.ones((k, k), np.bool_)) for i, x, y, k in placed)
    boxes = tuple(ObjectBox(i, "person", x, y, k, k) for i, x, y, k in placed)
    return FrameTruth(
        index=index,
        time_s=index / FPS,
        width=W,
        height=H,
        objects=boxes,
        tamper=tamper,
        _masks=lambda: masks,
    )


def test_zone_mask_covers_the_polygon() -> None:
    m = zone_mask(LEFT, W, H)  # the pixel column on the edge may go either way
    assert m[:, :50].all() and not m[:, 51:].any()
    assert zone_mask((), 8, 4).all()


def test_truth_builder_events() -> None:
    b = TruthBuilder(W, H, FPS, LEFT)
    for i in range(N):
        placed: list[tuple[int, int, int, int]] = []
        if i < 10:
            placed.append((4, 10, 10, 5))  # warm-up: ignored
        if 10 <= i < 20 or 22 <= i < 25:
            placed.append((1, 10, 10, 5))  # large, in the zone; 0.4 s outside it in between
        if 20 <= i < 22:
            placed.append((1, 80, 10, 5))
        if 30 <= i < 50:
            placed.append((2, 10, 40, 3))  # too small
        if 60 <= i < 63:
            placed.append((3, 20, 60, 5))  # too short
        if 66 <= i < 70:
            placed.append((6, 60, 60, 5))  # never in the zone
        if 70 <= i < 80:
            placed.append((5, 10, 10, 5))  # during tampering: ignored
        b.add(frame(i, placed, "cover" if 70 <= i < 80 else None))
    truth = b.finish()
    assert [(e.label, e.start, e.end, e.required) for e in truth.objects] == [
        ("person 1", 10, 25, True),
        ("person 2", 30, 50, False),
        ("person 3", 60, 63, False),
    ]
    assert truth.tampers == (TamperEpisode(70, 80, "cover"),)
    assert truth.warmup == 10
    assert np.flatnonzero(truth.excluded).tolist() == [*range(10), *range(70, 80)]
    with pytest.raises(ValueError, match="in order"):
        b.add(frame(5, []))


def test_object_touching_the_zone_counts_and_late_growth_sets_the_reference() -> None:
    b = TruthBuilder(W, H, FPS, LEFT)
    for i in range(40):
        # Straddles the zone's edge (x 48..52); small (3x3) until frame 20, then large.
        side = 3 if i < 20 else 5
        b.add(frame(i, [(1, 48, 50, side)] if i >= 12 else []))
    (event,) = b.finish().objects
    assert (event.start, event.ref, event.end, event.required) == (12, 20, 40, True)


# -- baselines -------------------------------------------------------------------------------------


def sequence(block_x: int | None, n: int = 40) -> list[npt.NDArray[np.uint8]]:
    """640x360 textured frames with sensor noise; from frame 20 a bright 40x40 block moves right
    from ``block_x``."""
    rng = np.random.default_rng(3)
    base = rng.integers(60, 140, (360, 640)).astype(np.float32)
    out = []
    for i in range(n):
        f = base + rng.normal(0, 2, base.shape).astype(np.float32)
        if block_x is not None and i >= 20:
            x = block_x + 8 * (i - 20)
            f[160:200, x : x + 40] = 230
        out.append(np.clip(f, 0, 255).astype(np.uint8))
    return out


@pytest.mark.parametrize("make", [Mog2Detector, FrigateStyleDetector])
def test_baselines_see_a_block_in_the_zone_only(make: Any) -> None:
    inside = make(640, 360, LEFT)
    seen = [inside.process(f, i / FPS) for i, f in enumerate(sequence(60))]
    assert not any(seen[:20]) and any(seen[20:])
    outside = make(640, 360, LEFT)
    assert not any(outside.process(f, i / FPS) for i, f in enumerate(sequence(400)))


def test_frigate_style_calibrates_on_a_global_change() -> None:
    det = FrigateStyleDetector(640, 360)
    frames = sequence(None)
    for i, f in enumerate(frames[:20]):
        assert not det.process(f, i / FPS)
    # The picture inverts: nearly every pixel changes, the detector calibrates, no motion.
    assert not det.process(255 - frames[20], 4.0)
    assert det.calibrating


# -- the vmscore adapter against a stand-in module -------------------------------------------------


def test_zones_cut_to_the_image_cover_the_same_pixels() -> None:
    square = [(0.1, 0.1), (0.4, 0.1), (0.4, 0.4), (0.1, 0.4)]
    assert clip_to_image(square) == square
    assert clip_to_image([(1.2, 0.0), (1.5, 0.0), (1.5, 1.0)]) == []
    wide = clip_to_image([(-0.5, 0.5), (1.5, 0.5), (1.5, 0.8), (-0.5, 0.8)])
    assert sorted(wide) == [(0.0, 0.5), (0.0, 0.8), (1.0, 0.5), (1.0, 0.8)]
    for spec in SCENES.values():
        for z in spec.zones:
            cut = clip_to_image(z.polygon)
            assert all(0.0 <= c <= 1.0 for p in cut for c in p)
            before = zone_mask([z], 320, 180).astype(np.uint8)
            after = zone_mask([Zone(z.name, tuple(cut))], 320, 180).astype(np.uint8)
            # Only pixels on the outline may differ (rasterised from other vertices).
            k = np.ones((3, 3), np.uint8)
            outline = cv2.dilate(before, k) > cv2.erode(before, k)
            assert not ((before != after) & ~outline).any(), z.name


def test_vmscore_adapter_passes_zones_and_reads_results(monkeypatch: pytest.MonkeyPatch) -> None:
    made: dict[str, Any] = {}

    class ZoneSettings:
        def __init__(self, name: str, polygon: list[tuple[float, float]]) -> None:
            self.name, self.polygon = name, polygon

    class MotionSettings:
        def __init__(self, zones: list[ZoneSettings]) -> None:
            self.zones = zones

    class MotionDetector:
        def __init__(self, width: int, height: int, settings: MotionSettings) -> None:
            made.update(width=width, height=height, settings=settings)

        def process(self, luma: npt.NDArray[np.uint8], time_s: float) -> Any:
            return types.SimpleNamespace(
                motion=time_s > 1.0,
                score=0.5,
                changed_fraction=0.01,
                suppressed="" if time_s > 1.0 else "global_change",
                tamper=["covered"] if time_s > 2.0 else [],
                zones=[],
            )

    fake = types.ModuleType("vmscore.motion")
    fake.ZoneSettings = ZoneSettings  # type: ignore[attr-defined]
    fake.MotionSettings = MotionSettings  # type: ignore[attr-defined]
    fake.MotionDetector = MotionDetector  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vmscore.motion", fake)

    assert vmscore_motion_missing() is None
    det = VmscoreDetector(640, 360, LEFT)
    assert (made["width"], made["height"]) == (640, 360)
    (zone,) = made["settings"].zones
    assert zone.name == "left" and zone.polygon == list(LEFT[0].polygon)
    VmscoreDetector(640, 360, [Zone("out", ((1.2, 0.0), (1.5, 0.0), (1.5, 1.0)))])
    assert made["settings"].zones == []  # a zone wholly outside the picture is left out
    luma = np.zeros((360, 640), np.uint8)
    assert det.process(luma, 0.5) == Outcome(False, (), "global_change")
    assert det.process(luma, 3.0) == Outcome(True, ("covered",), "")
