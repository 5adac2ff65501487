"""What happens at a station, as one event type that the rules, the alarm manager, the event
stream (SSE) and MQTT all speak.

Events that come in pairs (``motion``/``motion_end`` per camera and zone, ``tamper``/``tamper_end``
per camera and flag, ``camera_offline``/``camera_online`` per camera) share a :attr:`key`, so a
condition that ends can end what it started (an offline alarm closed when the camera returns).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

EventKind = Literal[
    "motion",  # motion began in a zone (zone None: anywhere in the image)
    "motion_end",
    "tamper",  # detail: too_dark, too_bright, covered, defocused, scene_changed
    "tamper_end",
    "camera_offline",  # detail: the reason (stalled, refused, wrong password, ...)
    "camera_online",
    "recording_gap",  # detail: the reason; data: start_us, end_us, stream
    "disk_trouble",  # detail: the storage location; data: reason (storage_error, storage_full)
    "disk_ok",
    "external",  # detail: the event's name (from the API or MQTT); data: anything
    "schedule",  # detail: "<time profile>:start" or "<time profile>:end"
]

EVENT_KINDS: tuple[str, ...] = EventKind.__args__  # type: ignore[attr-defined]

ENDS: dict[str, str] = {
    "motion_end": "motion",
    "tamper_end": "tamper",
    "camera_online": "camera_offline",
    "disk_ok": "disk_trouble",
}
"""An ending kind and the kind it ends."""


@dataclass(frozen=True)
class StationEvent:
    """One thing that happened, at ``at_us`` (UTC microseconds)."""

    kind: EventKind
    at_us: int
    site: str | None = None
    camera: str | None = None
    zone: str | None = None
    detail: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """Identifies the condition: the begin and the end of one condition share it."""
        kind = ENDS.get(self.kind, self.kind)
        parts = [kind, self.site or "", self.camera or ""]
        if kind == "motion":
            parts.append(self.zone or "")
        elif kind in ("tamper", "external", "disk_trouble"):
            parts.append(self.detail)
        return "/".join(parts)

    @property
    def is_end(self) -> bool:
        return self.kind in ENDS

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "at_us": self.at_us,
            "site": self.site,
            "camera": self.camera,
            "zone": self.zone,
            "detail": self.detail,
            "data": dict(self.data),
        }
