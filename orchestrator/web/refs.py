"""Which order a URL names: `/orders/ABC-1`, or `/orders/ABC-1?account=acme-ar` for the order of
one account when several accounts hold that id (a path segment cannot carry the `/` of the
command line's `acme-ar/ABC-1`)."""

from __future__ import annotations

from starlette.requests import Request


def order_ref(request: Request) -> str:
    order_id = str(request.path_params["order_id"])
    account = request.query_params.get("account")
    return f"{account}/{order_id}" if account else order_id
