"""The station's alarm manager (after Milestone XProtect's): alarms raised by rules for a
condition, worked by operators through New, In progress, On hold and Closed, with owner,
priority, category, comments, a full history and a change stream, persisted in SQLite."""

from __future__ import annotations

from vmscore.alarms.manager import SCHEMA_VERSION, SYSTEM_USER, AlarmManager, Listener, SortOrder
from vmscore.alarms.models import (
    ALARM_STATES,
    DEFAULT_CATEGORIES,
    DEFAULT_PRIORITIES,
    FALSE_ALARM,
    HISTORY_ACTIONS,
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
    PriorityLevel,
    ZoneStats,
)

__all__ = [
    "ALARM_STATES",
    "DEFAULT_CATEGORIES",
    "DEFAULT_PRIORITIES",
    "FALSE_ALARM",
    "HISTORY_ACTIONS",
    "PRIORITIES",
    "SCHEMA_VERSION",
    "SYSTEM_USER",
    "Alarm",
    "AlarmChange",
    "AlarmConflictError",
    "AlarmManager",
    "AlarmNotFoundError",
    "AlarmScope",
    "AlarmSettings",
    "AlarmState",
    "AlarmStateError",
    "ChangeKind",
    "HistoryAction",
    "HistoryEntry",
    "Listener",
    "PriorityLevel",
    "SortOrder",
    "ZoneStats",
]
