"""The typer application, its global options, and the one place failures become a clear line.

Every command runs inside `FriendlyGroup.invoke`: whatever goes wrong (a setting, the database,
a port, VTEX, a bug) is printed as one line on standard error, with no secret and no customer
data (it goes through the redaction point), and the process exits with the code of
`orchestrator.cli.exits`. `ORCHESTRATOR_DEBUG=1` shows the traceback instead, for bug reports.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup
from typer.exceptions import Abort, Exit, TyperException

from orchestrator.cli import exits
from orchestrator.cli.support import Context, err_line


def explain_failure(exc: BaseException) -> tuple[int, str]:
    """(exit code, one line) for an exception that ended a command: the product's own say both
    themselves (`orchestrator.errors`); the database driver's are explained; anything else is a bug."""
    from orchestrator.errors import OrchestratorError
    from orchestrator.store.errors import explain, is_database_error

    if isinstance(exc, OrchestratorError):
        return exc.exit_code, str(exc)
    if is_database_error(exc):
        return exits.FAILED, f"database: {explain(exc)}"
    if isinstance(exc, KeyboardInterrupt):
        return exits.INTERRUPTED, "interrupted"
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename else ""
        return exits.FAILED, f"{exc.strerror or type(exc).__name__}{where}"
    detail = (str(exc).strip().splitlines() or [""])[0][:300]
    return exits.FAILED, (
        f"internal error ({type(exc).__name__}: {detail}); please report it with the output of "
        "the same command run with ORCHESTRATOR_DEBUG=1"
    )


class FriendlyGroup(TyperGroup):
    def invoke(self, ctx: Any) -> Any:
        # psycopg reports, as a warning, the clean-up of a pipeline that an error already ended;
        # the error itself is what the operator needs, in one line.
        logging.getLogger("psycopg").setLevel(logging.ERROR)
        try:
            return super().invoke(ctx)
        except (Exit, Abort, TyperException):  # exits and usage errors: typer reports them itself
            raise
        except (Exception, KeyboardInterrupt) as exc:
            if os.environ.get("ORCHESTRATOR_DEBUG") == "1":
                raise
            code, message = explain_failure(exc)
            err_line(message)
            raise typer.Exit(code) from None


app = typer.Typer(
    cls=FriendlyGroup,
    help="Drive orders sold outside VTEX through VTEX OMS to `invoiced`, durably.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish, PowerShell
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        import platform

        from orchestrator import __version__

        typer.echo(f"orchestrator {__version__} (Python {platform.python_version()})")
        raise typer.Exit(exits.OK)


@app.callback()
def main_options(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="TOML file of settings (environment variables take precedence)."),
    ] = None,
    version: Annotated[
        bool,
        typer.Option("--version", help="Print the version and exit.", is_eager=True, callback=_print_version),
    ] = False,
) -> None:
    ctx.obj = Context(config)
