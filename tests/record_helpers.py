"""Helpers for recording tests: a simulated camera server feeding an ingest engine and a Recorder
on temporary storage, and independent checks of what landed on disk (ffprobe, PyAV, hashes)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import av

import vmscore
from station_helpers import wait_for as wait_for  # one polling helper for all tests
from vmscore.record import Recorder, Recording, RecordingSettings, StorageLocation
from vmscore.sim import CameraServer
from vmscore.sim.encode import EncodedStream


def now_us() -> int:
    return time.time_ns() // 1000


@contextmanager
def recording_station(
    tmp: Path,
    clip: EncodedStream,
    cameras: dict[str, RecordingSettings] | None = None,
    *,
    storages: list[StorageLocation] | None = None,
    **recorder_options: object,
) -> Iterator[tuple[CameraServer, vmscore.IngestEngine, Recorder]]:
    """A camera server with one simulated camera per entry of ``cameras`` (all showing ``clip``),
    an engine receiving them, and a Recorder recording them."""
    storages = storages or [StorageLocation(name="disk1", path=tmp / "disk1")]
    for s in storages:
        s.path.mkdir(parents=True, exist_ok=True)
    cameras = cameras if cameras is not None else {"cam1": RecordingSettings(storage="disk1")}
    options: dict[str, object] = {"commit_interval": 0.5, "retention_interval": 0}
    options.update(recorder_options)
    with CameraServer(seed=3) as server, vmscore.IngestEngine() as engine:
        recorder = Recorder(engine, tmp / "index.db", storages, **options)  # type: ignore[arg-type]
        try:
            for name, settings in cameras.items():
                url = server.add_camera(name, clip)
                engine.add_stream(name, url, deliver=False)
                recorder.add_camera(name, name, settings)
            yield server, engine, recorder
        finally:
            recorder.close()


def decoded_frames(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def check_recording(root: Path, r: Recording) -> None:
    """The index row describes the file under storage ``root`` exactly; the file decodes fully."""
    path = root / r.path
    assert path.is_file(), f"{r.path} is indexed but missing"
    data = path.read_bytes()
    assert len(data) == r.bytes, f"{r.path}: {len(data)} bytes on disk, {r.bytes} indexed"
    assert hashlib.sha256(data).hexdigest() == r.sha256, f"{r.path}: SHA-256 differs"
    for _dts, offset in r.keyframe_positions():
        assert data[offset + 4 : offset + 8] == b"moof", f"{r.path}: keyframe offset {offset}"
    assert decoded_frames(path) == r.frames, f"{r.path}: decoded frames differ from the index"
    assert r.end_wall_us > r.start_wall_us and r.end_90k > r.start_90k
