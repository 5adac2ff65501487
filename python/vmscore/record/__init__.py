"""Recording: the segment store on disk, its SQLite index, retention, evidence locks and export."""

from vmscore.record.index import (
    Event,
    EvidenceLock,
    Gap,
    Recording,
    RecordingIndex,
)
from vmscore.record.recorder import (
    Recorder,
    RecorderNotice,
    RecordingSettings,
    StorageLocation,
)
from vmscore.record.recovery import RecoveryReport

__all__ = [
    "Event",
    "EvidenceLock",
    "Gap",
    "Recorder",
    "RecorderNotice",
    "Recording",
    "RecordingIndex",
    "RecordingSettings",
    "RecoveryReport",
    "StorageLocation",
]
