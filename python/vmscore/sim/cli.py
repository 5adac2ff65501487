"""``vmscore sim``: write synthetic camera clips with ground truth, list the scene catalogue."""

from __future__ import annotations

import re
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

app = typer.Typer(
    help="Synthetic surveillance scenes with ground truth, encoded like a camera's streams.",
    no_args_is_help=True,
    add_completion=False,
)

_console = Console()


def parse_size(text: str, option: str) -> tuple[int, int]:
    """``WxH`` to (width, height); odd sizes are rejected (4:2:0 chroma needs even ones)."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not m:
        raise typer.BadParameter(
            f"expected WIDTHxHEIGHT such as 1920x1080, got {text!r}", param_hint=option
        )
    w, h = int(m.group(1)), int(m.group(2))
    if w % 2 or h % 2:
        raise typer.BadParameter(
            f"{w}x{h} has an odd side; 4:2:0 video needs even width and height "
            f"(try {w + w % 2}x{h + h % 2})",
            param_hint=option,
        )
    if w < 16 or h < 16 or w > 8192 or h > 8192:
        raise typer.BadParameter(f"{w}x{h} is outside 16x16 .. 8192x8192", param_hint=option)
    return w, h


def parse_bitrate(text: str, option: str) -> int:
    """``4M``, ``512k``, ``2.5M`` or plain bits per second."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmM]?)\s*(?:bps|b/s)?\s*", text)
    if not m:
        raise typer.BadParameter(
            f"expected a bitrate such as 4M or 512k, got {text!r}", param_hint=option
        )
    value = float(m.group(1)) * {"": 1, "k": 1e3, "m": 1e6}[m.group(2).lower()]
    if value < 10_000:
        raise typer.BadParameter(f"{text} is below 10 kbit/s", param_hint=option)
    return round(value)


@contextmanager
def render_progress(label: str, console: Console) -> Iterator[Callable[[int, int], None]]:
    """A transient progress bar; yields the on_frame(done, total) callback that advances it."""
    with Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("render", total=None)

        def on_frame(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        yield on_frame


def _rate(bps: float) -> str:
    return f"{bps / 1e6:.2f} Mb/s" if bps >= 1e6 else f"{bps / 1e3:.0f} kb/s"


@app.command("scenes")
def scenes_cmd() -> None:
    """List the scene catalogue."""
    from vmscore.sim.scenes import SCENES

    table = Table(show_header=True, header_style="bold")
    table.add_column("scene")
    table.add_column("layout")
    table.add_column("description")
    for spec in SCENES.values():
        table.add_row(spec.name, spec.layout, spec.description)
    _console.print(table)


@app.command("write")
def write_cmd(
    out: Annotated[Path, typer.Argument(help="Directory for the streams and the truth.")],
    scene: Annotated[str, typer.Option("--scene", "-s", help="Scene (see 'scenes').")] = (
        "schoolyard"
    ),
    seconds: Annotated[float, typer.Option("--seconds", "-t", help="Clip length.")] = 10.0,
    seed: Annotated[int, typer.Option(help="Random seed; same seed, same clip.")] = 0,
    codec: Annotated[str, typer.Option(help="h264 or h265.")] = "h264",
    size: Annotated[str, typer.Option(help="Main stream size, WIDTHxHEIGHT.")] = "1920x1080",
    sub_size: Annotated[
        str, typer.Option("--sub-size", help="Sub-stream size, WIDTHxHEIGHT, or 'none'.")
    ] = "640x360",
    fps: Annotated[float, typer.Option(help="Frames per second.")] = 15.0,
    gop: Annotated[int | None, typer.Option(help="Keyframe interval (default 2 s).")] = None,
    bitrate: Annotated[str, typer.Option(help="Main stream bitrate (4M, 2500k...).")] = "4M",
    sub_bitrate: Annotated[str, typer.Option("--sub-bitrate", help="Sub-stream bitrate.")] = (
        "512k"
    ),
    bframes: Annotated[int, typer.Option(help="B-frames between references (0 = none).")] = 0,
    preset: Annotated[str, typer.Option(help="x264/x265 preset.")] = "veryfast",
) -> None:
    """Render a scene and write its encoded streams and ground truth (JSON)."""
    from vmscore.sim.files import write_clip
    from vmscore.sim.scenes import SCENES

    if scene not in SCENES:
        raise typer.BadParameter(
            f"unknown scene {scene!r}; choose one of: {', '.join(SCENES)}", param_hint="--scene"
        )
    if codec not in ("h264", "h265"):
        raise typer.BadParameter(f"expected h264 or h265, got {codec!r}", param_hint="--codec")
    if not seconds > 0:
        raise typer.BadParameter(f"must be positive, got {seconds}", param_hint="--seconds")
    if not fps > 0 or fps > 240:
        raise typer.BadParameter(f"must be in (0, 240], got {fps}", param_hint="--fps")
    if gop is not None and gop < 1:
        raise typer.BadParameter(f"must be at least 1, got {gop}", param_hint="--gop")
    if not 0 <= bframes <= 16:
        raise typer.BadParameter(f"must be 0..16, got {bframes}", param_hint="--bframes")
    main_wh = parse_size(size, "--size")
    sub_wh = (
        None
        if sub_size.strip().lower() in ("none", "0", "")
        else parse_size(sub_size, "--sub-size")
    )
    if sub_wh is not None and (sub_wh[0] > main_wh[0] or sub_wh[1] > main_wh[1]):
        raise typer.BadParameter(
            f"{sub_wh[0]}x{sub_wh[1]} is larger than the main stream", param_hint="--sub-size"
        )
    rate = parse_bitrate(bitrate, "--bitrate")
    sub_rate = parse_bitrate(sub_bitrate, "--sub-bitrate")

    with render_progress(f"[bold]{scene}[/]", _console) as on_frame:
        info = write_clip(
            out,
            scene,
            seconds,
            seed=seed,
            main=main_wh,
            sub=sub_wh,
            fps=fps,
            gop=gop,
            codec="h264" if codec == "h264" else "h265",
            bitrate=rate,
            sub_bitrate=sub_rate,
            bframes=bframes,
            preset=preset,
            on_frame=on_frame,
        )

    table = Table(title=f"{info.scene} (seed {info.seed}) -> {info.directory}", header_style="bold")
    for col in ("stream", "file", "size", "frames", "keyframes", "target", "achieved"):
        table.add_column(col, justify="right" if col not in ("stream", "file") else "left")
    for label, st in (("main", info.main), ("sub", info.sub)):
        if st is None:
            continue
        table.add_row(
            label,
            st.path.name,
            f"{st.width}x{st.height}",
            str(st.frame_count),
            str(len(st.keyframes)),
            _rate(st.bitrate_bps),
            _rate(st.achieved_bitrate_bps),
        )
    _console.print(table)
    counts = Counter(e.kind for e in info.events)
    summary = ", ".join(f"{k} x{n}" for k, n in sorted(counts.items())) or "none"
    _console.print(
        f"{info.codec}, {info.fps:g} fps, GOP {info.gop}; events: {summary}; "
        f"truth in {info.directory / 'truth.json'}"
    )


def _parse_auth(text: str) -> tuple[str, str]:
    user, sep, password = text.partition(":")
    if not sep or not user:
        raise typer.BadParameter(f"expected USER:PASSWORD, got {text!r}", param_hint="--auth")
    return user, password


@app.command("serve")
def serve_cmd(
    cameras: Annotated[int, typer.Option("--cameras", "-n", help="Cameras to serve.")] = 16,
    scene: Annotated[str, typer.Option("--scene", "-s", help="Scene (see 'scenes').")] = (
        "schoolyard"
    ),
    seconds: Annotated[float, typer.Option("--seconds", "-t", help="Clip length (looped).")] = 20.0,
    size: Annotated[str, typer.Option(help="Main stream size, WIDTHxHEIGHT.")] = "1280x720",
    sub_size: Annotated[
        str, typer.Option("--sub-size", help="Sub-stream size (<url>/sub), or 'none'.")
    ] = "none",
    codec: Annotated[str, typer.Option(help="h264 or h265.")] = "h264",
    fps: Annotated[float, typer.Option(help="Frames per second.")] = 15.0,
    bitrate: Annotated[
        str | None, typer.Option(help="Main stream bitrate (default about 2 bits/pixel/s).")
    ] = None,
    clip: Annotated[
        Path | None,
        typer.Option("--clip", help="Serve a clip directory (from 'sim write')."),
    ] = None,
    host: Annotated[str, typer.Option(help="IPv4 address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="RTSP port (0: any free port).")] = 8554,
    auth: Annotated[
        str | None, typer.Option(help="USER:PASSWORD: require Digest authentication.")
    ] = None,
    udp: Annotated[
        bool | None,
        typer.Option(
            "--udp/--tcp", help="Accept only RTP over UDP (--udp) or TCP (--tcp); default both."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Scene seed.")] = 0,
) -> None:
    """Serve one clip as N simulated RTSP cameras until Ctrl-C (or SIGTERM)."""
    import signal
    import threading

    from vmscore.sim.scenes import SCENES
    from vmscore.sim.server import CameraServer, render_scene_streams

    if cameras < 1 or cameras > 10_000:
        raise typer.BadParameter(f"must be 1..10000, got {cameras}", param_hint="--cameras")
    if not 0 <= port <= 65535:
        raise typer.BadParameter(f"must be 0..65535, got {port}", param_hint="--port")
    if codec not in ("h264", "h265"):
        raise typer.BadParameter(f"expected h264 or h265, got {codec!r}", param_hint="--codec")
    credentials = _parse_auth(auth) if auth is not None else None
    err = Console(stderr=True)
    if clip is not None:
        from vmscore.sim.files import load_clip

        loaded = load_clip(clip)
        main, sub = loaded.main, loaded.sub
        label = f"{clip} ({loaded.truth.scene})"
    else:
        if scene not in SCENES:
            raise typer.BadParameter(
                f"unknown scene {scene!r}; choose one of: {', '.join(SCENES)}",
                param_hint="--scene",
            )
        if not seconds > 0:
            raise typer.BadParameter(f"must be positive, got {seconds}", param_hint="--seconds")
        if not 0 < fps <= 240:
            raise typer.BadParameter(f"must be in (0, 240], got {fps}", param_hint="--fps")
        wh = parse_size(size, "--size")
        sub_wh = (
            None
            if sub_size.strip().lower() in ("none", "0", "")
            else parse_size(sub_size, "--sub-size")
        )
        rate = parse_bitrate(bitrate, "--bitrate") if bitrate is not None else None
        with render_progress(f"[bold]{scene}[/] {wh[0]}x{wh[1]}", err) as on_frame:
            main, sub = render_scene_streams(
                scene,
                seconds=seconds,
                size=wh,
                codec="h264" if codec == "h264" else "h265",
                fps=fps,
                bitrate_bps=rate,
                sub_size=sub_wh,
                seed=seed,
                on_frame=on_frame,
            )
        label = f"{scene} {main.width}x{main.height} {main.codec}"

    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with CameraServer(
            host=host,
            port=port,
            username=credentials[0] if credentials else None,
            password=credentials[1] if credentials else None,
        ) as server:
            urls = server.add_cameras(cameras, main, sub, tcp=udp is not True, udp=udp is not False)
            for url in urls:
                typer.echo(url)
            transports = {None: "TCP and UDP", True: "UDP only", False: "TCP only"}[udp]
            typer.echo(
                f"# {len(urls)} cameras on {host}:{server.port}, {label}, "
                f"{main.achieved_bitrate_bps / 1e6:.2f} Mb/s, {transports}"
                + (", sub-streams at <url>/sub" if sub is not None else "")
            )
            if credentials:
                typer.echo(
                    f"# Digest authentication: user {credentials[0]!r} with the given password "
                    "(rtsp://USER:PASSWORD@host:port/name)"
                )
            typer.echo("# Ctrl-C stops", nl=True)
            sys.stdout.flush()
            while not stop.wait(0.5):
                pass
            total = sum(s.bytes_sent for s in server.all_stats().values())
        err.print(f"stopped; sent {total / 1e6:.1f} MB")
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
