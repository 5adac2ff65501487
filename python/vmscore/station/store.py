"""The station's own tables in its SQLite database: the configuration document and its history,
site arming, bookmarks, snapshots and the stored motion grid.

The alarm manager (``alarm*`` tables) and the user store (``auth_*`` tables) keep their tables in
the same database file with their own connections; the recorder's index is a separate file.
Thread-safe: one connection guarded by a lock; every write commits before it returns.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS station_config (
    version INTEGER PRIMARY KEY AUTOINCREMENT,
    at_us INTEGER NOT NULL,
    user TEXT NOT NULL,
    reason TEXT NOT NULL,
    document TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS station_site_state (
    site TEXT PRIMARY KEY,
    armed INTEGER NOT NULL,
    changed_us INTEGER NOT NULL,
    changed_by TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS station_bookmark (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    camera TEXT NOT NULL,
    start_us INTEGER NOT NULL,
    end_us INTEGER NOT NULL,
    text TEXT NOT NULL,
    user TEXT NOT NULL,
    created_us INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS station_bookmark_camera ON station_bookmark (camera, start_us);
CREATE TABLE IF NOT EXISTS station_snapshot (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    camera TEXT NOT NULL,
    at_us INTEGER NOT NULL,
    reason TEXT NOT NULL,
    jpeg BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS station_snapshot_camera ON station_snapshot (camera, at_us);
CREATE TABLE IF NOT EXISTS station_motion (
    camera TEXT NOT NULL,
    second_us INTEGER NOT NULL,
    score REAL NOT NULL,
    grid BLOB NOT NULL,
    PRIMARY KEY (camera, second_us)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS station_view (
    user TEXT NOT NULL,
    name TEXT NOT NULL,
    view TEXT NOT NULL,
    updated_us INTEGER NOT NULL,
    PRIMARY KEY (user, name)
) WITHOUT ROWID;
"""

MAX_VIEWS = 100
"""Saved views per user."""

CONFIG_HISTORY = 200
"""Configuration versions kept (older ones are pruned)."""


@dataclass(frozen=True)
class Bookmark:
    id: int
    camera: str
    start_us: int
    end_us: int
    text: str
    user: str
    created_us: int

    def to_json(self) -> dict[str, Any]:
        return self.__dict__.copy()


@dataclass(frozen=True)
class MotionSample:
    """Motion of one camera during one second: the strongest score and the union of the 16x16
    grids of changed cells (32 bytes, row-major, bit i of byte j = cell 8j+i)."""

    camera: str
    second_us: int
    score: float
    grid: bytes


class StationStore:
    def __init__(self, database: str | Path) -> None:
        self._db = sqlite3.connect(str(database), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=10000")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- configuration -------------------------------------------------------------------------

    def config(self) -> tuple[int, dict[str, Any]] | None:
        """The current configuration document and its version, or None before the first."""
        with self._lock:
            row = self._db.execute(
                "SELECT version, document FROM station_config ORDER BY version DESC LIMIT 1"
            ).fetchone()
        if row is None:
            return None
        return int(row[0]), json.loads(row[1])

    def save_config(self, document: Mapping[str, Any], *, user: str, reason: str) -> int:
        text = json.dumps(document, sort_keys=True, separators=(",", ":"))
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO station_config (at_us, user, reason, document) VALUES (?, ?, ?, ?)",
                (_now_us(), user, reason, text),
            )
            version = int(cur.lastrowid or 0)
            self._db.execute(
                "DELETE FROM station_config WHERE version <= ?", (version - CONFIG_HISTORY,)
            )
        return version

    def config_history(self, limit: int = 50) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT version, at_us, user, reason FROM station_config "
                "ORDER BY version DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [{"version": r[0], "at_us": r[1], "user": r[2], "reason": r[3]} for r in rows]

    # -- sites ---------------------------------------------------------------------------------

    def armed(self) -> dict[str, bool]:
        with self._lock:
            rows = self._db.execute("SELECT site, armed FROM station_site_state").fetchall()
        return {r[0]: bool(r[1]) for r in rows}

    def set_armed(self, site: str, armed: bool, *, by: str) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO station_site_state (site, armed, changed_us, changed_by) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (site) DO UPDATE SET armed = excluded.armed, "
                "changed_us = excluded.changed_us, changed_by = excluded.changed_by",
                (site, int(armed), _now_us(), by),
            )

    # -- saved views of the operator's overview ------------------------------------------------

    def views(self, user: str) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT name, view, updated_us FROM station_view WHERE user = ? ORDER BY name",
                (user,),
            ).fetchall()
        return [{"name": r[0], "view": json.loads(r[1]), "updated_us": r[2]} for r in rows]

    def save_view(self, user: str, name: str, view: Mapping[str, Any]) -> None:
        """Creates or replaces one of the user's views (ValueError beyond MAX_VIEWS)."""
        with self._lock:
            count = self._db.execute(
                "SELECT COUNT(*) FROM station_view WHERE user = ? AND name != ?", (user, name)
            ).fetchone()[0]
            if count >= MAX_VIEWS:
                raise ValueError(f"at most {MAX_VIEWS} saved views per user")
            self._db.execute(
                "INSERT INTO station_view (user, name, view, updated_us) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (user, name) DO UPDATE SET view = excluded.view, "
                "updated_us = excluded.updated_us",
                (user, name, json.dumps(dict(view), separators=(",", ":")), _now_us()),
            )

    def delete_view(self, user: str, name: str) -> bool:
        with self._lock:
            cur = self._db.execute(
                "DELETE FROM station_view WHERE user = ? AND name = ?", (user, name)
            )
        return cur.rowcount > 0

    # -- bookmarks -----------------------------------------------------------------------------

    def add_bookmark(
        self, camera: str, start_us: int, end_us: int, text: str, *, user: str
    ) -> Bookmark:
        if end_us < start_us:
            raise ValueError("a bookmark must not end before it starts")
        if len(text) > 4000:
            raise ValueError("a bookmark's text is limited to 4000 characters")
        created = _now_us()
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO station_bookmark (camera, start_us, end_us, text, user, created_us) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (camera, start_us, end_us, text, user, created),
            )
        return Bookmark(int(cur.lastrowid or 0), camera, start_us, end_us, text, user, created)

    def bookmarks(
        self,
        cameras: list[str] | None = None,
        since_us: int | None = None,
        until_us: int | None = None,
        limit: int = 500,
    ) -> list[Bookmark]:
        sql = "SELECT * FROM station_bookmark WHERE 1"
        args: list[Any] = []
        if cameras is not None:
            sql += f" AND camera IN ({','.join('?' * len(cameras))})"
            args += cameras
        if since_us is not None:
            sql += " AND end_us >= ?"
            args.append(since_us)
        if until_us is not None:
            sql += " AND start_us <= ?"
            args.append(until_us)
        sql += " ORDER BY start_us DESC LIMIT ?"
        args.append(limit)
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [Bookmark(*r) for r in rows]

    def bookmark(self, bookmark_id: int) -> Bookmark | None:
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM station_bookmark WHERE id = ?", (bookmark_id,)
            ).fetchone()
        return Bookmark(*row) if row else None

    def delete_bookmark(self, bookmark_id: int) -> bool:
        with self._lock:
            cur = self._db.execute("DELETE FROM station_bookmark WHERE id = ?", (bookmark_id,))
        return cur.rowcount > 0

    # -- snapshots -----------------------------------------------------------------------------

    def add_snapshot(self, camera: str, at_us: int, jpeg: bytes, reason: str) -> int:
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO station_snapshot (camera, at_us, reason, jpeg) VALUES (?, ?, ?, ?)",
                (camera, at_us, reason, jpeg),
            )
        return int(cur.lastrowid or 0)

    def snapshots(self, camera: str, limit: int = 100) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, camera, at_us, reason, length(jpeg) FROM station_snapshot "
                "WHERE camera = ? ORDER BY at_us DESC LIMIT ?",
                (camera, limit),
            ).fetchall()
        return [
            {"id": r[0], "camera": r[1], "at_us": r[2], "reason": r[3], "bytes": r[4]} for r in rows
        ]

    def snapshot(self, snapshot_id: int) -> tuple[str, bytes] | None:
        with self._lock:
            row = self._db.execute(
                "SELECT camera, jpeg FROM station_snapshot WHERE id = ?", (snapshot_id,)
            ).fetchone()
        return (row[0], bytes(row[1])) if row else None

    def prune_snapshots(self, before_us: int) -> int:
        with self._lock:
            cur = self._db.execute("DELETE FROM station_snapshot WHERE at_us < ?", (before_us,))
        return cur.rowcount

    # -- motion --------------------------------------------------------------------------------

    def add_motion(self, samples: list[MotionSample]) -> None:
        """Stores samples in one transaction; a second stored twice keeps the union."""
        if not samples:
            return
        with self._lock:
            # IMMEDIATE: a deferred transaction that reads first cannot wait for another writer
            # of the file (the alarm and user stores) and fails with "database is locked".
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for s in samples:
                    row = self._db.execute(
                        "SELECT score, grid FROM station_motion WHERE camera = ? AND second_us = ?",
                        (s.camera, s.second_us),
                    ).fetchone()
                    score, grid = s.score, s.grid
                    if row is not None:
                        score = max(score, float(row[0]))
                        grid = bytes(a | b for a, b in zip(grid, bytes(row[1]), strict=False))
                    self._db.execute(
                        "INSERT OR REPLACE INTO station_motion VALUES (?, ?, ?, ?)",
                        (s.camera, s.second_us, score, grid),
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def motion(self, camera: str, since_us: int, until_us: int) -> list[MotionSample]:
        with self._lock:
            rows = self._db.execute(
                "SELECT camera, second_us, score, grid FROM station_motion "
                "WHERE camera = ? AND second_us >= ? AND second_us <= ? ORDER BY second_us",
                (camera, since_us, until_us),
            ).fetchall()
        return [MotionSample(r[0], r[1], r[2], bytes(r[3])) for r in rows]

    def prune_motion(self, before_us: int) -> int:
        with self._lock:
            cur = self._db.execute("DELETE FROM station_motion WHERE second_us < ?", (before_us,))
        return cur.rowcount


def _now_us() -> int:
    return time.time_ns() // 1000
