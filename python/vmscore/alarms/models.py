"""The alarm manager's data (pydantic): priority levels, settings, an alarm as the API returns it,
its changes (the event stream) and its history (the audit trail).

The model is Milestone XProtect's Alarm Manager: states New, In progress, On hold and Closed; an
owner who can be replaced; a priority with a colour and a sound for the operator's client; a
category set when the alarm is closed ("False alarm" feeds the per-zone statistics that tune
motion detection); related cameras; a snapshot and the recorded range with pre- and post-roll.

Every model here is immutable, so instances are shared between threads without copying.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from vmscore.errors import VmsError
from vmscore.rules.models import Priority

__all__ = [
    "ALARM_STATES",
    "DEFAULT_CATEGORIES",
    "DEFAULT_PRIORITIES",
    "FALSE_ALARM",
    "HISTORY_ACTIONS",
    "PRIORITIES",
    "Alarm",
    "AlarmChange",
    "AlarmConflictError",
    "AlarmNotFoundError",
    "AlarmScope",
    "AlarmSettings",
    "AlarmState",
    "AlarmStateError",
    "ChangeKind",
    "HistoryAction",
    "HistoryEntry",
    "PriorityLevel",
    "ZoneStats",
]

AlarmState = Literal["new", "in_progress", "on_hold", "closed"]
ALARM_STATES: tuple[AlarmState, ...] = ("new", "in_progress", "on_hold", "closed")
PRIORITIES: tuple[Priority, ...] = ("critical", "high", "medium", "low")

ChangeKind = Literal["new", "update", "end"]
"""``new``: raised; ``end``: closed (by anyone); ``update``: anything else, a reopen included, so
a client that dropped a closed alarm from its list treats an unknown ``update`` as an insert."""

HistoryAction = Literal[
    "raised",
    "retriggered",
    "acknowledged",
    "assigned",
    "on_hold",
    "resumed",
    "commented",
    "closed",
    "reopened",
    "condition_ended",
    "auto_closed",
    "priority_changed",
]
HISTORY_ACTIONS: tuple[str, ...] = HistoryAction.__args__  # type: ignore[attr-defined]

FALSE_ALARM = "False alarm"

DEFAULT_CATEGORIES: tuple[str, ...] = (
    FALSE_ALARM,
    "Intrusion",
    "Fire",
    "Vandalism",
    "Technical",
    "Test",
)

_COLOUR = r"^#[0-9a-fA-F]{6}$"
_SOUND = r"^[A-Za-z0-9_.-]{1,100}$"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class AlarmStateError(VmsError, ValueError):
    """An action that the alarm's state does not allow (closing a closed alarm, resuming one that
    is not on hold, reopening while another alarm of the same condition is open)."""


class AlarmConflictError(AlarmStateError):
    """The alarm changed since the caller read it (``expect_version`` is stale): another operator
    acted first. ``current`` is the alarm as it is now, so a client can show what happened."""

    def __init__(self, message: str, current: Alarm) -> None:
        super().__init__(message)
        self.current = current


class AlarmNotFoundError(VmsError, LookupError):
    """No alarm has this id (never raised, or deleted by retention)."""


class PriorityLevel(BaseModel):
    """One priority as the operator's client shows it: ``level`` 1 is the most urgent and sorts
    first; ``sound`` names a sound the client plays for a new alarm (None: silent)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Priority
    level: int = Field(ge=1, le=100)
    colour: str = Field(pattern=_COLOUR)
    sound: str | None = Field(default=None, pattern=_SOUND)


DEFAULT_PRIORITIES: tuple[PriorityLevel, ...] = (
    PriorityLevel(name="critical", level=1, colour="#d32f2f", sound="alarm-critical"),
    PriorityLevel(name="high", level=2, colour="#f57c00", sound="alarm-high"),
    PriorityLevel(name="medium", level=3, colour="#fbc02d", sound="chime"),
    PriorityLevel(name="low", level=4, colour="#1976d2", sound=None),
)


class AlarmSettings(BaseModel):
    """How the alarm manager behaves; part of the station's configuration."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    priorities: list[PriorityLevel] = Field(default_factory=lambda: list(DEFAULT_PRIORITIES))
    """Exactly one entry per priority name, with distinct levels."""
    categories: list[str] = Field(default_factory=lambda: list(DEFAULT_CATEGORIES))
    """What an operator may file a closed alarm under."""
    false_alarm_category: str = FALSE_ALARM
    """The category counted as a false alarm in the per-zone statistics; must be in
    ``categories``."""
    auto_close_s: float | None = Field(default=None, gt=0, le=366 * 86400)
    """Close alarms still New after this long without activity (None: never)."""
    closed_keep_s: float = Field(default=90 * 86400, ge=60, le=10 * 366 * 86400)
    """Closed alarms older than this are deleted, with their snapshot, history and changes."""
    snapshot_max_bytes: int = Field(default=2 * 1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    comment_max_chars: int = Field(default=4000, ge=1, le=100_000)
    related_cameras_max: int = Field(default=15, ge=0, le=1000)
    """Milestone allows 15 related cameras per alarm."""
    retrigger_history_max: int = Field(default=100, ge=0, le=100_000)
    """History entries written for re-triggers of one alarm; beyond this, re-triggers still
    raise ``count`` but a flapping condition cannot grow the history without bound."""
    housekeeping_batch: int = Field(default=500, ge=1, le=100_000)
    """Alarms auto-closed, and alarms deleted, per housekeeping call at most."""

    @field_validator("categories")
    @classmethod
    def _categories(cls, v: list[str]) -> list[str]:
        for c in v:
            if not c.strip() or len(c) > 100 or _CONTROL.search(c):
                raise ValueError(f"category {c!r}: 1 to 100 printable characters")
        if len(set(v)) != len(v):
            raise ValueError("categories must be unique")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> AlarmSettings:
        names = [p.name for p in self.priorities]
        if sorted(names) != sorted(PRIORITIES):
            raise ValueError(f"priorities must name each of {', '.join(PRIORITIES)} exactly once")
        if len({p.level for p in self.priorities}) != len(self.priorities):
            raise ValueError("priority levels must be distinct (they decide the sort order)")
        if self.false_alarm_category not in self.categories:
            raise ValueError(
                f"the false-alarm category {self.false_alarm_category!r} must be one of the"
                " categories"
            )
        return self

    def priority(self, name: str) -> PriorityLevel:
        for p in self.priorities:
            if p.name == name:
                return p
        raise ValueError(f"unknown priority {name!r}: one of {', '.join(PRIORITIES)}")


class Alarm(BaseModel):
    """An alarm as the API returns it (``model_dump(mode="json")``). ``version`` grows with
    every change; actions may pass it back as ``expect_version`` to detect another operator's
    change in between."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: int
    title: str
    priority: Priority
    priority_level: int
    colour: str
    sound: str | None
    category: str
    state: AlarmState
    owner: str | None
    site: str | None
    camera: str | None
    zone: str | None
    rule: str | None
    source_key: str
    """The condition (``StationEvent.key``): while this alarm is open, the same key re-triggers
    it instead of raising another."""
    related_cameras: tuple[str, ...]
    created_us: int
    updated_us: int
    closed_us: int | None
    ended_us: int | None
    """When the condition ended (the camera came back), whether or not that closed the alarm."""
    count: int
    """Triggers of the condition while this alarm was open (1 when raised)."""
    record_start_us: int | None
    record_end_us: int | None
    """The recorded range, pre-roll and post-roll included (the end is known later)."""
    event_id: int | None
    """The recorder's event row for the recorded range."""
    has_snapshot: bool
    data: dict[str, Any]
    version: int

    @property
    def is_open(self) -> bool:
        return self.state != "closed"


class AlarmChange(BaseModel):
    """One committed change, as listeners and the event stream see it. ``seq`` grows across all
    alarms and survives restarts, so a client resumes with the last ``seq`` it saw."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: ChangeKind
    alarm: Alarm
    before: Alarm | None
    seq: int


class HistoryEntry(BaseModel):
    """One line of an alarm's audit trail. ``detail`` is the action's value (the comment text,
    the new owner, the category, the priority change, the reason a condition ended); ``comment``
    is the operator's note given with a state change (hold, close, reopen)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seq: int
    alarm_id: int
    at_us: int
    user: str
    action: HistoryAction
    from_state: AlarmState | None
    to_state: AlarmState
    detail: str = ""
    comment: str = ""


class ZoneStats(BaseModel):
    """Closed alarms of one camera and zone, and how many operators filed as false alarms: a
    high ratio says the zone's motion settings need tuning."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    site: str | None
    camera: str | None
    zone: str | None
    closed: int
    false_alarms: int
    closed_by_system: int
    """Closed automatically (auto-close, condition ended): nobody judged them."""
    ratio: float
    """``false_alarms / closed``."""


class AlarmScope(BaseModel):
    """What a user may see: an alarm with a camera is visible when the camera is permitted; one
    without a camera when its site is; one with neither (a station-wide condition such as a disk
    in trouble) when ``station`` is set. The API expands a user's site permissions into cameras.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    cameras: frozenset[str] = frozenset()
    sites: frozenset[str] = frozenset()
    station: bool = False

    def allows(self, alarm: Alarm) -> bool:
        if alarm.camera is not None:
            return alarm.camera in self.cameras
        if alarm.site is not None:
            return alarm.site in self.sites
        return self.station
