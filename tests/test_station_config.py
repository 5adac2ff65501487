"""The station's configuration file (vmscore.station.config): a complete example validates; every
kind of mistake is refused with a ConfigError that names the file, the line and the field in plain
words; secrets come from the environment; defaults are merged per camera; relative paths follow
the file; an export reads back to the same configuration with its secrets as environment
references; ``vmscore station --check`` says so; garbage never raises anything but ConfigError.

No camera runs here: these are the checks an administrator meets before a station starts."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import argon2
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from vmscore.cli import app
from vmscore.station.config import (
    ConfigError,
    StationConfig,
    dump_document,
    load_config,
    load_document,
    parse_config,
    read_document,
    validate_document,
)

pytestmark = pytest.mark.timeout(60)

ORIGIN = "stations/central.yaml"

ENV = {
    "SCHOOL12_CAM_PASSWORD": "axis-s3cret",
    "SCHOOL7_CAM_PASSWORD": "bosch-s3cret",
    "VMSCORE_ADMIN_PASSWORD": "admin-password-1",
    "OPERATOR_PASSWORD": "operator-password-1",
    "VIEWER_PASSWORD": "viewer-password-1",
    "MQTT_PASSWORD": "mqtt-s3cret",
}

# A real argon2id hash (cheap parameters: only its format matters here).
NIGHT_DESK_HASH = argon2.PasswordHasher(time_cost=1, memory_cost=64, parallelism=1).hash(
    "night-desk-password"
)

# Three schools, Axis and Bosch style URLs, zones and masks, time profiles, a rule of every
# trigger kind and every action kind, users of each role and a broker.
EXAMPLE = """\
# The city's central monitoring station.
station:
  name: central
  data_dir: ./data
  http: {host: 0.0.0.0, port: 8443, secure_cookies: true}
  analysis_threads: 4
  offline_after_s: 15
storage:
  - name: disk1
    path: ./recordings
    min_free_bytes: 10000000000
  - name: archive
    path: /srv/vms/archive
    max_write_bytes_per_s: 50000000
defaults:
  recording:
    mode: continuous_events
    pre_roll_s: 5
    post_roll_s: 10
    max_age_s: 2592000
  motion:
    sensitivity: 0.6
    persistence: 3
  analysis_fps: 8
  motion_off_delay_s: 4
sites:
  - {name: school-12, display_name: "School 12", address: "Main street 12", armed: true}
  - {name: school-7, display_name: "School 7"}
  - {name: school-31, display_name: "School 31", armed: false}
cameras:
  - name: school-12-gym
    site: school-12
    group: indoor
    main_url: rtsp://10.0.12.21/axis-media/media.amp?videocodec=h264&resolution=1920x1080
    sub_url: rtsp://10.0.12.21/axis-media/media.amp?videocodec=h264&resolution=640x360
    username: viewer
    password: ${SCHOOL12_CAM_PASSWORD}
    recording: {pre_roll_s: 10}
    motion:
      zones:
        - {name: door, polygon: [[0.1, 0.5], [0.4, 0.5], [0.4, 1], [0.1, 1]]}
        - {name: windows, kind: exclude, polygon: [[0, 0], [1, 0], [1, 0.2], [0, 0.2]]}
  - name: school-12-yard
    site: school-12
    group: outdoor
    main_url: rtsp://10.0.12.22/axis-media/media.amp
    username: viewer
    password: ${SCHOOL12_CAM_PASSWORD}
    recording: {mode: event, storage: archive, post_roll_s: 20}
    motion:
      sensitivity: 0.8
      zones:
        - name: gate
          polygon: [[0.05, 0.6], [0.3, 0.6], [0.3, 0.95], [0.05, 0.95]]
          sensitivity: 0.9
          persistence: 2
        - {name: road, kind: exclude, polygon: [[0, 0], [1, 0], [1, 0.3]]}
  - name: school-7-entrance
    site: school-7
    group: outdoor
    main_url: rtsp://10.0.7.10:554/rtsp_tunnel?h26x=4&line=1&inst=1
    sub_url: rtsp://10.0.7.10:554/rtsp_tunnel?h26x=4&line=1&inst=2
    username: service
    password: ${SCHOOL7_CAM_PASSWORD}
    transport: udp
    analysis_fps: 5
  - name: school-31-hall
    site: school-31
    main_url: rtsp://10.0.31.5:554/rtsp_tunnel?h26x=4&line=1&inst=1
    username: service
    password: ${SCHOOL31_CAM_PASSWORD:-factory-default}
    enabled: false
time_profiles:
  - name: school-hours
    timezone: Europe/Berlin
    ranges:
      - {days: [mon, tue, wed, thu, fri], start: "07:00", end: "17:00"}
    except_dates: [2025-12-24, "2025-12-25"]
  - name: night
    timezone: Europe/Berlin
    ranges:
      - {start: "18:00", end: "07:00"}
rules:
  - name: intrusion-at-night
    trigger: {kind: motion, sites: [school-12], zones: [gate, door]}
    conditions: {time_profile: night, min_duration_s: 1, cooldown_s: 30, site_armed: true}
    actions:
      - {type: alarm, priority: critical, category: Intrusion, related_cameras: [school-12-gym]}
      - {type: record, pre_roll_s: 10, post_roll_s: 30, cameras: [school-12-gym]}
      - {type: snapshot}
      - {type: bookmark, text: "intrusion"}
  - name: tampering
    trigger: {kind: tamper, details: [covered, moved]}
    actions: [{type: alarm, priority: high, category: Technical}]
  - name: offline
    trigger: {kind: camera_offline, cameras: [school-7-entrance]}
    conditions: {min_duration_s: 30}
    actions: [{type: alarm, priority: medium, close_on_end: true}]
  - name: gaps
    trigger: {kind: recording_gap}
    actions:
      - type: webhook
        url: "https://tickets.example.org/hook"
        headers: {X-Token: abc}
        retries: 2
  - name: disks
    trigger: {kind: disk_trouble, details: [storage_full]}
    actions: [{type: mqtt, topic: "ops/{kind}", payload: "{detail}", qos: 1, retain: false}]
  - name: panic-button
    trigger: {kind: external, details: [panic], sites: [school-7]}
    actions: [{type: alarm, priority: critical, title: "Panic button"}]
  - name: arm-at-night
    trigger: {kind: schedule, details: ["night:start"]}
    actions: [{type: arm, armed: true, sites: [school-12, school-7, school-31]}]
  - name: disarm-in-the-morning
    trigger: {kind: schedule, details: ["night:end"]}
    actions: [{type: arm, armed: false}]
users:
  - {name: admin, role: admin, password: "${VMSCORE_ADMIN_PASSWORD}"}
  - name: op-north
    role: operator
    password: ${OPERATOR_PASSWORD}
    sites: [school-12, school-7]
    display_name: "North desk"
  - name: night-desk
    role: operator
    password_hash: "NIGHT_DESK_HASH"
  - {name: caretaker-7, role: viewer, password: "${VIEWER_PASSWORD}", cameras: [school-7-entrance]}
mqtt:
  host: broker.example.org
  port: 8883
  username: vmscore
  password: ${MQTT_PASSWORD}
  tls: true
  ca_file: certs/city-ca.pem
  topic_prefix: city/vms
alarms:
  auto_close_s: 86400
""".replace("NIGHT_DESK_HASH", NIGHT_DESK_HASH)


def line_of(text: str, needle: str, after: int = 0) -> int:
    """The 1-based number of the first line (after line ``after``) that contains ``needle``."""
    for n, line in enumerate(text.splitlines(), start=1):
        if n > after and needle in line:
            return n
    raise AssertionError(f"{needle!r} is not in the text")


def edited(old: str, new: str, text: str = EXAMPLE) -> str:
    assert text.count(old) == 1, f"{old!r} must occur once in the example"
    return text.replace(old, new)


def problems_of(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, origin=ORIGIN, env=ENV if env is None else env)
    err = info.value
    assert err.problems, "a ConfigError lists its problems"
    assert str(err) == "\n".join(err.problems) or len(err.problems) == 1
    return err.problems


# --- the example ------------------------------------------------------------------------------


def test_complete_example_validates() -> None:
    """The shape the documentation shows must be accepted as a whole, with every section."""
    cfg = parse_config(EXAMPLE, origin=ORIGIN, env=ENV)
    assert isinstance(cfg, StationConfig)
    assert cfg.station.name == "central" and cfg.station.http.port == 8443
    assert [s.name for s in cfg.sites] == ["school-12", "school-7", "school-31"]
    assert [s.name for s in cfg.storage] == ["disk1", "archive"]
    assert len(cfg.cameras) == 4 and len(cfg.rules) == 8 and len(cfg.time_profiles) == 2
    assert {r.trigger.kind for r in cfg.rules} == {
        "motion",
        "tamper",
        "camera_offline",
        "recording_gap",
        "disk_trouble",
        "external",
        "schedule",
    }
    assert {a.type for r in cfg.rules for a in r.actions} == {
        "alarm",
        "record",
        "bookmark",
        "mqtt",
        "webhook",
        "snapshot",
        "arm",
    }
    assert {u.role for u in cfg.users} == {"admin", "operator", "viewer"}

    gym = cfg.camera("school-12-gym")
    assert gym is not None and gym.password is not None
    assert gym.password.get_secret_value() == ENV["SCHOOL12_CAM_PASSWORD"]
    assert "axis-s3cret" not in repr(gym), "a secret must never show in a repr or a log line"
    assert [(z.name, z.kind) for z in gym.motion.zones] == [
        ("door", "include"),
        ("windows", "exclude"),
    ]
    assert gym.analysis_url.endswith("resolution=640x360")
    hall = cfg.camera("school-31-hall")
    assert hall is not None and hall.password is not None and not hall.enabled
    assert hall.password.get_secret_value() == "factory-default"
    assert hall.analysis_url == hall.main_url, "no sub-stream: the main stream is analysed"
    entrance = cfg.camera("school-7-entrance")
    assert entrance is not None and entrance.transport == "udp"

    # An unquoted date in YAML is a date object; the profile takes it as the ISO text it is.
    assert cfg.time_profiles[0].except_dates == ["2025-12-24", "2025-12-25"]
    assert cfg.mqtt is not None and cfg.mqtt.password is not None
    assert cfg.mqtt.password.get_secret_value() == ENV["MQTT_PASSWORD"]
    assert cfg.storage_for(gym) == "disk1"
    yard = cfg.camera("school-12-yard")
    assert yard is not None and cfg.storage_for(yard) == "archive"
    assert cfg.site("school-12") is not None and cfg.site("school-12").armed  # type: ignore[union-attr]
    assert cfg.alarms.auto_close_s == 86400


def test_empty_file_is_a_station_with_nothing() -> None:
    cfg = parse_config("# nothing yet\n", origin=ORIGIN, env={})
    assert cfg.cameras == [] and cfg.mqtt is None and cfg.station.name == "station"


# --- mistakes: each names the file, the line and the field ---------------------------------

UNKNOWN = "unknown setting"

# (what, old, new, the text on the line at fault, the field path, words in the message)
MISTAKES: list[tuple[str, str, str, str, str, str]] = [
    (
        "unknown top-level section",
        "alarms:\n  auto_close_s",
        "alarm:\n  auto_close_s",
        "alarm:",
        "alarm",
        UNKNOWN,
    ),
    (
        "unknown key in station",
        "  analysis_threads: 4",
        "  analysis_thread: 4",
        "analysis_thread:",
        "station.analysis_thread",
        UNKNOWN,
    ),
    (
        "unknown key two levels down",
        "secure_cookies: true",
        "secure_cookie: true",
        "secure_cookie:",
        "station.http.secure_cookie",
        UNKNOWN,
    ),
    (
        "unknown key in a camera",
        "    group: indoor",
        "    grup: indoor",
        "grup:",
        "cameras[0] (school-12-gym).grup",
        UNKNOWN,
    ),
    (
        "unknown key in a zone",
        "          persistence: 2",
        "          persistance: 2",
        "persistance: 2",
        "cameras[1] (school-12-yard).motion.zones[0] (gate).persistance",
        UNKNOWN,
    ),
    (
        "unknown key in a rule's action",
        "        retries: 2",
        "        retry: 2",
        "retry: 2",
        "rules[3] (gaps).actions[0].retry",
        UNKNOWN,
    ),
    (
        "an action key that is also an action type",
        "{type: arm, armed: false}",
        "{type: arm, armed: false, alarm: true}",
        "alarm: true",
        "rules[7] (disarm-in-the-morning).actions[0].alarm",
        UNKNOWN,
    ),
    (
        "a key named like a section, elsewhere",
        "  offline_after_s: 15",
        "  offline_after_s: 15\n  mqtt: {host: x}",
        "mqtt: {host: x}",
        "station.mqtt",
        UNKNOWN,
    ),
    (
        "an unknown key with brackets",
        "  offline_after_s: 15",
        '  offline_after_s: 15\n  "cameras[0]": x',
        '"cameras[0]": x',
        "station.cameras[0]",
        UNKNOWN,
    ),
    (
        "wrong type",
        "  analysis_threads: 4",
        "  analysis_threads: four",
        "analysis_threads: four",
        "station.analysis_threads",
        "valid integer",
    ),
    (
        "wrong type in a site",
        'address: "Main street 12", armed: true}',
        'address: "Main street 12", armed: maybe}',
        "armed: maybe",
        "sites[0] (school-12).armed",
        "valid boolean",
    ),
    (
        "a list where a mapping belongs",
        "    recording: {pre_roll_s: 10}",
        "    recording: [10]",
        "recording: [10]",
        "cameras[0] (school-12-gym).recording",
        "valid dictionary",
    ),
    (
        "out of range in a camera",
        "recording: {pre_roll_s: 10}",
        "recording: {pre_roll_s: -1}",
        "pre_roll_s: -1",
        "cameras[0] (school-12-gym).recording.pre_roll_s",
        "greater than or equal to 0",
    ),
    (
        "out of range port",
        "port: 8443",
        "port: 70000",
        "port: 70000",
        "station.http.port",
        "less than or equal to 65535",
    ),
    (
        "out of range zone sensitivity",
        "          sensitivity: 0.9",
        "          sensitivity: 1.9",
        "sensitivity: 1.9",
        "cameras[1] (school-12-yard).motion.zones[0] (gate).sensitivity",
        "less than or equal to 1",
    ),
    (
        "missing required field",
        "    main_url: rtsp://10.0.12.22/axis-media/media.amp\n",
        "",
        "- name: school-12-yard",
        "cameras[1] (school-12-yard).main_url",
        "required but missing",
    ),
    (
        "missing time ranges",
        '    ranges:\n      - {start: "18:00", end: "07:00"}\n',
        "",
        "- name: night",
        "time_profiles[1] (night).ranges",
        "required but missing",
    ),
    (
        "not an RTSP URL",
        "main_url: rtsp://10.0.31.5:554",
        "main_url: http://10.0.31.5:554",
        "main_url: http://10.0.31.5",
        "cameras[3] (school-31-hall).main_url",
        "rtsp",
    ),
    (
        "unknown site",
        "    site: school-7\n",
        "    site: school-8\n",
        "site: school-8",
        "cameras[2] (school-7-entrance).site",
        "no site named 'school-8'",
    ),
    (
        "unknown storage",
        "storage: archive",
        "storage: archiv",
        "storage: archiv",
        "cameras[1] (school-12-yard).recording.storage",
        "no storage location named 'archiv'",
    ),
    (
        "unknown time profile",
        "time_profile: night",
        "time_profile: nights",
        "time_profile: nights",
        "rules[0] (intrusion-at-night).conditions.time_profile",
        "no time profile named 'nights'",
    ),
    (
        "unknown camera in a trigger",
        "camera_offline, cameras: [school-7-entrance]}",
        "camera_offline, cameras: [school-7-entrence]}",
        "school-7-entrence",
        "rules[2] (offline).trigger.cameras[0]",
        "no camera named 'school-7-entrence'",
    ),
    (
        "unknown camera in an action",
        "related_cameras: [school-12-gym]",
        "related_cameras: [school-12-gymn]",
        "school-12-gymn",
        "rules[0] (intrusion-at-night).actions[0].related_cameras[0]",
        "no camera named 'school-12-gymn'",
    ),
    (
        "unknown site in an arm action",
        "sites: [school-12, school-7, school-31]",
        "sites: [school-12, school-7, school-13]",
        "school-13",
        "rules[6] (arm-at-night).actions[0].sites[2]",
        "no site named 'school-13'",
    ),
    (
        "unknown site in a trigger",
        "sites: [school-7]}",
        "sites: [school-77]}",
        "school-77",
        "rules[5] (panic-button).trigger.sites[0]",
        "no site named 'school-77'",
    ),
    (
        "two cameras with one name",
        "  - name: school-12-yard",
        "  - name: school-12-gym",
        "- name: school-12-gym#2",
        "cameras[1] (school-12-gym).name",
        "cameras[0] has the name 'school-12-gym' too",
    ),
    (
        "two sites with one name",
        '  - {name: school-31, display_name: "School 31", armed: false}\n',
        '  - {name: school-31, display_name: "School 31", armed: false}\n'
        '  - {name: school-7, display_name: "Annex"}\n',
        'display_name: "Annex"',
        "sites[3] (school-7).name",
        "sites[1] has the name 'school-7' too",
    ),
    (
        "two rules with one name",
        "  - name: disks",
        "  - name: gaps",
        "- name: gaps#2",
        "rules[4] (gaps).name",
        "rules[3] has the name 'gaps' too",
    ),
    (
        "two users with one name",
        "  - name: night-desk",
        "  - name: op-north",
        "- name: op-north#2",
        "users[2] (op-north).name",
        "users[1]",
    ),
    (
        "bad time zone",
        "timezone: Europe/Berlin\n    ranges:\n      - {days",
        "timezone: Europe/Atlantis\n    ranges:\n      - {days",
        "Europe/Atlantis",
        "time_profiles[0] (school-hours).timezone",
        "unknown time zone 'Europe/Atlantis'",
    ),
    (
        "bad time of day",
        'start: "18:00"',
        'start: "25:00"',
        "25:00",
        "time_profiles[1] (night).ranges[0].start",
        "not a time of day",
    ),
    (
        "polygon of two points",
        "[[0, 0], [1, 0], [1, 0.3]]",
        "[[0, 0], [1, 0]]",
        "{name: road",
        "cameras[1] (school-12-yard).motion.zones[1] (road).polygon",
        "at least 3",
    ),
    (
        "polygon far outside the image",
        "[[0, 0], [1, 0], [1, 0.3]]",
        "[[0, 0], [1, 0], [1, 30]]",
        "{name: road",
        "cameras[1] (school-12-yard).motion.zones[1] (road).polygon",
        "far outside the image",
    ),
    (
        "polygon point without y",
        "[[0, 0], [1, 0], [1, 0.3]]",
        "[[0, 0], [1, 0], [1]]",
        "{name: road",
        "cameras[1] (school-12-yard).motion.zones[1] (road).polygon[2][1]",
        "required but missing",
    ),
    (
        "unknown action type",
        "      - {type: snapshot}",
        "      - {type: sms}",
        "{type: sms}",
        "rules[0] (intrusion-at-night).actions[2].type",
        "unknown type 'sms' (one of: alarm, record, bookmark, mqtt, webhook, snapshot, arm)",
    ),
    (
        "action without a type",
        "      - {type: snapshot}",
        "      - {text: hello}",
        "{text: hello}",
        "rules[0] (intrusion-at-night).actions[2].type",
        "required but missing",
    ),
    (
        "invalid action value",
        'priority: critical, title: "Panic button"',
        'priority: urgent, title: "Panic button"',
        "priority: urgent",
        "rules[5] (panic-button).actions[0].priority",
        "'critical', 'high', 'medium' or 'low'",
    ),
    (
        "webhook that is not HTTP",
        'url: "https://tickets.example.org/hook"',
        'url: "ftp://tickets.example.org/hook"',
        "ftp://",
        "rules[3] (gaps).actions[0].url",
        "https?://",
    ),
    (
        "zones narrow only motion",
        "trigger: {kind: tamper, details: [covered, moved]}",
        "trigger: {kind: tamper, zones: [gate]}",
        "- name: tampering",
        "rules[1] (tampering)",
        "zones narrow only a motion trigger",
    ),
    (
        "user with two passwords",
        '{name: admin, role: admin, password: "${VMSCORE_ADMIN_PASSWORD}"}',
        '{name: admin, role: admin, password: "${VMSCORE_ADMIN_PASSWORD}", password_hash: x}',
        "{name: admin",
        "users[0] (admin)",
        "exactly one of password_hash and password",
    ),
    (
        "unknown role",
        "    role: operator\n    password: ${OPERATOR_PASSWORD}",
        "    role: guard\n    password: ${OPERATOR_PASSWORD}",
        "role: guard",
        "users[1] (op-north).role",
        "'admin'",
    ),
    (
        "mqtt password without a user",
        "  username: vmscore\n",
        "",
        "mqtt:",
        "mqtt",
        "mqtt password given without a username",
    ),
]


@pytest.mark.parametrize(
    ("old", "new", "at", "path", "words"),
    [m[1:] for m in MISTAKES],
    ids=[m[0] for m in MISTAKES],
)
def test_mistake_names_file_line_and_field(
    old: str, new: str, at: str, path: str, words: str
) -> None:
    """An administrator must be able to go straight to the line at fault: the message starts
    with file:line: field.path: and says what is wrong."""
    text = edited(old, new)
    problems = problems_of(text)
    assert len(problems) == 1, problems
    needle, _, nth = at.partition("#")
    line = line_of(text, needle)
    if nth:  # the second occurrence
        line = line_of(text, needle, after=line)
    assert problems[0].startswith(f"{ORIGIN}:{line}: {path}: "), (problems[0], line)
    assert words in problems[0], problems[0]


def test_every_mistake_at_once_each_on_its_own_line() -> None:
    """Several mistakes in one file are all reported, one per problem, each at its own line, so
    an administrator fixes them in one pass."""
    text = edited("  analysis_threads: 4", "  analysis_threads: four")
    text = edited("    group: indoor", "    grup: indoor", text)
    text = edited("          sensitivity: 0.9", "          sensitivity: 1.9", text)
    problems = problems_of(text)
    assert [p.split(": ", 2)[:2] for p in problems] == [
        [f"{ORIGIN}:{line_of(text, 'analysis_threads: four')}", "station.analysis_threads"],
        [f"{ORIGIN}:{line_of(text, 'grup:')}", "cameras[0] (school-12-gym).grup"],
        [
            f"{ORIGIN}:{line_of(text, 'sensitivity: 1.9')}",
            "cameras[1] (school-12-yard).motion.zones[0] (gate).sensitivity",
        ],
    ]


def test_mistake_in_defaults_is_reported_once_where_it_is() -> None:
    """A misspelt default reaches every camera through the merge; the administrator must see
    one problem at the defaults' line, not one per camera at lines that do not hold it."""
    text = edited("    persistence: 3", "    persistance: 3")
    assert problems_of(text) == [
        f"{ORIGIN}:{line_of(text, 'persistance: 3')}: defaults.motion.persistance: "
        "unknown setting (check the spelling; see the documentation for the keys allowed here)"
    ]
    text = edited("    pre_roll_s: 5\n", "    pre_roll_s: 5000\n")
    (problem,) = problems_of(text)
    assert problem.startswith(
        f"{ORIGIN}:{line_of(text, 'pre_roll_s: 5000')}: defaults.recording.pre_roll_s: "
    )
    # A camera's own value is still reported at the camera.
    text = edited("analysis_fps: 5", "analysis_fps: 500")
    (problem,) = problems_of(text)
    assert problem.startswith(
        f"{ORIGIN}:{line_of(text, 'analysis_fps: 500')}: "
        "cameras[2] (school-7-entrance).analysis_fps: "
    )


def test_unknown_default_storage_is_reported_once() -> None:
    text = edited(
        "    mode: continuous_events\n", "    mode: continuous_events\n    storage: disk9\n"
    )
    assert problems_of(text) == [
        f"{ORIGIN}:{line_of(text, 'storage: disk9')}: defaults.recording.storage: no storage "
        "location named 'disk9' (known: archive, disk1)"
    ]


def test_cameras_without_storage() -> None:
    block = EXAMPLE[EXAMPLE.index("storage:\n") : EXAMPLE.index("defaults:\n")]
    text = edited(block, "storage: []\n")
    text = edited("storage: archive, ", "", text)
    assert problems_of(text) == [
        f"{ORIGIN}:{line_of(text, 'storage: []')}: storage: cameras are configured but no "
        "storage location is"
    ]


def test_duplicate_yaml_key() -> None:
    """PyYAML keeps the last of two equal keys; a station must refuse, or the first setting
    silently does nothing."""
    text = edited("    group: indoor\n", "    group: indoor\n    group: outdoor\n")
    first, second = line_of(text, "group: indoor"), line_of(text, "group: outdoor")
    assert problems_of(text) == [
        f"{ORIGIN}:{second}: not valid YAML: the key 'group' appears twice (first on line {first})"
    ]
    # Equal keys in different mappings are fine; YAML merge keys still work.
    merged = "sites:\n  - &base {name: a, armed: true}\n  - {<<: *base, name: b}\n"
    cfg = parse_config(merged, origin=ORIGIN, env={})
    assert [(s.name, s.armed) for s in cfg.sites] == [("a", True), ("b", True)]


def test_missing_environment_variable() -> None:
    env = {k: v for k, v in ENV.items() if k != "MQTT_PASSWORD"}
    assert problems_of(EXAMPLE, env) == [
        f"{ORIGIN}:{line_of(EXAMPLE, '${MQTT_PASSWORD}')}: mqtt.password: the environment "
        "variable MQTT_PASSWORD is not set"
    ]
    # Every missing one is named, with the camera it belongs to.
    env = {k: v for k, v in ENV.items() if k != "SCHOOL12_CAM_PASSWORD"}
    problems = problems_of(EXAMPLE, env)
    first = line_of(EXAMPLE, "${SCHOOL12_CAM_PASSWORD}")
    assert problems == [
        f"{ORIGIN}:{first}: cameras[0].password: the environment variable "
        "SCHOOL12_CAM_PASSWORD is not set",
        f"{ORIGIN}:{line_of(EXAMPLE, '${SCHOOL12_CAM_PASSWORD}', first)}: cameras[1].password: "
        "the environment variable SCHOOL12_CAM_PASSWORD is not set",
    ]


def test_environment_defaults_and_substitution_inside_text() -> None:
    text = (
        "sites: [{name: s1, display_name: 'School ${SCHOOL_NO:-1} (${DISTRICT:-})'}]\n"
        "mqtt: {host: '${BROKER:-127.0.0.1}', port: 1883}\n"
    )
    cfg = parse_config(text, origin=ORIGIN, env={})
    assert cfg.sites[0].display_name == "School 1 ()"
    assert cfg.mqtt is not None and cfg.mqtt.host == "127.0.0.1"
    cfg = parse_config(text, origin=ORIGIN, env={"SCHOOL_NO": "12", "BROKER": "10.1.1.1"})
    assert cfg.sites[0].display_name == "School 12 ()"
    assert cfg.mqtt is not None and cfg.mqtt.host == "10.1.1.1"
    # A value taken from the environment is validated like any other.
    problems = problems_of("mqtt: {host: x, port: '${PORT}'}\n", {"PORT": "not-a-port"})
    assert problems == [f"{ORIGIN}:1: mqtt.port: Input should be a valid integer, unable to "
                        "parse string as an integer"]  # fmt: skip


def test_process_environment_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VMSCORE_TEST_SITE_NAME", "from-env")
    cfg = parse_config("sites: [{name: '${VMSCORE_TEST_SITE_NAME}'}]\n")
    assert cfg.sites[0].name == "from-env"


def test_invalid_yaml_syntax() -> None:
    text = edited("  analysis_threads: 4", "  analysis_threads: [4")
    opened = line_of(text, "analysis_threads: [4")
    (problem,) = problems_of(text)
    # PyYAML notices the missing bracket on the next line; the message says where it began.
    assert problem.startswith(f"{ORIGIN}:{opened + 1}: not valid YAML: ")
    assert f"on line {opened})" in problem
    text = edited("    site: school-7\n", "    site: school-7\n   bad: indent\n")
    (problem,) = problems_of(text)
    assert problem.startswith(f"{ORIGIN}:{line_of(text, 'bad: indent')}: not valid YAML")
    text = edited('display_name: "School 7"', 'display_name: "School 7')
    (problem,) = problems_of(text)
    assert problem.startswith(f"{ORIGIN}:") and "not valid YAML" in problem


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("- station\n- cameras\n", "not a list"),
        ("just words\n", "not text"),
        ("42\n", "not a single value"),
    ],
)
def test_top_level_must_be_a_mapping(text: str, words: str) -> None:
    assert problems_of(text, {}) == [
        f"{ORIGIN}:1: the configuration must be a mapping of sections (station:, cameras:, ...), "
        + words
    ]


def test_yaml_bombs_and_odd_yaml_are_refused_clearly() -> None:
    """A few lines of nested aliases expand to billions of values; deep nesting overflows a
    recursive parser; complex keys are not hashable; unsafe tags must not construct objects."""
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    for i, name in enumerate("bcdefghi"):
        prev = "abcdefghi"[i]
        bomb += f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 10) + "]\n"
    (problem,) = problems_of(bomb, {})
    assert "more than 500000 values" in problem
    (problem,) = problems_of("a: " + "[" * 5000 + "]" * 5000 + "\n", {})
    assert "nested too deeply" in problem
    (problem,) = problems_of("? [a, b]\n: x\n", {})
    assert (
        problem == f"{ORIGIN}:1: not valid YAML: a key must be a plain value, not a list or mapping"
    )
    (problem,) = problems_of("station: !!python/object/apply:os.getcwd []\n", {})
    assert problem.startswith(f"{ORIGIN}:1: not valid YAML: could not determine a constructor")
    (problem,) = problems_of("a: 1\n---\nb: 2\n", {})
    assert problem.startswith(f"{ORIGIN}:2: not valid YAML")


# --- defaults merged per camera --------------------------------------------------------------


def test_defaults_merged_per_camera() -> None:
    """A camera names only what it changes: overriding pre_roll_s keeps the default mode, and a
    change of a default reaches every camera that did not set it."""
    cfg = parse_config(EXAMPLE, origin=ORIGIN, env=ENV)
    cams = {c.name: c for c in cfg.cameras}
    gym, yard = cams["school-12-gym"].recording, cams["school-12-yard"].recording
    entrance = cams["school-7-entrance"]
    assert (gym.pre_roll_s, gym.mode, gym.post_roll_s, gym.max_age_s) == (
        10.0,
        "continuous_events",
        10.0,
        2592000.0,
    )
    assert (yard.mode, yard.storage, yard.pre_roll_s, yard.post_roll_s) == (
        "event",
        "archive",
        5.0,
        20.0,
    )
    assert entrance.recording == cfg.defaults.recording
    # Motion: a camera's zones are its own; the defaults' other settings reach it.
    assert cams["school-12-gym"].motion.persistence == 3
    assert cams["school-12-gym"].motion.sensitivity == 0.6
    assert [z.name for z in cams["school-12-gym"].motion.zones] == ["door", "windows"]
    assert cams["school-12-yard"].motion.sensitivity == 0.8
    assert cams["school-12-yard"].motion.persistence == 3
    assert [z.name for z in cams["school-12-yard"].motion.zones] == ["gate", "road"]
    assert entrance.motion.zones == [] and entrance.motion.persistence == 3
    # analysis_fps: the default unless the camera sets it.
    assert cams["school-12-gym"].analysis_fps == 8 and entrance.analysis_fps == 5

    # A change of the default reaches the cameras that did not override it, and only those.
    changed = parse_config(
        edited("    post_roll_s: 10\n", "    post_roll_s: 40\n"), origin=ORIGIN, env=ENV
    )
    post = {c.name: c.recording.post_roll_s for c in changed.cameras}
    assert post == {
        "school-12-gym": 40,
        "school-12-yard": 20,
        "school-7-entrance": 40,
        "school-31-hall": 40,
    }


def test_default_zones_replaced_by_a_cameras_own() -> None:
    doc: dict[str, Any] = {
        "storage": [{"name": "d", "path": "/srv/rec"}],
        "defaults": {
            "motion": {
                "sensitivity": 0.5,
                "zones": [{"name": "all", "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]]}],
            }
        },
        "sites": [{"name": "s"}],
        "cameras": [
            {"name": "a", "site": "s", "main_url": "rtsp://h/a"},
            {
                "name": "b",
                "site": "s",
                "main_url": "rtsp://h/b",
                "motion": {"zones": [{"name": "door", "polygon": [[0, 0], [0.5, 0], [0, 0.5]]}]},
            },
            {"name": "c", "site": "s", "main_url": "rtsp://h/c", "motion": {"zones": []}},
        ],
    }
    cfg = validate_document(doc)
    zones = {c.name: [z.name for z in c.motion.zones] for c in cfg.cameras}
    assert zones == {"a": ["all"], "b": ["door"], "c": []}
    assert all(c.motion.sensitivity == 0.5 for c in cfg.cameras)
    assert doc["cameras"][0] == {"name": "a", "site": "s", "main_url": "rtsp://h/a"}, (
        "validation must not change the caller's document"
    )


# --- files: relative paths, reading ----------------------------------------------------------


def test_load_document_resolves_relative_paths(tmp_path: Path) -> None:
    """A station started from another directory must still find its data next to the file."""
    conf_dir = tmp_path / "etc" / "vmscore"
    conf_dir.mkdir(parents=True)
    path = conf_dir / "central.yaml"
    path.write_text(EXAMPLE, encoding="utf-8")
    doc, cfg = load_document(path, env=ENV)
    assert Path(doc["station"]["data_dir"]) == conf_dir / "data"
    assert cfg.station.data_dir == conf_dir / "data"
    assert [s.path for s in cfg.storage] == [conf_dir / "recordings", Path("/srv/vms/archive")]
    assert cfg.mqtt is not None and cfg.mqtt.ca_file == conf_dir / "certs" / "city-ca.pem"
    assert doc["cameras"][0]["password"] == ENV["SCHOOL12_CAM_PASSWORD"]
    assert load_config(path, env=ENV) == cfg

    # No station section: the data lives next to the file too.
    bare = conf_dir / "bare.yaml"
    bare.write_text("sites: [{name: s1}]\n", encoding="utf-8")
    doc, cfg = load_document(bare, env={})
    assert cfg.station.data_dir == conf_dir / "vmscore-data"


def test_load_document_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "station.yaml"
    path.write_text(edited("    group: indoor", "    grup: indoor"), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_document(path, env=ENV)
    assert str(info.value).startswith(f"{path}:{line_of(EXAMPLE, 'group: indoor')}: cameras[0]")
    with pytest.raises(ConfigError, match="cannot read the configuration"):
        load_document(tmp_path / "missing.yaml")
    (tmp_path / "latin1.yaml").write_bytes(
        "sites: [{name: s, display_name: Sch\xfcle}]\n".encode("latin-1")
    )
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_document(tmp_path / "latin1.yaml")
    (tmp_path / "odd.yaml").write_text("storage: 5\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_document(tmp_path / "odd.yaml", env={})
    assert info.value.problems == [
        f"{tmp_path / 'odd.yaml'}:1: storage: Input should be a valid list"
    ]


# --- export: dump_document -> parse_config -------------------------------------------------


def test_dump_round_trip_with_secrets_from_the_environment(tmp_path: Path) -> None:
    """The exported file must bootstrap the same station, and never carry a password: each
    becomes a ${VMSCORE_...} reference listed in the comment at the top."""
    path = tmp_path / "central.yaml"
    path.write_text(EXAMPLE, encoding="utf-8")
    doc, cfg = load_document(path, env=ENV)
    text = dump_document(doc)
    for secret in (*ENV.values(), "factory-default"):
        if secret:
            assert secret not in text, f"a password is in the export: {secret}"
    first = text.splitlines()[0]
    assert first.startswith("# secrets read from the environment: ")
    listed = first.split(": ", 1)[1].split(", ")
    referenced = re.findall(r"\$\{(VMSCORE_[A-Z0-9_]+)\}", text)
    assert sorted(listed) == sorted(set(referenced)) and len(listed) == len(referenced)
    assert {
        "VMSCORE_CAMERA_SCHOOL_12_GYM_PASSWORD",
        "VMSCORE_CAMERA_SCHOOL_31_HALL_PASSWORD",
        "VMSCORE_USER_ADMIN_PASSWORD",
        "VMSCORE_USER_OP_NORTH_PASSWORD",
        "VMSCORE_MQTT_PASSWORD",
    } <= set(listed)
    assert "password_hash" in text, "a hash is not a secret to hide: it stays"

    # Reading back needs the variables, and names them when they are missing.
    with pytest.raises(ConfigError) as info:
        parse_config(text, origin="export.yaml", env={})
    assert any("VMSCORE_MQTT_PASSWORD is not set" in p for p in info.value.problems)

    env = _env_for(yaml.safe_load(text), doc)
    again = parse_config(text, origin="export.yaml", env=env)
    assert again == cfg
    # The plain form needs no environment and is the same configuration too.
    assert parse_config(dump_document(doc, secrets="plain"), env={}) == cfg


def _env_for(dumped: dict[str, Any], original: dict[str, Any]) -> dict[str, str]:
    """The variables an export refers to, with the passwords of the original document."""
    env: dict[str, str] = {}
    for section in ("cameras", "users"):
        for out, src in zip(dumped.get(section) or [], original.get(section) or [], strict=True):
            if "password" in out:
                env[out["password"][2:-1]] = src["password"]
    if isinstance(dumped.get("mqtt"), dict) and "password" in dumped["mqtt"]:
        env[dumped["mqtt"]["password"][2:-1]] = original["mqtt"]["password"]
    return env


def test_dump_gives_each_secret_its_own_variable() -> None:
    """Names that differ only in punctuation or case make the same variable name; two cameras'
    passwords must not be merged into one by an export."""
    doc: dict[str, Any] = {
        "storage": [{"name": "d", "path": "/srv/rec"}],
        "sites": [{"name": "s"}],
        "cameras": [
            {"name": n, "site": "s", "main_url": f"rtsp://h/{n}", "username": "u", "password": p}
            for n, p in (("gym-1", "pw-a"), ("gym_1", "pw-b"), ("Gym.1", "pw-c"), ("gym", ""))
        ],
    }
    text = dump_document(doc)
    dumped = yaml.safe_load(text)
    names = [c.get("password") for c in dumped["cameras"]]
    assert len(set(names[:3])) == 3, names
    assert names[3] == "", "an empty password is not a secret"
    cfg = parse_config(text, env=_env_for(dumped, doc))
    got = [c.password.get_secret_value() if c.password else "" for c in cfg.cameras]
    assert got == ["pw-a", "pw-b", "pw-c", ""]


def test_dump_of_a_station_document_with_paths_and_dates() -> None:
    cfg_text = (
        "time_profiles: [{name: holidays, ranges: [{start: '08:00', end: '09:00'}], "
        "except_dates: [2026-01-01]}]\n"
    )
    data, _ = read_document(cfg_text, env={})
    assert parse_config(dump_document(data), env={}) == parse_config(cfg_text, env={})


# --- the command line ------------------------------------------------------------------------


def test_cli_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``vmscore station --config FILE --check`` is what an administrator runs before a
    restart: valid files say so and exit 0; invalid ones list every problem and exit 2."""
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    good = tmp_path / "central.yaml"
    good.write_text(EXAMPLE, encoding="utf-8")
    runner = CliRunner()
    wide = {"COLUMNS": "400"}
    result = runner.invoke(app, ["station", "--config", str(good), "--check"], env=wide)
    assert result.exit_code == 0, result.output
    assert f"{good}: valid (4 cameras, 8 rules)" in result.output
    assert not (tmp_path / "data").exists(), "--check must not create the station's data"

    bad = tmp_path / "bad.yaml"
    text = edited("    group: indoor", "    grup: indoor")
    text = edited("time_profile: night", "time_profile: nights", text)
    bad.write_text(text, encoding="utf-8")
    result = runner.invoke(app, ["station", "--config", str(bad), "--check"], env=wide)
    assert result.exit_code == 2, result.output
    assert "The configuration is not valid" in result.output
    assert f"{bad}:{line_of(text, 'grup:')}: cameras[0] (school-12-gym).grup: unknown setting" in (
        result.output
    )

    monkeypatch.delenv("MQTT_PASSWORD")
    result = runner.invoke(app, ["station", "--config", str(good), "--check"], env=wide)
    assert result.exit_code == 2
    assert "mqtt.password: the environment variable MQTT_PASSWORD is not set" in result.output
    result = runner.invoke(
        app, ["station", "--config", str(tmp_path / "nope.yaml"), "--check"], env=wide
    )
    assert result.exit_code == 2 and "cannot read the configuration" in result.output


def test_cli_check_prints_problems_verbatim(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text('station: {"[bold]": 1, "[/x]": 2}\n', encoding="utf-8")
    result = CliRunner().invoke(
        app, ["station", "--config", str(bad), "--check"], env={"COLUMNS": "400"}
    )
    assert result.exit_code == 2, result.output
    assert "station.[bold]: unknown setting" in result.output
    assert "station.[/x]: unknown setting" in result.output


# --- garbage in: only ConfigError out ----------------------------------------------------------

_WORDS = [
    "station", "storage", "defaults", "sites", "cameras", "time_profiles", "rules", "users",
    "mqtt", "alarms", "name", "site", "path", "main_url", "sub_url", "recording", "motion",
    "zones", "polygon", "trigger", "actions", "type", "kind", "password", "ranges", "timezone",
    "alarm", "record", "arm", "http", "port", "pre_roll_s", "<<", "${X}", "${Y:-1}",
]  # fmt: skip

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(_WORDS),
)
_structures = st.recursive(
    _scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.one_of(st.sampled_from(_WORDS), st.text(max_size=6)), children, max_size=4
        ),
    ),
    max_leaves=25,
)


def _only_config_errors(call: Any) -> None:
    """Valid or a ConfigError with its problems; anything else escapes and fails the test."""
    try:
        call()
    except ConfigError as e:
        problems = e.problems
    else:
        return
    assert problems and all(isinstance(p, str) and p for p in problems)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.text(max_size=200))
def test_random_text_never_raises_anything_but_config_error(text: str) -> None:
    _only_config_errors(lambda: parse_config(text, origin=ORIGIN, env={"X": "1"}))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=_structures)
def test_random_structures_never_raise_anything_but_config_error(data: Any) -> None:
    _only_config_errors(lambda: validate_document(data))  # type: ignore[arg-type]
    try:
        text = yaml.safe_dump(data)
    except yaml.YAMLError:
        return
    _only_config_errors(lambda: parse_config(text, origin=ORIGIN, env={"X": "1"}))


def _paths(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*path, i))
    return out


_EXAMPLE_DOC, _ = read_document(EXAMPLE, env=ENV)
_EXAMPLE_PATHS = _paths(_EXAMPLE_DOC)[1:]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(where=st.sampled_from(_EXAMPLE_PATHS), value=_structures, as_yaml=st.booleans())
def test_garbage_anywhere_in_the_example_gives_config_error(
    where: tuple[Any, ...], value: Any, as_yaml: bool
) -> None:
    """One value of the complete example replaced by garbage, at any depth: the validators deep
    in the models (zones, actions, users, mqtt) meet it and must answer with a ConfigError."""
    import copy

    doc = copy.deepcopy(_EXAMPLE_DOC)
    node = doc
    for step in where[:-1]:
        node = node[step]
    node[where[-1]] = value
    if as_yaml:
        try:
            text = yaml.safe_dump(doc)
        except yaml.YAMLError:
            return
        _only_config_errors(lambda: parse_config(text, origin=ORIGIN, env={}))
    else:
        _only_config_errors(lambda: validate_document(doc, origin=ORIGIN))


def test_secret_values_are_not_in_messages() -> None:
    """A password that fails validation must not be echoed into a log or a terminal."""
    env = {**ENV, "OPERATOR_PASSWORD": "short!"}
    (problem,) = problems_of(EXAMPLE, env)
    assert problem.startswith(
        f"{ORIGIN}:{line_of(EXAMPLE, '${OPERATOR_PASSWORD}')}: users[1] (op-north).password: "
    )
    assert "short!" not in problem
