"""Motion detector speed: vmscore's MotionDetector against an equivalent OpenCV chain at the same
analysis resolution, and its difference/threshold/count kernel against a memory copy of the same
bytes, in the same run.

1. Per-frame time at 640x360, 1280x720 and 1920x1080 on a rendered carpark scene (5 fps, played
   forwards then backwards so time and motion stay continuous), OpenCV on one thread. vmscore runs
   at full resolution (``analysis_width=0``) and, as an extra column, in its production
   configuration (``MotionSettings()``: box-downscaled by an integer factor to at most 320 wide).
   The OpenCV chain does the classic running-average detector at full resolution:
   ``accumulateWeighted`` into float32 (alpha = 1 / (background_s * fps)), ``convertScaleAbs``,
   ``absdiff``, ``threshold``, ``morphologyEx(MORPH_OPEN, 3x3)``,
   ``connectedComponentsWithStats`` (8-connectivity, default algorithm), every output
   preallocated where OpenCV takes one. The same chain with ``CCL_GRANA`` labelling is reported
   beside it. vmscore does more per frame than the chain (noise-adaptive threshold, light, shake,
   flicker and tamper tests, zones); the chain is the least a detector does.
   Goal: the full-resolution detector at least 5x faster than the chain.

2. The difference/threshold/count kernel (``MotionKernels(level).absdiff_count(a, b, 25)``) per
   SIMD level the CPU has, on frames that are not in any cache: pairs of distinct frames (scene
   frames copied into one pool of at least twice the L3 size) visited in turn, so every byte comes
   from memory. The bound is a copy of the same frames from the same pool: ``np.copyto`` of each
   of the pair's two frames into a frame-sized buffer that stays in cache, so the copy reads the
   same cold bytes the kernel reads (and writes as many to cache). Rates are bytes read per
   second (2 frames per pair) for the kernel and bytes copied per second for the copy; "% of
   bound" = kernel read rate / copy rate. A copy also writes, so a kernel that only reads can pass
   100 %. Peers: OpenCV in 3 passes (``absdiff``, ``threshold``, ``countNonZero``) and numpy
   (``maximum``, ``minimum``, ``subtract``, ``greater``, ``count_nonzero``), outputs preallocated.
   Goal: the active level at 50 % or more of the bound.

Every figure is the median of ROUNDS rounds in which all contenders run in turn. The tests assert
only that the results are sound (every SIMD level and both peers count the same pixels, the
detectors find motion); whether each goal is met is printed.

Run: pytest benchmarks/test_bench_motion.py -s
     VMSCORE_BENCH_MOTION_ROUNDS (5), VMSCORE_BENCH_MOTION_COLD_MB (twice the L3, at least 512)
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pytest
from pytest_benchmark.fixture import BenchmarkFixture

import vmscore
from conftest import machine
from vmscore.motion import MotionDetector, MotionKernels, MotionSettings
from vmscore.sim import Scene

Frame = npt.NDArray[np.uint8]
SIZES = [(640, 360), (1280, 720), (1920, 1080)]
FPS = 5.0
CLIP_FRAMES = 50  # rendered once per size (10 s; actors arrive after the first 1.5 s)
ROUNDS = int(os.environ.get("VMSCORE_BENCH_MOTION_ROUNDS", "5"))
THRESHOLD = 25
GOAL_RATIO = 5.0
GOAL_BOUND = 0.5
MiB = 1 << 20


def median_of(fn: Callable[[], float], rounds: int = ROUNDS) -> float:
    return statistics.median(fn() for _ in range(rounds))


def levels() -> list[str]:
    """The SIMD levels of MotionKernels this CPU runs, lowest first."""
    found = []
    for level in ("scalar", "sse2", "avx2", "avx512"):
        try:
            MotionKernels(level)
        except ValueError:
            continue
        found.append(level)
    return found


def l3_bytes() -> int:
    """Size of the last-level cache from sysfs (0 if unknown)."""
    best = 0
    for index in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            size = (index / "size").read_text().strip()
        except OSError:
            continue
        unit = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(size[-1:], 1)
        best = max(best, int(size.rstrip("KMG")) * unit)
    return best


def cold_bytes() -> int:
    if "VMSCORE_BENCH_MOTION_COLD_MB" in os.environ:
        return int(float(os.environ["VMSCORE_BENCH_MOTION_COLD_MB"]) * MiB)
    return max(2 * l3_bytes(), 512 * MiB)


@pytest.fixture(scope="module")
def clips() -> dict[tuple[int, int], list[Frame]]:
    """CLIP_FRAMES luma frames of the carpark scene at each size, rendered once."""
    return {
        (w, h): [
            f.luma
            for f in Scene(
                "carpark", width=w, height=h, fps=FPS, seconds=CLIP_FRAMES / FPS, seed=1
            ).frames()
        ]
        for w, h in SIZES
    }


def ping_pong(frames: list[Frame]) -> list[Frame]:
    """One cycle forwards and back (without repeating the ends): repeating it keeps the scene's
    motion continuous, with no jump from the last frame to the first."""
    return frames + frames[-2:0:-1]


# -- 1. full detector against the OpenCV chain ----------------------------------------------------


class Vmscore:
    def __init__(self, width: int, height: int, settings: MotionSettings) -> None:
        self.detector = MotionDetector(width, height, settings)
        self.t = 0.0
        self.motion = 0  # frames with motion and blobs found, for the sanity check
        self.blobs = 0
        self.suppressed = 0  # frames the detector skipped (learning, tamper, global change)
        self.checked_frames = 0

    def process(self, frame: Frame) -> None:
        self.detector.process(frame, self.t)
        self.t += 1.0 / FPS

    def checked(self, frame: Frame) -> None:
        result = self.detector.process(frame, self.t)
        self.t += 1.0 / FPS
        self.motion += result.motion
        self.blobs += len(result.blobs)
        self.suppressed += result.suppressed not in ("", "illumination")
        self.checked_frames += 1


class OpenCVChain:
    """Running-average background, difference, threshold, 3x3 opening, connected components with
    statistics: the classic detector (Frigate's and many NVRs'), at full resolution."""

    def __init__(self, first: Frame, algorithm: int) -> None:
        h, w = first.shape
        self.alpha = 1.0 / (MotionSettings().background_s * FPS)
        self.algorithm = algorithm
        self.acc = first.astype(np.float32)
        self.background = np.empty((h, w), np.uint8)
        self.diff = np.empty((h, w), np.uint8)
        self.mask = np.empty((h, w), np.uint8)
        self.opened = np.empty((h, w), np.uint8)
        self.labels = np.empty((h, w), np.int32)
        self.kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (3, 3))
        self.components = 0  # found over the checked frames, background not counted

    def process(self, frame: Frame) -> int:
        cv2.accumulateWeighted(frame, self.acc, self.alpha)
        cv2.convertScaleAbs(self.acc, dst=self.background)
        cv2.absdiff(frame, self.background, dst=self.diff)
        cv2.threshold(self.diff, THRESHOLD, 255, cv2.THRESH_BINARY, dst=self.mask)
        cv2.morphologyEx(self.mask, cv2.MORPH_OPEN, self.kernel, dst=self.opened)
        if self.algorithm == cv2.CCL_DEFAULT:
            n, *_ = cv2.connectedComponentsWithStats(
                self.opened, labels=self.labels, connectivity=8, ltype=cv2.CV_32S
            )
        else:
            n, *_ = cv2.connectedComponentsWithStatsWithAlgorithm(
                self.opened, 8, cv2.CV_32S, self.algorithm, labels=self.labels
            )
        return int(n) - 1

    def checked(self, frame: Frame) -> None:
        self.components += self.process(frame)


def ms_per_frame(process: Callable[[Frame], object], frames: Sequence[Frame]) -> float:
    start = time.perf_counter()
    for f in frames:
        process(f)
    return (time.perf_counter() - start) / len(frames) * 1e3


def detector_speeds(frames: list[Frame]) -> dict[str, float]:
    """ms per frame of each contender at this size: medians of ROUNDS rounds, alternated."""
    h, w = frames[0].shape
    sequence = ping_pong(frames)
    full = Vmscore(w, h, MotionSettings(analysis_width=0, learn_s=0))
    default = Vmscore(w, h, MotionSettings(learn_s=0))
    chain = OpenCVChain(frames[0], cv2.CCL_DEFAULT)
    grana = OpenCVChain(frames[0], cv2.CCL_GRANA)
    contenders: dict[str, Vmscore | OpenCVChain] = {
        "vmscore": full,
        "opencv": chain,
        "opencv_grana": grana,
        "vmscore_default": default,
    }
    # Warm-up: one cycle each, with the results kept for the sanity check.
    for c in contenders.values():
        for f in sequence:
            c.checked(f)
    assert full.motion > 0 and full.blobs > 0, "the full-resolution detector found no motion"
    assert default.motion > 0 and default.blobs > 0, "the default detector found no motion"
    # A detector that skips its work (a false tamper report, endless re-learning) would look fast.
    for det in (full, default):
        assert det.suppressed <= 0.05 * det.checked_frames, "the detector suppressed its analysis"
    assert chain.components > 0 and chain.components == grana.components
    times: dict[str, list[float]] = {k: [] for k in contenders}
    for _ in range(ROUNDS):
        for name, c in contenders.items():
            times[name].append(ms_per_frame(c.process, sequence))
    speeds = {k: statistics.median(v) for k, v in times.items()}
    aw, ah = default.detector.analysis_size
    speeds["default_width"], speeds["default_height"] = aw, ah
    return speeds


def test_motion_detector_per_frame_vs_opencv_chain(
    benchmark: BenchmarkFixture, clips: dict[tuple[int, int], list[Frame]]
) -> None:
    benchmark.group = "motion-detector"
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        results = benchmark.pedantic(
            lambda: {size: detector_speeds(frames) for size, frames in clips.items()},
            rounds=1,
            iterations=1,
        )
    finally:
        cv2.setNumThreads(threads)
    frames = 2 * CLIP_FRAMES - 2
    lines = [
        "",
        f"motion detector, carpark scene at {FPS:g} fps, {frames}-frame cycles;"
        f" ms/frame, median of {ROUNDS} rounds; OpenCV {cv2.__version__} on 1 thread;"
        f" vmscore SIMD {vmscore.simd_level()}",
        "`pytest benchmarks/test_bench_motion.py -s -k opencv_chain`",
        "",
        "| resolution | vmscore full-res | OpenCV chain | ratio"
        " | vmscore default (downscaled) | OpenCV chain, CCL_GRANA |",
        "|---|---|---|---|---|---|",
    ]
    for (w, h), r in results.items():
        lines.append(
            f"| {w}x{h} | {r['vmscore']:.2f} ms | {r['opencv']:.2f} ms"
            f" | **{r['opencv'] / r['vmscore']:.1f}x** | {r['vmscore_default']:.2f} ms"
            f" ({r['default_width']:.0f}x{r['default_height']:.0f})"
            f" | {r['opencv_grana']:.2f} ms ({r['opencv_grana'] / r['vmscore']:.1f}x) |"
        )
    for (w, h), r in results.items():
        ratio = r["opencv"] / r["vmscore"]
        met = "met" if ratio >= GOAL_RATIO else "NOT met"
        lines.append(
            f"goal {w}x{h}: full detector >= {GOAL_RATIO:g}x the OpenCV chain: {ratio:.1f}x, {met}"
        )
    lines.append(f"on {machine()}")
    print("\n".join(lines))
    benchmark.extra_info.update(
        {
            "ms_per_frame": {f"{w}x{h}": r for (w, h), r in results.items()},
            "simd": vmscore.simd_level(),
            "opencv": cv2.__version__,
            "machine": machine(),
        }
    )


# -- 2. difference/threshold/count against a copy of the same cold bytes ---------------------------


def cold_pairs(pool: Frame, frames: list[Frame]) -> list[tuple[Frame, Frame]]:
    """The pool viewed as frames of this size, filled with the clip's frames in order; returned as
    disjoint pairs of consecutive scene frames (a frame is never read by two pairs)."""
    h, w = frames[0].shape
    count = pool.size // (w * h) // 2 * 2
    views = pool[: count * w * h].reshape(count, h, w)
    for i in range(count):
        np.copyto(views[i], frames[i % len(frames)])
    return [(views[i], views[i + 1]) for i in range(0, count, 2)]


def seconds(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bandwidth(pairs: list[tuple[Frame, Frame]], kernels: list[MotionKernels]) -> dict[str, float]:
    """GB/s read (2 frames per pair) by each contender over the cold pairs; the copy's GB/s."""
    h, w = pairs[0][0].shape
    hot = np.empty((h, w), np.uint8)
    hot2 = np.empty((h, w), np.uint8)
    mask = np.empty((h, w), np.bool_)

    def copy() -> None:
        for a, b in pairs:
            np.copyto(hot, a)
            np.copyto(hot, b)

    def kernel(k: MotionKernels) -> Callable[[], list[int]]:
        # One Python call per pair, as the copy makes one per frame (about 1 us each).
        return lambda: [k.absdiff_count(a, b, THRESHOLD) for a, b in pairs]

    def opencv() -> list[int]:
        counts = []
        for a, b in pairs:
            cv2.absdiff(a, b, dst=hot)
            cv2.threshold(hot, THRESHOLD, 255, cv2.THRESH_BINARY, dst=hot)
            counts.append(cv2.countNonZero(hot))
        return counts

    def numpy() -> list[int]:
        counts = []
        for a, b in pairs:
            np.maximum(a, b, out=hot)
            np.minimum(a, b, out=hot2)
            np.subtract(hot, hot2, out=hot)
            np.greater(hot, THRESHOLD, out=mask)
            counts.append(int(np.count_nonzero(mask)))
        return counts

    counters: dict[str, Callable[[], list[int]]] = {
        **{k.level: kernel(k) for k in kernels},
        "opencv": opencv,
        "numpy": numpy,
    }
    contenders: dict[str, Callable[[], object]] = {"copy": copy, **counters}
    # Sanity, untimed: every level and both peers count the same pixels of every pair.
    counts = {name: fn() for name, fn in counters.items()}
    reference = counts["numpy"]
    assert sum(reference) > 0
    for name, c in counts.items():
        assert c == reference, f"{name} counts differ from numpy's"
    times: dict[str, list[float]] = {k: [] for k in contenders}
    for _ in range(ROUNDS):
        for name, fn in contenders.items():
            times[name].append(seconds(fn))
    read = 2 * len(pairs) * w * h
    return {k: read / statistics.median(v) / 1e9 for k, v in times.items()}


def test_absdiff_count_vs_memory_bandwidth(
    benchmark: BenchmarkFixture, clips: dict[tuple[int, int], list[Frame]]
) -> None:
    benchmark.group = "motion-kernel"
    kernels = [MotionKernels(level) for level in levels()]
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    pool = np.empty(cold_bytes(), np.uint8)
    results: dict[tuple[int, int], dict[str, float]] = {}
    pairs_of: dict[tuple[int, int], int] = {}

    def measure() -> None:
        for size, frames in clips.items():
            pairs = cold_pairs(pool, frames)
            pairs_of[size] = len(pairs)
            results[size] = bandwidth(pairs, kernels)

    try:
        benchmark.pedantic(measure, rounds=1, iterations=1)
    finally:
        cv2.setNumThreads(threads)
    active = vmscore.simd_level()
    lines = [
        "",
        f"absdiff_count(a, b, {THRESHOLD}) on frame pairs from a {cold_bytes() / MiB:.0f} MiB pool"
        f" (L3 {l3_bytes() / MiB:.0f} MiB), each pair visited once per pass; GB/s of frames read,"
        f" median of {ROUNDS} passes; bound: np.copyto of the same frames into a cached buffer;"
        f" OpenCV {cv2.__version__} on 1 thread; active level {active}",
        "`pytest benchmarks/test_bench_motion.py -s -k memory_bandwidth`",
        "",
        "| size | level | kernel GB/s read | copy GB/s | % of bound | OpenCV 3-pass GB/s"
        " | vs OpenCV | numpy GB/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (w, h), r in results.items():
        for k in kernels:
            rate = r[k.level]
            level = f"**{k.level}**" if k.level == active else k.level
            lines.append(
                f"| {w}x{h} ({pairs_of[(w, h)]} pairs) | {level} | {rate:.2f} | {r['copy']:.2f}"
                f" | {rate / r['copy']:.0%} | {r['opencv']:.2f} | {rate / r['opencv']:.1f}x"
                f" | {r['numpy']:.2f} |"
            )
    for (w, h), r in results.items():
        share = r[active] / r["copy"]
        met = "met" if share >= GOAL_BOUND else "NOT met"
        lines.append(
            f"goal {w}x{h}: {active} kernel at >= {GOAL_BOUND:.0%} of the copy bound:"
            f" {share:.0%}, {met}"
        )
    lines.append(f"on {machine()}")
    print("\n".join(lines))
    benchmark.extra_info.update(
        {
            "gb_per_s": {f"{w}x{h}": r for (w, h), r in results.items()},
            "pairs": {f"{w}x{h}": n for (w, h), n in pairs_of.items()},
            "cold_bytes": cold_bytes(),
            "l3_bytes": l3_bytes(),
            "simd": active,
            "machine": machine(),
        }
    )
