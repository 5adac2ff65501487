"""The recording index: SQLite (WAL) tables for recordings, gaps, events, evidence locks and the
garbage list through which every deletion passes.

Times are UTC microseconds (``*_wall_us``) and the stream's 90 kHz timeline (``*_90k``). A
recording row is only ever inserted for a segment whose file and directory were fsynced; a
deletion first moves the row to ``garbage`` (one transaction), then unlinks the file, fsyncs the
directory and drops the garbage row, so a crash at any point leaves the index consistent.
"""

from __future__ import annotations

import builtins
import sqlite3
import struct
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from vmscore import _core

SCHEMA_VERSION = 1

_MIGRATIONS: dict[int, str] = {
    1: """
    CREATE TABLE recording (
        id INTEGER PRIMARY KEY,
        camera TEXT NOT NULL,
        stream TEXT NOT NULL,
        storage TEXT NOT NULL,
        path TEXT NOT NULL,
        start_wall_us INTEGER NOT NULL,
        end_wall_us INTEGER NOT NULL,
        start_90k INTEGER NOT NULL,
        end_90k INTEGER NOT NULL,
        bytes INTEGER NOT NULL,
        frames INTEGER NOT NULL,
        codec TEXT NOT NULL,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        keyframes BLOB NOT NULL,
        sha256 TEXT NOT NULL,
        end_reason TEXT NOT NULL,
        recovered INTEGER NOT NULL DEFAULT 0,
        UNIQUE (storage, path)
    );
    CREATE INDEX recording_camera_time ON recording (camera, stream, start_wall_us);
    CREATE INDEX recording_storage_time ON recording (storage, start_wall_us);
    CREATE TABLE gap (
        id INTEGER PRIMARY KEY,
        camera TEXT NOT NULL,
        stream TEXT NOT NULL,
        start_wall_us INTEGER NOT NULL,
        end_wall_us INTEGER NOT NULL,
        reason TEXT NOT NULL
    );
    CREATE INDEX gap_camera_time ON gap (camera, stream, start_wall_us);
    CREATE TABLE event (
        id INTEGER PRIMARY KEY,
        camera TEXT NOT NULL,
        kind TEXT NOT NULL,
        start_wall_us INTEGER NOT NULL,
        end_wall_us INTEGER NOT NULL,
        data TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX event_camera_time ON event (camera, start_wall_us);
    CREATE TABLE garbage (
        id INTEGER PRIMARY KEY,
        storage TEXT NOT NULL,
        path TEXT NOT NULL,
        camera TEXT NOT NULL,
        bytes INTEGER NOT NULL,
        reason TEXT NOT NULL,
        queued_wall_us INTEGER NOT NULL
    );
    CREATE TABLE evidence_lock (
        id INTEGER PRIMARY KEY,
        camera TEXT NOT NULL,
        start_wall_us INTEGER NOT NULL,
        end_wall_us INTEGER NOT NULL,
        reason TEXT NOT NULL,
        owner TEXT NOT NULL,
        created_wall_us INTEGER NOT NULL,
        expires_wall_us INTEGER,
        lifted_wall_us INTEGER,
        lifted_by TEXT
    );
    CREATE INDEX evidence_lock_camera ON evidence_lock (camera, start_wall_us);
    """,
}

_KEYFRAME = struct.Struct("<II")


def pack_keyframes(fragments: Iterable[_core.FragmentInfo]) -> bytes:
    """Packs (dts_90k from the segment start, byte offset in the file) of each fragment that
    starts with a keyframe, 8 bytes each: the seeking index of a segment."""
    return b"".join(
        _KEYFRAME.pack(f.base_dts_90k, f.offset) for f in fragments if f.starts_with_keyframe
    )


def unpack_keyframes(blob: bytes) -> list[tuple[int, int]]:
    return [_KEYFRAME.unpack_from(blob, i) for i in range(0, len(blob), _KEYFRAME.size)]


@dataclass(frozen=True, kw_only=True)
class NewRecording:
    """A finished segment to be indexed."""

    camera: str
    stream: str
    storage: str
    path: str
    start_wall_us: int
    end_wall_us: int
    start_90k: int
    end_90k: int
    bytes: int
    frames: int
    codec: str
    width: int
    height: int
    keyframes: builtins.bytes
    sha256: str
    end_reason: str
    recovered: bool = False


@dataclass(frozen=True, kw_only=True)
class Recording(NewRecording):
    """An indexed segment."""

    id: int

    def keyframe_positions(self) -> list[tuple[int, int]]:
        """(dts_90k from the segment start, byte offset) of each fragment starting at a keyframe."""
        return unpack_keyframes(self.keyframes)


@dataclass(frozen=True)
class Gap:
    id: int
    camera: str
    stream: str
    start_wall_us: int
    end_wall_us: int
    reason: str


@dataclass(frozen=True)
class Event:
    id: int
    camera: str
    kind: str
    start_wall_us: int
    end_wall_us: int
    data: str


@dataclass(frozen=True)
class EvidenceLock:
    id: int
    camera: str
    start_wall_us: int
    end_wall_us: int
    reason: str
    owner: str
    created_wall_us: int
    expires_wall_us: int | None
    lifted_wall_us: int | None
    lifted_by: str | None

    def active(self, now_us: int) -> bool:
        return self.lifted_wall_us is None and (
            self.expires_wall_us is None or self.expires_wall_us > now_us
        )


@dataclass(frozen=True)
class Garbage:
    id: int
    storage: str
    path: str
    camera: str
    bytes: int
    reason: str


_RECORDING_COLUMNS = (
    "id, camera, stream, storage, path, start_wall_us, end_wall_us, start_90k, end_90k, bytes,"
    " frames, codec, width, height, keyframes, sha256, end_reason, recovered"
)


_RECORDING_FIELDS = [c.strip() for c in _RECORDING_COLUMNS.split(",")]


def _recording(row: Sequence[object]) -> Recording:
    values = dict(zip(_RECORDING_FIELDS, row, strict=True))
    values["recovered"] = bool(values["recovered"])
    return Recording(**values)  # type: ignore[arg-type]


def _overlapping(
    equal: dict[str, str | None], start_wall_us: int | None, end_wall_us: int | None
) -> tuple[str, list[object]]:
    """A WHERE clause (with its arguments) for rows whose [start, end) overlaps the given range
    and whose columns equal the given values; None means any."""
    where: list[str] = []
    args: list[object] = []
    for column, value in equal.items():
        if value is not None:
            where.append(f"{column} = ?")
            args.append(value)
    if end_wall_us is not None:
        where.append("start_wall_us < ?")
        args.append(end_wall_us)
    if start_wall_us is not None:
        where.append("end_wall_us > ?")
        args.append(start_wall_us)
    return (" WHERE " + " AND ".join(where) if where else ""), args


class RecordingIndex:
    """The station's recording tables in one SQLite database. Thread-safe (one connection, a
    lock); ``synchronous=FULL`` so a commit survives a power cut."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._migrate()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _migrate(self) -> None:
        with self._lock:
            version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
            if version > SCHEMA_VERSION:
                raise RuntimeError(
                    f"{self.path}: index schema {version} is newer than this vmscore"
                    f" ({SCHEMA_VERSION})"
                )
            for v in range(version + 1, SCHEMA_VERSION + 1):
                with self.transaction() as db:
                    db.executescript(f"BEGIN; {_MIGRATIONS[v]}; PRAGMA user_version={v};")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One transaction: committed on success, rolled back on an exception."""
        with self._lock:
            in_tx = self._db.in_transaction
            if not in_tx:
                self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                if not in_tx and self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            if not in_tx and self._db.in_transaction:
                self._db.execute("COMMIT")

    # -- recordings ------------------------------------------------------------------------

    def add_recordings(self, rows: Sequence[NewRecording]) -> list[int]:
        """Inserts rows in one transaction (a batched commit); returns their ids."""
        ids: list[int] = []
        with self.transaction() as db:
            for r in rows:
                cur = db.execute(
                    "INSERT INTO recording (camera, stream, storage, path, start_wall_us,"
                    " end_wall_us, start_90k, end_90k, bytes, frames, codec, width, height,"
                    " keyframes, sha256, end_reason, recovered)"
                    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        r.camera, r.stream, r.storage, r.path, r.start_wall_us, r.end_wall_us,
                        r.start_90k, r.end_90k, r.bytes, r.frames, r.codec, r.width, r.height,
                        r.keyframes, r.sha256, r.end_reason, int(r.recovered),
                    ),
                )  # fmt: skip
                ids.append(int(cur.lastrowid or 0))
        return ids

    def recordings(
        self,
        camera: str | None = None,
        stream: str | None = None,
        start_wall_us: int | None = None,
        end_wall_us: int | None = None,
        storage: str | None = None,
    ) -> list[Recording]:
        """Recordings overlapping [start, end), oldest first."""
        where, args = _overlapping(
            {"camera": camera, "stream": stream, "storage": storage}, start_wall_us, end_wall_us
        )
        sql = f"SELECT {_RECORDING_COLUMNS} FROM recording{where} ORDER BY start_wall_us, id"
        with self._lock:
            return [_recording(r) for r in self._db.execute(sql, args)]

    def recording_by_path(self, storage: str, path: str) -> Recording | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {_RECORDING_COLUMNS} FROM recording WHERE storage = ? AND path = ?",
                (storage, path),
            ).fetchone()
        return _recording(row) if row else None

    def bytes_by_camera(self) -> dict[str, int]:
        with self._lock:
            return dict(
                self._db.execute("SELECT camera, SUM(bytes) FROM recording GROUP BY camera")
            )

    # -- deletion through the garbage table --------------------------------------------------

    def move_to_garbage(self, recordings: Sequence[Recording], reason: str, now_us: int) -> None:
        with self.transaction() as db:
            for r in recordings:
                db.execute(
                    "INSERT INTO garbage (storage, path, camera, bytes, reason, queued_wall_us)"
                    " VALUES (?,?,?,?,?,?)",
                    (r.storage, r.path, r.camera, r.bytes, reason, now_us),
                )
                db.execute("DELETE FROM recording WHERE id = ?", (r.id,))

    def garbage(self) -> list[Garbage]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, storage, path, camera, bytes, reason FROM garbage ORDER BY id"
            ).fetchall()
        return [Garbage(*r) for r in rows]

    def forget_garbage(self, ids: Iterable[int]) -> None:
        with self.transaction() as db:
            db.executemany("DELETE FROM garbage WHERE id = ?", [(i,) for i in ids])

    def forget_recordings(self, ids: Iterable[int]) -> None:
        """Drops rows whose files are gone (found missing at start-up)."""
        with self.transaction() as db:
            db.executemany("DELETE FROM recording WHERE id = ?", [(i,) for i in ids])

    # -- gaps and events ---------------------------------------------------------------------

    def add_gap(self, camera: str, stream: str, start_us: int, end_us: int, reason: str) -> int:
        with self.transaction() as db:
            cur = db.execute(
                "INSERT INTO gap (camera, stream, start_wall_us, end_wall_us, reason)"
                " VALUES (?,?,?,?,?)",
                (camera, stream, start_us, end_us, reason),
            )
            return int(cur.lastrowid or 0)

    def gaps(self, camera: str | None = None) -> list[Gap]:
        where, args = _overlapping({"camera": camera}, None, None)
        sql = f"SELECT id, camera, stream, start_wall_us, end_wall_us, reason FROM gap{where}"
        with self._lock:
            return [Gap(*r) for r in self._db.execute(sql + " ORDER BY start_wall_us, id", args)]

    def add_event(self, camera: str, kind: str, start_us: int, end_us: int, data: str) -> int:
        with self.transaction() as db:
            cur = db.execute(
                "INSERT INTO event (camera, kind, start_wall_us, end_wall_us, data)"
                " VALUES (?,?,?,?,?)",
                (camera, kind, start_us, end_us, data),
            )
            return int(cur.lastrowid or 0)

    def extend_event(self, event_id: int, end_us: int) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE event SET end_wall_us = MAX(end_wall_us, ?) WHERE id = ?",
                (end_us, event_id),
            )

    def events(
        self,
        camera: str | None = None,
        start_wall_us: int | None = None,
        end_wall_us: int | None = None,
    ) -> list[Event]:
        """Events overlapping [start, end), oldest first."""
        where, args = _overlapping({"camera": camera}, start_wall_us, end_wall_us)
        sql = f"SELECT id, camera, kind, start_wall_us, end_wall_us, data FROM event{where}"
        with self._lock:
            return [Event(*r) for r in self._db.execute(sql + " ORDER BY start_wall_us", args)]

    # -- evidence locks ----------------------------------------------------------------------

    def add_lock(
        self,
        camera: str,
        start_us: int,
        end_us: int,
        reason: str,
        owner: str,
        now_us: int,
        expires_us: int | None,
    ) -> int:
        with self.transaction() as db:
            cur = db.execute(
                "INSERT INTO evidence_lock (camera, start_wall_us, end_wall_us, reason, owner,"
                " created_wall_us, expires_wall_us) VALUES (?,?,?,?,?,?,?)",
                (camera, start_us, end_us, reason, owner, now_us, expires_us),
            )
            return int(cur.lastrowid or 0)

    def locks(self, camera: str | None = None) -> list[EvidenceLock]:
        where, args = _overlapping({"camera": camera}, None, None)
        sql = (
            "SELECT id, camera, start_wall_us, end_wall_us, reason, owner, created_wall_us,"
            f" expires_wall_us, lifted_wall_us, lifted_by FROM evidence_lock{where}"
        )
        with self._lock:
            return [EvidenceLock(*r) for r in self._db.execute(sql + " ORDER BY id", args)]

    def lift_lock(self, lock_id: int, by: str, now_us: int) -> bool:
        with self.transaction() as db:
            cur = db.execute(
                "UPDATE evidence_lock SET lifted_wall_us = ?, lifted_by = ?"
                " WHERE id = ? AND lifted_wall_us IS NULL",
                (now_us, by, lock_id),
            )
            return cur.rowcount == 1
