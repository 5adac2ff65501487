"""A recording process for crash tests: receives cameras with an IngestEngine, records them with a
Recorder, and runs until killed. Prints READY once constructed (recovery done) and RECORDING once
every camera has frames on disk.

Usage: python record_process.py DB STORAGE FLUSH_S MAX_BYTES NAME=URL [NAME=URL ...]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import vmscore
from vmscore.record import Recorder, RecordingSettings, StorageLocation


def main() -> None:
    db, storage, flush, max_bytes, *cams = sys.argv[1:]
    engine = vmscore.IngestEngine()
    recorder = Recorder(
        engine,
        Path(db),
        [StorageLocation(name="disk1", path=Path(storage))],
        flush_interval=float(flush),
        commit_interval=1.0,
        retention_interval=0.3,
    )
    print("READY", flush=True)
    settings = RecordingSettings(storage="disk1", segment_s=1.5, max_bytes=int(max_bytes))
    names = []
    for spec in cams:
        name, url = spec.split("=", 1)
        engine.add_stream(name, url, deliver=False)
        recorder.add_camera(name, name, settings)
        names.append(name)
    while not all(recorder.stats(n).frames_written > 0 for n in names):
        time.sleep(0.02)
    print("RECORDING", flush=True)
    while True:
        time.sleep(1)


if __name__ == "__main__":
    main()
