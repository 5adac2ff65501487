"""The package as others get it: the wheel, the selftest, the command, typing, the README."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

import vmscore

ROOT = Path(__file__).resolve().parents[1]


def run(
    *cmd: str | Path, cwd: Path = ROOT, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(c) for c in cmd],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def test_errors_share_one_root_and_the_matching_builtins() -> None:
    # Integrators catch ValueError / OSError without knowing vmscore; we promise both work.
    assert issubclass(vmscore.BitstreamError, vmscore.VmsError)
    assert issubclass(vmscore.BitstreamError, ValueError)
    assert issubclass(vmscore.MuxError, ValueError)
    assert issubclass(vmscore.ParametersChangedError, vmscore.MuxError)
    assert issubclass(vmscore.StorageError, OSError)
    with pytest.raises(vmscore.VmsError):
        vmscore.parse_sps(b"\x67", "h264")


def test_public_api_is_exported() -> None:
    missing = [name for name in vmscore.__all__ if not hasattr(vmscore, name)]
    assert missing == []
    assert re.fullmatch(r"\d+\.\d+\.\d+", vmscore.__version__)


def test_simd_level_is_detected_and_can_only_be_lowered() -> None:
    detected = vmscore.simd_detected()
    assert detected in {"scalar", "sse2", "avx2", "avx512", "neon"}
    assert vmscore.simd_level() == detected or os.environ.get("VMSCORE_SIMD")
    code = "import vmscore; print(vmscore.simd_level())"
    for forced, expected in [("scalar", "scalar"), ("bogus", detected)]:
        proc = run(sys.executable, "-c", code, env={**os.environ, "VMSCORE_SIMD": forced})
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == expected
    if detected in {"avx2", "avx512"}:
        proc = run(sys.executable, "-c", code, env={**os.environ, "VMSCORE_SIMD": "sse2"})
        assert proc.stdout.strip() == "sse2"


def test_selftest_passes_on_the_installed_package(tmp_path: Path) -> None:
    proc = run(sys.executable, "-m", "vmscore.selftest", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "h264" in proc.stdout and "identical" in proc.stdout and "passed" in proc.stdout


def test_command_prints_its_version(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "vmscore"
    proc = run(exe, "--version", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"vmscore {vmscore.__version__}")


def test_stubs_match_the_extension() -> None:
    # If this fails, type checkers of projects using the wheel see a different API than exists.
    proc = run(
        sys.executable,
        "-m",
        "mypy.stubtest",
        "vmscore._core",
        "--allowlist",
        ROOT / "tests" / "stubtest-allowlist.txt",
        cwd=ROOT / "tests",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mypy_strict_passes() -> None:
    proc = run(sys.executable, "-m", "mypy")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruff_passes() -> None:
    check = run(sys.executable, "-m", "ruff", "check", "python", "tests", "benchmarks")
    assert check.returncode == 0, check.stdout + check.stderr
    fmt = run(sys.executable, "-m", "ruff", "format", "--check", "python", "tests", "benchmarks")
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def test_readme_starts_with_the_two_commands_and_ci_runs_the_test_one() -> None:
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"```sh\n(.+?)\n```", readme)
    assert len(commands) >= 2
    install, test = commands[0], commands[1]
    assert "pip install ." in install and "vmscore" in install.split("&&")[-1]
    assert test.endswith("pytest")
    ci = [
        line
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line and not line.startswith(("#", "set ", "cd ", "export "))
    ]
    assert ci == [test]


def test_readme_library_examples_run() -> None:
    readme = (ROOT / "README.md").read_text()
    mux, record, motion = re.findall(r"```python\n(.+?)\n```", readme, flags=re.S)
    proc = run(sys.executable, "-c", mux)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("avc1.")
    proc = run(sys.executable, "-c", record)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "True"
    proc = run(sys.executable, "-c", motion)
    assert proc.returncode == 0, proc.stderr
    line = r"\d+\.\d s \['\w+'(, '\w+')*\] <MotionBlob .+>\n"
    assert re.fullmatch(line, proc.stdout), proc.stdout


def test_cibuildwheel_builds_manylinux_wheels_for_both_architectures() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["cibuildwheel"]
    assert set(config["archs"]) == {"x86_64", "aarch64"}
    assert "manylinux" in config["manylinux-x86_64-image"]
    assert config["test-command"] == "python -m vmscore.selftest"


@pytest.mark.slow
def test_wheel_installs_into_a_fresh_venv_and_passes_the_selftest(tmp_path: Path) -> None:
    # Other VMS projects consume us as a wheel; it must be self-contained.
    wheels = tmp_path / "wheels"
    proc = run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", wheels, ROOT, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (wheel,) = wheels.glob("vmscore-*.whl")
    # The operator's UI is part of the package: the station serves it from the installed files.
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
    for ui_file in ("index.html", "js/app.js", "js/live.js", "css/app.css"):
        assert f"vmscore/web/static/{ui_file}" in names, ui_file
    venv = tmp_path / "venv"
    assert run(sys.executable, "-m", "venv", venv).returncode == 0
    python = venv / "bin" / "python"
    proc = run(python, "-m", "pip", "install", "-q", wheel, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    proc = run(python, "-m", "vmscore.selftest", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # Only the C++ standard library and libc: no native dependency beyond what every Linux has.
    ldd = run("ldd", *venv.glob("lib/python*/site-packages/vmscore/_core*.so"))
    libs = {line.split()[0] for line in ldd.stdout.splitlines() if "=>" in line}
    assert libs <= {"libstdc++.so.6", "libm.so.6", "libgcc_s.so.1", "libc.so.6"}, libs
