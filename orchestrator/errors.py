"""Every failure the product raises on purpose, sorted by what a surface does about it.

    OrchestratorError                  exit_code (the CLI's), serve_status (the HTTP status `serve`
                                       answers with); the message says what, and what to do
    ├── UsageError                     exit 2, HTTP 400: a setting, an input, a URL is wrong
    │   ├── ConfigurationError         a setting (config.settings); AccountError, CredentialMissing
    │   │                              (config.account_tables), StuckRulesError (config.stuck_rules)
    │   ├── InputError                 an input that cannot be read (intake.line_input)
    │   ├── BadJson                    text that is not the JSON we take (intake.strict_json)
    │   ├── BodyError                  a posted body (web.bodies; its own status: 400, 409, 413,
    │   │                              422, with the problems)
    │   ├── CursorError                a listing cursor (store.listing)
    │   ├── FormRefused                a console form without its CSRF token (web.console; HTTP 403)
    │   └── ProxyError                 a proxy setting (vtex.proxies)
    ├── OperationError                 exit 3, HTTP 409: understood, but not done for that order now
    │   ├── AskVtexFirst, BatchRefused VTEX asked first (an open intent, its value); a batch refused
    │   ├── AmbiguousOrder             an id several accounts hold (store.rows)
    │   └── AccountPaused              exit 7: the account is paused (ops.pause)
    ├── NotFound                       exit 4, HTTP 404: no such order (NoSuchOrder: by any id)
    ├── Unavailable                    exit 1, HTTP 503: a part it needs cannot be used now
    │   ├── DatabaseError              (store.errors); NoDatabase and BadDatabaseUrl are usage
    │   │                              errors by their exit code (2), DaemonAlreadyRunning not
    │   ├── ListenError                a port (serving)
    │   └── InputChanged               an input changed between the import's two passes
    └── VtexError                      exit 1, HTTP 502: VTEX's answer (vtex.errors: its own tree)

Each surface maps them once: the CLI prints `str(exc)` and exits `exc.exit_code`
(`cli.app.explain_failure`), `serve` answers `exc.serve_status` with the message and
`exc.details()` (`web.app`'s exception handlers: JSON for the API, a page for the console).
What is not an `OrchestratorError` is either the database driver's (explained in one line by
`store.errors.explain`) or a bug. `states.IllegalTransition` stays apart: `states/` imports
nothing of ours, and one escaping is a bug.

This module imports nothing of ours, so that every layer, the lowest included, can name these.
"""

from __future__ import annotations

from typing import Any


class OrchestratorError(Exception):
    """A failure the product understands; the message says what, and what to do."""

    exit_code = 1
    serve_status = 500

    def details(self) -> dict[str, Any]:
        """What the API adds to its answer beside the message (the problems, the matches)."""
        return {}


class UsageError(OrchestratorError):
    """A setting, an input or a URL is wrong: fix it and run again."""

    exit_code = 2
    serve_status = 400


class OperationError(OrchestratorError):
    """The operation cannot be done; the message says why and what to do instead."""

    exit_code = 3
    serve_status = 409


class NotFound(OrchestratorError):
    """There is no such order (or nothing else to act on)."""

    exit_code = 4
    serve_status = 404


class NoSuchOrder(NotFound):
    """No order has this id: the one message every command and route gives for it."""

    def __init__(self, key: str) -> None:
        super().__init__(
            f"no order has {key!r} as order id, marketplace order id or invoice number "
            "(order ids look like ABC-12345: affiliateId-marketplaceOrderId)"
        )


class Unavailable(OrchestratorError):
    """A part it needs (the database, a port, an input) cannot be used now."""

    exit_code = 1
    serve_status = 503
