"""The libFuzzer targets (cpp/fuzz): they build with clang and sanitizers, and each one runs clean
over its seed corpus, its regression inputs (minimized inputs of bugs found before) and a short
burst of fresh mutations.

Needs clang++ (with the libFuzzer runtime) and cmake; without them this test fails, because the
parsers' bounds are only proven under the fuzzers. VMSCORE_SKIP_FUZZ_BUILD=1 skips it instead.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FUZZ = ROOT / "cpp" / "fuzz"
TARGETS = sorted(p.stem for p in FUZZ.glob("fuzz_*.cpp"))
CORPUS_LIMIT = 200 * 1024
# Each target: this many executions (seeds and regressions first), or this many seconds.
RUNS, SECONDS = 2000, 10


def tail(text: str, lines: int = 60) -> str:
    return "\n".join(text.splitlines()[-lines:])


@pytest.fixture(scope="module")
def fuzz_binaries(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if os.environ.get("VMSCORE_SKIP_FUZZ_BUILD") == "1":
        pytest.skip("VMSCORE_SKIP_FUZZ_BUILD=1: the fuzz targets are not built")
    missing = [tool for tool in ("clang++", "cmake") if shutil.which(tool) is None]
    if missing:
        pytest.fail(
            f"{' and '.join(missing)} not found on PATH: the fuzz targets need clang with its "
            "libFuzzer runtime (Debian: apt-get install clang libclang-rt-dev, or "
            "libclang-rt-14-dev for clang 14) and cmake. Set VMSCORE_SKIP_FUZZ_BUILD=1 to skip.",
            pytrace=False,
        )
    build = tmp_path_factory.mktemp("fuzz-build")
    configure = [
        "cmake", "-S", str(ROOT), "-B", str(build),
        "-DCMAKE_CXX_COMPILER=clang++",
        "-DVMSCORE_FUZZ=ON", "-DVMSCORE_PYTHON=OFF", "-DVMSCORE_SANITIZE=ON",
    ]  # fmt: skip
    compile_ = ["cmake", "--build", str(build), "-j2", "--target", *TARGETS]
    for cmd in (configure, compile_):
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
        if proc.returncode != 0:
            hint = ""
            if "clang_rt.fuzzer" in proc.stderr + proc.stdout:
                hint = "\nThe libFuzzer runtime is missing: install libclang-rt-dev for this clang."
            pytest.fail(
                f"{' '.join(cmd)} failed ({proc.returncode}):\n"
                f"{tail(proc.stdout)}\n{tail(proc.stderr)}{hint}",
                pytrace=False,
            )
    return build / "cpp" / "fuzz"


def test_every_target_is_built_and_has_a_small_seed_corpus() -> None:
    # Breaks when a fuzz target is added without registering it in cpp/fuzz/CMakeLists.txt or
    # without seeds, or when the committed corpus grows past its budget.
    cmake_lists = (FUZZ / "CMakeLists.txt").read_text()
    listed = re.search(r"set\(VMSCORE_FUZZ_TARGETS(.*?)\)", cmake_lists, re.S)
    assert listed is not None
    assert sorted(listed.group(1).split()) == TARGETS
    assert len(TARGETS) >= 7
    total = 0
    for target in TARGETS:
        seeds = [p for p in (FUZZ / "corpus" / target).glob("*") if p.is_file()]
        assert seeds, f"{target} has no seed corpus"
        total += sum(p.stat().st_size for p in seeds)
    for extra in (FUZZ / "regressions").glob("*"):
        assert extra.name in TARGETS, f"regressions/{extra.name} belongs to no fuzz target"
    assert total < CORPUS_LIMIT


@pytest.mark.slow
@pytest.mark.parametrize("target", TARGETS)
def test_fuzz_target_runs_clean(fuzz_binaries: Path, target: str, tmp_path: Path) -> None:
    # Breaks when a parser crashes, reads out of bounds, hits undefined behaviour, throws anything
    # but BitstreamError / MuxError, or produces output its target's checks reject, on a seed,
    # a regression input or a quick mutation of them.
    binary = fuzz_binaries / target
    assert binary.is_file(), f"{target} was not built"
    # libFuzzer adds new inputs to the first directory: keep them out of the source tree.
    found = tmp_path / "new"
    found.mkdir()
    dirs = [FUZZ / "corpus" / target, FUZZ / "regressions" / target]
    cmd = [
        str(binary),
        f"-runs={RUNS}",
        f"-max_total_time={SECONDS}",
        "-seed=1",
        "-timeout=10",
        "-rss_limit_mb=2048",
        "-print_final_stats=1",
        f"-artifact_prefix={tmp_path}/",
        str(found),
        *(str(d) for d in dirs if d.is_dir()),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, (
        f"{target} failed (exit {proc.returncode}); the crashing input is in {tmp_path}:\n"
        f"{tail(proc.stderr)}"
    )
    assert re.search(r"Done \d+ runs", proc.stderr), tail(proc.stderr)
