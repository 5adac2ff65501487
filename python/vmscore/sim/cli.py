"""``vmscore sim``: write synthetic camera clips with ground truth, list the scene catalogue."""

from __future__ import annotations

import re
from collections import Counter
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

    with Progress(
        TextColumn(f"[bold]{scene}[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=_console,
        transient=True,
    ) as progress:
        task = progress.add_task("render", total=None)

        def on_frame(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

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
