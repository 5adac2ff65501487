"""Start-up recovery (Moonfire NVR's rules, adapted to self-describing segment files).

1. Finish interrupted deletions: every file in the garbage table is unlinked, its directory
   fsynced, the row dropped.
2. Every segment file on a storage location that the index does not know was being written (or
   was finished but not yet committed) when the process died: it is trimmed to its last complete
   fragment, fsynced, hashed and indexed as recovered. A file with no complete fragment, or one
   that is not a segment, is removed as an orphan.
3. Index rows whose files are gone are dropped and recorded as gaps.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from vmscore import _core
from vmscore.errors import VmsError
from vmscore.record.files import fsync_directory, fsync_file, sha256_file
from vmscore.record.index import NewRecording, RecordingIndex, pack_keyframes
from vmscore.record.retention import collect_garbage

Notify = Callable[[str, str, str, int, int, str], None]


@dataclass
class RecoveryReport:
    garbage_removed: int = 0
    recovered: list[str] = field(default_factory=list)  # storage/path of segments indexed
    trimmed_bytes: int = 0
    orphans_removed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # index rows without a file


def _segment_files(root: Path) -> list[Path]:
    # <root>/<camera>/<YYYY-MM-DD>/<name>.mp4, nothing else is ours.
    return sorted(p for p in root.glob("*/*/*.mp4") if p.is_file())


def recover_file(
    index: RecordingIndex, storage: str, root: Path, path: Path, report: RecoveryReport
) -> NewRecording | None:
    """Trims and describes one unindexed segment file; None (and the file removed) when nothing
    in it can be kept."""
    rel = path.relative_to(root).as_posix()
    try:
        scan = _core.scan_segment(str(path))
        meta = json.loads(scan.metadata) if scan.metadata else {}
        if not scan.fragments or not isinstance(meta, dict) or "start_wall_us" not in meta:
            raise VmsError(scan.problem or "no complete fragment and no segment metadata")
    except (VmsError, ValueError, OSError) as err:
        path.unlink(missing_ok=True)
        fsync_directory(path.parent)
        report.orphans_removed.append(f"{storage}/{rel}: {err}")
        return None
    if scan.valid_end < scan.file_size:
        os.truncate(path, scan.valid_end)
        report.trimmed_bytes += scan.file_size - scan.valid_end
    fsync_file(path)
    fsync_directory(path.parent)
    end_rel = scan.duration_90k
    start_wall = int(meta["start_wall_us"])
    start_90k = int(meta.get("start_90k", 0))
    camera = str(meta.get("camera", path.parent.parent.name))
    return NewRecording(
        camera=camera,
        stream=str(meta.get("stream", "main")),
        storage=storage,
        path=rel,
        start_wall_us=start_wall,
        end_wall_us=start_wall + end_rel * 100 // 9,
        start_90k=start_90k,
        end_90k=start_90k + end_rel,
        bytes=scan.valid_end,
        frames=scan.frames,
        codec=scan.codec_string,
        width=scan.width,
        height=scan.height,
        keyframes=pack_keyframes(scan.fragments),
        sha256=sha256_file(path),
        end_reason="recovered",
        recovered=True,
    )


def recover(index: RecordingIndex, roots: dict[str, Path], notify: Notify) -> RecoveryReport:
    report = RecoveryReport()
    report.garbage_removed, _ = collect_garbage(
        index, roots, lambda msg: notify("error", "", "", 0, 0, msg)
    )
    new: list[NewRecording] = []
    for storage, root in roots.items():
        known = {r.path: r for r in index.recordings(storage=storage)}
        on_disk = set()
        for path in _segment_files(root):
            rel = path.relative_to(root).as_posix()
            on_disk.add(rel)
            if rel in known:
                continue
            row = recover_file(index, storage, root, path, report)
            if row is not None:
                new.append(row)
                report.recovered.append(f"{storage}/{rel}")
        missing = [r for p, r in known.items() if p not in on_disk]
        for r in missing:
            index.add_gap(r.camera, r.stream, r.start_wall_us, r.end_wall_us,
                          f"recording file {r.path} is missing")  # fmt: skip
            report.missing.append(f"{storage}/{r.path}")
        index.forget_recordings(r.id for r in missing)
    index.add_recordings(new)
    for item in report.recovered:
        notify("recovered", "", "", 0, 0, f"recovered {item} after an unclean stop")
    for item in report.orphans_removed:
        notify("orphan_removed", "", "", 0, 0, item)
    for item in report.missing:
        notify("file_missing", "", "", 0, 0, item)
    return report
