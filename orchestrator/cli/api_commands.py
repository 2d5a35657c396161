"""`orchestrator serve` (the HTTP API) and `orchestrator token` (its bearer tokens)."""

from __future__ import annotations

import asyncio
import json
import signal
from typing import Annotated

import typer

from orchestrator.cli import exits
from orchestrator.cli.app import app
from orchestrator.cli.support import OperationError, err_line, json_option, out, store_for

token_app = typer.Typer(help="Bearer tokens of the HTTP API: create, list, revoke.", no_args_is_help=True)
app.add_typer(token_app, name="token")


@app.command()
def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port (0 picks a free one).")] = 8080,
    max_connections: Annotated[
        int,
        typer.Option(
            min=8,
            help="Connections held at most; beyond it the one idle longest is closed (lowered to fit "
            "the process's descriptor limit).",
        ),
    ] = 256,
) -> None:
    """Serve the HTTP API (push and operate orders) on the daemon's database; run any number."""
    from orchestrator.log import get_logger
    from orchestrator.serving import bind, url_of
    from orchestrator.web.app import api_server
    from orchestrator.web.bounded_http import BACKLOG, Limits

    settings = ctx.obj.logging_settings()
    # The port first, so that a taken port changes nothing; and the database must exist already
    # (`migrate`, `run`, `import` or `token create` make it): an API on a mistyped path would
    # otherwise serve an empty database as if all were well.
    sock = bind(host, port, setting="orchestrator serve --port", backlog=BACKLOG)
    store = store_for(settings)
    limits = Limits(max_connections=max_connections).within_descriptors()
    server = api_server(settings, store, limits)
    get_logger(component="api").info(
        "API served",
        url=url_of(sock),
        openapi=f"{url_of(sock)}/api/openapi.json",
        max_connections=limits.max_connections,
    )
    # uvicorn stops gracefully on SIGTERM/SIGINT, then raises the signal again for the handler it
    # found: this one, so that a clean stop exits 0 as the daemon's does.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda _sig, _frame: None)
    asyncio.run(server.serve(sockets=[sock]))


@token_app.command("create")
def token_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Option(help="Who or what uses it (a system, a person); unique.")],
    role: Annotated[str, typer.Option(help="intake (push only), viewer (read only) or operator.")],
    expires: Annotated[
        str | None, typer.Option(help="Valid for this long (e.g. 90d, 12h); by default until revoked.")
    ] = None,
    as_json: Annotated[bool, json_option()] = False,
) -> None:
    """Create a token; it is printed once and only its hash is kept."""
    from orchestrator.clock import utcnow
    from orchestrator.durations import parse_duration
    from orchestrator.timefmt import iso
    from orchestrator.web.auth import ROLES, new_token, token_hash

    if role not in ROLES:
        raise typer.BadParameter(f"one of {', '.join(ROLES)}", param_hint="--role")
    lifetime = None
    if expires is not None:
        try:
            lifetime = parse_duration(expires)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--expires") from None
        if lifetime.total_seconds() <= 0:
            raise typer.BadParameter("must be longer than nothing (e.g. 90d)", param_hint="--expires")
    if not name.strip() or len(name) > 100 or not name.isprintable():
        # The name is written into log lines and the orders' history (`api:NAME`): a line break or
        # a control character there would forge or garble them.
        raise typer.BadParameter("1 to 100 printable characters (no line breaks)", param_hint="--name")
    store = store_for(ctx.obj.settings(), create=True)
    token = new_token()
    now = utcnow()
    expires_at = now + lifetime if lifetime is not None else None
    if not store.add_token(name, role, token_hash(token), now, expires_at):
        raise OperationError(f"a token named {name!r} exists already (names stay unique, even revoked)")
    if as_json:
        typer.echo(json.dumps({"name": name, "role": role, "token": token, "expiresAt": iso(expires_at)}))
    else:
        until = f", valid until {iso(expires_at)}" if expires_at else ""
        out.print(f"token {name} ({role}{until}) created; it is shown only now:", highlight=False)
        typer.echo(token)


@token_app.command("revoke")
def token_revoke(ctx: typer.Context, name: Annotated[str, typer.Argument(help="The token's name.")]) -> None:
    """Revoke a token at once; its name stays in the history of what it did."""
    from orchestrator.clock import utcnow

    store = store_for(ctx.obj.settings())
    if not store.revoke_token(name, utcnow()):
        err_line(f"no live token named {name!r}", "nothing revoked")
        raise typer.Exit(exits.NOTHING_TO_DO)
    out.print(f"token {name} revoked")


@token_app.command("list")
def token_list(ctx: typer.Context, as_json: Annotated[bool, json_option()] = False) -> None:
    """The tokens, their roles and last use (never the tokens themselves)."""
    from orchestrator.clock import utcnow
    from orchestrator.timefmt import human, iso

    tokens = store_for(ctx.obj.settings()).tokens()
    now = utcnow()
    if as_json:
        rows = [
            {
                "name": t.name,
                "role": t.role,
                "createdAt": iso(t.created_at),
                "revokedAt": iso(t.revoked_at),
                "lastUsedAt": iso(t.last_used_at),
                "expiresAt": iso(t.expires_at),
                "expired": t.expires_at is not None and t.expires_at <= now,
            }
            for t in tokens
        ]
        typer.echo(json.dumps({"tokens": rows}, indent=2))
        return
    for t in tokens:
        if t.revoked_at:
            state = f"revoked {human(t.revoked_at)}"
        elif t.expires_at is not None and t.expires_at <= now:
            state = f"EXPIRED {human(t.expires_at)}"
        else:
            state = f"last used {human(t.last_used_at)}"
            if t.expires_at is not None:
                state += f", expires {human(t.expires_at)}"
        out.print(f"{t.name}  {t.role}  created {human(t.created_at)}  {state}", highlight=False)
