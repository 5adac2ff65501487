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
from vmscore.record.signing import StationKey, VerifyReport, sign_export, verify_export

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
    "StationKey",
    "StorageLocation",
    "VerifyReport",
    "sign_export",
    "verify_export",
]
