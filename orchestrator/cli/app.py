"""The typer application and its global options; commands register themselves on it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from orchestrator.cli.support import Context

app = typer.Typer(
    help="Drive orders sold outside VTEX through VTEX OMS to `invoiced`, durably.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def main_options(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="TOML file of settings (environment variables take precedence)."),
    ] = None,
) -> None:
    ctx.obj = Context(config)
