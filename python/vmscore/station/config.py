"""The station's configuration: a YAML file validated by pydantic models.

The file bootstraps a station; changes made at run time through the API are kept in the
station's database (:mod:`vmscore.station.store`) and can be exported back to YAML. Shape::

    station: {name: central, data_dir: ./vmscore-data, http: {host: 127.0.0.1, port: 8080}}
    storage: [{name: disk1, path: ./recordings, min_free_bytes: 10000000000}]
    defaults:                      # every camera's settings unless it overrides them
      recording: {mode: continuous_events, pre_roll_s: 5, post_roll_s: 10, max_age_s: 2592000}
      motion: {sensitivity: 0.6}
      analysis_fps: 10
    sites: [{name: school-12, display_name: "School 12", armed: true}]
    cameras:
      - name: school-12-gym
        site: school-12
        main_url: rtsp://10.0.12.21/stream1
        sub_url: rtsp://10.0.12.21/stream2
        username: viewer
        password: ${SCHOOL12_CAM_PASSWORD}     # secrets come from the environment
        recording: {pre_roll_s: 10}          # merged over defaults.recording
        motion: {zones: [{name: door, polygon: [[0.1, 0.5], [0.4, 0.5], [0.4, 1], [0.1, 1]]}]}
    time_profiles: [...]   # vmscore.rules.TimeProfile
    rules: [...]           # vmscore.rules.Rule
    users: [{name: admin, role: admin, password: ${VMSCORE_ADMIN_PASSWORD}}]
    mqtt: {host: 127.0.0.1, port: 1883}

Errors name the file, the line and the field in plain words (:class:`ConfigError`). Unknown keys
are rejected everywhere, so a misspelt setting never silently does nothing.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)

from vmscore.alarms.models import AlarmSettings
from vmscore.errors import VmsError
from vmscore.motion import MotionSettings
from vmscore.record.recorder import Mode, StorageLocation
from vmscore.rules.models import Rule, TimeProfile
from vmscore.station.mqtt import MqttSettings
from vmscore.web.auth import UserConfig

__all__ = [
    "CameraConfig",
    "ConfigError",
    "Defaults",
    "HttpSettings",
    "RecordingDefaults",
    "SiteConfig",
    "StationConfig",
    "StationSettings",
    "dump_document",
    "load_config",
    "load_document",
    "parse_config",
    "read_document",
    "validate_document",
]

Slug = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]


class ConfigError(VmsError, ValueError):
    """The configuration is invalid; the message says where and why, one problem per line."""

    def __init__(self, message: str, problems: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.problems = list(problems)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HttpSettings(_Model):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    secure_cookies: bool = False
    """Mark the session cookie Secure (set it when the station is served over HTTPS)."""


class StationSettings(_Model):
    name: Slug = "station"
    data_dir: Path = Path("vmscore-data")
    """The station's database, keys and snapshots (relative to the config file)."""
    http: HttpSettings = HttpSettings()
    analysis_threads: int = Field(default=0, ge=0, le=256)
    """Decode and analysis threads (0: one per core)."""
    offline_after_s: float = Field(default=10.0, ge=1, le=600)
    """A camera is offline when it has delivered nothing for this long."""


class RecordingDefaults(_Model):
    """How a camera is recorded (see :class:`vmscore.record.RecordingSettings`)."""

    storage: str = ""
    """The storage location's name ('' = the first one)."""
    mode: Mode = "continuous_events"
    pre_roll_s: float = Field(default=5.0, ge=0, le=600)
    post_roll_s: float = Field(default=10.0, ge=0, le=3600)
    segment_s: float = Field(default=60.0, ge=1, le=3600)
    max_age_s: float | None = Field(default=30 * 86400.0, gt=0)
    max_bytes: int | None = Field(default=None, gt=0)
    no_event_max_age_s: float = Field(default=7 * 86400.0, gt=0)
    record_sub: bool = False
    """Record the sub-stream too (for fast thumbnails of long ranges)."""


class Defaults(_Model):
    recording: RecordingDefaults = RecordingDefaults()
    motion: MotionSettings = MotionSettings()
    analysis_fps: float = Field(default=10.0, gt=0, le=60)
    """Frames per second given to motion analysis (the stream is decoded at its own rate). At 5
    a walker crossing a zone moves too far between frames for the flicker and rain filters and is
    found late or not at all; 10 costs about 0.3 ms more per frame."""
    motion_off_delay_s: float = Field(default=3.0, ge=0, le=600)
    """A zone's motion ends after this long without motion (no flapping alarms)."""


class SiteConfig(_Model):
    name: Slug
    display_name: str = ""
    address: str = ""
    armed: bool = False
    """Armed when the station starts (rules may arm and disarm it on a schedule)."""


_URL = r"^rtsps?://[^\s]+$"


class CameraConfig(_Model):
    name: Slug
    site: str
    group: str = ""
    display_name: str = ""
    enabled: bool = True
    main_url: str = Field(pattern=_URL)
    sub_url: str | None = Field(default=None, pattern=_URL)
    username: str | None = None
    password: SecretStr | None = None
    transport: Literal["tcp", "udp"] = "tcp"
    recording: RecordingDefaults = RecordingDefaults()
    """Merged over ``defaults.recording``: a camera names only what it changes."""
    motion: MotionSettings = MotionSettings()
    """Merged over ``defaults.motion``."""
    analysis: bool = True
    analysis_fps: float = Field(default=10.0, gt=0, le=60)
    onvif_address: str = ""
    """host[:port] of the camera's ONVIF service, when it was added by probe."""

    @property
    def title(self) -> str:
        return self.display_name or self.name

    @property
    def analysis_url(self) -> str:
        return self.sub_url or self.main_url


class StationConfig(_Model):
    station: StationSettings = StationSettings()
    storage: list[StorageLocation] = Field(default_factory=list)
    defaults: Defaults = Defaults()
    sites: list[SiteConfig] = Field(default_factory=list)
    cameras: list[CameraConfig] = Field(default_factory=list)
    time_profiles: list[TimeProfile] = Field(default_factory=list)
    rules: list[Rule] = Field(default_factory=list)
    users: list[UserConfig] = Field(default_factory=list)
    mqtt: MqttSettings | None = None
    alarms: AlarmSettings = AlarmSettings()

    @model_validator(mode="before")
    @classmethod
    def _merge_defaults(cls, data: Any) -> Any:
        """Each camera's recording, motion and analysis_fps are its overrides merged over the
        defaults, so a change of a default reaches every camera that did not set it."""
        if not isinstance(data, Mapping) or not isinstance(data.get("cameras"), list):
            return data
        defaults = data.get("defaults") or {}
        if not isinstance(defaults, Mapping):
            return data
        if isinstance(defaults, Defaults):
            defaults = defaults.model_dump(exclude_unset=True)
        out = dict(data)
        cams = []
        for cam in data["cameras"]:
            if isinstance(cam, Mapping):
                cam = dict(cam)
                for key in ("recording", "motion"):
                    base = defaults.get(key) or {}
                    own = cam.get(key) or {}
                    if isinstance(base, BaseModel):
                        base = base.model_dump(exclude_unset=True)
                    if isinstance(own, BaseModel):
                        own = own.model_dump(exclude_unset=True)
                    if isinstance(base, Mapping) and isinstance(own, Mapping):
                        cam[key] = {**base, **own}
                if "analysis_fps" not in cam and "analysis_fps" in defaults:
                    cam["analysis_fps"] = defaults["analysis_fps"]
            cams.append(cam)
        out["cameras"] = cams
        return out

    @model_validator(mode="after")
    def _references(self) -> StationConfig:
        problems: list[str] = []

        def unique(kind: str, names: list[str]) -> None:
            seen: set[str] = set()
            for n in names:
                if n in seen:
                    problems.append(f"two {kind} are named {n!r}")
                seen.add(n)

        unique("sites", [s.name for s in self.sites])
        unique("cameras", [c.name for c in self.cameras])
        unique("storage locations", [s.name for s in self.storage])
        unique("time profiles", [p.name for p in self.time_profiles])
        unique("rules", [r.name for r in self.rules])
        unique("users", [u.name for u in self.users])
        sites = {s.name for s in self.sites}
        storages = {s.name for s in self.storage}
        cameras = {c.name for c in self.cameras}
        profiles = {p.name for p in self.time_profiles}
        for c in self.cameras:
            if c.site not in sites:
                problems.append(f"camera {c.name!r}: no site named {c.site!r}")
            if c.recording.storage and c.recording.storage not in storages:
                problems.append(
                    f"camera {c.name!r}: no storage location named {c.recording.storage!r}"
                )
        if self.cameras and not self.storage:
            problems.append("cameras are configured but no storage location is")
        for r in self.rules:
            t = r.trigger
            for s in t.sites:
                if s not in sites:
                    problems.append(f"rule {r.name!r}: no site named {s!r}")
            for cam in t.cameras:
                if cam not in cameras:
                    problems.append(f"rule {r.name!r}: no camera named {cam!r}")
            if r.conditions.time_profile and r.conditions.time_profile not in profiles:
                problems.append(
                    f"rule {r.name!r}: no time profile named {r.conditions.time_profile!r}"
                )
            for a in r.actions:
                for cam in getattr(a, "related_cameras", []) + getattr(a, "cameras", []):
                    if cam not in cameras:
                        problems.append(f"rule {r.name!r}: no camera named {cam!r}")
                for s in getattr(a, "sites", []):
                    if s not in sites:
                        problems.append(f"rule {r.name!r}: no site named {s!r}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def camera(self, name: str) -> CameraConfig | None:
        return next((c for c in self.cameras if c.name == name), None)

    def site(self, name: str) -> SiteConfig | None:
        return next((s for s in self.sites if s.name == name), None)

    def storage_for(self, camera: CameraConfig) -> str:
        return camera.recording.storage or self.storage[0].name


# -- YAML with positions --------------------------------------------------------------------------

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class _Located:
    """Where each value of a YAML document is, by its path of keys and indices."""

    def __init__(self, root: yaml.Node | None) -> None:
        self.lines: dict[tuple[str | int, ...], int] = {}
        if root is not None:
            self._walk(root, ())

    def _walk(self, node: yaml.Node, path: tuple[str | int, ...]) -> None:
        self.lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                key = k.value if isinstance(k, yaml.ScalarNode) else str(k.value)
                self.lines[(*path, key)] = k.start_mark.line + 1
                self._walk(v, (*path, key))
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                self._walk(v, (*path, i))

    def line(self, path: tuple[str | int, ...]) -> int | None:
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get(())


class _StrictLoader(yaml.SafeLoader):
    """Safe YAML that refuses duplicate keys (PyYAML would silently keep the last one)."""


def _no_duplicates(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: dict[Any, int] = {}
    for k, _ in node.value:
        key = loader.construct_object(k, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"the key {key!r} appears twice (first on line {seen[key]})",
                k.start_mark,
            )
        seen[key] = k.start_mark.line + 1
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)


def _substitute(
    value: Any,
    env: Mapping[str, str],
    path: tuple[str | int, ...],
    where: _Located,
    origin: str,
    problems: list[str],
) -> Any:
    if isinstance(value, str):

        def repl(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            problems.append(
                f"{origin}:{where.line(path)}: {_dotted(path)}: the environment variable "
                f"{name} is not set"
            )
            return ""

        return _ENV.sub(repl, value)
    if isinstance(value, dict):
        return {
            k: _substitute(v, env, (*path, k), where, origin, problems) for k, v in value.items()
        }
    if isinstance(value, list):
        return [
            _substitute(v, env, (*path, i), where, origin, problems) for i, v in enumerate(value)
        ]
    return value


def _dotted(path: tuple[str | int, ...], data: Any = None) -> str:
    out = ""
    node = data
    for p in path:
        if isinstance(p, int):
            name = None
            if isinstance(node, list) and p < len(node) and isinstance(node[p], dict):
                name = node[p].get("name")
            out += f"[{p}]" + (f" ({name})" if isinstance(name, str) else "")
        else:
            out += ("." if out else "") + str(p)
        if isinstance(node, dict):
            node = node.get(p) if isinstance(p, str) else None
        elif isinstance(node, list) and isinstance(p, int):
            node = node[p] if p < len(node) else None
        else:
            node = None
    return out or "(top level)"


def _plain(err: Mapping[str, Any]) -> str:
    msg = str(err.get("msg", "invalid"))
    kind = str(err.get("type", ""))
    if kind == "extra_forbidden":
        return (
            "unknown setting (check the spelling; see the documentation for the keys allowed here)"
        )
    if kind == "missing":
        return "required but missing"
    return msg.removeprefix("Value error, ")


def read_document(
    text: str, *, origin: str = "<config>", env: Mapping[str, str] | None = None
) -> tuple[dict[str, Any], _Located]:
    """Parses YAML text into the configuration document (secrets substituted) and where each
    value is. Raises :class:`ConfigError`."""
    try:
        root = yaml.compose(text, Loader=_StrictLoader)
        data = yaml.load(text, Loader=_StrictLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else "?"
        raise ConfigError(
            f"{origin}:{line}: not valid YAML: {e.problem or e.context}",
            [f"{origin}:{line}: {e.problem}"],
        ) from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{origin}: not valid YAML: {e}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}:1: the configuration must be a mapping of sections")
    where = _Located(root)
    problems: list[str] = []
    data = _substitute(data, os.environ if env is None else env, (), where, origin, problems)
    if problems:
        raise ConfigError("\n".join(problems), problems)
    return data, where


def validate_document(
    data: Mapping[str, Any], *, origin: str = "configuration", where: _Located | None = None
) -> StationConfig:
    """Validates a configuration document (from YAML or from the station's database)."""
    located = where or _Located(None)
    try:
        return StationConfig.model_validate(data)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and "[" in p))
            # A discriminated union adds the tag as a step of the path; it is not a key.
            loc = tuple(
                p for i, p in enumerate(loc) if not (i > 0 and isinstance(p, str) and p in _TAGS)
            )
            line = located.line(loc)
            at = f"{origin}:{line}" if line is not None else origin
            problems.append(f"{at}: {_dotted(loc, data)}: {_plain(err)}")
        raise ConfigError("\n".join(problems), problems) from None


def parse_config(
    text: str, *, origin: str = "<config>", env: Mapping[str, str] | None = None
) -> StationConfig:
    """Validates YAML text; ``origin`` names it in messages. Raises :class:`ConfigError`."""
    data, where = read_document(text, origin=origin, env=env)
    return validate_document(data, origin=origin, where=where)


_TAGS = {"alarm", "record", "bookmark", "mqtt", "webhook", "snapshot", "arm"}


def load_document(
    path: str | Path, *, env: Mapping[str, str] | None = None
) -> tuple[dict[str, Any], StationConfig]:
    """Reads and validates a configuration file: the document (relative paths in it, data_dir
    and storage paths, made absolute against the file's directory) and the validated
    configuration."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{p}: cannot read the configuration: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: the configuration is not UTF-8 text") from None
    data, where = read_document(text, origin=str(p), env=env)
    base = p.resolve().parent

    def fix(value: Any) -> Any:
        if isinstance(value, str) and value and not Path(value).is_absolute():
            return str(base / value)
        return value

    station = data.get("station")
    if isinstance(station, dict):
        station["data_dir"] = fix(station.get("data_dir", "vmscore-data"))
    elif station is None:
        data["station"] = {"data_dir": str(base / "vmscore-data")}
    for s in data.get("storage") or []:
        if isinstance(s, dict) and "path" in s:
            s["path"] = fix(s["path"])
    return data, validate_document(data, origin=str(p), where=where)


def load_config(path: str | Path, *, env: Mapping[str, str] | None = None) -> StationConfig:
    """Reads and validates a configuration file (see :func:`load_document`)."""
    return load_document(path, env=env)[1]


def _secret_name(kind: str, name: str) -> str:
    return f"VMSCORE_{kind}_{re.sub(r'[^A-Za-z0-9]', '_', name).upper()}_PASSWORD"


def dump_document(data: Mapping[str, Any], *, secrets: Literal["env", "plain"] = "env") -> str:
    """A configuration document as YAML that :func:`parse_config` reads back. Secrets (camera,
    user and broker passwords) become ``${VMSCORE_...}`` references, listed in a comment at the
    top, unless ``secrets="plain"``."""
    doc = copy.deepcopy(dict(data))
    needed: list[str] = []

    def hide(section: Any, kind: str) -> None:
        if not isinstance(section, dict) or not section.get("password"):
            return
        if secrets == "env":
            name = (
                _secret_name(kind, str(section.get("name", "")))
                if kind != "MQTT"
                else ("VMSCORE_MQTT_PASSWORD")
            )
            section["password"] = "${" + name + "}"
            needed.append(name)

    for cam in doc.get("cameras") or []:
        hide(cam, "CAMERA")
    for user in doc.get("users") or []:
        hide(user, "USER")
    hide(doc.get("mqtt"), "MQTT")
    text = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=100)
    if needed:
        text = "# secrets read from the environment: " + ", ".join(needed) + "\n" + text
    return text
