"""The `orchestrator` command: thin wrappers over the library, one module per family of commands."""

from orchestrator.cli import late_data, listing, operator, orders, setup  # noqa: F401  (registers the commands)
from orchestrator.cli.app import app


def main() -> None:
    app()


__all__ = ["app", "main"]
