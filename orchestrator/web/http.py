"""What the API and the console share: how a route says which surface it belongs to (its failures
answer in JSON or as a page), the API's endpoint table entry, the JSON error shape, and which
order a URL names.

A route of the API is an `ApiRoute`; the router records the route it matched in the request's
scope, so an exception handler (or `LastResort`, outside them) answers in that surface's language
without looking at the path.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from orchestrator.web.auth import Caller

Handler = Callable[[Request], Awaitable[Response]]


class ApiRoute(Route):
    """A route of the JSON API (its refusals and failures answer in JSON, not as a page)."""


def caller_of(request: Request) -> Caller:
    """Who is calling; only asked on a route whose `requires` let the request in."""
    user = request.user
    assert isinstance(user, Caller), "a route that reads its caller requires one"
    return user


def answers_json(scope: Mapping[str, Any]) -> bool:
    """Whether the request's route is the API's (the router puts the route it matched in the scope)."""
    return isinstance(scope.get("route"), ApiRoute)


@dataclass(frozen=True)
class Answer:
    """One answer an endpoint gives, for the OpenAPI document: its status, what it means, and
    the body's type (a TypedDict of `orchestrator.web.schemas`; None: no body of ours)."""

    status: int
    description: str
    body: Any = None


@dataclass(frozen=True)
class Endpoint:
    """One API route: what it does, who may call it, what it takes and what it answers. The
    routes, the OpenAPI document and the console's API page are all made from these."""

    method: str
    path: str
    permission: str | None  # None: any valid token
    summary: str
    handler: Handler
    answers: tuple[Answer, ...] = ()
    takes: Any = None  # the request body's type, as `Answer.body`
    takes_media: tuple[str, ...] = ("application/json",)
    body_required: bool = True
    query: Mapping[str, str] = field(default_factory=dict)  # query parameter -> what it does


def error(
    status: int, message: str, *, headers: Mapping[str, str] | None = None, **extra: Any
) -> JSONResponse:
    """The API's one error shape: `{"error": message}`, plus what the failure carries (problems,
    matches)."""
    return JSONResponse({"error": message, **extra}, status_code=status, headers=headers)


def order_ref(request: Request) -> str:
    """Which order a URL names: `/orders/ABC-1`, or `/orders/ABC-1?account=acme-ar` for the order
    of one account when several accounts hold that id (a path segment cannot carry the `/` of the
    command line's `acme-ar/ABC-1`)."""
    order_id = str(request.path_params["order_id"])
    account = request.query_params.get("account")
    return f"{account}/{order_id}" if account else order_id
