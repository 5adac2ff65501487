"""The alarm manager: alarms, their workflow, history and changes in SQLite (WAL).

Alarms are raised by the rules engine for a condition (``StationEvent.key``) and worked by
operators: New -> In progress -> (On hold <-> In progress) -> Closed, with reopen. Each change
bumps the alarm's version, writes the history (user and time) and a change row with a sequence
number that the event stream uses to resume; all three commit in one transaction.

Tables are prefixed ``alarm`` because the station keeps other stores in the same database file;
for the same reason the schema version lives in ``alarm_meta``, not in ``PRAGMA user_version``.
``synchronous=FULL``: an operator's action is an audit record and the API reports it done only
once it survives a power cut; the write rate (operator actions and alarm triggers) is far too low
for the extra fsync to matter.

Threading: every method may be called from any thread; one lock guards the connection. Listeners
run after the commit, outside the lock, on the thread of whichever call is delivering, one
change at a time in ``seq`` order, so a listener may call back into the manager.
"""

from __future__ import annotations

import builtins
import json
import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, TypedDict, Unpack, overload

from vmscore.alarms.models import (
    ALARM_STATES,
    PRIORITIES,
    Alarm,
    AlarmChange,
    AlarmConflictError,
    AlarmNotFoundError,
    AlarmScope,
    AlarmSettings,
    AlarmState,
    AlarmStateError,
    ChangeKind,
    HistoryAction,
    HistoryEntry,
    ZoneStats,
)

__all__ = ["SCHEMA_VERSION", "SYSTEM_USER", "AlarmManager", "Listener", "SortOrder"]

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
SYSTEM_USER = "system"
"""The user of the station's own actions (raise, re-trigger, auto-close, condition ended)."""

Listener = Callable[[AlarmChange], None]
SortOrder = Literal["priority", "newest", "oldest"]

_TITLE_MAX = 500
_NAME_MAX = 200
_USER_MAX = 100
_KEY_MAX = 1000
_REASON_MAX = 1000
_DATA_MAX_BYTES = 64 * 1024
_LIST_MAX = 1000
_HISTORY_MAX = 100_000
_CHANGES_MAX = 10_000

_MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """CREATE TABLE alarm (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            title TEXT NOT NULL,
            priority TEXT NOT NULL,
            category TEXT NOT NULL,
            state TEXT NOT NULL,
            owner TEXT,
            site TEXT,
            camera TEXT,
            zone TEXT,
            rule TEXT,
            source_key TEXT NOT NULL,
            related_cameras TEXT NOT NULL,
            created_us INTEGER NOT NULL,
            updated_us INTEGER NOT NULL,
            closed_us INTEGER,
            closed_by TEXT,
            ended_us INTEGER,
            count INTEGER NOT NULL,
            record_start_us INTEGER,
            record_end_us INTEGER,
            event_id INTEGER,
            has_snapshot INTEGER NOT NULL DEFAULT 0,
            data TEXT NOT NULL,
            version INTEGER NOT NULL,
            retriggers_logged INTEGER NOT NULL DEFAULT 0
        )""",
        # The database itself refuses a second open alarm for one condition.
        "CREATE UNIQUE INDEX alarm_open_key ON alarm (source_key) WHERE state != 'closed'",
        "CREATE INDEX alarm_state_updated ON alarm (state, updated_us)",
        "CREATE INDEX alarm_state_closed ON alarm (state, closed_us)",
        "CREATE INDEX alarm_created ON alarm (created_us)",
        "CREATE INDEX alarm_camera ON alarm (camera, created_us)",
        "CREATE INDEX alarm_site ON alarm (site, created_us)",
        """CREATE TABLE alarm_snapshot (
            alarm_id INTEGER PRIMARY KEY,
            jpeg BLOB NOT NULL
        )""",
        """CREATE TABLE alarm_history (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            alarm_id INTEGER NOT NULL,
            at_us INTEGER NOT NULL,
            user TEXT NOT NULL,
            action TEXT NOT NULL,
            from_state TEXT,
            to_state TEXT NOT NULL,
            detail TEXT NOT NULL,
            comment TEXT NOT NULL
        )""",
        "CREATE INDEX alarm_history_alarm ON alarm_history (alarm_id, seq)",
        # AUTOINCREMENT: a seq is never reused, even after the newest rows were deleted, so an
        # event-stream client's Last-Event-ID stays meaningful across retention and restarts.
        """CREATE TABLE alarm_change (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            alarm_id INTEGER NOT NULL,
            kind TEXT NOT NULL,
            cause TEXT NOT NULL,
            alarm TEXT NOT NULL,
            before TEXT
        )""",
        "CREATE INDEX alarm_change_alarm ON alarm_change (alarm_id, seq)",
    ),
}

_COLUMNS = (
    "id", "title", "priority", "category", "state", "owner", "site", "camera", "zone", "rule",
    "source_key", "related_cameras", "created_us", "updated_us", "closed_us", "ended_us", "count",
    "record_start_us", "record_end_us", "event_id", "has_snapshot", "data", "version",
)  # fmt: skip
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM alarm"
_UPDATABLE = frozenset(
    {
        "priority", "category", "state", "owner", "closed_us", "closed_by", "ended_us", "count",
        "record_start_us", "record_end_us", "event_id", "has_snapshot", "retriggers_logged",
    }
)  # fmt: skip

_STATE_WORDS: dict[str, str] = {
    "new": "new",
    "in_progress": "in progress",
    "on_hold": "on hold",
    "closed": "closed",
}


_NO_ALARM: Any = object()


def _utc_us() -> int:
    return time.time_ns() // 1000


# -- input checks: everything an operator or a rule hands in is bounded and printable ----------


def _text(
    what: str, value: object, max_chars: int, *, empty: bool = False, multiline: bool = False
) -> str:
    """Checks text for storage: stored verbatim (quotes, SQL, any Unicode), but bounded and free
    of NUL and, unless multi-line, of control characters, which no camera name, user or title
    legitimately holds and which break logs and C consumers downstream."""
    if not isinstance(value, str):
        raise ValueError(f"{what} must be text, not {type(value).__name__}")
    if not empty and not value.strip():
        raise ValueError(f"{what} must not be empty")
    if len(value) > max_chars:
        raise ValueError(f"{what} is {len(value)} characters long; at most {max_chars}")
    for ch in value:
        o = ord(ch)
        if o < 0x20 or o == 0x7F:
            if multiline and ch in "\t\n\r":
                continue
            raise ValueError(f"{what} contains a control character (U+{o:04X})")
        if 0xD800 <= o <= 0xDFFF:
            raise ValueError(f"{what} is not valid Unicode text (a lone surrogate)")
    return value


def _opt_text(what: str, value: object, max_chars: int) -> str | None:
    return None if value is None else _text(what, value, max_chars)


def _user(value: object, what: str = "user") -> str:
    user = _text(what, value, _USER_MAX)
    if user == SYSTEM_USER:
        # The station's own actions are told apart from operators' by this name (statistics,
        # audit); an operator must not be able to act under it.
        raise ValueError(f"{what} {SYSTEM_USER!r} is reserved for the station's own actions")
    return user


def _int(what: str, value: object, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what} must be an integer, not {type(value).__name__}")
    if not minimum <= value < 2**62:
        raise ValueError(f"{what} {value} is out of range")
    return value


def _opt_int(what: str, value: object) -> int | None:
    return None if value is None else _int(what, value)


def _priority(value: object) -> str:
    if value not in PRIORITIES:
        raise ValueError(f"unknown priority {value!r}: one of {', '.join(PRIORITIES)}")
    return str(value)


def _names(what: str, values: Iterable[str] | str | None) -> builtins.list[str] | None:
    """A filter's values; a single string is one value, not its characters."""
    if values is None:
        return None
    items = [values] if isinstance(values, str) else builtins.list(values)
    for v in items:
        if not isinstance(v, str):
            raise ValueError(f"{what} must be text, not {type(v).__name__}")
    return items


def _range(start_us: int | None, end_us: int | None) -> None:
    if start_us is not None and end_us is not None and end_us < start_us:
        raise ValueError(f"recording range ends ({end_us}) before it starts ({start_us})")


def _data(value: Mapping[str, Any] | None) -> str:
    if value is None:
        return "{}"
    if not isinstance(value, Mapping):
        raise ValueError(f"data must be a mapping, not {type(value).__name__}")
    try:
        text = json.dumps(dict(value), allow_nan=False, ensure_ascii=False, sort_keys=True)
        text.encode("utf-8")
    except (TypeError, ValueError) as e:
        raise ValueError(f"data must be JSON (text keys, no NaN): {e}") from e
    if len(text.encode("utf-8")) > _DATA_MAX_BYTES:
        raise ValueError(f"data is larger than {_DATA_MAX_BYTES} bytes as JSON")
    return text


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


# -- the manager ------------------------------------------------------------------------------


@dataclass
class _Edit:
    """What an action changes: columns, the history lines it writes, and why (for the change)."""

    updates: dict[str, Any] = field(default_factory=dict)
    history: builtins.list[tuple[HistoryAction, str, str]] = field(default_factory=list)
    cause: str = "action"


class AlarmFilter(TypedDict, total=False):
    """What :meth:`AlarmManager.list` and :meth:`AlarmManager.count` select by (every given one
    must match): alarms created in [since_us, until_us); ``text`` a case-insensitive substring of
    the title, names, category or owner; ``scope`` what a user may see."""

    states: Iterable[str] | str | None
    sites: Iterable[str] | str | None
    cameras: Iterable[str] | str | None
    priorities: Iterable[str] | str | None
    owner: str | None
    since_us: int | None
    until_us: int | None
    text: str | None
    scope: AlarmScope | None


class AlarmManager:
    """Alarms, their workflow, history and change stream in one SQLite database file."""

    def __init__(
        self,
        database: str | Path,
        settings: AlarmSettings | None = None,
        *,
        clock: Callable[[], int] = _utc_us,
    ) -> None:
        self.path = Path(database)
        self.settings = settings if settings is not None else AlarmSettings()
        self._clock = clock
        self._lock = threading.RLock()
        self._listeners: tuple[Listener, ...] = ()
        self._pending: deque[AlarmChange] = deque()
        self._staged: builtins.list[AlarmChange] = []
        self._delivering = False
        self._closed = False
        # timeout: other stores write to the same file; wait for their transactions.
        self._db = sqlite3.connect(
            self.path, check_same_thread=False, isolation_level=None, timeout=10.0
        )
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._migrate()
        except BaseException:
            self._db.close()
            raise

    # -- lifecycle ---------------------------------------------------------------------------

    def _shutdown(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()

    def __enter__(self) -> AlarmManager:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._shutdown()

    def _migrate(self) -> None:
        with self._tx() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS alarm_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
            )
            row = db.execute("SELECT value FROM alarm_meta WHERE key = 'schema_version'").fetchone()
            version = int(row[0]) if row else 0
            if version > SCHEMA_VERSION:
                raise RuntimeError(
                    f"{self.path}: alarm schema {version} is newer than this vmscore"
                    f" ({SCHEMA_VERSION})"
                )
            for v in range(version + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[v]:
                    db.execute(statement)
            db.execute(
                "INSERT OR REPLACE INTO alarm_meta (key, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction under the lock: committed on success, rolled back otherwise.
        IMMEDIATE takes the write lock first, so a read-then-write never fails half way."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the alarm manager is closed")
            self._db.execute("BEGIN IMMEDIATE")
            self._staged.clear()
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                self._staged.clear()
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            # Queued only once committed, and still under the lock, so in seq order.
            self._pending.extend(self._staged)
            self._staged.clear()

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._closed:
                raise RuntimeError("the alarm manager is closed")
            yield self._db

    # -- listeners ---------------------------------------------------------------------------

    def add_listener(self, fn: Listener) -> None:
        """``fn`` is called with every change after it is committed, in ``seq`` order."""
        with self._lock:
            self._listeners = (*self._listeners, fn)

    def remove_listener(self, fn: Listener) -> None:
        with self._lock:
            listeners = builtins.list(self._listeners)
            if fn in listeners:
                listeners.remove(fn)
            self._listeners = tuple(listeners)

    def _deliver(self) -> None:
        """Hands queued changes to the listeners. One thread delivers at a time (the others
        leave their changes in the queue for it), which keeps the seq order across threads and
        lets a listener call the manager without recursing."""
        with self._lock:
            if self._delivering:
                return
            self._delivering = True
        while True:
            with self._lock:
                if not self._pending:
                    self._delivering = False
                    return
                change = self._pending.popleft()
                listeners = self._listeners
            for fn in listeners:
                try:
                    fn(change)
                except Exception:
                    log.exception("alarm listener %r failed on change %d", fn, change.seq)
                except BaseException:
                    # KeyboardInterrupt, SystemExit: let them through, but let the next call
                    # deliver what is left.
                    with self._lock:
                        self._delivering = False
                    raise

    # -- rows --------------------------------------------------------------------------------

    def _alarm(self, row: Sequence[Any]) -> Alarm:
        r = dict(zip(_COLUMNS, row, strict=True))
        level = self.settings.priority(r["priority"])
        return Alarm(
            id=r["id"],
            title=r["title"],
            priority=r["priority"],
            priority_level=level.level,
            colour=level.colour,
            sound=level.sound,
            category=r["category"],
            state=r["state"],
            owner=r["owner"],
            site=r["site"],
            camera=r["camera"],
            zone=r["zone"],
            rule=r["rule"],
            source_key=r["source_key"],
            related_cameras=tuple(json.loads(r["related_cameras"])),
            created_us=r["created_us"],
            updated_us=r["updated_us"],
            closed_us=r["closed_us"],
            ended_us=r["ended_us"],
            count=r["count"],
            record_start_us=r["record_start_us"],
            record_end_us=r["record_end_us"],
            event_id=r["event_id"],
            has_snapshot=bool(r["has_snapshot"]),
            data=json.loads(r["data"]),
            version=r["version"],
        )

    def _load(self, db: sqlite3.Connection, alarm_id: int) -> Alarm:
        row = db.execute(f"{_SELECT} WHERE id = ?", (alarm_id,)).fetchone()
        if row is None:
            raise AlarmNotFoundError(f"no alarm {alarm_id}")
        return self._alarm(row)

    def _update(
        self, db: sqlite3.Connection, before: Alarm, updates: Mapping[str, Any], now_us: int
    ) -> Alarm:
        assert _UPDATABLE.issuperset(updates), updates
        sets = "".join(f", {column} = ?" for column in updates)
        db.execute(
            f"UPDATE alarm SET version = version + 1, updated_us = ?{sets} WHERE id = ?",
            (max(now_us, before.updated_us), *updates.values(), before.id),
        )
        return self._load(db, before.id)

    def _history(
        self,
        db: sqlite3.Connection,
        alarm_id: int,
        at_us: int,
        user: str,
        action: HistoryAction,
        from_state: AlarmState | None,
        to_state: AlarmState,
        detail: str = "",
        comment: str = "",
    ) -> None:
        db.execute(
            "INSERT INTO alarm_history (alarm_id, at_us, user, action, from_state, to_state,"
            " detail, comment) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (alarm_id, at_us, user, action, from_state, to_state, detail, comment),
        )

    def _change(
        self, db: sqlite3.Connection, before: Alarm | None, after: Alarm, cause: str
    ) -> AlarmChange:
        kind: ChangeKind
        if before is None:
            kind = "new"
        elif after.state == "closed" and before.state != "closed":
            kind = "end"
        else:
            kind = "update"
        if cause == "retrigger":
            # A flapping condition re-triggers an open alarm again and again: the latest
            # re-trigger supersedes an immediately preceding one in the stored stream (a
            # resuming client gets the alarm's current state either way), so the stored changes
            # of an open alarm do not grow with every trigger. Live listeners see them all.
            last = db.execute(
                "SELECT seq, cause FROM alarm_change WHERE alarm_id = ? ORDER BY seq DESC LIMIT 1",
                (after.id,),
            ).fetchone()
            if last is not None and last[1] == "retrigger":
                db.execute("DELETE FROM alarm_change WHERE seq = ?", (last[0],))
        cur = db.execute(
            "INSERT INTO alarm_change (alarm_id, kind, cause, alarm, before) VALUES (?,?,?,?,?)",
            (
                after.id,
                kind,
                cause,
                after.model_dump_json(),
                None if before is None else before.model_dump_json(),
            ),
        )
        assert cur.lastrowid is not None
        return AlarmChange(kind=kind, alarm=after, before=before, seq=cur.lastrowid)

    def _stage(self, changes: Iterable[AlarmChange]) -> None:
        """Changes of the current transaction, for the listeners once it commits."""
        self._staged.extend(changes)

    # -- raising -----------------------------------------------------------------------------

    def raise_alarm(
        self,
        *,
        title: str,
        priority: str,
        source_key: str,
        site: str | None = None,
        camera: str | None = None,
        zone: str | None = None,
        rule: str | None = None,
        category: str = "",
        related_cameras: Iterable[str] = (),
        record_start_us: int | None = None,
        record_end_us: int | None = None,
        event_id: int | None = None,
        data: Mapping[str, Any] | None = None,
        at_us: int | None = None,
    ) -> Alarm:
        """Raises an alarm for the condition ``source_key``, or re-triggers the open alarm of
        that condition (count + 1; a more urgent priority escalates it): never a duplicate."""
        source_key = _text("source_key", source_key, _KEY_MAX)
        # A rule may leave the title empty; an alarm is never lost over it.
        title = _text("title", title, _TITLE_MAX, empty=True).strip() or source_key[:_TITLE_MAX]
        priority = _priority(priority)
        site = _opt_text("site", site, _NAME_MAX)
        camera = _opt_text("camera", camera, _NAME_MAX)
        zone = _opt_text("zone", zone, _NAME_MAX)
        rule = _opt_text("rule", rule, _NAME_MAX)
        category = _text("category", category, 100, empty=True)
        related = _names("related_cameras", related_cameras) or []
        related = builtins.list(
            dict.fromkeys(_text("related camera", c, _NAME_MAX) for c in related)
        )
        if len(related) > self.settings.related_cameras_max:
            raise ValueError(
                f"{len(related)} related cameras; at most {self.settings.related_cameras_max}"
            )
        record_start_us = _opt_int("record_start_us", record_start_us)
        record_end_us = _opt_int("record_end_us", record_end_us)
        _range(record_start_us, record_end_us)
        event_id = _opt_int("event_id", event_id)
        data_json = _data(data)
        at = self._clock() if at_us is None else _int("at_us", at_us)

        with self._tx() as db:
            row = db.execute(
                f"{_SELECT} WHERE source_key = ? AND state != 'closed'", (source_key,)
            ).fetchone()
            if row is None:
                cur = db.execute(
                    "INSERT INTO alarm (title, priority, category, state, owner, site, camera,"
                    " zone, rule, source_key, related_cameras, created_us, updated_us, count,"
                    " record_start_us, record_end_us, event_id, data, version)"
                    " VALUES (?,?,?,'new',NULL,?,?,?,?,?,?,?,?,1,?,?,?,?,1)",
                    (
                        title, priority, category, site, camera, zone, rule, source_key,
                        json.dumps(related, ensure_ascii=False), at, at, record_start_us,
                        record_end_us, event_id, data_json,
                    ),
                )  # fmt: skip
                assert cur.lastrowid is not None
                alarm = self._load(db, cur.lastrowid)
                self._history(db, alarm.id, at, SYSTEM_USER, "raised", None, "new", priority)
                changes = [self._change(db, None, alarm, "raise")]
            else:
                before = self._alarm(row)
                updates: dict[str, Any] = {"count": before.count + 1, "ended_us": None}
                if record_end_us is not None and (
                    before.record_end_us is None or record_end_us > before.record_end_us
                ):
                    updates["record_end_us"] = record_end_us
                if before.record_start_us is None and record_start_us is not None:
                    updates["record_start_us"] = record_start_us
                if before.event_id is None and event_id is not None:
                    updates["event_id"] = event_id
                escalate = self.settings.priority(priority).level < before.priority_level
                if escalate:
                    updates["priority"] = priority
                logged = db.execute(
                    "SELECT retriggers_logged FROM alarm WHERE id = ?", (before.id,)
                ).fetchone()[0]
                log_it = logged < self.settings.retrigger_history_max
                if log_it:
                    updates["retriggers_logged"] = logged + 1
                alarm = self._update(db, before, updates, at)
                if log_it:
                    detail = f"count {alarm.count}"
                    if logged + 1 == self.settings.retrigger_history_max:
                        detail += "; further re-triggers are counted, not logged"
                    self._history(
                        db, alarm.id, at, SYSTEM_USER, "retriggered", before.state, alarm.state,
                        detail,
                    )  # fmt: skip
                if escalate:
                    self._history(
                        db, alarm.id, at, SYSTEM_USER, "priority_changed", before.state,
                        alarm.state, f"{before.priority} -> {priority}",
                    )  # fmt: skip
                changes = [self._change(db, before, alarm, "retrigger")]
            self._stage(changes)
        self._deliver()
        return alarm

    def set_snapshot(self, alarm_id: int, jpeg: bytes) -> Alarm:
        """Stores (or replaces) the alarm's snapshot, a JPEG of at most ``snapshot_max_bytes``."""
        alarm_id = _int("alarm id", alarm_id)
        if not isinstance(jpeg, bytes | bytearray | memoryview):
            raise ValueError(f"a snapshot is bytes, not {type(jpeg).__name__}")
        blob = bytes(jpeg)
        limit = self.settings.snapshot_max_bytes
        if len(blob) > limit:
            raise ValueError(f"snapshot of {len(blob)} bytes is larger than {limit} bytes")
        if not blob.startswith(b"\xff\xd8\xff"):
            raise ValueError("a snapshot must be a JPEG image (it does not start with FF D8 FF)")
        now = self._clock()
        with self._tx() as db:
            before = self._load(db, alarm_id)
            db.execute(
                "INSERT OR REPLACE INTO alarm_snapshot (alarm_id, jpeg) VALUES (?, ?)",
                (alarm_id, blob),
            )
            after = self._update(db, before, {"has_snapshot": 1}, now)
            self._stage([self._change(db, before, after, "snapshot")])
        self._deliver()
        return after

    def snapshot(self, alarm_id: int) -> bytes | None:
        with self._read() as db:
            row = db.execute(
                "SELECT s.jpeg, a.id FROM alarm a LEFT JOIN alarm_snapshot s ON s.alarm_id = a.id"
                " WHERE a.id = ?",
                (alarm_id,),
            ).fetchone()
        if row is None:
            raise AlarmNotFoundError(f"no alarm {alarm_id}")
        return None if row[0] is None else bytes(row[0])

    def set_recording(
        self, alarm_id: int, start_us: int, end_us: int, event_id: int | None = None
    ) -> Alarm:
        """Sets the recorded range (pre-roll to post-roll); the post-roll end is known only
        after the alarm was raised. ``event_id`` None keeps the recorder's event row known."""
        alarm_id = _int("alarm id", alarm_id)
        start_us = _int("start_us", start_us)
        end_us = _int("end_us", end_us)
        _range(start_us, end_us)
        event_id = _opt_int("event_id", event_id)
        now = self._clock()
        updates: dict[str, Any] = {"record_start_us": start_us, "record_end_us": end_us}
        if event_id is not None:
            updates["event_id"] = event_id
        with self._tx() as db:
            before = self._load(db, alarm_id)
            after = self._update(db, before, updates, now)
            self._stage([self._change(db, before, after, "recording")])
        self._deliver()
        return after

    # -- operator actions --------------------------------------------------------------------

    def _apply(
        self, db: sqlite3.Connection, before: Alarm, user: str, edit: _Edit, now_us: int
    ) -> tuple[Alarm, AlarmChange]:
        """Writes one decided change: the row, its history lines and the change row."""
        updates = dict(edit.updates)
        if updates.get("state") == "closed" and before.state != "closed":
            updates["closed_us"] = now_us
        after = self._update(db, before, updates, now_us)
        for action, detail, comment in edit.history:
            self._history(
                db, before.id, now_us, user, action, before.state, after.state, detail, comment
            )
        return after, self._change(db, before, after, edit.cause)

    def _act(
        self,
        alarm_id: int,
        user: str,
        expect_version: int | None,
        apply: Callable[[Alarm], _Edit],
    ) -> Alarm:
        """Runs one operator action: loads the alarm, checks the version, lets ``apply`` decide
        (it raises AlarmStateError for an illegal transition), then writes the row, the history
        and the change in one transaction."""
        alarm_id = _int("alarm id", alarm_id)
        if expect_version is not None:
            expect_version = _int("expect_version", expect_version)
        now = self._clock()
        with self._tx() as db:
            before = self._load(db, alarm_id)
            if expect_version is not None and before.version != expect_version:
                raise AlarmConflictError(
                    f"alarm {alarm_id} was changed meanwhile (version {before.version}, not"
                    f" {expect_version}): reload it and try again",
                    before,
                )
            after, change = self._apply(db, before, user, apply(before), now)
            self._stage([change])
        self._deliver()
        return after

    @staticmethod
    def _refuse(alarm: Alarm, what: str) -> AlarmStateError:
        return AlarmStateError(
            f"alarm {alarm.id} is {_STATE_WORDS[alarm.state]}: it cannot be {what}"
        )

    def _comment(self, comment: object) -> str:
        return _text(
            "comment", comment, self.settings.comment_max_chars, empty=True, multiline=True
        )

    def acknowledge(self, alarm_id: int, user: str, *, expect_version: int | None = None) -> Alarm:
        """New -> In progress; the user becomes the owner unless the alarm has one."""
        user = _user(user)

        def apply(a: Alarm) -> _Edit:
            if a.state != "new":
                raise self._refuse(a, "acknowledged (only a new alarm can)")
            return _Edit(
                {"state": "in_progress", "owner": a.owner or user}, [("acknowledged", "", "")]
            )

        return self._act(alarm_id, user, expect_version, apply)

    def assign(
        self, alarm_id: int, user: str, to: str | None, *, expect_version: int | None = None
    ) -> Alarm:
        """Makes ``to`` the owner (None: nobody); the state does not change."""
        user = _user(user)
        owner = None if to is None else _user(to, "assignee")

        def apply(a: Alarm) -> _Edit:
            if a.state == "closed":
                raise self._refuse(a, "assigned (reopen it first)")
            if a.owner == owner:
                who = f"assigned to {owner}" if owner else "unassigned"
                raise AlarmStateError(f"alarm {a.id} is already {who}")
            return _Edit({"owner": owner}, [("assigned", owner or "", "")])

        return self._act(alarm_id, user, expect_version, apply)

    def hold(
        self, alarm_id: int, user: str, comment: str = "", *, expect_version: int | None = None
    ) -> Alarm:
        """New or In progress -> On hold (waiting for the police, a guard, a technician)."""
        user = _user(user)
        comment = self._comment(comment)

        def apply(a: Alarm) -> _Edit:
            if a.state not in ("new", "in_progress"):
                raise self._refuse(a, "put on hold")
            return _Edit({"state": "on_hold", "owner": a.owner or user}, [("on_hold", "", comment)])

        return self._act(alarm_id, user, expect_version, apply)

    def resume(self, alarm_id: int, user: str, *, expect_version: int | None = None) -> Alarm:
        """On hold -> In progress."""
        user = _user(user)

        def apply(a: Alarm) -> _Edit:
            if a.state != "on_hold":
                raise self._refuse(a, "resumed (only an alarm on hold can)")
            return _Edit({"state": "in_progress", "owner": a.owner or user}, [("resumed", "", "")])

        return self._act(alarm_id, user, expect_version, apply)

    @overload
    def close(self) -> None: ...

    @overload
    def close(
        self,
        alarm_id: int,
        user: str,
        comment: str = "",
        category: str | None = None,
        *,
        expect_version: int | None = None,
    ) -> Alarm: ...

    def close(
        self,
        alarm_id: Any = _NO_ALARM,
        user: Any = None,
        comment: str = "",
        category: str | None = None,
        *,
        expect_version: int | None = None,
    ) -> Alarm | None:
        """``close(alarm_id, user, comment, category)``: New, In progress or On hold -> Closed,
        filed under ``category`` (one of the configured ones; None keeps the alarm's).

        ``close()`` with no argument at all closes the manager's database connection; an
        explicit ``alarm_id=None`` is an error, never a shutdown."""
        if alarm_id is _NO_ALARM:
            self._shutdown()
            return None
        user = _user(user)
        comment = self._comment(comment)
        if category is not None and category not in self.settings.categories:
            raise ValueError(
                f"unknown category {category!r}: one of {', '.join(self.settings.categories)}"
            )

        def apply(a: Alarm) -> _Edit:
            if a.state == "closed":
                raise self._refuse(a, "closed again")
            updates: dict[str, Any] = {"state": "closed", "closed_by": user}
            if category is not None:
                updates["category"] = category
            return _Edit(updates, [("closed", category or a.category, comment)])

        return self._act(alarm_id, user, expect_version, apply)

    def reopen(
        self, alarm_id: int, user: str, comment: str = "", *, expect_version: int | None = None
    ) -> Alarm:
        """Closed -> In progress, owned by the user unless it has an owner. Refused while
        another alarm of the same condition is open (there is never more than one)."""
        user = _user(user)
        comment = self._comment(comment)

        def apply(a: Alarm) -> _Edit:
            if a.state != "closed":
                raise self._refuse(a, "reopened (only a closed alarm can)")
            other = self._db.execute(
                "SELECT id FROM alarm WHERE source_key = ? AND state != 'closed'",
                (a.source_key,),
            ).fetchone()
            if other is not None:
                raise AlarmStateError(
                    f"alarm {a.id} cannot be reopened: alarm {other[0]} is open for the same"
                    " condition"
                )
            return _Edit(
                {
                    "state": "in_progress",
                    "owner": a.owner or user,
                    "closed_us": None,
                    "closed_by": None,
                },
                [("reopened", "", comment)],
            )

        return self._act(alarm_id, user, expect_version, apply)

    def comment(
        self, alarm_id: int, user: str, text: str, *, expect_version: int | None = None
    ) -> Alarm:
        """Adds a comment; allowed in every state (notes after closing belong to the record)."""
        user = _user(user)
        text = _text("comment", text, self.settings.comment_max_chars, multiline=True)
        return self._act(
            alarm_id, user, expect_version, lambda a: _Edit({}, [("commented", text, "")])
        )

    def set_priority(
        self, alarm_id: int, user: str, priority: str, *, expect_version: int | None = None
    ) -> Alarm:
        user = _user(user)
        new = _priority(priority)

        def apply(a: Alarm) -> _Edit:
            if a.state == "closed":
                raise self._refuse(a, "given another priority")
            if a.priority == new:
                raise AlarmStateError(f"alarm {a.id} already has priority {new}")
            return _Edit({"priority": new}, [("priority_changed", f"{a.priority} -> {new}", "")])

        return self._act(alarm_id, user, expect_version, apply)

    # -- the station's own actions -------------------------------------------------------------

    def condition_ended(
        self, source_key: str, at_us: int, *, close: bool, reason: str
    ) -> Alarm | None:
        """The condition of ``source_key`` ended (the camera is back, the tamper is gone): marks
        its open alarm, and closes it as ``system`` when ``close`` (the rule's close_on_end).
        Returns None when no alarm of that condition is open."""
        source_key = _text("source_key", source_key, _KEY_MAX)
        at = _int("at_us", at_us)
        reason = _text("reason", reason, _REASON_MAX, empty=True, multiline=True)
        with self._tx() as db:
            row = db.execute(
                f"{_SELECT} WHERE source_key = ? AND state != 'closed'", (source_key,)
            ).fetchone()
            if row is None:
                return None
            before = self._alarm(row)
            updates: dict[str, Any] = {"ended_us": at}
            if close:
                updates.update(state="closed", closed_by=SYSTEM_USER)
            edit = _Edit(updates, [("condition_ended", reason, "")], cause="condition")
            after, change = self._apply(db, before, SYSTEM_USER, edit, at)
            self._stage([change])
        self._deliver()
        return after

    def housekeeping(self, now_us: int | None = None) -> dict[str, int]:
        """Auto-closes New alarms idle for ``auto_close_s`` and deletes closed alarms older than
        ``closed_keep_s`` with their snapshot, history and changes. Each part handles at most
        ``housekeeping_batch`` alarms per call (call it periodically; a backlog drains over a few
        calls without holding the database for long)."""
        now = self._clock() if now_us is None else _int("now_us", now_us)
        batch = self.settings.housekeeping_batch
        auto_closed = 0
        deleted = 0
        if self.settings.auto_close_s is not None:
            idle_before = now - round(self.settings.auto_close_s * 1_000_000)
            with self._tx() as db:
                rows = db.execute(
                    f"{_SELECT} WHERE state = 'new' AND updated_us <= ? ORDER BY updated_us, id"
                    " LIMIT ?",
                    (idle_before, batch),
                ).fetchall()
                changes = []
                for row in rows:
                    before = self._alarm(row)
                    edit = _Edit(
                        {"state": "closed", "closed_by": SYSTEM_USER},
                        [("auto_closed", f"new for {self.settings.auto_close_s:g} s", "")],
                        cause="auto_close",
                    )
                    changes.append(self._apply(db, before, SYSTEM_USER, edit, now)[1])
                self._stage(changes)
                auto_closed = len(changes)
            self._deliver()
        closed_before = now - round(self.settings.closed_keep_s * 1_000_000)
        with self._tx() as db:
            ids = [
                (r[0],)
                for r in db.execute(
                    "SELECT id FROM alarm WHERE state = 'closed' AND closed_us <= ?"
                    " ORDER BY closed_us LIMIT ?",
                    (closed_before, batch),
                )
            ]
            for table in ("alarm_snapshot", "alarm_history", "alarm_change"):
                db.executemany(f"DELETE FROM {table} WHERE alarm_id = ?", ids)
            db.executemany("DELETE FROM alarm WHERE id = ?", ids)
            deleted = len(ids)
        return {"auto_closed": auto_closed, "deleted": deleted}

    # -- queries ----------------------------------------------------------------------------

    def get(self, alarm_id: int) -> Alarm:
        with self._read() as db:
            return self._load(db, alarm_id)

    def _where(self, **filters: Unpack[AlarmFilter]) -> tuple[str, builtins.list[Any]]:
        states = filters.get("states")
        sites = filters.get("sites")
        cameras = filters.get("cameras")
        priorities = filters.get("priorities")
        owner = filters.get("owner")
        since_us = filters.get("since_us")
        until_us = filters.get("until_us")
        text = filters.get("text")
        scope = filters.get("scope")
        where: builtins.list[str] = []
        args: builtins.list[Any] = []

        def among(column: str, values: builtins.list[str]) -> str:
            # One JSON parameter however many values (a user may see thousands of cameras).
            args.append(json.dumps(values))
            return f"{column} IN (SELECT value FROM json_each(?))"

        state_list = _names("states", states)
        if state_list is not None:
            for s in state_list:
                if s not in ALARM_STATES:
                    raise ValueError(f"unknown state {s!r}: one of {', '.join(ALARM_STATES)}")
            where.append(among("state", state_list))
        priority_list = _names("priorities", priorities)
        if priority_list is not None:
            for p in priority_list:
                _priority(p)
            where.append(among("priority", priority_list))
        site_list = _names("sites", sites)
        if site_list is not None:
            where.append(among("site", site_list))
        camera_list = _names("cameras", cameras)
        if camera_list is not None:
            where.append(among("camera", camera_list))
        if owner is not None:
            where.append("owner = ?")
            args.append(_text("owner", owner, _USER_MAX))
        if since_us is not None:
            where.append("created_us >= ?")
            args.append(_int("since_us", since_us))
        if until_us is not None:
            where.append("created_us < ?")
            args.append(_int("until_us", until_us))
        if text:
            pattern = _like(_text("text", text, _TITLE_MAX))
            columns = ("title", "source_key", "site", "camera", "zone", "rule", "category", "owner")
            where.append("(" + " OR ".join(f"{c} LIKE ? ESCAPE '\\'" for c in columns) + ")")
            args.extend([pattern] * len(columns))
        if scope is not None:
            cams = among("camera", sorted(scope.cameras))
            site_clause = among("site", sorted(scope.sites))
            where.append(
                f"({cams} OR (camera IS NULL AND {site_clause})"
                " OR (camera IS NULL AND site IS NULL AND ?))"
            )
            args.append(int(scope.station))
        return (" WHERE " + " AND ".join(where) if where else ""), args

    def list(
        self,
        *,
        sort: SortOrder = "priority",
        limit: int = 100,
        offset: int = 0,
        **filters: Unpack[AlarmFilter],
    ) -> builtins.list[Alarm]:
        """Alarms matching every given filter (created in [since_us, until_us); ``text`` is a
        case-insensitive substring of the title, names, category or owner; ``scope`` keeps what
        a user may see). ``priority`` sorts the most urgent first, then the newest."""
        where, args = self._where(**filters)
        if sort == "priority":
            levels = " ".join("WHEN ? THEN ?" for _ in self.settings.priorities)
            order = f"CASE priority {levels} END, created_us DESC, id DESC"
            for p in self.settings.priorities:
                args.extend((p.name, p.level))
        elif sort == "newest":
            order = "created_us DESC, id DESC"
        elif sort == "oldest":
            order = "created_us, id"
        else:
            raise ValueError(f"unknown sort {sort!r}: priority, newest or oldest")
        limit = _int("limit", limit, minimum=1)
        if limit > _LIST_MAX:
            raise ValueError(f"limit {limit} is larger than {_LIST_MAX}")
        offset = _int("offset", offset)
        with self._read() as db:
            rows = db.execute(
                f"{_SELECT}{where} ORDER BY {order} LIMIT ? OFFSET ?", (*args, limit, offset)
            ).fetchall()
            return [self._alarm(r) for r in rows]

    def count(self, **filters: Unpack[AlarmFilter]) -> int:
        """How many alarms :meth:`list` would return without a limit."""
        where, args = self._where(**filters)
        with self._read() as db:
            return int(db.execute(f"SELECT COUNT(*) FROM alarm{where}", args).fetchone()[0])

    def history(self, alarm_id: int, *, limit: int = _HISTORY_MAX) -> builtins.list[HistoryEntry]:
        """The alarm's audit trail, oldest first."""
        alarm_id = _int("alarm id", alarm_id)
        limit = _int("limit", limit, minimum=1)
        with self._read() as db:
            self._load(db, alarm_id)
            rows = db.execute(
                "SELECT seq, alarm_id, at_us, user, action, from_state, to_state, detail, comment"
                " FROM alarm_history WHERE alarm_id = ? ORDER BY seq LIMIT ?",
                (alarm_id, limit),
            ).fetchall()
        return [
            HistoryEntry(
                seq=r[0],
                alarm_id=r[1],
                at_us=r[2],
                user=r[3],
                action=r[4],
                from_state=r[5],
                to_state=r[6],
                detail=r[7],
                comment=r[8],
            )
            for r in rows
        ]

    def changes_since(self, seq: int, limit: int = 1000) -> builtins.list[AlarmChange]:
        """Stored changes after ``seq``, oldest first: what an event-stream client missed. A
        change is kept as long as its alarm, except that a re-trigger immediately followed by
        another re-trigger of the same alarm is superseded by it."""
        seq = _int("seq", seq)
        limit = _int("limit", limit, minimum=1)
        if limit > _CHANGES_MAX:
            raise ValueError(f"limit {limit} is larger than {_CHANGES_MAX}")
        with self._read() as db:
            rows = db.execute(
                "SELECT seq, kind, alarm, before FROM alarm_change WHERE seq > ? ORDER BY seq"
                " LIMIT ?",
                (seq, limit),
            ).fetchall()
        return [
            AlarmChange(
                seq=r[0],
                kind=r[1],
                alarm=Alarm.model_validate_json(r[2]),
                before=None if r[3] is None else Alarm.model_validate_json(r[3]),
            )
            for r in rows
        ]

    def last_seq(self) -> int:
        """The newest change's seq (0 before the first): where a new event-stream client
        starts."""
        with self._read() as db:
            row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'alarm_change'")
            found = row.fetchone()
        return 0 if found is None else int(found[0])

    def false_alarm_stats(self, *, since_us: int | None = None) -> builtins.list[ZoneStats]:
        """Per site, camera and zone: alarms closed (since ``since_us``) and how many of them
        operators filed as false alarms. Sorted by the most false alarms first."""
        args: builtins.list[Any] = [self.settings.false_alarm_category, SYSTEM_USER]
        where = "state = 'closed'"
        if since_us is not None:
            where += " AND closed_us >= ?"
            args.append(_int("since_us", since_us))
        with self._read() as db:
            rows = db.execute(
                "SELECT site, camera, zone, COUNT(*), SUM(category = ?), SUM(closed_by = ?)"
                f" FROM alarm WHERE {where} GROUP BY site, camera, zone",
                args,
            ).fetchall()
        stats = [
            ZoneStats(
                site=r[0],
                camera=r[1],
                zone=r[2],
                closed=r[3],
                false_alarms=r[4],
                closed_by_system=r[5],
                ratio=r[4] / r[3],
            )
            for r in rows
        ]
        stats.sort(key=lambda s: (-s.false_alarms, s.camera or "", s.zone or "", s.site or ""))
        return stats

    def open_count_by_priority(self) -> dict[str, int]:
        """Open alarms per priority, every priority present, the most urgent first."""
        with self._read() as db:
            found = dict(
                db.execute(
                    "SELECT priority, COUNT(*) FROM alarm WHERE state != 'closed' GROUP BY priority"
                ).fetchall()
            )
        ordered = sorted(self.settings.priorities, key=lambda p: p.level)
        return {p.name: int(found.get(p.name, 0)) for p in ordered}
