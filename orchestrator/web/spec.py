"""The OpenAPI document, written from the route table itself so it cannot drift from it."""

from __future__ import annotations

import re
from typing import Any

from orchestrator import __version__

ACCOUNT = {
    "name": "account",
    "in": "query",
    "required": False,
    "schema": {"type": "string"},
    "description": "The configured VTEX account (with several, the same order id may exist in each).",
}
ROLES_FOR = {"push": "intake, operator", "read": "viewer, operator", "operate": "operator", None: "any"}


def openapi(endpoints: list[Any]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for e in endpoints:
        params: list[dict[str, Any]] = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in re.findall(r"{(\w+)}", e.path)
        ]
        if "{order_id}" in e.path or (e.path in ("/api/orders", "/api/status") and e.method == "GET"):
            params.append(ACCOUNT)
        paths.setdefault(e.path, {})[e.method.lower()] = {
            "summary": e.summary,
            "description": f"Roles: {ROLES_FOR.get(e.permission, 'any')}.",
            "parameters": params,
            "security": [{"bearer": []}],
            "responses": {
                "200": {"description": "done, or nothing new"},
                "401": {"description": "no valid bearer token"},
                "403": {"description": "the token's role may not do this"},
            },
        }
    return {
        "openapi": "3.1.0",
        "info": {"title": "vtex-orchestrator", "version": __version__},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "paths": paths,
    }
