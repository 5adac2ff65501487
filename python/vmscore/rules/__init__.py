"""Rules of the monitoring station: the configured models, time profiles, the deterministic rule
engine and webhook delivery. See :mod:`vmscore.rules.engine` for how rules are evaluated."""

from __future__ import annotations

from vmscore.rules.engine import CameraInfo, Ending, Firing, RuleEngine
from vmscore.rules.models import (
    DAYS,
    Action,
    AlarmAction,
    ArmAction,
    BookmarkAction,
    Conditions,
    Day,
    MqttAction,
    Priority,
    RecordAction,
    Rule,
    SnapshotAction,
    TimeProfile,
    TimeRange,
    Trigger,
    TriggerKind,
    WebhookAction,
)
from vmscore.rules.timeprofile import is_active, next_change, validate_profile
from vmscore.rules.webhook import WebhookSender, redact_url, webhook_body

__all__ = [
    "DAYS",
    "Action",
    "AlarmAction",
    "ArmAction",
    "BookmarkAction",
    "CameraInfo",
    "Conditions",
    "Day",
    "Ending",
    "Firing",
    "MqttAction",
    "Priority",
    "RecordAction",
    "Rule",
    "RuleEngine",
    "SnapshotAction",
    "TimeProfile",
    "TimeRange",
    "Trigger",
    "TriggerKind",
    "WebhookAction",
    "WebhookSender",
    "is_active",
    "next_change",
    "redact_url",
    "validate_profile",
    "webhook_body",
]
