"""The station's commands as a user runs them: ``vmscore demo`` and ``vmscore station`` start,
serve, and leave nothing running after Ctrl-C; ``vmscore user add`` and ``vmscore export`` work
on a station's data directory."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from station_helpers import wait_for
from vmscore.record import verify_export
from vmscore.sim import CameraServer
from vmscore.web.auth import UserStore

pytestmark = pytest.mark.slow


def _descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    out: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {p for p, pp in parents.items() if pp in frontier} - out
        out |= frontier
    return out


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


class Running:
    """A ``vmscore`` command in a subprocess whose stderr is read line by line."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "vmscore", *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **env},
        )
        self.lines: list[str] = []

    def wait_line(self, pattern: str, timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        assert self.proc.stderr is not None
        os.set_blocking(self.proc.stderr.fileno(), False)
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if line:
                self.lines.append(line)
                m = re.search(pattern, line)
                if m:
                    return m
                continue
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"no line matching {pattern!r}; stderr:\n{''.join(self.lines)}")

    def interrupt(self, timeout: float = 20) -> int:
        children = _descendants(self.proc.pid)
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(timeout=timeout)
        assert self.proc.stderr is not None
        self.proc.stderr.close()
        left = [p for p in children if _alive(p)]
        assert left == [], f"processes left running after Ctrl-C: {left}"
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stderr is not None:
            self.proc.stderr.close()


def _login(base: str, user: str, password: str) -> httpx.Client:
    c = httpx.Client(base_url=base, timeout=20)
    r = c.post("/api/auth/login", json={"user": user, "password": password})
    assert r.status_code == 200, r.text
    c.headers["X-CSRF-Token"] = r.json()["csrf_token"]
    return c


def test_demo_runs_nine_cameras_at_three_schools_and_stops_cleanly(tmp_path: Path) -> None:
    run = Running(
        ["demo", "--port", "0", "--seconds", "6", "--size", "320x180", "--sub-size", "320x180",
         "--data", str(tmp_path / "demo")],
        {"XDG_CACHE_HOME": str(tmp_path / "cache")},
    )  # fmt: skip
    try:
        url = run.wait_line(r"open\s+(http://127\.0\.0\.1:\d+)/", 240).group(1)
        logins = {}
        for _ in range(3):
            m = run.wait_line(r"login (\w+) / (\S+)", 10)
            logins[m.group(1)] = m.group(2)
        assert set(logins) == {"admin", "operator", "viewer"}
        with contextlib.closing(_login(url, "operator", logins["operator"])) as c:
            sites = c.get("/api/sites").json()
            assert len(sites) == 3
            cameras = c.get("/api/cameras").json()
            assert len(cameras) >= 8
            wait_for(
                lambda: c.get("/api/health").json()["cameras_online"] == len(cameras),
                30,
                "every demo camera online",
                step=0.5,
            )
            # Online is "playing"; a picture comes with the camera's first keyframe (503 before).
            r = wait_for(
                lambda: (
                    (x := c.get(f"/api/cameras/{cameras[0]['name']}/snapshot.jpg")).status_code
                    == 200
                    and x
                ),
                15,
                "a snapshot",
                step=0.5,
            )
            assert r.content[:2] == b"\xff\xd8"
        # Its address opens the operator's UI.
        page = httpx.get(url + "/", follow_redirects=False)
        assert page.status_code == 200 and 'id="login-form"' in page.text
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert httpx.get(url + "/static/js/app.js").status_code == 200
        assert run.interrupt() == 0
    finally:
        run.kill()


@pytest.fixture
def camera() -> Any:
    with CameraServer() as cs:
        cs.add_scene_cameras(1, "corridor", seconds=6, size=(320, 180), fps=10, prefix="hall")
        yield cs


def test_station_command_user_add_and_export(camera: CameraServer, tmp_path: Path) -> None:
    config = tmp_path / "station.yaml"
    config.write_text(
        yaml.safe_dump({
            "station": {"name": "school-7", "data_dir": "data"},
            "storage": [{"name": "disk1", "path": "recordings"}],
            "defaults": {"recording": {"mode": "continuous", "segment_s": 2}},
            "sites": [{"name": "school-7"}],
            "cameras": [{"name": "hall", "site": "school-7", "main_url": camera.url("hall0")}],
            "users": [{"name": "admin", "role": "admin", "password": "${ADMIN_PASSWORD}"}],
        })
    )  # fmt: skip
    env = {"ADMIN_PASSWORD": "admin-password-7"}
    check = subprocess.run(
        [sys.executable, "-m", "vmscore", "station", "--config", str(config), "--check"],
        capture_output=True, text=True, env={**os.environ, **env}, timeout=60,
    )  # fmt: skip
    assert check.returncode == 0, check.stderr
    assert "valid" in check.stderr
    central = subprocess.run(
        [sys.executable, "-m", "vmscore", "station", "--config", str(config), "--check",
         "--role", "central"],
        capture_output=True, text=True, env={**os.environ, **env}, timeout=60,
    )  # fmt: skip
    assert central.returncode == 2 and "needs a 'central' section" in central.stderr

    started_us = time.time_ns() // 1000
    run = Running(["station", "--config", str(config), "--port", "0"], env)
    try:
        url = run.wait_line(r"(http://127\.0\.0\.1:\d+)/", 60).group(1)
        with contextlib.closing(_login(url, "admin", "admin-password-7")) as c:
            wait_for(lambda: c.get("/api/health").json()["cameras_online"] == 1, 20, "online")
            wait_for(
                lambda: c.get("/api/recordings", params={"camera": "hall"}).json()["recordings"],
                30,
                "a finished segment",
                step=0.5,
            )
        assert run.interrupt() == 0
    finally:
        run.kill()
    data = tmp_path / "data"
    assert (data / "station.db").is_file() and (tmp_path / "recordings" / "hall").is_dir()

    add = subprocess.run(
        [sys.executable, "-m", "vmscore", "user", "add", "night-guard", "--role", "operator",
         "--site", "school-7", "--data", str(data)],
        input="guard-password-1\n", capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert add.returncode == 0, add.stderr
    with UserStore(data / "station.db") as store:
        user = store.verify("night-guard", "guard-password-1")
        assert user is not None and user.role == "operator"
        assert store.verify("night-guard", "wrong-password") is None

    out = tmp_path / "hall.mp4"
    ended_us = time.time_ns() // 1000
    export = subprocess.run(
        [sys.executable, "-m", "vmscore", "export", "hall", str(started_us), str(ended_us),
         str(out), "--data", str(data)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert export.returncode == 0, export.stderr
    assert verify_export(out).valid
    nothing = subprocess.run(
        [sys.executable, "-m", "vmscore", "export", "hall", "2001-01-01T00:00:00",
         "2001-01-01T00:01:00", str(tmp_path / "none.mp4"), "--data", str(data)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert nothing.returncode == 1 and "no recordings" in nothing.stderr
