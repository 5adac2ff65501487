"""Native tests of the threaded core, where sanitizers see every thread (no Python in between):
the ingest engine delivering to C++ subscribers that mux fMP4 from its pooled buffers, the
recorder's rings and writer threads, both served by the camera simulator, and the motion kernels
and detectors. Built twice, with
AddressSanitizer + UndefinedBehaviorSanitizer and with ThreadSanitizer (one build per sanitizer
holds both programs); the files the subscribers wrote must decode to the served frames, and the
recorder checks its own segments against the disk."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from ingest_helpers import decode_file, digest
from vmscore.sim import write_clip

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("clip")
    write_clip(out, "corridor", 3, seed=4, main=(320, 240), sub=None, fps=15, gop=15,
               codec="h264", bitrate=300_000)  # fmt: skip
    return out / "main.h264"


TARGETS = ("engine_subscriber", "recorder_native", "motion_native")
ENV = {
    **os.environ,
    "TSAN_OPTIONS": "halt_on_error=1 second_deadlock_stack=1",
    "ASAN_OPTIONS": "detect_leaks=1",
    "UBSAN_OPTIONS": "halt_on_error=1 print_stacktrace=1",
}


@pytest.fixture(scope="module", params=["address", "thread"])
def native(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The directory of the native test programs, built with one sanitizer."""
    assert shutil.which("cmake"), "cmake is missing"
    sanitizer: str = request.param
    tmp = tmp_path_factory.mktemp(f"build-{sanitizer}")
    flags = {"address": "-DVMSCORE_SANITIZE=ON", "thread": "-DVMSCORE_TSAN=ON"}[sanitizer]
    configure = ["cmake", "-S", str(ROOT), "-B", str(tmp), "-DVMSCORE_PYTHON=OFF",
                 "-DVMSCORE_CPP_TESTS=ON", "-DVMSCORE_WERROR=ON",
                 "-DCMAKE_BUILD_TYPE=RelWithDebInfo", flags]  # fmt: skip
    for cmd in (configure, ["cmake", "--build", str(tmp), "-j2", "--target", *TARGETS]):
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return tmp / "cpp" / "tests"


def run(binary: Path, *args: object, timeout: float) -> None:
    proc = subprocess.run([str(binary), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=ENV, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr[-6000:]
    assert "Sanitizer" not in proc.stderr, proc.stderr[-6000:]


@pytest.mark.slow
def test_engine_delivers_to_cpp_subscribers_cleanly_under_sanitizers(
    tmp_path: Path, clip: Path, native: Path
) -> None:
    # Breaks on a data race, use-after-free or leak in the engine, the loop or the simulator, on a
    # subscriber called after unsubscribe(), or on units that do not mux into playable fMP4.
    run(native / "engine_subscriber", clip, 15, tmp_path, timeout=120)
    source = [digest(f) for f in decode_file(clip.read_bytes(), "h264")]
    for name in ("tcp.mp4", "udp.mp4"):
        with open(tmp_path / name, "rb") as f:
            frames = [digest(x) for x in decode_file(f.read(), "h264", container="mp4")]
        assert len(frames) >= 40
        start = source.index(frames[0])
        assert frames == [source[(start + i) % len(source)] for i in range(len(frames))]


@pytest.mark.slow
def test_recorder_writes_reported_segments_cleanly_under_sanitizers(
    tmp_path: Path, clip: Path, native: Path
) -> None:
    # Breaks on a data race, use-after-free or leak between the loop thread, the writer threads and
    # callers of record_event(), units_from(), stats(), poll() and remove_stream(); on a reported
    # segment that differs from its file (size, fragments, frames, not starting at a keyframe); on
    # a file nobody was told about; on rotated segments that leave a hole in the 90 kHz timeline;
    # and on an event recording that starts after its pre-roll.
    run(native / "recorder_native", clip, 15, tmp_path, timeout=120)


@pytest.mark.slow
def test_motion_kernels_and_detectors_run_cleanly_under_sanitizers(native: Path) -> None:
    # Breaks on a read or write past a row or an image (odd sizes, padded strides), undefined
    # behaviour, a leak or a data race between detectors in parallel threads; on any SIMD kernel
    # that differs from the scalar one; on detectors that miss a crossing object or report the
    # light switch or the covered lens as motion.
    run(native / "motion_native", timeout=300)
