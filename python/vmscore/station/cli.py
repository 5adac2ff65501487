"""The station's commands: ``vmscore station``, ``vmscore demo``, ``vmscore user add`` and
``vmscore export``."""

from __future__ import annotations

import contextlib
import enum
import errno
import logging
import shutil
import signal
import socket
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

log = logging.getLogger("vmscore.station")


def _console() -> Console:
    return Console(stderr=True)


def _check_port(host: str, port: int) -> int:
    """Binds the address once to fail early and clearly; returns the port (a free one for 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise typer.BadParameter(
                    f"{host}:{port} is in use; choose another with --port (0: any free port)",
                    param_hint="--port",
                ) from None
            raise typer.BadParameter(f"cannot listen on {host}:{port}: {e.strerror}") from None
        return int(s.getsockname()[1])


def _logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("uvicorn.access", "httpx", "zeep", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def serve(station: Any, host: str, port: int, *, banner: Any = None) -> None:
    """Runs the station's HTTP server until Ctrl-C or SIGTERM, then closes the station."""
    import uvicorn

    from vmscore.web.app import create_app

    app = create_app(station)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=3,
        lifespan="off",
    )
    server = uvicorn.Server(config)
    if banner is not None:

        def announce() -> None:
            # Only once it listens, so whoever reads the address can connect at once.
            while not server.started and not server.should_exit:
                time.sleep(0.02)
            if server.started:
                banner()

        threading.Thread(target=announce, name="vmscore-banner", daemon=True).start()

    def stop(signum: int, frame: object) -> None:
        raise _TerminatedError

    # uvicorn handles SIGINT and SIGTERM while it serves, then raises the signal again once it
    # has shut down; these handlers turn that into a normal return, so the station is closed
    # (recordings flushed, cameras disconnected) and the exit status is 0.
    previous = signal.signal(signal.SIGTERM, stop)
    try:
        server.run()
    except (KeyboardInterrupt, _TerminatedError):
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        station.close()


class _TerminatedError(Exception):
    """SIGTERM after the HTTP server has shut down."""


class Role(enum.StrEnum):
    site = "site"
    central = "central"
    both = "both"


def station_cmd(
    config: Annotated[Path, typer.Option("--config", "-c", help="The station's YAML file.")],
    reset: Annotated[
        bool,
        typer.Option(help="Replace the configuration kept in the database with the file's."),
    ] = False,
    host: Annotated[str | None, typer.Option(help="Listen address (default: the file's).")] = None,
    port: Annotated[int | None, typer.Option(help="HTTP port (default: the file's).")] = None,
    check: Annotated[bool, typer.Option(help="Only validate the file and exit.")] = False,
    role: Annotated[
        Role | None,
        typer.Option(
            help="site: record and publish this station's cameras; central: aggregate the"
            " sites of the 'central' section; both (default: the file's station.role)."
        ),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run a monitoring station from a configuration file until Ctrl-C."""
    from vmscore.station.config import ConfigError, load_document
    from vmscore.station.station import Station

    err = _console()
    try:
        document, cfg = load_document(config)
    except ConfigError as e:
        err.print(f"[red]The configuration is not valid:[/red]\n{escape(str(e))}", highlight=False)
        raise typer.Exit(2) from None
    if role is not None and role.value != "site" and cfg.central is None:
        err.print(f"[red]--role {role.value} needs a 'central' section in {escape(str(config))}")
        raise typer.Exit(2)
    if check:
        err.print(
            f"{escape(str(config))}: valid ({len(cfg.cameras)} cameras, {len(cfg.rules)} rules)",
            highlight=False,
        )
        return
    h = host or cfg.station.http.host
    p = _check_port(h, port if port is not None else cfg.station.http.port)
    _logging(verbose)
    try:
        station = Station(
            document, reset=reset, origin=str(config), role=None if role is None else role.value
        )
    except ConfigError as e:
        err.print(
            f"[red]The stored configuration is not valid:[/red]\n{escape(str(e))}", highlight=False
        )
        raise typer.Exit(2) from None
    serve(
        station,
        h,
        p,
        banner=lambda: err.print(
            f"station [bold]{cfg.station.name}[/bold]: {len(station.config.cameras)} cameras, "
            f"http://{h}:{p}/  (Ctrl-C stops)"
        ),
    )


def demo_cmd(
    port: Annotated[int, typer.Option(help="HTTP port (0: any free port).")] = 8080,
    host: Annotated[str, typer.Option(help="Listen address.")] = "127.0.0.1",
    data: Annotated[
        Path | None, typer.Option(help="The demo station's data (default: a cache folder).")
    ] = None,
    fresh: Annotated[bool, typer.Option(help="Start with empty recordings and alarms.")] = False,
    seconds: Annotated[float, typer.Option(help="Length of each camera's looped clip.")] = 60.0,
    size: Annotated[str, typer.Option(help="Main stream size, WIDTHxHEIGHT.")] = "1280x720",
    sub_size: Annotated[
        str, typer.Option("--sub-size", help="Sub-stream size (analysed), WIDTHxHEIGHT.")
    ] = "640x360",
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run a demo station: three schools, nine simulated cameras, scripted incidents.

    It runs until Ctrl-C and leaves nothing running after it."""
    from vmscore.sim.cli import parse_size
    from vmscore.sim.server import CameraServer
    from vmscore.station.demo import DEMO_CAMERAS, demo_document, demo_users, render_clips
    from vmscore.station.station import Station

    err = _console()
    main_size = parse_size(size, "--size")
    sub = parse_size(sub_size, "--sub-size")
    if not 5 <= seconds <= 600:
        raise typer.BadParameter("must be 5..600", param_hint="--seconds")
    cache = _cache_dir()
    data_dir = (data or cache / "demo-station").resolve()
    if fresh and data_dir.exists():
        shutil.rmtree(data_dir)
    p = _check_port(host, port)
    with Progress(
        TextColumn("rendering the demo cameras' clips (once)"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as progress:
        task = progress.add_task("clips", total=len(DEMO_CAMERAS))
        clips = render_clips(
            cache / "demo-clips",
            seconds=seconds,
            main=main_size,
            sub=sub,
            on_done=lambda done, total: progress.update(task, completed=done, total=total),
        )
    _logging(verbose)
    users = demo_users(data_dir)
    cameras = CameraServer()
    try:
        urls: dict[str, tuple[str, str | None]] = {}
        for i, cam in enumerate(DEMO_CAMERAS):
            cameras.add_camera(cam.name, clips[cam.name], start_offset_s=seconds * i / 9 % seconds)
            urls[cam.name] = (cameras.url(cam.name), cameras.url(cam.name, sub=True))
        doc = demo_document(urls, clips, data_dir, host=host, port=p, users=users)
        # The simulated cameras get a new port each run: the demo's configuration is the file's.
        station = Station(doc, reset=True, origin="the demo")

        def banner() -> None:
            err.print(
                f"\n[bold]vmscore demo[/bold]: 3 schools, {len(DEMO_CAMERAS)} cameras, "
                f"data in {data_dir}\n"
                f"  open  [bold]http://{host}:{p}/[/bold]   (API: http://{host}:{p}/api/docs)\n"
                + "".join(f"  login [bold]{n}[/bold] / {pw}\n" for n, pw in users.items())
                + "  Ctrl-C stops everything.\n",
                highlight=False,
            )

        serve(station, host, p, banner=banner)
    finally:
        cameras.close()


def _cache_dir() -> Path:
    import os

    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "vmscore"


def user_add_cmd(
    name: Annotated[str, typer.Argument(help="User name.")],
    role: Annotated[str, typer.Option(help="viewer, operator or admin.")] = "operator",
    data: Annotated[Path, typer.Option(help="The station's data directory.")] = Path(
        "vmscore-data"
    ),
    cameras: Annotated[
        list[str] | None, typer.Option("--camera", help="Permitted camera (repeat; default all).")
    ] = None,
    sites: Annotated[
        list[str] | None, typer.Option("--site", help="Permitted site (repeat).")
    ] = None,
) -> None:
    """Add a user to a station's database; the password is asked for (or read from stdin)."""
    import sys

    from vmscore.web.auth import UserStore

    err = _console()
    db = data / "station.db"
    if not data.is_dir():
        raise typer.BadParameter(f"{data} is not a station's data directory", param_hint="--data")
    if sys.stdin.isatty():
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    else:
        password = sys.stdin.readline().rstrip("\n")
    with UserStore(db) as store:
        try:
            store.add_user(
                name,
                password,
                role,  # type: ignore[arg-type]
                cameras=tuple(cameras) if cameras else ("*",) if not sites else (),
                sites=tuple(sites or ()) if (cameras or sites) else ("*",),
            )
        except ValueError as e:
            err.print(f"[red]{escape(str(e))}[/red]")
            raise typer.Exit(2) from None
        store.audit("cli", "user.add", name, {"role": role})
    err.print(f"user {name} ({role}) added")


def _when(text: str) -> int:
    """UTC microseconds from ISO 8601 (a time without a zone is UTC) or a number of us."""
    if text.isdigit():
        return int(text)
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not an ISO 8601 time") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return round(t.timestamp() * 1e6)


def export_cmd(
    camera: Annotated[str, typer.Argument(help="Camera name.")],
    start: Annotated[str, typer.Argument(help="Start (ISO 8601, UTC unless a zone is given).")],
    end: Annotated[str, typer.Argument(help="End (ISO 8601).")],
    out: Annotated[Path, typer.Argument(help="The MP4 file to write.")],
    data: Annotated[Path, typer.Option(help="The station's data directory.")] = Path(
        "vmscore-data"
    ),
    signed: Annotated[bool, typer.Option(help="Sign with the station's key.")] = True,
    exporter: Annotated[str, typer.Option(help="Who exports (in the manifest).")] = "cli",
    stream: Annotated[str, typer.Option(help="main or sub.")] = "main",
) -> None:
    """Export a camera's recordings of a time range to one signed MP4.

    Reads the station's data directory; works while the station runs."""
    from vmscore import _core
    from vmscore.record.index import RecordingIndex
    from vmscore.record.signing import StationKey, sign_export

    err = _console()
    t0, t1 = _when(start), _when(end)
    if t1 <= t0:
        raise typer.BadParameter("the end must come after the start")
    db = data / "recordings.db"
    if not db.is_file():
        raise typer.BadParameter(f"{data} holds no recordings index", param_hint="--data")
    roots = _storage_roots(data)
    index = RecordingIndex(db)
    try:
        rows = index.recordings(camera, stream, t0, t1)
    finally:
        index.close()
    if not rows:
        err.print(f"[red]no recordings of {escape(repr(camera))} in that range[/red]")
        raise typer.Exit(1)
    missing = [r for r in rows if r.storage not in roots]
    if missing:
        err.print(f"[red]unknown storage location {escape(repr(missing[0].storage))}[/red]")
        raise typer.Exit(1)
    plan = _core.ExportPlan(
        [(str(roots[r.storage] / r.path), r.start_wall_us) for r in rows], t0, t1
    )
    with Progress(
        TextColumn("exporting"), BarColumn(), TimeElapsedColumn(), console=err, transient=True
    ) as progress:
        task = progress.add_task("export", total=plan.size)
        plan.write(str(out), lambda done, total: progress.update(task, completed=done))
    err.print(f"{out}: {plan.frames} frames, {out.stat().st_size} bytes")
    if signed:
        key = StationKey.load_or_create(data / "station.key")
        manifest = sign_export(
            out,
            key=key,
            camera=camera,
            start_wall_us=t0,
            end_wall_us=t1,
            exporter=exporter,
            station=_station_name(data),
            extra={"stream": stream, "frames": str(plan.frames)},
        )
        err.print(f"signed: {manifest}")


def _storage_roots(data: Path) -> dict[str, Path]:
    from vmscore.station.store import StationStore

    with contextlib.closing(StationStore(data / "station.db")) as store:
        kept = store.config()
    if kept is None:
        return {}
    return {s["name"]: Path(s["path"]) for s in kept[1].get("storage") or [] if isinstance(s, dict)}


def _station_name(data: Path) -> str:
    from vmscore.station.store import StationStore

    with contextlib.closing(StationStore(data / "station.db")) as store:
        kept = store.config()
    if kept is None:
        return "station"
    return str((kept[1].get("station") or {}).get("name", "station"))


user_app = typer.Typer(help="Manage a station's users.", no_args_is_help=True)
user_app.command("add")(user_add_cmd)
