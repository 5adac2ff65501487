"""Motion analysis: every SIMD path against the scalar reference (bit for bit, on odd sizes,
padded strides and unaligned rows), the scalar reference against numpy, and the detector's
behaviour on synthetic scenes with ground truth and on hand-made frames."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator

import av
import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

import vmscore
from vmscore.motion import (
    MotionDetector,
    MotionKernels,
    MotionResult,
    MotionSettings,
    ZoneSettings,
    grid_cells,
)
from vmscore.sim import Scene

U8 = npt.NDArray[np.uint8]
LEVELS = ["scalar", "sse2", "avx2", "avx512", "neon"]


def available_levels() -> list[str]:
    out = []
    for level in LEVELS:
        try:
            MotionKernels(level)
        except ValueError:
            continue
        out.append(level)
    return out


SIMD = [lv for lv in available_levels() if lv != "scalar"]
SCALAR = MotionKernels("scalar")
PARITY = settings(
    max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


def strided(rng: np.random.Generator, h: int, w: int, pad: int, offset: int) -> U8:
    """An h x w view into a larger buffer: rows `pad` bytes longer, starting `offset` bytes in, so
    that neither rows nor the first pixel are aligned."""
    base = rng.integers(0, 256, (h * (w + pad) + offset + 64,), dtype=np.uint8)
    return np.lib.stride_tricks.as_strided(base[offset:], shape=(h, w), strides=(w + pad, 1))


@st.composite
def shapes(draw: st.DrawFn) -> tuple[int, int, int, int, int]:
    w = draw(st.one_of(st.integers(1, 140), st.sampled_from([15, 16, 17, 31, 32, 33, 63, 64, 65])))
    h = draw(st.integers(1, 12))
    return w, h, draw(st.integers(0, 70)), draw(st.integers(0, 63)), draw(st.integers(0, 2**31))


def noisy_pair(rng: np.random.Generator, a: U8) -> U8:
    """A second image near the first (small differences are where thresholds matter)."""
    d = rng.integers(-40, 41, a.shape)
    return np.clip(a.astype(np.int16) + d, 0, 255).astype(np.uint8)


def test_the_scalar_path_always_exists_and_the_active_level_is_one_of_them() -> None:
    assert "scalar" in available_levels()
    assert vmscore.simd_level() in available_levels()
    with pytest.raises(ValueError, match="unknown SIMD level"):
        MotionKernels("mmx")


@pytest.mark.parametrize("level", SIMD)
@PARITY
@given(shape=shapes(), t=st.integers(0, 255))
def test_byte_kernels_match_scalar(
    level: str, shape: tuple[int, int, int, int, int], t: int
) -> None:
    w, h, pad, offset, seed = shape
    rng = np.random.default_rng(seed)
    k = MotionKernels(level)
    a = strided(rng, h, w, pad, offset)
    b = strided(rng, h, w, (pad * 7) % 50, (offset + 13) % 64)
    b[...] = noisy_pair(rng, np.ascontiguousarray(a))
    assert k.absdiff_count(a, b, t) == SCALAR.absdiff_count(a, b, t)
    assert k.sad(a, b) == SCALAR.sad(a, b)
    assert k.gradient_energy(a) == SCALAR.gradient_energy(a)
    assert k.sum_squares(a) == SCALAR.sum_squares(a)
    thr = rng.integers(0, 256, (h, w), dtype=np.uint8)
    lo = np.minimum(a, b)
    hi = np.maximum(a, b)
    cur = noisy_pair(rng, np.ascontiguousarray(a))
    mask, n = k.range_mask(cur, lo, hi, thr)
    smask, sn = SCALAR.range_mask(cur, lo, hi, thr)
    assert n == sn and np.array_equal(mask, smask)
    for got, want in zip(k.minmax3x3(a), SCALAR.minmax3x3(a), strict=True):
        assert np.array_equal(got, want)
    fused, fn = k.bg_range_mask(cur, a, thr)
    sfused, sfn = SCALAR.bg_range_mask(cur, a, thr)
    assert fn == sfn and np.array_equal(fused, sfused)


@pytest.mark.parametrize("level", SIMD)
@PARITY
@given(shape=shapes(), shift=st.integers(1, 12), factor=st.integers(1, 15))
def test_background_update_and_downscale_match_scalar(
    level: str, shape: tuple[int, int, int, int, int], shift: int, factor: int
) -> None:
    w, h, pad, offset, seed = shape
    rng = np.random.default_rng(seed)
    k = MotionKernels(level)
    cur = strided(rng, h, w, pad, offset)
    learn = (rng.random((h, w)) < 0.6).astype(np.uint8) * rng.integers(
        1, 256, (h, w), dtype=np.uint8
    )
    bg = rng.integers(0, 255 * 128 + 1, (h, w), dtype=np.uint16)
    bg_scalar = bg.copy()
    assert np.array_equal(
        k.background_update(cur, learn, bg, shift),
        SCALAR.background_update(cur, learn, bg_scalar, shift),
    )
    assert np.array_equal(bg, bg_scalar)
    masks = [(rng.random((h, w)) < 0.5).astype(np.uint8) * 255 for _ in range(3)]
    activity = rng.integers(0, 256, (h, w), dtype=np.uint8)
    history = rng.integers(0, 4, (h, w), dtype=np.uint8)
    for got, want in zip(
        k.flicker_update(activity, masks[0], history),
        SCALAR.flicker_update(activity, masks[0], history),
        strict=True,
    ):
        assert np.array_equal(got, want)
    age = rng.integers(0, 256, (h, w), dtype=np.uint8)
    age[0, 0] = 255  # saturates
    prev = noisy_pair(rng, np.ascontiguousarray(cur))
    got_age, got_oldest = k.age_update(age, cur, prev, masks[2], shift * 3)
    want_age, want_oldest = SCALAR.age_update(age, cur, prev, masks[2], shift * 3)
    assert np.array_equal(got_age, want_age) and got_oldest == want_oldest
    big = strided(rng, h * factor + factor - 1, w + factor, pad, offset)
    assert np.array_equal(k.downscale(big, factor), SCALAR.downscale(big, factor))


@given(shape=shapes(), t=st.integers(0, 255))
@PARITY
def test_scalar_kernels_match_their_numpy_definitions(
    shape: tuple[int, int, int, int, int], t: int
) -> None:
    w, h, pad, offset, seed = shape
    rng = np.random.default_rng(seed)
    a = strided(rng, h, w, pad, offset)
    b = noisy_pair(rng, np.ascontiguousarray(a))
    ai, bi = a.astype(np.int64), b.astype(np.int64)
    assert SCALAR.absdiff_count(a, b, t) == int((np.abs(ai - bi) > t).sum())
    assert SCALAR.sad(a, b) == int(np.abs(ai - bi).sum())
    grad = np.abs(np.diff(ai, axis=1)).sum() + np.abs(np.diff(ai, axis=0)).sum()
    assert SCALAR.gradient_energy(a) == int(grad)
    assert SCALAR.sum_squares(a) == (int(ai.sum()), int((ai * ai).sum()))
    padded = np.pad(ai, 1, mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3))
    lo, hi = SCALAR.minmax3x3(a)
    assert np.array_equal(lo, windows.min(axis=(2, 3))) and np.array_equal(
        hi, windows.max(axis=(2, 3))
    )
    lo8, hi8 = np.minimum(a, b), np.maximum(a, b)
    thr = rng.integers(0, 256, (h, w), dtype=np.uint8)
    mask, n = SCALAR.range_mask(a, lo8, hi8, thr)
    dist = np.maximum(np.maximum(ai - hi8, lo8.astype(np.int64) - ai), 0)
    assert np.array_equal(mask, np.where(dist > thr, 255, 0)) and n == int((dist > thr).sum())
    # The fused stage is range_mask against the 3x3 range of the background.
    assert np.array_equal(
        SCALAR.bg_range_mask(a, b, thr)[0], SCALAR.range_mask(a, *SCALAR.minmax3x3(b), thr)[0]
    )


def test_flicker_and_age_follow_their_definitions() -> None:
    rng = np.random.default_rng(2)
    shape = (9, 37)
    clean = (rng.random(shape) < 0.5).astype(np.uint8) * 255
    history = rng.integers(0, 4, shape, dtype=np.uint8)
    act = rng.integers(0, 256, shape, dtype=np.uint8)
    new_act, new_clean, new_history = SCALAR.flicker_update(act, clean, history)
    switch_on = (clean != 0) & (history & 1 != 0) & (history & 2 == 0)
    want = np.minimum(np.maximum(act.astype(int) - 1, 0) + np.where(switch_on, 32, 0), 255)
    assert np.array_equal(new_act, want)
    assert np.array_equal(new_history, ((history.astype(int) << 1) & 2) | (clean != 0))
    assert np.array_equal(new_clean, np.where(want > 96, 0, clean))
    age = rng.integers(0, 256, shape, dtype=np.uint8)
    cur, before = (rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(2))
    moving = (rng.random(shape) < 0.5).astype(np.uint8)
    got, oldest = SCALAR.age_update(age, cur, before, moving, 40)
    still = np.abs(cur.astype(int) - before) <= 40
    nxt = np.where(still, np.minimum(age.astype(int) + 1, 255), (age.astype(int) + 1) >> 1)
    assert np.array_equal(got, np.where(moving != 0, nxt, 0))
    assert oldest == got.max()


@pytest.mark.parametrize("factor", range(1, 16))
def test_downscale_is_the_rounded_box_mean_for_every_factor(factor: int) -> None:
    rng = np.random.default_rng(factor)
    h, w = 3 * factor + 1, 17 * factor + 2
    img = rng.integers(0, 256, (h, w), dtype=np.uint8)
    img[:factor, :factor] = 255  # the largest sum the division must handle
    img[factor : 2 * factor, :factor] = 0
    oh, ow = h // factor, w // factor
    sums = (
        img[: oh * factor, : ow * factor]
        .astype(np.int64)
        .reshape(oh, factor, ow, factor)
        .sum(axis=(1, 3))
    )
    want = (sums + factor * factor // 2) // (factor * factor)
    for level in available_levels():
        assert np.array_equal(MotionKernels(level).downscale(img, factor), want), level


def test_background_update_follows_its_fixed_point_definition() -> None:
    rng = np.random.default_rng(1)
    cur = rng.integers(0, 256, (7, 33), dtype=np.uint8)
    learn = (rng.random((7, 33)) < 0.5).astype(np.uint8)
    bg = rng.integers(0, 32641, (7, 33), dtype=np.uint16)
    before = bg.astype(np.int64)
    bg8 = SCALAR.background_update(cur, learn, bg, 3)
    step = before + (((cur.astype(np.int64) << 7) - before) >> 3)
    want = np.where(learn == 0, step, before)  # `learn` is the hold mask: moving pixels wait
    assert np.array_equal(bg, want) and np.array_equal(bg8, (want + 64) >> 7)
    with pytest.raises(ValueError, match="fixed point"):
        SCALAR.background_update(cur, learn, np.full((7, 33), 40000, np.uint16), 3)


# --------------------------------------------------------------------------------------------------
# The detector on hand-made frames


def flat_frames(w: int = 320, h: int = 180, seed: int = 0) -> Iterator[U8]:
    """A textured, noisy, static view."""
    rng = np.random.default_rng(seed)
    base = rng.integers(60, 140, (h // 4, w // 4), dtype=np.uint8).repeat(4, 0).repeat(4, 1)
    while True:
        noise = rng.normal(0, 2.0, (h, w))
        yield np.clip(base + noise, 0, 255).astype(np.uint8)


def with_square(frame: U8, x: int, y: int, size: int, value: int = 230) -> U8:
    out = frame.copy()
    out[y : y + size, x : x + size] = value
    return out


def feed(
    det: MotionDetector, frames: Iterator[U8], n: int, t0: float, fps: float = 5.0
) -> list[MotionResult]:
    return [det.process(next(frames), t0 + i / fps) for i in range(n)]


def learnt(
    settings: MotionSettings | None = None, w: int = 320, h: int = 180
) -> tuple[MotionDetector, Iterator[U8], float]:
    det = MotionDetector(w, h, settings or MotionSettings(analysis_width=0))
    frames = flat_frames(w, h)
    results = feed(det, frames, 20, 0.0)
    assert all(not r.motion for r in results)
    assert results[0].suppressed == "learning"
    return det, frames, 20 / 5.0


def test_an_object_is_found_with_its_box_zone_and_grid_after_its_persistence() -> None:
    zones = [
        ZoneSettings(name="left", polygon=[(0, 0), (0.5, 0), (0.5, 1), (0, 1)], persistence=3),
        ZoneSettings(name="right", polygon=[(0.5, 0), (1, 0), (1, 1), (0.5, 1)]),
    ]
    det, frames, t = learnt(MotionSettings(analysis_width=0, zones=zones))
    hits = []
    for i in range(5):
        r = det.process(with_square(next(frames), 40 + 2 * i, 60, 24), t + i / 5)
        hits.append([z.hit for z in r.zones])
    # A square this large and compact counts from its first frame (the temporal filter would
    # confirm its pixels only in the second); "left" needs 3 frames in a row.
    assert [h[0] for h in hits] == [False, False, True, True, True]
    assert not any(h[1] for h in hits)
    assert r.motion and r.suppressed == ""
    blob = r.blobs[0]
    assert abs(blob.x - 48) <= 2 and abs(blob.y - 60) <= 1 and 22 <= blob.width <= 26
    assert abs(blob.area - 24 * 24) < 24 * 4
    assert abs(blob.cx - 60) < 2 and abs(blob.cy - 72) < 2
    cells = grid_cells(r.grid)
    assert cells and all(1 <= c <= 3 and 5 <= row <= 7 for c, row in cells)
    assert 0 < r.score < 0.02


def test_a_runner_faster_than_the_temporal_filter_is_found_but_scattered_drops_are_not() -> None:
    """A narrow object that jumps further than the temporal filter's two pixels between frames
    (a runner at 5 analysed frames a second) is found; thin streaks landing somewhere else every
    frame (rain), as many pixels in all, are not."""
    det, frames, t = learnt()
    found = []
    for i in range(6):
        frame = next(frames).copy()
        frame[60:90, 20 + 15 * i : 28 + 15 * i] = 230  # 8 x 30, 15 pixels further each frame
        found.append(det.process(frame, t + i / 5).motion)
    assert found[1:] == [True] * 5, found
    det, frames, t = learnt()
    rng = np.random.default_rng(7)
    for i in range(10):
        frame = next(frames).copy()
        for _ in range(60):  # 60 streaks of 1 x 5: 300 pixels, like the runner's 240
            x, y = int(rng.integers(0, 319)), int(rng.integers(0, 170))
            frame[y : y + 5, x] = 230
        r = det.process(frame, t + i / 5)
        assert not r.motion and not r.blobs, (i, [(b.x, b.y, b.width, b.height) for b in r.blobs])


def test_a_mask_hides_motion_and_small_blobs_do_not_count() -> None:
    zones = [
        ZoneSettings(name="road", polygon=[(0, 0), (0.5, 0), (0.5, 1), (0, 1)], kind="exclude")
    ]
    det, frames, t = learnt(MotionSettings(analysis_width=0, zones=zones))
    for i in range(4):
        r = det.process(with_square(next(frames), 40, 60, 24), t + i / 5)
    assert not r.motion and not r.blobs
    det, frames, t = learnt(MotionSettings(analysis_width=0, min_area=0.02))
    for i in range(4):
        r = det.process(with_square(next(frames), 200, 60, 24), t + i / 5)
    assert not r.motion  # 576 pixels < 2% of 57600


def test_a_zone_needs_its_changed_fraction() -> None:
    zones = [
        ZoneSettings(name="half", polygon=[(0, 0), (0.5, 0), (0.5, 1), (0, 1)], min_fraction=0.1)
    ]
    det, frames, t = learnt(MotionSettings(analysis_width=0, zones=zones))
    for i in range(4):
        r = det.process(with_square(next(frames), 40, 60, 24), t + i / 5)
    assert not r.motion and r.zones[0].active is False
    assert 0.01 < r.zones[0].changed_fraction < 0.1


def test_a_global_change_is_relearnt_not_reported() -> None:
    det, frames, t = learnt()
    results = []
    for i in range(15):
        frame = next(frames)
        results.append(
            det.process(np.clip(frame.astype(np.int16) + 60, 0, 255).astype(np.uint8), t + i / 5)
        )
    assert not any(r.motion for r in results)
    assert results[0].suppressed == "global_change"
    assert results[-1].suppressed == ""  # settled on the new light


def test_something_that_stays_becomes_background() -> None:
    det, frames, t = learnt(MotionSettings(analysis_width=0, static_s=4))
    results = [det.process(with_square(next(frames), 100, 60, 30), t + i / 5) for i in range(40)]
    assert results[5].motion
    assert not results[-1].motion and not results[-1].blobs


def test_tamper_cover_and_recovery() -> None:
    det, frames, t = learnt(MotionSettings(analysis_width=0, tamper_s=1))
    dark = [det.process(np.full((180, 320), 12, np.uint8), t + i / 5) for i in range(10)]
    assert {"too_dark", "covered"} <= set(dark[-1].tamper)
    assert dark[-1].suppressed == "tamper" and not any(r.motion for r in dark)
    back = feed(det, frames, 15, t + 2)
    assert back[-1].tamper == [] and not any(r.motion for r in back)


def test_inputs_strided_arrays_buffers_and_pyav_frames_give_the_same_results() -> None:
    frames = [next(flat_frames(64, 48, seed=3)) for _ in range(1)]
    rng = np.random.default_rng(4)
    seq = [
        np.clip(frames[0] + rng.normal(0, 2, frames[0].shape), 0, 255).astype(np.uint8)
        for _ in range(12)
    ]
    seq[8:] = [with_square(f, 20, 10, 12) for f in seq[8:]]

    def run(convert: object) -> list[tuple[bool, int]]:
        det = MotionDetector(64, 48, MotionSettings(analysis_width=0, learn_s=0.5))
        out = []
        for i, f in enumerate(seq):
            r = convert(det, f, i / 5)  # type: ignore[operator]
            out.append((r.motion, sum(b.area for b in r.blobs)))
        return out

    def padded(det: MotionDetector, f: U8, t: float) -> MotionResult:
        big = np.zeros((48, 100), np.uint8)
        big[:, 7:71] = f
        return det.process(big[:, 7:71], t)

    def flat(det: MotionDetector, f: U8, t: float) -> MotionResult:
        buf = np.zeros(48 * 80, np.uint8)
        buf.reshape(48, 80)[:, :64] = f
        return det.process(buf.tobytes(), t, stride=80)

    def pyav(det: MotionDetector, f: U8, t: float) -> MotionResult:
        frame = av.VideoFrame(64, 48, "yuv420p")
        plane = frame.planes[0]
        rows = np.frombuffer(memoryview(plane), np.uint8).reshape(48, plane.line_size)
        rows[:, :64] = f  # type: ignore[index]
        return det.process(frame, t)

    want = run(lambda det, f, t: det.process(f, t))
    assert want[-1][0]  # the square was found
    assert run(padded) == want
    assert run(flat) == want
    assert run(pyav) == want


def test_bad_input_is_a_clear_error() -> None:
    det = MotionDetector(64, 48)
    with pytest.raises(ValueError, match="is 32x48, expected 64x48"):
        det.process(np.zeros((48, 32), np.uint8), 0.0)
    with pytest.raises(ValueError, match="bytes"):
        det.process(np.zeros((48, 64), np.uint16), 0.0)
    with pytest.raises(ValueError, match="needed"):
        det.process(bytes(100), 0.0, stride=64)
    with pytest.raises(ValueError, match="contiguous rows"):
        det.process(np.zeros((48, 128), np.uint8)[:, ::2], 0.0)
    det.process(np.zeros((48, 64), np.uint8), 5.0)
    with pytest.raises(ValueError, match="time went backwards"):
        det.process(np.zeros((48, 64), np.uint8), 4.0)
    with pytest.raises(ValueError, match="frame size"):
        MotionDetector(8, 8)
    with pytest.raises(ValidationError, match="unique"):
        MotionSettings(zones=[ZoneSettings(name="a", polygon=[(0, 0), (1, 0), (1, 1)])] * 2)
    with pytest.raises(ValidationError, match="far outside"):
        ZoneSettings(name="a", polygon=[(0, 0), (100, 0), (1, 1)])
    with pytest.raises(ValidationError, match="extra"):
        MotionSettings(sensitivty=0.5)  # type: ignore[call-arg]


def test_detectors_in_parallel_threads_match_serial_runs() -> None:
    scenes = [
        Scene(n, width=320, height=180, fps=5, seconds=12, seed=2) for n in ("carpark", "corridor")
    ]
    clips = [[f.luma for f in s.frames()] for s in scenes]

    def run(clip: list[U8], out: list[list[tuple[bool, float]]]) -> None:
        det = MotionDetector(320, 180)
        out.append(
            [(r.motion, r.score) for r in (det.process(f, i / 5) for i, f in enumerate(clip))]
        )

    serial: list[list[tuple[bool, float]]] = []
    for c in clips:
        run(c, serial)
    parallel: list[list[list[tuple[bool, float]]]] = [[] for _ in clips]
    threads = [threading.Thread(target=run, args=(c, parallel[i])) for i, c in enumerate(clips)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert [p[0] for p in parallel] == serial


DIGEST = """
import hashlib, sys
from vmscore.sim import Scene
from vmscore.motion import MotionDetector, MotionSettings, ZoneSettings
import vmscore
h = hashlib.sha256()
for name in ("schoolyard-night", "shake", "tamper"):
    s = Scene(name, width=320, height=180, fps=5, seconds=40, seed=5)
    zones = [ZoneSettings(name=z.name, polygon=list(z.polygon)) for z in s.zones]
    det = MotionDetector(320, 180, MotionSettings(analysis_width=0, zones=zones))
    for f in s.frames():
        r = det.process(f.luma, f.time_s)
        blobs = [(b.x, b.y, b.width, b.height, b.area) for b in r.blobs]
        h.update(repr((r.motion, r.score, r.changed_fraction, r.suppressed, r.tamper, r.grid,
                       blobs, r.threshold)).encode())
print(vmscore.simd_level(), h.hexdigest())
"""


def test_the_whole_detector_gives_identical_results_at_every_simd_level() -> None:
    digests = {}
    for level in available_levels():
        env = {**os.environ, "VMSCORE_SIMD": level}
        proc = subprocess.run(
            [sys.executable, "-c", DIGEST], env=env, capture_output=True, text=True, timeout=300
        )
        assert proc.returncode == 0, proc.stderr
        got_level, digest = proc.stdout.split()
        assert got_level == level
        digests[level] = digest
    assert len(set(digests.values())) == 1, digests


def test_a_zone_has_its_own_sensitivity() -> None:
    left = [(0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0)]
    right = [(0.5, 0.0), (1.0, 0.0), (1.0, 1.0), (0.5, 1.0)]
    zones = [
        ZoneSettings(name="keen", polygon=left, sensitivity=1.0),
        ZoneSettings(name="dull", polygon=right, sensitivity=0.0),
    ]
    det, frames, t = learnt(MotionSettings(analysis_width=0, min_threshold=4, zones=zones))
    faint = []
    for i in range(4):
        f = next(frames).astype(np.int16)
        f[60:90, 40:70] += 14  # faint in the keen zone (threshold 2 x noise)
        f[60:90, 220:250] += 14  # the same in the dull one (6 x noise)
        faint.append(det.process(np.clip(f, 0, 255).astype(np.uint8), t + i / 5))
    assert faint[-1].zones[0].hit and not faint[-1].zones[1].active


def test_despeckle_removes_thin_lines() -> None:
    def run(despeckle: bool) -> bool:
        det, frames, t = learnt(MotionSettings(analysis_width=0, despeckle=despeckle))
        for i in range(4):
            f = next(frames)
            f[20:160, 100:102] = 250  # a 2-pixel wire swinging into view
            r = det.process(f, t + i / 5)
        return r.motion

    assert run(despeckle=False) and not run(despeckle=True)


@pytest.fixture(scope="module")
def tamper_flags() -> dict[str, set[str]]:
    """Tamper kinds the detector raised during each of the tamper scene's episodes, and outside."""
    scene = Scene("tamper", width=320, height=180, fps=5, seconds=90, seed=4)
    det = MotionDetector(320, 180)
    seen: dict[str, set[str]] = {}
    for f in scene.frames():
        r = det.process(f.luma, f.time_s)
        seen.setdefault(f.truth.tamper or "none", set()).update(r.tamper)
        assert not (f.truth.tamper is None and r.motion), f"motion at {f.time_s} s"
    return seen


def test_tampering_is_reported_by_kind(tamper_flags: dict[str, set[str]]) -> None:
    assert "defocused" in tamper_flags["defocus"]
    assert "covered" in tamper_flags["cover"]
    assert "scene_changed" in tamper_flags["turned"]
    assert tamper_flags["none"] == set()


@pytest.mark.parametrize("name", ["trees-wind", "lights", "shake", "schoolyard-rain"])
def test_nuisances_are_not_motion_over_the_whole_frame(name: str) -> None:
    # No zones: the whole view counts. Swaying trees, lights switching, a shaking pole and rain
    # must not make motion while nobody is there; the people who come must.
    scene = Scene(name, width=640, height=360, fps=5, seconds=60, seed=2)
    det = MotionDetector(640, 360)
    people = found = 0
    for f in scene.frames():
        r = det.process(f.luma, f.time_s)
        assert not (r.motion and not f.truth.objects), (
            f"{name}: motion with nobody there at {f.time_s} s"
        )
        people += bool(f.truth.objects)
        found += r.motion
    assert found >= 0.3 * people


@pytest.mark.parametrize("analysis_width", [0, 320])
def test_no_tamper_report_on_a_normal_view_from_the_first_frames(analysis_width: int) -> None:
    # The camera's own baselines (contrast, sharpness) are taken only once the noise estimate has
    # settled: taken from the very first frame, a full-size noisy view read as defocused.
    scene = Scene("carpark", width=640, height=360, fps=5, seconds=20, seed=1)
    det = MotionDetector(640, 360, MotionSettings(analysis_width=analysis_width, learn_s=0))
    for f in scene.frames():
        r = det.process(f.luma, f.time_s)
        assert r.tamper == [] and r.suppressed in ("", "illumination", "learning"), (f.time_s, r)
