"""Rules and time profiles as configured (pydantic): what triggers a rule, when it may fire, and
what it does. The engine that evaluates them is :mod:`vmscore.rules.engine`."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Name = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")]
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$|^24:00$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TimeRange(_Model):
    """From ``start`` to ``end`` (HH:MM, local time of the profile) on each of ``days``; an end
    before the start runs past midnight into the next day (18:00-07:00)."""

    days: list[Day] = Field(default_factory=lambda: list(DAYS), min_length=1)
    start: str = "00:00"
    end: str = "24:00"

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        if not _HHMM.match(v):
            raise ValueError(f"{v!r} is not a time of day as HH:MM (00:00 to 24:00)")
        return v

    @model_validator(mode="after")
    def _not_empty(self) -> TimeRange:
        if self.start == self.end:
            raise ValueError(f"the range {self.start}-{self.end} is empty")
        return self


class TimeProfile(_Model):
    """When something applies (school hours, night, weekend). Active when any range covers the
    moment and no exception date does."""

    name: Name
    timezone: str = "UTC"
    ranges: list[TimeRange] = Field(min_length=1)
    except_dates: list[str] = Field(default_factory=list)
    """ISO dates (holidays) on which the profile is not active."""

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as e:
            raise ValueError(f"unknown time zone {v!r}") from e
        return v

    @field_validator("except_dates")
    @classmethod
    def _dates(cls, v: list[str]) -> list[str]:
        from datetime import date

        for d in v:
            try:
                date.fromisoformat(d)
            except ValueError:
                raise ValueError(f"{d!r} is not a date as YYYY-MM-DD") from None
        return v


TriggerKind = Literal[
    "motion",
    "tamper",
    "camera_offline",
    "camera_online",
    "recording_gap",
    "disk_trouble",
    "external",
    "schedule",
]


class Trigger(_Model):
    """What starts a rule: an event kind, narrowed to sites, groups, cameras, zones or details
    (empty lists mean any)."""

    kind: TriggerKind
    sites: list[str] = Field(default_factory=list)
    groups: list[str] = Field(default_factory=list)
    cameras: list[str] = Field(default_factory=list)
    zones: list[str] = Field(default_factory=list)
    """For motion: the zones that count (empty: any zone, and motion outside zones)."""
    details: list[str] = Field(default_factory=list)
    """For tamper: the flags; for external: the event names; for schedule: '<profile>:start' or
    '<profile>:end'; for recording_gap: the reasons; for disk_trouble: the storage locations or
    the reasons (storage_error, storage_full)."""


class Conditions(_Model):
    time_profile: str | None = None
    """The rule fires only while this profile is active."""
    min_duration_s: float = Field(default=0.0, ge=0, le=86400)
    """The condition must hold this long (motion still going on, camera still offline)."""
    cooldown_s: float = Field(default=0.0, ge=0, le=86400)
    """After firing, the rule stays quiet this long for the same camera (and zone)."""
    site_armed: bool = False
    """Fires only while the camera's site is armed."""


Priority = Literal["critical", "high", "medium", "low"]


class AlarmAction(_Model):
    type: Literal["alarm"] = "alarm"
    priority: Priority = "high"
    category: str = ""
    title: str = Field(default="", max_length=500)
    """Defaults to a title made from the rule and the event."""
    related_cameras: list[str] = Field(default_factory=list, max_length=15)
    close_on_end: bool = False
    """Close the alarm when its condition ends (camera back online, tamper gone)."""


class RecordAction(_Model):
    type: Literal["record"] = "record"
    pre_roll_s: float | None = Field(default=None, ge=0, le=600)
    """None: the camera's own pre-roll."""
    post_roll_s: float | None = Field(default=None, ge=0, le=3600)
    cameras: list[str] = Field(default_factory=list)
    """Extra cameras recorded too (the event's camera always is)."""


class BookmarkAction(_Model):
    type: Literal["bookmark"] = "bookmark"
    text: str = ""


class MqttAction(_Model):
    type: Literal["mqtt"] = "mqtt"
    topic: str = Field(min_length=1)
    """May use {site}, {camera}, {zone}, {rule}, {kind}, {detail}."""
    payload: str = ""
    """Empty: the event as JSON."""
    qos: Literal[0, 1, 2] = 1
    retain: bool = False


class WebhookAction(_Model):
    type: Literal["webhook"] = "webhook"
    url: str = Field(pattern=r"^https?://")
    method: Literal["POST", "PUT", "GET"] = "POST"
    headers: dict[str, str] = Field(default_factory=dict)
    retries: int = Field(default=3, ge=0, le=20)
    timeout_s: float = Field(default=5.0, gt=0, le=120)


class SnapshotAction(_Model):
    type: Literal["snapshot"] = "snapshot"


class ArmAction(_Model):
    """Arms or disarms sites (the event's site when none are named): a schedule rule arms the
    schools at night."""

    type: Literal["arm"] = "arm"
    armed: bool = True
    sites: list[str] = Field(default_factory=list)


Action = Annotated[
    AlarmAction
    | RecordAction
    | BookmarkAction
    | MqttAction
    | WebhookAction
    | SnapshotAction
    | ArmAction,
    Field(discriminator="type"),
]


class Rule(_Model):
    name: Name
    enabled: bool = True
    trigger: Trigger
    conditions: Conditions = Conditions()
    actions: list[Action] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> Rule:
        if self.trigger.zones and self.trigger.kind != "motion":
            raise ValueError("zones narrow only a motion trigger")
        if self.trigger.kind == "schedule" and self.conditions.min_duration_s:
            raise ValueError("a schedule trigger has no duration")
        return self
