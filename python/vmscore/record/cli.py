"""``vmscore verify`` checks a signed evidence export; ``vmscore keys`` shows the signing key."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from vmscore.record.signing import ByteDamage, MediaSpan, StationKey, VerifyReport

keys_app = typer.Typer(
    help="The station's Ed25519 key, which signs evidence exports.",
    no_args_is_help=True,
    add_completion=False,
)

_console = Console()


def verify_cmd(
    file: Annotated[Path, typer.Argument(help="The exported MP4.", exists=True, dir_okay=False)],
    manifest: Annotated[
        Path | None,
        typer.Option("--manifest", "-m", help="Its manifest (default: FILE.manifest.json)."),
    ] = None,
    key: Annotated[
        list[Path] | None,
        typer.Option(
            "--key",
            "-k",
            help="A trusted station public key (PEM); repeat for several. The export must be "
            "signed by one of them.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Check an exported file against its signed manifest: exit 0 when valid, 1 when not."""
    from vmscore.errors import KeyFileError
    from vmscore.record.signing import load_public_key, verify_export

    trusted = None
    if key:
        try:
            trusted = [load_public_key(k) for k in key]
        except (KeyFileError, OSError) as exc:
            raise typer.BadParameter(str(exc), param_hint="--key") from None
    report = verify_export(file, manifest, trusted_keys=trusted)
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
    else:
        _print_report(report, _console)
    raise typer.Exit(0 if report.valid else 1)


def _print_report(report: VerifyReport, console: Console) -> None:
    verdict = "[bold green]VALID[/]" if report.valid else "[bold red]NOT VALID[/]"
    console.print(f"{verdict}  {escape(report.file)}")
    info = Table(show_header=False, box=None, padding=(0, 2, 0, 0))
    info.add_column(style="bold")
    info.add_column()
    if report.camera is not None:
        caution = "" if report.signature == "valid" else " [red](from an unverified manifest)[/]"
        info.add_row("camera", escape(report.camera) + caution)
        info.add_row("range", f"{report.start_utc} to {report.end_utc}")
        info.add_row("exporter", escape(report.exporter or ""))
        info.add_row("station", escape(report.station or ""))
        info.add_row("exported", str(report.exported_at_utc))
    signature = {
        "valid": "[green]valid[/]",
        "invalid": "[red]INVALID[/]",
        "unchecked": "not checked",
    }[report.signature]
    info.add_row("signature", signature)
    if report.key_fingerprint is not None:
        trust = {
            True: "[green]trusted[/]",
            False: "[red]NOT TRUSTED[/]",
            None: "[yellow]not checked against a trusted key (--key)[/]",
        }[report.key_trusted]
        info.add_row("signed by", f"key {report.key_fingerprint}, {trust}")
    if report.signed_size is not None:
        now = f"; now {report.actual_size:,} bytes" if report.actual_size is not None else ""
        info.add_row(
            "file",
            f"signed as {escape(report.signed_name or '')}, {report.signed_size:,} bytes{now}",
        )
    info.add_row("manifest", escape(report.manifest))
    console.print(info)
    for problem in report.problems:
        console.print(f"[red]problem[/] ({problem.code}): {escape(problem.message)}")
    for note in report.notes:
        console.print(f"[yellow]note[/] ({note.code}): {escape(note.message)}")
    if report.damage:
        console.print(_damage_table(report.damage))


def _damage_table(damage: list[ByteDamage]) -> Table:
    table = Table(title="Damage", title_justify="left", header_style="bold")
    for col in ("kind", "bytes", "blocks", "media"):
        table.add_column(col)
    for d in damage:
        blocks = "" if d.blocks is None else "-".join(dict.fromkeys(map(str, d.blocks)))
        if d.media is None:
            media = "not mapped (the file does not demux)"
        elif not d.media:
            media = "no media packets"
        else:
            media = "\n".join(_span_text(m, counted=d.kind != "missing") for m in d.media)
        if d.non_media_bytes:
            media += f"\n{d.non_media_bytes:,} bytes outside media packets"
        table.add_row(d.kind, f"{d.start:,}-{d.end - 1:,}", blocks, media)
    return table


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _span_text(m: MediaSpan, *, counted: bool) -> str:
    """One stream's media in a damaged range; packet counts only where the bytes are present."""
    text = (
        f"{m.kind} #{m.stream}: {m.start_s:.3f}-{m.end_s:.3f} s "
        f"({m.start_utc or '?'} to {m.end_utc or '?'})"
    )
    if counted:
        text += f", {_plural(m.packets, 'packet')}"
        if m.keyframes:
            text += f", {_plural(m.keyframes, 'keyframe')}"
    return text


def _load_station_key(path: Path) -> StationKey:
    from vmscore.errors import KeyFileError
    from vmscore.record.signing import StationKey

    try:
        return StationKey.load(path)
    except FileNotFoundError:
        raise typer.BadParameter(
            f"{path} does not exist (create one with 'vmscore keys create --path')",
            param_hint="--path",
        ) from None
    except (KeyFileError, OSError) as exc:
        raise typer.BadParameter(str(exc), param_hint="--path") from None


def _show_key(key: StationKey, public_out: Path | None) -> None:
    if public_out is not None:
        try:
            public_out.write_text(key.public_key_pem)
        except OSError as exc:
            raise typer.BadParameter(str(exc), param_hint="--public-out") from None
    _console.print(f"[bold]fingerprint[/] {key.fingerprint}  ({escape(str(key.path))})")
    if public_out is not None:
        _console.print(f"public key written to {escape(str(public_out))}")
    typer.echo(key.public_key_pem, nl=False)


_PublicOut = Annotated[
    Path | None,
    typer.Option(
        "--public-out", help="Also write the public key (PEM) to this file.", dir_okay=False
    ),
]


@keys_app.command("create")
def keys_create_cmd(
    path: Annotated[Path, typer.Option("--path", "-p", help="The private key file to create.")],
    public_out: _PublicOut = None,
) -> None:
    """Create the station key (mode 0600); an existing key file is never replaced."""
    from vmscore.record.signing import StationKey

    try:
        key = StationKey.create(path)
    except FileExistsError:
        raise typer.BadParameter(
            f"{path} exists; a station key is never overwritten", param_hint="--path"
        ) from None
    except OSError as exc:
        raise typer.BadParameter(str(exc), param_hint="--path") from None
    _show_key(key, public_out)


@keys_app.command("show")
def keys_show_cmd(
    path: Annotated[Path, typer.Option("--path", "-p", help="The station's private key file.")],
    public_out: _PublicOut = None,
) -> None:
    """Print the station key's fingerprint and public key (what verifiers pass to --key)."""
    _show_key(_load_station_key(path), public_out)
