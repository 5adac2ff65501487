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
from vmscore.station.central import CentralSettings
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
        self.problems = list(problems) or [message]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _ReferenceError(ValueError):
    """Names that refer to nothing, or are used twice, each with the path of the value at fault
    (pydantic reports a model validator's error at the model, so the places travel here)."""

    def __init__(self, problems: list[tuple[tuple[str | int, ...], str]]) -> None:
        super().__init__("; ".join(f"{_dotted(loc)}: {msg}" for loc, msg in problems))
        self.problems = problems


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
    role: Literal["site", "central", "both"] | None = None
    """``site``: records and analyses its own cameras and publishes to its broker (``mqtt``);
    ``central``: aggregates every site (``central`` section) and records only cameras of its
    own, if any; ``both``. None: ``both`` when there is a ``central`` section, else ``site``.
    ``vmscore station --role`` overrides it."""
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
    central: CentralSettings | None = None
    """Present on a central station: its broker and the sites' stations (see ``role``)."""

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
        # Each problem keeps the path of the value at fault, so the message names its line.
        problems: list[tuple[tuple[str | int, ...], str]] = []

        def unique(section: str, names: list[str]) -> None:
            first: dict[str, int] = {}
            for i, n in enumerate(names):
                if n in first:
                    problems.append(
                        ((section, i, "name"), f"{section}[{first[n]}] has the name {n!r} too")
                    )
                first.setdefault(n, i)

        def known(what: str, name: str, names: Iterable[str]) -> str:
            listed = sorted(names)
            some = ", ".join(listed[:10]) + (", ..." if len(listed) > 10 else "")
            return f"no {what} named {name!r} ({'known: ' + some if listed else 'none is'})"

        if self.station.role in ("central", "both") and self.central is None:
            problems.append(
                (("station", "role"), f"role {self.station.role} needs a 'central' section")
            )
        if self.central is not None:
            unique("central.stations", [r.name for r in self.central.stations])
        unique("sites", [s.name for s in self.sites])
        unique("cameras", [c.name for c in self.cameras])
        unique("storage", [s.name for s in self.storage])
        unique("time_profiles", [p.name for p in self.time_profiles])
        unique("rules", [r.name for r in self.rules])
        unique("users", [u.name for u in self.users])
        sites = {s.name for s in self.sites}
        storages = {s.name for s in self.storage}
        cameras = {c.name for c in self.cameras}
        profiles = {p.name for p in self.time_profiles}
        for i, c in enumerate(self.cameras):
            if c.site not in sites:
                problems.append((("cameras", i, "site"), known("site", c.site, sites)))
            if c.recording.storage and c.recording.storage not in storages:
                problems.append(
                    (
                        ("cameras", i, "recording", "storage"),
                        known("storage location", c.recording.storage, storages),
                    )
                )
        if self.cameras and not self.storage:
            problems.append((("storage",), "cameras are configured but no storage location is"))
        for i, r in enumerate(self.rules):
            t = r.trigger
            for j, s in enumerate(t.sites):
                if s not in sites:
                    problems.append((("rules", i, "trigger", "sites", j), known("site", s, sites)))
            for j, cam in enumerate(t.cameras):
                if cam not in cameras:
                    problems.append(
                        (("rules", i, "trigger", "cameras", j), known("camera", cam, cameras))
                    )
            if r.conditions.time_profile and r.conditions.time_profile not in profiles:
                problems.append(
                    (
                        ("rules", i, "conditions", "time_profile"),
                        known("time profile", r.conditions.time_profile, profiles),
                    )
                )
            for k, a in enumerate(r.actions):
                for field in ("related_cameras", "cameras"):
                    for j, cam in enumerate(getattr(a, field, [])):
                        if cam not in cameras:
                            where = ("rules", i, "actions", k, field, j)
                            problems.append((where, known("camera", cam, cameras)))
                for j, s in enumerate(getattr(a, "sites", [])):
                    if s not in sites:
                        problems.append(
                            (("rules", i, "actions", k, "sites", j), known("site", s, sites))
                        )
        if problems:
            raise _ReferenceError(problems)
        return self

    def camera(self, name: str) -> CameraConfig | None:
        return next((c for c in self.cameras if c.name == name), None)

    def site(self, name: str) -> SiteConfig | None:
        return next((s for s in self.sites if s.name == name), None)

    def storage_for(self, camera: CameraConfig) -> str:
        return camera.recording.storage or self.storage[0].name


# -- YAML with positions --------------------------------------------------------------------------

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


_MAX_NODES = 500_000
"""Values a document may have, aliases counted each time they are used: a thousand cameras need
about 100 000; the bound stops a few lines of nested aliases from expanding to billions."""


class _TooLargeError(Exception):
    pass


class _Located:
    """Where each value of a YAML document is, by its path of keys and indices."""

    def __init__(self, root: yaml.Node | None) -> None:
        self.lines: dict[tuple[str | int, ...], int] = {}
        self._nodes = 0
        if root is not None:
            self._walk(root, ())

    def _walk(self, node: yaml.Node, path: tuple[str | int, ...]) -> None:
        self._nodes += 1
        if self._nodes > _MAX_NODES:
            raise _TooLargeError
        # A key's own line, not its value's: "mqtt:" rather than the line after it.
        self.lines.setdefault(path, node.start_mark.line + 1)
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
    """Safe YAML that refuses duplicate keys (PyYAML would silently keep the last one) and reads
    dates as text (the models take ISO dates as text: ``except_dates: [2025-12-24]``)."""


def _no_duplicates(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: dict[Any, int] = {}
    for k, _ in node.value:
        if k.tag == "tag:yaml.org,2002:merge":
            continue  # "<<: *anchor" merges another mapping; construct_mapping resolves it
        key = loader.construct_object(k, deep=deep)
        try:
            repeated = key in seen
        except TypeError:  # "? [a, b]": a list or mapping as a key
            raise yaml.constructor.ConstructorError(
                None, None, "a key must be a plain value, not a list or mapping", k.start_mark
            ) from None
        if repeated:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"the key {key!r} appears twice (first on line {seen[key]})",
                k.start_mark,
            )
        seen[key] = k.start_mark.line + 1
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)


def _timestamp_as_text(loader: _StrictLoader, node: yaml.ScalarNode) -> str:
    return str(loader.construct_scalar(node))


_StrictLoader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp_as_text)


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


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    return "text" if isinstance(value, str) else "a single value"


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
    ctx = err.get("ctx") or {}
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        tags = str(ctx.get("expected_tags", "")).replace("'", "")
        if kind == "union_tag_not_found":
            return f"required but missing (one of: {tags})"
        return f"unknown type {ctx.get('tag')!r} (one of: {tags})"
    return msg.removeprefix("Value error, ")


def _index(step: object) -> bool:
    return isinstance(step, int) and not isinstance(step, bool)


def _keys_only(loc: tuple[Any, ...], data: Any) -> tuple[Any, ...]:
    """The path of keys and indices in the document, without the steps pydantic adds that are
    not keys: a union's member (``function-after[...]``) and, right after an action's index, the
    action's type tag. A key the user wrote stays, whatever its spelling."""
    out: list[Any] = []
    node = data
    tag_next = False
    for step in loc:
        if tag_next and isinstance(node, Mapping) and step in _TAGS and node.get("type") == step:
            tag_next = False
            continue
        is_key = isinstance(node, Mapping) and step in node
        if isinstance(step, str) and "[" in step and not is_key:
            continue
        out.append(step)
        if isinstance(node, Mapping):
            node = node.get(step)
        elif isinstance(node, list) and _index(step) and 0 <= step < len(node):
            node = node[step]
        else:
            node = None
        tag_next = len(out) >= 2 and out[-2] == "actions" and _index(step)
    return tuple(out)


def _inherited(loc: tuple[Any, ...], data: Any) -> tuple[Any, ...] | None:
    """The path under ``defaults`` of a camera's value that came from there (the camera does not
    set it), so a mistake in the defaults is reported once, where it is, not once per camera."""
    if len(loc) < 3 or loc[0] != "cameras" or loc[2] not in ("recording", "motion", "analysis_fps"):
        return None
    cams = data.get("cameras") if isinstance(data, Mapping) else None
    i = loc[1]
    if not isinstance(cams, list) or not isinstance(i, int) or not 0 <= i < len(cams):
        return None
    cam = cams[i]
    if not isinstance(cam, Mapping):
        return None
    own = cam.get(loc[2])
    if loc[2] not in cam or (
        loc[2] != "analysis_fps"
        and (own is None or (isinstance(own, Mapping) and len(loc) > 3 and loc[3] not in own))
    ):
        return ("defaults", *loc[2:])
    return None


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
        what = str(e.problem or e.context)
        if e.problem and e.context and e.context_mark is not None and e.context_mark is not mark:
            # "expected ',' or ']'" is found after the line at fault; say where it began.
            what += f" ({e.context} on line {e.context_mark.line + 1})"
        problem = f"{origin}:{line}: not valid YAML: {what}"
        raise ConfigError(problem, [problem]) from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{origin}: not valid YAML: {e}") from None
    except RecursionError:
        raise ConfigError(f"{origin}: not valid YAML: nested too deeply") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{origin}:1: the configuration must be a mapping of sections (station:, cameras:, "
            f"...), not {_kind(data)}"
        )
    try:
        where = _Located(root)
    except _TooLargeError:
        raise ConfigError(
            f"{origin}: the configuration has more than {_MAX_NODES} values (aliases counted "
            "each time they are used)"
        ) from None
    except RecursionError:
        raise ConfigError(f"{origin}: not valid YAML: nested too deeply") from None
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
        found: list[tuple[tuple[Any, ...], str]] = []
        for err in e.errors():
            error = (err.get("ctx") or {}).get("error")
            if isinstance(error, _ReferenceError):
                found.extend(error.problems)
                continue
            loc = _keys_only(tuple(err["loc"]), data)
            if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
                loc = (*loc, "type")
            found.append((loc, _plain(err)))
        problems = []
        for loc, message in found:
            loc = _inherited(loc, data) or loc
            line = located.line(loc)
            at = f"{origin}:{line}" if line is not None else origin
            problems.append(f"{at}: {_dotted(loc, data)}: {message}")
        problems = list(dict.fromkeys(problems))  # a default's mistake, once
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
    """Reads and validates a configuration file: the document (relative paths in it, data_dir,
    storage paths and the MQTT ca_file, made absolute against the file's directory) and the
    validated configuration."""
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
    storage = data.get("storage")
    for s in storage if isinstance(storage, list) else []:
        if isinstance(s, dict) and "path" in s:
            s["path"] = fix(s["path"])
    central = data.get("central")
    central = central if isinstance(central, dict) else {}
    remotes = central.get("stations")
    for section in [data.get("mqtt"), central.get("mqtt")] + (
        remotes if isinstance(remotes, list) else []
    ):
        if isinstance(section, dict) and "ca_file" in section:
            section["ca_file"] = fix(section["ca_file"])
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

    def hide(section: Any, kind: str, key: str = "password") -> None:
        if not isinstance(section, dict) or not section.get(key):
            return
        if secrets == "env":
            if kind in ("MQTT", "CENTRAL_MQTT"):
                name = f"VMSCORE_{kind}_PASSWORD"
            else:
                name = _secret_name(kind, str(section.get("name", "")))
            if key != "password":
                name = name.removesuffix("_PASSWORD") + f"_{key.upper()}"
            # "gym-1" and "gym_1" (or "Gym_1") make the same variable name: number the others.
            n, unique = 1, name
            while unique in needed:
                n += 1
                stem, _, tail = name.rpartition("_")
                unique = f"{stem}_{n}_{tail}"
            section[key] = "${" + unique + "}"
            needed.append(unique)

    for cam in doc.get("cameras") or []:
        hide(cam, "CAMERA")
    for user in doc.get("users") or []:
        hide(user, "USER")
    hide(doc.get("mqtt"), "MQTT")
    central = doc.get("central")
    if isinstance(central, dict):
        hide(central.get("mqtt"), "CENTRAL_MQTT")
        for remote in central.get("stations") or []:
            hide(remote, "STATION", "token")
    text = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=100)
    if needed:
        text = "# secrets read from the environment: " + ", ".join(needed) + "\n" + text
    return text
