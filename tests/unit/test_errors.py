"""One root for the product's errors: each kind carries the exit code and HTTP status its
surfaces use, and the codes are the ones docs/commands.md documents."""

from __future__ import annotations

import pytest

from orchestrator.cli import exits
from orchestrator.cli.app import explain_failure
from orchestrator.config.checks import ConfigurationError
from orchestrator.errors import NotFound, OperationError, OrchestratorError, Unavailable, UsageError
from orchestrator.intake.line_input import InputError
from orchestrator.ops.pause import AccountPaused
from orchestrator.serving import ListenError
from orchestrator.store.errors import BadDatabaseUrl, DatabaseError, NoDatabase
from orchestrator.vtex.errors import VtexError
from orchestrator.web.bodies import BodyError


@pytest.mark.parametrize(
    ("kind", "exit_code", "status"),
    [
        (UsageError, exits.USAGE, 400),
        (OperationError, exits.REFUSED, 409),
        (NotFound, exits.NOTHING_TO_DO, 404),
        (Unavailable, exits.FAILED, 503),
        (AccountPaused, exits.PAUSED, 409),
        (VtexError, exits.FAILED, 502),
    ],
)
def test_each_kind_says_its_exit_code_and_http_status(
    kind: type[OrchestratorError], exit_code: int, status: int
) -> None:
    """The CLI exits with, and `serve` answers, what the kind says."""
    assert (kind.exit_code, kind.serve_status) == (exit_code, status)


def test_the_products_errors_all_descend_from_the_one_root() -> None:
    """Settings, input, database, ports, posted bodies and VTEX: one root, mapped once."""
    for kind in (
        ConfigurationError,
        InputError,
        DatabaseError,
        NoDatabase,
        ListenError,
        BodyError,
        VtexError,
    ):
        assert issubclass(kind, OrchestratorError), kind
    assert (NoDatabase.exit_code, BadDatabaseUrl.exit_code) == (exits.USAGE, exits.USAGE)


def test_the_cli_maps_any_of_them_in_one_place() -> None:
    """One line and the kind's exit code, whatever the kind; a bug says it is one."""
    assert explain_failure(ConfigurationError("set VTEX_ACCOUNT")) == (exits.USAGE, "set VTEX_ACCOUNT")
    assert explain_failure(BodyError(413, "too large"))[0] == exits.USAGE
    code, said = explain_failure(ZeroDivisionError("x"))
    assert code == exits.FAILED and said.startswith("internal error (ZeroDivisionError")
