"""The ``vmscore`` command."""

from __future__ import annotations

import typer

import vmscore
from vmscore.record.cli import keys_app, verify_cmd
from vmscore.sim.cli import app as sim_app
from vmscore.station.cli import demo_cmd, export_cmd, station_cmd, user_app

app = typer.Typer(
    name="vmscore",
    help="vmscore: the core of a video management system.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(sim_app, name="sim")
app.command("verify")(verify_cmd)
app.add_typer(keys_app, name="keys")
app.command("demo")(demo_cmd)
app.command("station")(station_cmd)
app.command("export")(export_cmd)
app.add_typer(user_app, name="user")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"vmscore {vmscore.__version__} (SIMD: {vmscore.simd_level()})")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """vmscore: the core of a video management system."""


def main() -> None:
    app()
