"""The `orchestrator` command: thin wrappers over the library, one module per family of commands."""

from orchestrator.cli import (  # noqa: F401  (registers the commands)
    api_commands,
    late_data,
    listing,
    operator,
    orders,
    setup,
)
from orchestrator.cli.app import app


def main() -> None:
    app()


__all__ = ["app", "main"]
