"""``vmscore demo``: a monitoring station for three schools, on simulated cameras, with embedded
defaults (SQLite, a local recordings folder, no broker).

Nine cameras loop rendered scenes with scripted incidents: intruders crossing a school yard at
night and climbing in at the gate, a corridor whose lights switch on and off, rain, trees in the
wind, a shaking pole, a camera that gets covered and turned away. The sites are armed, so an
intruder in a zone raises an alarm with its pre-roll recording; light, rain and trees do not.

The clips are rendered once (a minute or two, in parallel) and kept in a cache directory.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vmscore.sim.files import load_clip, write_clip

__all__ = ["DEMO_CAMERAS", "DemoCamera", "demo_document", "demo_users", "render_clips"]

CLIP_VERSION = 1
"""Bumped when the scenes change, so cached clips are rendered again."""


@dataclass(frozen=True)
class DemoCamera:
    name: str
    site: str
    group: str
    display_name: str
    scene: str
    seed: int


DEMO_SITES = [
    ("north-school", "North Primary School", "Lindenweg 4"),
    ("east-school", "East Secondary School", "Hafenstrasse 21"),
    ("west-school", "West Grammar School", "Am Stadtpark 9"),
]

DEMO_CAMERAS = [
    DemoCamera(
        "north-yard", "north-school", "outdoor", "North: school yard (night)", "schoolyard-night", 3
    ),
    DemoCamera(
        "north-corridor", "north-school", "indoor", "North: ground floor corridor", "corridor", 1
    ),
    DemoCamera(
        "north-hall", "north-school", "indoor", "North: hall corridor (lights)", "lights", 2
    ),
    DemoCamera(
        "east-yard", "east-school", "outdoor", "East: school yard (rain)", "schoolyard-rain", 4
    ),
    DemoCamera("east-carpark", "east-school", "outdoor", "East: staff car park", "carpark", 5),
    DemoCamera(
        "east-bikes", "east-school", "outdoor", "East: bicycle shed (tampered)", "tamper", 6
    ),
    DemoCamera(
        "west-garden", "west-school", "outdoor", "West: school garden (wind)", "trees-wind", 7
    ),
    DemoCamera(
        "west-carpark", "west-school", "outdoor", "West: car park (night)", "carpark-night", 8
    ),
    DemoCamera(
        "west-pole", "west-school", "outdoor", "West: sports ground pole (gusts)", "shake", 9
    ),
]


def _render_one(
    directory: str,
    scene: str,
    seed: int,
    seconds: float,
    main: tuple[int, int],
    sub: tuple[int, int],
    fps: float,
) -> str:
    out = Path(directory)
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    write_clip(
        partial,
        scene,
        seconds,
        seed=seed,
        main=main,
        sub=sub,
        fps=fps,
        bitrate=max(400_000, main[0] * main[1] * 2),
        sub_bitrate=256_000,
    )
    os.replace(partial, out)
    return directory


def render_clips(
    cache: Path,
    *,
    seconds: float = 60.0,
    main: tuple[int, int] = (1280, 720),
    sub: tuple[int, int] = (640, 360),
    fps: float = 10.0,
    cameras: list[DemoCamera] | None = None,
    workers: int | None = None,
    on_done: Callable[[int, int], None] | None = None,
) -> dict[str, Path]:
    """Renders (or finds in ``cache``) each camera's clip; returns camera -> clip directory."""
    cams = cameras or DEMO_CAMERAS
    cache.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    todo: list[tuple[DemoCamera, Path]] = []
    for cam in cams:
        d = cache / (
            f"v{CLIP_VERSION}-{cam.scene}-s{cam.seed}-{main[0]}x{main[1]}-"
            f"{sub[0]}x{sub[1]}-{fps:g}fps-{seconds:g}s"
        )
        out[cam.name] = d
        if not (d / "clip.json").is_file():
            todo.append((cam, d))
    done = len(cams) - len(todo)
    if on_done is not None:
        on_done(done, len(cams))
    if todo:
        n = workers or max(1, min(len(todo), os.cpu_count() or 1))
        with ProcessPoolExecutor(max_workers=n) as ex:
            futures = [
                ex.submit(_render_one, str(d), cam.scene, cam.seed, seconds, main, sub, fps)
                for cam, d in todo
            ]
            for f in as_completed(futures):
                f.result()
                done += 1
                if on_done is not None:
                    on_done(done, len(cams))
    return out


def demo_users(data_dir: Path) -> dict[str, str]:
    """The demo's logins (admin, operator, viewer) with passwords made at the first start and
    kept in the data directory (readable by the owner only)."""
    path = data_dir / "demo-logins.txt"
    users: dict[str, str] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            name, _, password = line.partition(" ")
            if name and password:
                users[name] = password
    if set(users) != {"admin", "operator", "viewer"}:
        users = {n: secrets.token_urlsafe(9) for n in ("admin", "operator", "viewer")}
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("".join(f"{n} {p}\n" for n, p in users.items()))
    return users


def demo_document(
    urls: dict[str, tuple[str, str | None]],
    clips: dict[str, Path],
    data_dir: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    users: dict[str, str] | None = None,
    cameras: list[DemoCamera] | None = None,
) -> dict[str, Any]:
    """The demo station's configuration document: the cameras with their scenes' zones, rules
    for intrusion, tampering and cameras going offline, and logins."""
    cams = cameras or DEMO_CAMERAS
    recordings = data_dir / "recordings"
    cameras_doc = []
    for cam in cams:
        main, sub = urls[cam.name]
        zones = [
            {"name": z.name, "polygon": [list(p) for p in z.polygon]}
            for z in load_clip_zones(clips[cam.name])
        ]
        cameras_doc.append(
            {
                "name": cam.name,
                "site": cam.site,
                "group": cam.group,
                "display_name": cam.display_name,
                "main_url": main,
                **({"sub_url": sub} if sub else {}),
                "motion": {"zones": zones},
            }
        )
    doc: dict[str, Any] = {
        "station": {
            "name": "demo-central",
            "data_dir": str(data_dir),
            "http": {"host": host, "port": port},
            "offline_after_s": 5,
        },
        "storage": [{"name": "local", "path": str(recordings), "min_free_bytes": 1 << 30}],
        "defaults": {
            "recording": {
                "mode": "continuous_events",
                "pre_roll_s": 5,
                "post_roll_s": 5,
                "segment_s": 30,
                "max_age_s": 6 * 3600,
                "no_event_max_age_s": 1800,
                "max_bytes": 2 << 30,
            },
            "analysis_fps": 10,
            "motion_off_delay_s": 3,
        },
        # The east school is open (day scenes: people about, no intrusion alarms; tampering
        # still raises one); the other two are closed for the night and armed.
        "sites": [
            {"name": n, "display_name": d, "address": a, "armed": n != "east-school"}
            for n, d, a in DEMO_SITES
        ],
        "cameras": cameras_doc,
        "time_profiles": [
            {
                "name": "night",
                "timezone": "Europe/Berlin",
                "ranges": [{"start": "18:00", "end": "07:00"}],
            },
        ],
        "rules": [
            {
                "name": "intrusion",
                "trigger": {"kind": "motion"},
                "conditions": {"site_armed": True, "cooldown_s": 20},
                "actions": [
                    {"type": "alarm", "priority": "high", "category": "Intrusion"},
                    {"type": "record"},
                ],
            },
            {
                "name": "tampering",
                "trigger": {"kind": "tamper"},
                "conditions": {"min_duration_s": 1},
                "actions": [
                    {"type": "alarm", "priority": "medium", "category": "Vandalism"},
                    {"type": "record"},
                ],
            },
            {
                "name": "camera-offline",
                "trigger": {"kind": "camera_offline"},
                "actions": [
                    {
                        "type": "alarm",
                        "priority": "high",
                        "category": "Technical",
                        "close_on_end": True,
                    },
                ],
            },
            {
                "name": "recording-gap",
                "trigger": {"kind": "recording_gap"},
                "conditions": {"cooldown_s": 300},
                "actions": [{"type": "alarm", "priority": "low", "category": "Technical"}],
            },
            {
                "name": "storage",
                "trigger": {"kind": "disk_trouble"},
                "actions": [
                    {
                        "type": "alarm",
                        "priority": "critical",
                        "category": "Technical",
                        "close_on_end": True,
                    }
                ],
            },
        ],
        "users": [{"name": n, "role": n, "password": p} for n, p in (users or {}).items()],
    }
    return doc


def load_clip_zones(directory: Path) -> list[Any]:
    return list(load_clip(directory).truth.zones)
