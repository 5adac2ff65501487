"""Crash safety: a recording process (several cameras, retention deleting all the time) is killed
with SIGKILL many times at random moments, including during its start-up recovery. After each
kill, recovery runs and the invariants are checked against the disk:
- every index row's file exists with the indexed size and SHA-256 and decodes completely;
- every segment file on disk is indexed and the garbage table is empty;
- what was lost is at most the unflushed tail: footage reaches back to the kill time minus about
  one and a half flush intervals.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from record_helpers import check_recording, now_us
from vmscore.record import RecordingIndex
from vmscore.record.recovery import recover
from vmscore.sim import CameraServer
from vmscore.sim.encode import EncodedStream

PEER = Path(__file__).parent / "peers" / "record_process.py"
KILLS = 12
FLUSH_S = 0.5
CAMERAS = 3


def wait_line(proc: subprocess.Popen[str], word: str, timeout: float) -> None:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"the recording process exited before {word}")
        if line.strip() == word:
            return
    raise AssertionError(f"no {word} from the recording process")


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_at_most_the_unflushed_tail(
    tmp_path: Path, encode: Callable[..., EncodedStream]
) -> None:
    clip = encode("h264", 320, 240, 100, 25)
    storage = tmp_path / "disk1"
    storage.mkdir()
    db = tmp_path / "index.db"
    rng = random.Random(20261126)
    seen_recovered = 0
    with CameraServer(seed=5) as server:
        specs = [f"cam{i}={server.add_camera(f'cam{i}', clip)}" for i in range(CAMERAS)]
        for attempt in range(KILLS):
            proc = subprocess.Popen(
                [sys.executable, str(PEER), str(db), str(storage), str(FLUSH_S), "400000", *specs],
                stdout=subprocess.PIPE,
                text=True,
            )
            try:
                early = attempt % 4 == 3  # every fourth kill lands during start-up or recovery
                if early:
                    time.sleep(rng.uniform(0.0, 0.6))
                    recording = False
                else:
                    wait_line(proc, "READY", 30)
                    wait_line(proc, "RECORDING", 30)
                    recording = True
                    time.sleep(rng.uniform(2 * FLUSH_S + 0.3, 3.5))
                killed_at = now_us()
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=10)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                if proc.stdout:
                    proc.stdout.close()

            index = RecordingIndex(db)
            try:
                report = recover(index, {"disk1": storage}, lambda *_: None)
                seen_recovered += len(report.recovered)
                rows = index.recordings()
                on_disk = {p.relative_to(storage).as_posix() for p in storage.rglob("*.mp4")}
                assert {r.path for r in rows} == on_disk, f"kill {attempt}: index and disk differ"
                assert index.garbage() == []
                for r in rows:
                    check_recording(storage, r)
                if recording:
                    for i in range(CAMERAS):
                        ends = [r.end_wall_us for r in rows if r.camera == f"cam{i}"]
                        assert ends, f"kill {attempt}: nothing of cam{i} survived"
                        lost = killed_at - max(ends)
                        assert lost <= (1.5 * FLUSH_S + 0.4) * 1e6, (
                            f"kill {attempt}: cam{i} lost {lost / 1e6:.2f} s before the kill"
                        )
            finally:
                index.close()
    # The kills did land in the middle of segments.
    assert seen_recovered >= KILLS // 2
